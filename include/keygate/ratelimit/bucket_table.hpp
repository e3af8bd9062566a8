#pragma once
// Buckets by key id (or owner), created on first use, sharded so no lock is
// global; idle full buckets are evicted, so memory follows active keys only.
#include <array>
#include <memory>
#include <shared_mutex>
#include <string>
#include <string_view>
#include <unordered_map>

#include "keygate/core/clock.hpp"
#include "keygate/ratelimit/token_bucket.hpp"

namespace keygate {

class BucketTable {
 public:
  explicit BucketTable(const Clock& clock) : clock_(clock) {}
  Decision take(std::string_view id, const Rate& rate, std::uint32_t n = 1);
  // The state without taking a token (a missing bucket is full).
  Decision peek(std::string_view id, const Rate& rate) const;
  size_t size() const;
  // Drops buckets that have been full for at least `idle` (a full bucket is
  // indistinguishable from a new one, so nothing is lost). Returns how many.
  size_t evict_idle(std::chrono::nanoseconds idle);

 private:
  struct Hash {
    using is_transparent = void;
    size_t operator()(std::string_view s) const noexcept {
      return std::hash<std::string_view>{}(s);
    }
  };
  struct Shard {
    mutable std::shared_mutex mu;
    std::unordered_map<std::string, TokenBucket, Hash, std::equal_to<>> buckets;
  };
  static constexpr size_t kShards = 64;
  const Clock& clock_;
  std::array<Shard, kShards> shards_;
};

}  // namespace keygate
