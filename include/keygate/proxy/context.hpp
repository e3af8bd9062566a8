#pragma once
// Per-request state passed through every stage (Pingora's CTX).
#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include <boost/beast/http/fields.hpp>

#include "keygate/config/config.hpp"
#include "keygate/keys/key_index.hpp"
#include "keygate/proxy/normalize.hpp"
#include "keygate/ratelimit/rate_limiter.hpp"

namespace keygate {

using Fields = boost::beast::http::fields;

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
  std::string value;
  AuthSource source;
};

struct Context {
  std::string request_id;
  std::string client_ip;
  NormalizedTarget target;  // what routes matched and what goes upstream (SPEC §7)
  const Route* route = nullptr;
  std::optional<Credential> credential;
  std::optional<AuthKey> key;    // set once authenticated
  std::string plan;              // the key's effective plan
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
};

}  // namespace keygate
