#pragma once
// The two bucket tables (per key, per owner). Takes ids and a policy, not a
// key record: limiting depends on config and core only.
#include <optional>
#include <string>
#include <string_view>

#include "keygate/config/config.hpp"
#include "keygate/ratelimit/bucket_table.hpp"

namespace keygate {

struct RatePolicy {
  const Plan* plan = nullptr;  // never null for a resolved policy
  std::optional<Rate> rate;    // none: unlimited
  bool by_owner = false;
};

class RateLimiter {
 public:
  explicit RateLimiter(const Clock& clock) : clock_(clock), by_key_(clock), by_owner_(clock) {}
  // The bucket is the key's, or its owner's when the policy says so;
  // nullopt when the policy is unlimited.
  std::optional<Decision> take(const RatePolicy& policy, std::string_view key_id,
                               std::string_view owner, std::uint32_t n = 1);
  std::optional<Decision> peek(const RatePolicy& policy, std::string_view key_id,
                               std::string_view owner) const;
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
