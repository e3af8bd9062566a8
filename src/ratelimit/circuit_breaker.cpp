#include "keygate/ratelimit/circuit_breaker.hpp"

#include <algorithm>

namespace keygate {

bool CircuitBreaker::allow(std::int64_t now_ns) {
  switch (state_) {
    case State::closed:
      return true;
    case State::open:
      if (now_ns < open_until_ns_) return false;
      state_ = State::half_open;
      probe_in_flight_ = true;
      return true;
    case State::half_open:
      if (probe_in_flight_) return false;
      probe_in_flight_ = true;
      return true;
  }
  return false;
}

void CircuitBreaker::success() {
  state_ = State::closed;
  consecutive_failures_ = 0;
  probe_in_flight_ = false;
  open_for_ns_ = ns(s_.open_min);
}

void CircuitBreaker::failure(std::int64_t now_ns) {
  switch (state_) {
    case State::closed:
      if (++consecutive_failures_ >= s_.failures_to_open) open(now_ns);
      return;
    case State::half_open:  // the probe failed: back off longer
      open_for_ns_ = std::min(open_for_ns_ * 2, ns(s_.open_max));
      open(now_ns);
      return;
    case State::open:  // a request sent before the breaker opened: nothing new
      return;
  }
}

void CircuitBreaker::open(std::int64_t now_ns) {
  state_ = State::open;
  probe_in_flight_ = false;
  consecutive_failures_ = 0;
  open_until_ns_ = now_ns + open_for_ns_;
  ++times_opened_;
}

}  // namespace keygate
