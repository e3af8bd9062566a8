#include "keygate/ratelimit/token_bucket.hpp"

#include <algorithm>
#include <cmath>
#include <limits>

namespace keygate {

namespace {
constexpr std::int64_t kMaxWindow = std::numeric_limits<std::int64_t>::max() / 4;
}

BucketShape BucketShape::of(const Rate& r) {
  BucketShape s;
  s.capacity = std::max<std::uint64_t>(1, r.capacity());
  auto period_ns = static_cast<long double>(r.period.count()) * 1e6L;
  s.interval_ns = std::max<std::int64_t>(
      1, static_cast<std::int64_t>(std::ceil(period_ns / static_cast<long double>(r.requests))));
  long double window =
      static_cast<long double>(s.interval_ns) * static_cast<long double>(s.capacity);
  s.window_ns = window > kMaxWindow ? kMaxWindow : static_cast<std::int64_t>(window);
  return s;
}

Decision TokenBucket::take(std::int64_t now, std::uint32_t n) {
  Decision d;
  d.limit = shape_.capacity;
  d.window_ns = shape_.window_ns;
  // More than the bucket holds can never be taken: saturate rather than overflow.
  std::int64_t need = kMaxWindow;
  if (n <= shape_.capacity && shape_.interval_ns <= kMaxWindow / n) need = shape_.interval_ns * n;
  std::int64_t tat = tat_.load(std::memory_order_relaxed);
  for (;;) {
    std::int64_t base = std::max(tat, now);
    std::int64_t next = base + need;
    if (next - now > shape_.window_ns) {  // fewer than n tokens
      d.allowed = false;
      d.remaining = static_cast<std::uint64_t>(
          (shape_.window_ns - std::min(base - now, shape_.window_ns)) / shape_.interval_ns);
      d.reset_ns = base - now;
      d.retry_ns = next - shape_.window_ns - now;
      return d;
    }
    if (tat_.compare_exchange_weak(tat, next, std::memory_order_relaxed)) {
      d.remaining =
          static_cast<std::uint64_t>((shape_.window_ns - (next - now)) / shape_.interval_ns);
      d.reset_ns = next - now;
      return d;
    }
  }
}

std::uint64_t TokenBucket::available(std::int64_t now) const {
  std::int64_t used = std::max<std::int64_t>(0, tat_.load(std::memory_order_relaxed) - now);
  return static_cast<std::uint64_t>((shape_.window_ns - std::min(used, shape_.window_ns)) /
                                    shape_.interval_ns);
}

void TokenBucket::reshape(BucketShape shape, std::int64_t now) {
  if (shape == shape_) return;
  // Fractional tokens held now, carried over to the new shape.
  std::int64_t used = std::max<std::int64_t>(0, tat_.load() - now);
  long double tokens =
      static_cast<long double>(shape_.window_ns - std::min(used, shape_.window_ns)) /
      static_cast<long double>(shape_.interval_ns);
  tokens = std::min<long double>(tokens, static_cast<long double>(shape.capacity));
  long double missing = static_cast<long double>(shape.capacity) - tokens;
  shape_ = shape;
  tat_.store(now +
             static_cast<std::int64_t>(missing * static_cast<long double>(shape.interval_ns)));
}

}  // namespace keygate
