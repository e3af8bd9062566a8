#include "keygate/core/http_date.hpp"
#include "keygate/proxy/stages.hpp"

namespace keygate {

void add_key_lifecycle_headers(const Context& ctx, Fields& out) {
  if (ctx.credits) {
    out.set("X-Credits-Remaining", std::to_string(ctx.credits->remaining));
    // A credits refusal: retry once they refill (a rate-limit Retry-After, if
    // any, is sooner and would only meet the same refusal).
    if (ctx.reason == "credits" && ctx.credits->next_refill)
      out.set("Retry-After", std::to_string(std::max<std::int64_t>(
                                 1, (ctx.credits->next_refill - ctx.now + 999) / 1000)));
  }
  if (ctx.deprecated && ctx.key) {
    // RFC 9745: a structured-field Date (@ Unix seconds) of when the key was
    // deprecated (its rotation); RFC 8594: the HTTP-date it stops working.
    std::string deprecated_at = "@";  // (appended: g++ 12 -Wrestrict misfires on "@" + string)
    deprecated_at += std::to_string(ctx.key->rotated_at() / 1000);
    out.set("Deprecation", deprecated_at);
    if (ctx.key->expires_at()) {
      const auto sunset = format_http_date(ctx.key->expires_at() / 1000);
      out.set("Sunset", std::string_view(sunset.data(), sunset.size()));
    }
  }
}

UsageOutcome usage_outcome(const Context& ctx, int status) {
  const std::string& r = ctx.reason;
  if (r == "rate_limit" || r == "credits") return UsageOutcome::rate_limited;
  if (r == "upstream" || r == "upstream_timeout") return UsageOutcome::upstream_error;
  if (r.empty() || r == "client_closed")  // forwarded: the upstream's own answer
    return status >= 500 ? UsageOutcome::upstream_error : UsageOutcome::ok;
  return UsageOutcome::denied;  // refused by the gateway for this key (401, 403, 413, 503)
}

void meter_request(const Context& ctx, int status) {
  if (ctx.meter) ctx.meter->count(usage_outcome(ctx, status), ctx.now);
}

}  // namespace keygate
