#include <fmt/format.h>

#include <charconv>

#include "keygate/proxy/stages.hpp"

namespace keygate {

namespace {
std::int64_t ceil_seconds(std::int64_t ns) {
  return ns <= 0 ? 0 : (ns + 999'999'999) / 1'000'000'000;
}

// A number as text in a stack buffer (no allocation on the request path).
struct Number {
  template <class Int>
  explicit Number(Int v) : end(std::to_chars(buf, buf + sizeof buf, v).ptr) {}
  std::string_view view() const { return {buf, static_cast<size_t>(end - buf)}; }
  char buf[24];
  char* end;
};
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

void add_rate_limit_headers(const RateLimitConfig& cfg, const Context& ctx, HeaderSink& out,
                            std::int64_t now_epoch_seconds) {
  if (!ctx.rate) return;
  const Decision& d = *ctx.rate;
  std::int64_t reset = ceil_seconds(d.reset_ns);
  using H = RateLimitConfig::Headers;
  if (cfg.headers == H::x_ratelimit || cfg.headers == H::both) {
    out.set("X-RateLimit-Limit", Number(d.limit).view());
    out.set("X-RateLimit-Remaining", Number(d.remaining).view());
    out.set("X-RateLimit-Reset",
            Number(cfg.reset == RateLimitConfig::Reset::epoch ? now_epoch_seconds + reset : reset)
                .view());
  }
  if (cfg.headers == H::ietf || cfg.headers == H::both) {
    // draft-ietf-httpapi-ratelimit-headers-11 (structured fields).
    fmt::memory_buffer v;  // inline storage: no allocation for values this short
    fmt::format_to(std::back_inserter(v), "\"{}\";q={};w={}", ctx.plan, d.limit,
                   ceil_seconds(d.window_ns));
    out.set("RateLimit-Policy", {v.data(), v.size()});
    v.clear();
    fmt::format_to(std::back_inserter(v), "\"{}\";r={};t={}", ctx.plan, d.remaining, reset);
    out.set("RateLimit", {v.data(), v.size()});
  }
  if (!d.allowed && ctx.shadow_reason.empty())  // a shadowed 429 was not refused: no retry
    out.set("Retry-After", Number(std::max<std::int64_t>(1, ceil_seconds(d.retry_ns))).view());
}

}  // namespace keygate
