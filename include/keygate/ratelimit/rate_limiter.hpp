#pragma once
// Plan resolution and the two bucket tables (per key, per owner).
#include <optional>
#include <string>

#include "keygate/config/config.hpp"
#include "keygate/keys/key_index.hpp"
#include "keygate/ratelimit/bucket_table.hpp"

namespace keygate {

struct RatePolicy {
  const Plan* plan = nullptr;  // never null for a resolved policy
  std::optional<Rate> rate;    // none: unlimited
  bool by_owner = false;
};

// The key's plan (or rate_limit.default_plan when unset or no longer defined)
// and its rate: the key's own override first, then the plan's.
RatePolicy resolve_policy(const AuthKey& key, const Config& config);

class RateLimiter {
 public:
  explicit RateLimiter(const Clock& clock) : clock_(clock), by_key_(clock), by_owner_(clock) {}
  std::optional<Decision> take(const AuthKey& key, const RatePolicy& policy);
  std::optional<Decision> peek(const AuthKey& key, const RatePolicy& policy) const;
  size_t evict_idle(std::chrono::nanoseconds idle) {
    return by_key_.evict_idle(idle) + by_owner_.evict_idle(idle);
  }
  size_t size() const { return by_key_.size() + by_owner_.size(); }
  const Clock& clock() const { return clock_; }

 private:
  const Clock& clock_;
  BucketTable by_key_;
  BucketTable by_owner_;
};

}  // namespace keygate
