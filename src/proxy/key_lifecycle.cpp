#include <fmt/format.h>

#include "keygate/core/http_date.hpp"
#include "keygate/proxy/stages.hpp"

namespace keygate {

// Numbers are formatted on the stack (fmt::format_int): no allocation on the
// request path.
void add_key_lifecycle_headers(const Context& ctx, HeaderSink& out) {
  if (ctx.credits) {
    const fmt::format_int remaining(ctx.credits->remaining);
    out.set("X-Credits-Remaining", {remaining.data(), remaining.size()});
    // A credits refusal: retry once they refill (a rate-limit Retry-After, if
    // any, is sooner and would only meet the same refusal).
    if (ctx.reason == "credits" && ctx.credits->next_refill) {
      const fmt::format_int retry(
          std::max<std::int64_t>(1, (ctx.credits->next_refill - ctx.now + 999) / 1000));
      out.set("Retry-After", {retry.data(), retry.size()});
    }
  }
  if (ctx.deprecated && ctx.key) {
    // RFC 9745: a structured-field Date (@ Unix seconds) of when the key was
    // deprecated (its rotation); RFC 8594: the HTTP-date it stops working.
    fmt::memory_buffer deprecated_at;  // inline storage
    fmt::format_to(std::back_inserter(deprecated_at), "@{}", ctx.key->rotated_at() / 1000);
    out.set("Deprecation", {deprecated_at.data(), deprecated_at.size()});
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
