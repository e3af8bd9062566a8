#include "keygate/proxy/stages.hpp"

namespace keygate {

namespace {
std::int64_t ceil_seconds(std::int64_t ns) {
  return ns <= 0 ? 0 : (ns + 999'999'999) / 1'000'000'000;
}
}  // namespace

RatePolicy resolve_policy(const AuthKey& key, const Config& config) {
  RatePolicy p;
  auto it = key.plan().empty() ? config.plans.end() : config.plans.find(std::string(key.plan()));
  if (it == config.plans.end()) it = config.plans.find(config.rate_limit.default_plan);
  p.plan = &it->second;
  p.rate = key.rate() ? key.rate() : p.plan->rate;
  p.by_owner = p.plan->scope == Plan::Scope::owner && !key.owner().empty();
  return p;
}

std::optional<Error> rate_limited_error(const Context& ctx) {
  if (!ctx.rate || ctx.rate->allowed) return std::nullopt;
  Error e = errors::rate_limited(std::max<std::int64_t>(1, ceil_seconds(ctx.rate->retry_ns)));
  e.reset_after = ceil_seconds(ctx.rate->reset_ns);
  return e;
}

void add_rate_limit_headers(const RateLimitConfig& cfg, const Context& ctx, Fields& out,
                            std::int64_t now_epoch_seconds) {
  if (!ctx.rate) return;
  const Decision& d = *ctx.rate;
  std::int64_t reset = ceil_seconds(d.reset_ns);
  using H = RateLimitConfig::Headers;
  if (cfg.headers == H::x_ratelimit || cfg.headers == H::both) {
    out.set("X-RateLimit-Limit", std::to_string(d.limit));
    out.set("X-RateLimit-Remaining", std::to_string(d.remaining));
    out.set("X-RateLimit-Reset",
            std::to_string(cfg.reset == RateLimitConfig::Reset::epoch ? now_epoch_seconds + reset
                                                                      : reset));
  }
  if (cfg.headers == H::ietf || cfg.headers == H::both) {
    // draft-ietf-httpapi-ratelimit-headers-11 (structured fields).
    std::string policy = "\"" + ctx.plan + "\"";
    out.set("RateLimit-Policy", policy + ";q=" + std::to_string(d.limit) +
                                    ";w=" + std::to_string(ceil_seconds(d.window_ns)));
    out.set("RateLimit",
            policy + ";r=" + std::to_string(d.remaining) + ";t=" + std::to_string(reset));
  }
  if (!d.allowed)
    out.set("Retry-After", std::to_string(std::max<std::int64_t>(1, ceil_seconds(d.retry_ns))));
}

}  // namespace keygate
