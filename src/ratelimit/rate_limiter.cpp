#include "keygate/ratelimit/rate_limiter.hpp"

namespace keygate {

std::optional<Decision> RateLimiter::take(const RatePolicy& policy, std::string_view key_id,
                                          std::string_view owner, std::uint32_t n) {
  if (!policy.rate) return std::nullopt;
  return policy.by_owner ? by_owner_.take(owner, *policy.rate, n)
                         : by_key_.take(key_id, *policy.rate, n);
}

std::optional<Decision> RateLimiter::peek(const RatePolicy& policy, std::string_view key_id,
                                          std::string_view owner) const {
  if (!policy.rate) return std::nullopt;
  return policy.by_owner ? by_owner_.peek(owner, *policy.rate) : by_key_.peek(key_id, *policy.rate);
}

}  // namespace keygate
