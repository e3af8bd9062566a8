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
#include "keygate/keys/cidr.hpp"
#include "keygate/keys/key_index.hpp"
#include "keygate/proxy/flat_fields.hpp"
#include "keygate/proxy/normalize.hpp"
#include "keygate/ratelimit/rate_limiter.hpp"

namespace keygate {

// Heads built or parsed with Beast (local replies' extra fields, the admin
// listener). The session gives their allocator a per-request arena; a
// default-constructed one (tests, tools) uses the heap.
using Fields = boost::beast::http::basic_fields<ArenaAllocator<char>>;
// The client's request head on the proxy listener, as its parser records it.
using RequestFields = FlatFields;

struct RequestView {
  std::string_view method;
  std::string_view target;  // path and query (as sent, or normalised once decide() ran)
  const RequestFields& fields;
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

// What a request learns on its way through the stages. Reset for the next
// request by assigning a fresh one, so a field added here is reset without
// being listed; Context's own members are the strings that keep their
// capacity across requests.
struct RequestState {
  // What the request is for (SPEC §9): relayed upstream, a forward-auth check
  // (judged as the original request it describes), or a self-service key route.
  enum class Mode { proxy, forward_auth, self_service };

  Mode mode = Mode::proxy;
  // Forward auth: the method judged (X-Forwarded-Method or the like), a view
  // into the check's fields; the judged target is `target`.
  std::string_view judged_method;
  const Route* route = nullptr;
  std::optional<Credential> credential;
  std::optional<AuthKey> key;    // set once authenticated
  std::string_view plan;         // the key's effective plan (its name in the config)
  RatePolicy policy;             // resolved once, by authenticate
  std::optional<Decision> rate;  // set once rate-limited
  bool usage_due = false;        // this request should report last-used
  // Key lifecycle (SPEC §11):
  UnixMillis now = 0;                            // wall time the pipeline decided at
  KeyMeter* meter = nullptr;                     // the key's, once identified (valid or not)
  KeyMeter* payer = nullptr;                     // whose credits it spends, if any
  std::uint32_t cost = 1;                        // the route's cost
  std::optional<CreditAccount::Answer> credits;  // the key's credits after this request
  bool deprecated = false;                       // in a rotation's grace period

  // `now`, or the clock when the pipeline did not get that far: a local
  // reply reads the clock once a request.
  std::chrono::system_clock::time_point decided_at() const {
    return now ? std::chrono::system_clock::time_point(std::chrono::milliseconds(now))
               : std::chrono::system_clock::now();
  }
};

struct Context : RequestState {
  // For the next request on the same connection: everything but peer_ip goes
  // back to its default, so that no request's key, client IP, credits,
  // deprecation or rate decision reaches the next one; the strings keep their
  // capacity (no allocation per request). The state is assigned fresh and
  // the strings are emptied in place: building a whole fresh Context and
  // moving it in moved every string twice (~700 instructions a request).
  void clear() {
    release_key();
    static_cast<RequestState&>(*this) = RequestState{};
    client_ip = peer_ip;  // until admit() applies trusted_proxies
    request_id.clear();
    target.target.clear();
    target.authority.clear();
    target.path_size = 0;
    reason.clear();
    shadow_reason.clear();
    admin_target.clear();
  }

  // The authenticated key, copied into the buffers of the last request's
  // (its name, scopes and allowed networks would otherwise be allocated and
  // freed on every request).
  const AuthKey& hold_key(const IndexedKey& k) {
    key.emplace(std::move(spare_key));
    key->assign(k);
    return *key;
  }
  // client_ip as an address (nullopt if it is not one), parsed when it
  // changes: on a connection it is the same peer request after request.
  const std::optional<boost::asio::ip::address>& client_address() {
    if (client_address_.text != client_ip) {
      client_address_.text = client_ip;
      client_address_.address = parse_address(client_ip);
    }
    return client_address_.address;
  }

  // Not authenticated after all: no key, its buffers kept for the next one.
  void release_key() {
    if (!key) return;
    spare_key = std::move(*key);
    key.reset();
  }

  std::string request_id;
  std::string peer_ip;        // the socket peer, for every request on the connection
  std::string client_ip;      // the peer, until admit() applies trusted_proxies (SPEC §10)
  NormalizedTarget target;    // what routes matched and what goes upstream (SPEC §7)
  std::string reason;         // for the access log and metrics
  std::string shadow_reason;  // shadow mode: the reason it would have been refused
  std::string admin_target;   // self-service: the admin API route and query it maps to
  AuthKey spare_key;          // the buffers hold_key() reuses; never a request's key

 private:
  // Keyed by its text, so right whatever clear() does; kept across requests.
  struct ParsedAddress {
    std::string text;
    std::optional<boost::asio::ip::address> address;
  } client_address_;
};
// A member added to Context itself (not RequestState) must be reset in
// clear(): this fails until it is, and counted here.
static_assert(sizeof(Context) == sizeof(RequestState) + 6 * sizeof(std::string) +
                                     sizeof(NormalizedTarget) + sizeof(AuthKey) +
                                     sizeof(std::string) +
                                     sizeof(std::optional<boost::asio::ip::address>),
              "a member added to Context must be reset in Context::clear()");

}  // namespace keygate
