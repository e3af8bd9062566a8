#pragma once
// Per-request state passed through every stage (Pingora's CTX).
#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

#include <boost/beast/http/fields.hpp>

#include "keygate/config/config.hpp"
#include "keygate/core/arena.hpp"
#include "keygate/keys/key_index.hpp"
#include "keygate/proxy/normalize.hpp"
#include "keygate/ratelimit/rate_limiter.hpp"

namespace keygate {

// Parsed heads. The session gives their allocator a per-request arena; a
// default-constructed one (tests, tools) uses the heap.
using Fields = boost::beast::http::basic_fields<ArenaAllocator<char>>;

struct RequestView {
  std::string_view method;
  std::string_view target;  // path and query (as sent, or normalised once decide() ran)
  const Fields& fields;
  std::string_view path() const { return target.substr(0, target.find('?')); }
  std::string_view query() const {
    auto q = target.find('?');
    return q == std::string_view::npos ? std::string_view{} : target.substr(q + 1);
  }
};

struct Credential {
  std::string_view value;  // in the request (a header or the target): lives as long as it
  AuthSource source;
};

struct Context {
  // What the request is for (SPEC §9): relayed upstream, a forward-auth check
  // (judged as the original request it describes), or a self-service key route.
  enum class Mode { proxy, forward_auth, self_service };

  // For the next request on the same connection: everything but peer_ip goes
  // back to its default, so that no request's key, client IP, credits,
  // deprecation or rate decision reaches the next one; the strings keep their
  // capacity (no allocation per request). Built from a fresh Context rather
  // than field by field, so a field added later is reset without being listed.
  void clear() {
    Context next;
    next.peer_ip = std::move(peer_ip);
    next.client_ip = std::move(client_ip);
    next.request_id = std::move(request_id);
    next.target.target = std::move(target.target);
    next.target.authority = std::move(target.authority);
    next.reason = std::move(reason);
    *this = std::move(next);
    client_ip = peer_ip;  // until admit() applies trusted_proxies
    request_id.clear();
    target.target.clear();
    target.authority.clear();
    reason.clear();
  }

  std::string request_id;
  std::string peer_ip;    // the socket peer, for every request on the connection
  std::string client_ip;  // the peer, until admit() applies trusted_proxies (SPEC §10)
  Mode mode = Mode::proxy;
  NormalizedTarget target;  // what routes matched and what goes upstream (SPEC §7)
  const Route* route = nullptr;
  std::optional<Credential> credential;
  std::optional<AuthKey> key;    // set once authenticated
  std::string_view plan;         // the key's effective plan (its name in the config)
  RatePolicy policy;             // resolved once, by authenticate
  std::optional<Decision> rate;  // set once rate-limited
  std::string reason;            // for the access log and metrics
  bool usage_due = false;        // this request should report last-used
  // Key lifecycle (SPEC §11):
  UnixMillis now = 0;                            // wall time the pipeline decided at
  KeyMeter* meter = nullptr;                     // the key's, once identified (valid or not)
  KeyMeter* payer = nullptr;                     // whose credits it spends, if any
  std::uint32_t cost = 1;                        // the route's cost
  std::optional<CreditAccount::Answer> credits;  // the key's credits after this request
  bool deprecated = false;                       // in a rotation's grace period
  std::string shadow_reason;  // shadow mode: the reason it would have been refused
  std::string admin_target;   // self-service: the admin API route and query it maps to
};

}  // namespace keygate
