#pragma once
// Time source for rate limiting: steady in production, driven by hand in tests.
#include <atomic>
#include <chrono>
#include <cstdint>

namespace keygate {

class Clock {
 public:
  virtual ~Clock() = default;
  virtual std::int64_t now_ns() const = 0;  // monotonic
};

class SteadyClock final : public Clock {
 public:
  std::int64_t now_ns() const override {
    return std::chrono::duration_cast<std::chrono::nanoseconds>(
               std::chrono::steady_clock::now().time_since_epoch())
        .count();
  }
};

class ManualClock final : public Clock {
 public:
  explicit ManualClock(std::int64_t start_ns = 1'000'000'000'000) : t_(start_ns) {}
  std::int64_t now_ns() const override { return t_.load(); }
  void advance(std::chrono::nanoseconds d) { t_ += d.count(); }

 private:
  std::atomic<std::int64_t> t_;
};

}  // namespace keygate
