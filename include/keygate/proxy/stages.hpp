#pragma once
// The pipeline stages. Each reads the request and the Context and either lets
// the request continue (nullopt) or returns the Error to answer with. None
// touches a socket, so each is unit-tested without a network.
#include <expected>
#include <optional>
#include <string>
#include <vector>

#include "keygate/core/error.hpp"
#include "keygate/proxy/context.hpp"
#include "keygate/proxy/response_headers.hpp"
#include "keygate/proxy/runtime.hpp"
#include "keygate/ratelimit/backend.hpp"

namespace keygate {

// framing (SPEC §7): 400 for a Transfer-Encoding other than one exact
// `chunked` (any on HTTP/1.0), for a missing or repeated Host on HTTP/1.1 and
// for Connection fields listing more than kMaxConnectionOptions options.
// Beast's parser already refuses Content-Length values that disagree and
// Content-Length together with chunked. The connection must close after it.
std::optional<Error> check_framing(const RequestFields& fields, unsigned version);

// route: the first entry of `routes` matching method (case-insensitively; GET
// also covers HEAD) and the normalised path (case-sensitively), or null.
const Route* match_route(const std::vector<Route>& routes, std::string_view method,
                         std::string_view path);
// match_route, refusing (400 bad_path) a path whose lenient_reading selects
// another route: `/v1/admin;x/y` must not dodge a rule on `/v1/admin/` at a
// servlet upstream.
std::expected<const Route*, Error> select_route(const std::vector<Route>& routes,
                                                std::string_view method, std::string_view path);

// method override: many frameworks (Rails, Laravel, Symfony, Express's
// method-override, Google's APIs) run a request as the method named in
// X-HTTP-Method-Override, X-HTTP-Method or X-Method-Override. A request whose
// override would select another route than its own method did is refused (400
// method_override): `GET` + `X-HTTP-Method-Override: POST` must not dodge a
// rule written for POST. Other overrides, and every one when no route lists
// methods, pass untouched.
std::optional<Error> check_method_override(const std::vector<Route>& routes, const Route* chosen,
                                           std::string_view path, const RequestFields& fields);

// forward auth (SPEC §9): whether `path` (normalised) is a check at
// forward_auth.path: that path itself, or under it (Envoy's ext_authz appends
// the original path to its path_prefix).
bool at_forward_auth(const ForwardAuthConfig& fa, std::string_view path);
struct OriginalRequest {
  std::string_view method;  // points into the check's fields or its own method
  NormalizedTarget target;
};
// The request a check describes: method from X-Forwarded-Method or
// X-Original-Method, target from X-Forwarded-Uri or X-Original-URI, else the
// check's own (less forward_auth.path, for Envoy). 400 when those headers
// disagree with each other (a client-sent one beside the ingress's: judging the
// wrong one would let a path dodge its route) or name no valid method or path.
std::expected<OriginalRequest, Error> original_request(const RequestView& check,
                                                       const NormalizedTarget& own,
                                                       const ForwardAuthConfig& fa,
                                                       const NormalizeOptions& options);

// self-service (SPEC §9): whether `path` lies under self_service.path_prefix,
// and the admin API target (`/v1/api-keys...?query`) it maps to: the key routes
// only (<prefix>, <prefix>/{id}, <prefix>/{id}/rotate); 404 for anything else
// under the prefix.
bool under_self_service(const SelfServiceConfig& ss, std::string_view path);
std::expected<std::string, Error> self_service_target(const SelfServiceConfig& ss,
                                                      const NormalizedTarget& target);

// credentials: the key from the first source that has one (sources in order);
// 401 malformed for an empty Bearer, 401 conflict for two different keys.
std::optional<Error> extract_credential(const RequestView& req, const AuthConfig& auth,
                                        Context& ctx);
std::string missing_key_message(const AuthConfig& auth);

// authenticate + authorize: format/checksum, hash, index lookup, status,
// IP allow-list, route scopes, plan gate.
std::optional<Error> authenticate(const Runtime& rt, const KeyIndex& index, Context& ctx,
                                  UnixMillis now);
inline constexpr UnixMillis kUsageReportInterval = 5000;

// The key's plan (or rate_limit.default_plan when unset or no longer defined)
// and its rate: the key's own override first, then the plan's.
RatePolicy resolve_policy(const AuthKey& key, const Config& config);

// rate-limit: the 429 for the backend's decision in ctx.rate (the token was
// taken from the key's or owner's bucket by the backend), if it refused.
std::optional<Error> rate_limited_error(const Context& ctx);

// Response headers for a key-authenticated request (X-RateLimit-*, IETF, Retry-After).
void add_rate_limit_headers(const RateLimitConfig& cfg, const Context& ctx, HeaderSink& out,
                            std::int64_t now_epoch_seconds);
inline void add_rate_limit_headers(const RateLimitConfig& cfg, const Context& ctx, Fields& out,
                                   std::int64_t now_epoch_seconds) {
  FieldsSink sink(out);
  add_rate_limit_headers(cfg, ctx, sink, now_epoch_seconds);
}

// credits (SPEC §11): 429 reason "credits" when the key's credits (its own, or
// its replacement's after a rotation) cannot pay the route's cost. check_credits
// only looks (before the rate limit: a key without credits takes no token);
// spend_credits takes them (after it). Both leave the balance in ctx.credits.
std::optional<Error> check_credits(Context& ctx);
std::optional<Error> spend_credits(Context& ctx);
// With a backend that shares credits (Redis), the balance is checked and spent
// there, with the tokens: the query to send (sets ctx.payer; nullopt: none),
// the shared answer (sets ctx.credits; the 429 when it could not pay), and the
// spending booked in the local meter once admitted (the store worker persists
// it as this process' delta; the local meter also serves on_error: local).
std::optional<CreditQuery> shared_credits_query(Context& ctx);
std::optional<Error> adopt_shared_credits(Context& ctx, const CreditOutcome& shared);
void charge_shared_credits(Context& ctx);

// Response headers of the key's lifecycle: X-Credits-Remaining (and Retry-After
// at the next refill on a credits refusal); Deprecation and Sunset during a
// rotation's grace period.
void add_key_lifecycle_headers(const Context& ctx, HeaderSink& out);
inline void add_key_lifecycle_headers(const Context& ctx, Fields& out) {
  FieldsSink sink(out);
  add_key_lifecycle_headers(ctx, sink);
}

// After the response: the request counts in its key's usage (by hour and outcome).
UsageOutcome usage_outcome(const Context& ctx, int status);
void meter_request(const Context& ctx, int status);

}  // namespace keygate
