#pragma once
// A token bucket whose whole state is one 64-bit word: the time at which the
// bucket is full again ("theoretical arrival time", as in GCRA). Taking a
// token is a CAS on that word, so it is exact under contention and lock-free.
#include <atomic>
#include <cstdint>

#include "keygate/config/config.hpp"

namespace keygate {

struct BucketShape {
  std::uint64_t capacity = 1;
  std::int64_t interval_ns = 1;  // time to refill one token (rounded up: never over-admit)
  std::int64_t window_ns = 1;    // capacity * interval_ns: empty -> full
  static BucketShape of(const Rate& r);
  bool operator==(const BucketShape&) const = default;
};

struct Decision {
  bool allowed = true;
  std::uint64_t limit = 0;      // capacity
  std::uint64_t remaining = 0;  // whole tokens left after this request
  std::int64_t reset_ns = 0;    // until the bucket is full again
  std::int64_t retry_ns = 0;    // denied: until one token is available
  std::int64_t window_ns = 0;   // empty -> full
};

class TokenBucket {
 public:
  explicit TokenBucket(BucketShape shape) : shape_(shape) {}

  // Takes `n` tokens (a route's cost) or none: refused while fewer are there.
  Decision take(std::int64_t now_ns, std::uint32_t n = 1);
  // Whole tokens at `now` without taking any.
  std::uint64_t available(std::int64_t now_ns) const;
  std::int64_t until_full(std::int64_t now_ns) const {
    std::int64_t t = tat_.load(std::memory_order_relaxed) - now_ns;
    return t > 0 ? t : 0;
  }
  bool full(std::int64_t now_ns) const { return tat_.load(std::memory_order_relaxed) <= now_ns; }
  const BucketShape& shape() const { return shape_; }
  // Adopt a new rate keeping the tokens the bucket holds (clamped to the new capacity).
  // Not concurrent with take(): the table calls it under its exclusive lock.
  void reshape(BucketShape shape, std::int64_t now_ns);

 private:
  BucketShape shape_;
  std::atomic<std::int64_t> tat_{0};
};

}  // namespace keygate
