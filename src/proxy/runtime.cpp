#include "keygate/proxy/runtime.hpp"

#include "keygate/proxy/stages.hpp"

namespace keygate {

Runtime::Runtime(Config c)
    : config(std::move(c)),
      renderer(config.errors),
      key_format(config.keys),
      hasher(config.keys.pepper),
      missing_message(missing_key_message(config.auth)) {
  for (const auto& text : config.trusted_proxies)
    if (auto net = parse_cidr(text)) trusted_proxies.push_back(*net);  // the loader checked them
}

}  // namespace keygate
