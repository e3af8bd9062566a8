#pragma once
// While Redis is down, requests must not each wait for the command timeout:
// after `failures_to_open` consecutive failures the breaker opens and the
// on_error fallback answers at once; after a back-off one request goes
// through as a probe (half-open); its success closes the breaker, its failure
// opens it again for twice as long (up to open_max). Not thread-safe: one per
// I/O thread, like the connection it guards. Time comes from the caller.
#include <chrono>
#include <cstdint>

namespace keygate {

class CircuitBreaker {
 public:
  struct Settings {
    int failures_to_open = 3;
    std::chrono::milliseconds open_min{250};
    std::chrono::milliseconds open_max{5000};
  };
  enum class State { closed, open, half_open };

  explicit CircuitBreaker(Settings s) : s_(s), open_for_ns_(ns(s.open_min)) {}

  // May this request go to Redis? In half-open exactly one (the probe) may.
  bool allow(std::int64_t now_ns);
  void success();
  void failure(std::int64_t now_ns);

  State state() const { return state_; }
  std::uint64_t times_opened() const { return times_opened_; }

 private:
  static std::int64_t ns(std::chrono::milliseconds d) {
    return std::chrono::duration_cast<std::chrono::nanoseconds>(d).count();
  }
  void open(std::int64_t now_ns);

  Settings s_;
  State state_ = State::closed;
  int consecutive_failures_ = 0;
  std::int64_t open_for_ns_;
  std::int64_t open_until_ns_ = 0;
  bool probe_in_flight_ = false;
  std::uint64_t times_opened_ = 0;
};

}  // namespace keygate
