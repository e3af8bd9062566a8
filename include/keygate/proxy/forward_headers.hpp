#pragma once
// Header rewriting between client and upstream (SPEC §3 "What is forwarded").
#include <string>
#include <string_view>

#include "keygate/proxy/context.hpp"
#include "keygate/proxy/runtime.hpp"

namespace keygate {

// 1-128 visible ASCII characters, else a fresh id.
std::string choose_request_id(std::string_view client_value);
std::string new_request_id();

// Removes hop-by-hop fields (and those named in Connection); framing
// (Content-Length / Transfer-Encoding) is left to the serializer.
void remove_hop_by_hop(Fields& f);

struct ForwardInfo {
  bool client_tls = false;
  bool websocket = false;  // keep Upgrade/Connection for a tunnelled upgrade
};
// Request going upstream: credential, spoofed identity, identity, X-Forwarded-*, X-Request-Id.
// Returns the target to send (the query credential removed when it was used).
std::string rewrite_request(Fields& f, std::string_view target, const Context& ctx,
                            const Runtime& rt, const ForwardInfo& info);

}  // namespace keygate
