#pragma once
// Header rewriting between client and upstream (SPEC §3 "What is forwarded").
#include <algorithm>
#include <array>
#include <string>
#include <string_view>

#include "keygate/proxy/context.hpp"
#include "keygate/proxy/flat_fields.hpp"
#include "keygate/proxy/runtime.hpp"

namespace keygate {

// 1-128 visible ASCII characters, else a fresh id.
std::string choose_request_id(std::string_view client_value);
std::string new_request_id();
// The same, written into `out` (its capacity reused).
void choose_request_id(std::string_view client_value, std::string& out);
void new_request_id(std::string& out);

// The most options a head's Connection fields may list, close and keep-alive
// included (counted as commas + 1 a field): more is refused, a request with
// 400 (check_framing), an upstream's response with 502. No client or server
// sends more than a few; a 16 KiB request of 3000 names over 2400 empty
// fields kept a core busy ~50 ms (each field looked up in the whole list).
inline constexpr std::size_t kMaxConnectionOptions = 16;
inline std::size_t connection_options(std::string_view connection_value) {
  return 1 + static_cast<std::size_t>(
                 std::count(connection_value.begin(), connection_value.end(), ','));
}
bool too_many_connection_options(const FlatFields& f);

// Hop-by-hop fields of a head (the client's request or the upstream's
// response): the fixed list and the names its Connection fields list (close,
// keep-alive and framing fields aside). Framing (Content-Length /
// Transfer-Encoding) is left to whoever writes the head.
class HopByHop {
 public:
  explicit HopByHop(const FlatFields& h);
  bool operator()(const FlatFields::value_type& field) const;

 private:
  // More are still matched (the list is read again for each field), but no
  // head the gateway accepts has more (kMaxConnectionOptions).
  static constexpr std::size_t kMaxNamed = kMaxConnectionOptions;
  std::array<std::string_view, kMaxNamed> named_{};
  std::size_t count_ = 0;
  const FlatFields* fields_;
};

// The identity headers (SPEC §3) of ctx.key, if any: X-Keygate-Key-Id, -Key-Name,
// -Owner, -Scopes, -Plan under identity.header_prefix.
void set_identity_headers(Fields& f, const Context& ctx, const Config& config);

struct ForwardInfo {
  bool client_tls = false;
  bool websocket = false;  // keep Upgrade/Connection for a tunnelled upgrade
};

// The request head going upstream, appended to `out` ("METHOD target HTTP/1.1",
// fields, blank line): the client's fields minus hop-by-hop ones, spoofed
// identity, keys and the fields the gateway sets, which follow (identity,
// X-Forwarded-*, Host, X-Request-Id). `target` is the normalised target; a
// query credential is removed from it when it was used.
void write_request_head(std::string& out, std::string_view method, std::string_view target,
                        const RequestFields& f, const Context& ctx, const Runtime& rt,
                        const ForwardInfo& info);

// The same rewrite applied to `f` in place (tools and tests). Returns the
// target to send.
std::string rewrite_request(RequestFields& f, std::string_view target, const Context& ctx,
                            const Runtime& rt, const ForwardInfo& info);

}  // namespace keygate
