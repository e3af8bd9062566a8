#pragma once
// One config generation, compiled for the request path: shared, immutable,
// swapped as a whole on SIGHUP.
#include <memory>
#include <string>

#include "keygate/config/config.hpp"
#include "keygate/keys/cidr.hpp"
#include "keygate/keys/key_format.hpp"
#include "keygate/keys/key_hasher.hpp"
#include "keygate/proxy/error_renderer.hpp"

namespace keygate {

struct Runtime {
  explicit Runtime(Config c);
  Config config;
  ErrorRenderer renderer;
  KeyFormat key_format;
  KeyHasher hasher;
  std::string missing_message;
  std::vector<Cidr> trusted_proxies;  // config.trusted_proxies, parsed once
};

using RuntimePtr = std::shared_ptr<const Runtime>;

}  // namespace keygate
