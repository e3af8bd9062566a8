#include "keygate/ratelimit/rate_limiter.hpp"

namespace keygate {

RatePolicy resolve_policy(const AuthKey& key, const Config& config) {
  RatePolicy p;
  auto it = key.plan().empty() ? config.plans.end() : config.plans.find(std::string(key.plan()));
  if (it == config.plans.end()) it = config.plans.find(config.rate_limit.default_plan);
  p.plan = &it->second;
  p.rate = key.rate() ? key.rate() : p.plan->rate;
  p.by_owner = p.plan->scope == Plan::Scope::owner && !key.owner().empty();
  return p;
}

std::optional<Decision> RateLimiter::take(const AuthKey& key, const RatePolicy& policy) {
  if (!policy.rate) return std::nullopt;
  return policy.by_owner ? by_owner_.take(key.owner(), *policy.rate)
                         : by_key_.take(key.id(), *policy.rate);
}

std::optional<Decision> RateLimiter::peek(const AuthKey& key, const RatePolicy& policy) const {
  if (!policy.rate) return std::nullopt;
  return policy.by_owner ? by_owner_.peek(key.owner(), *policy.rate)
                         : by_key_.peek(key.id(), *policy.rate);
}

}  // namespace keygate
