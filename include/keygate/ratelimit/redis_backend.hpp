#pragma once
// Buckets shared by every replica, in Redis (rate_limit.backend: redis).
//
// One instance per I/O thread, each with its own pipelined connection on that
// thread's executor: no lock on the request path, commands from the sessions
// of one thread leave together in one write, and Redis (single-threaded
// itself) is kept busy by a handful of connections per replica.
//
// A decision costs one EVALSHA of the GCRA script (the same math as
// TokenBucket, on Redis' clock; a key's credits are checked and spent in the
// same script, so replicas share them) — or no round trip at all while the local
// DenyCache knows the bucket has no token. While Redis is unreachable (not
// connected, timeouts, or the circuit breaker open after repeated failures)
// `on_error` answers at once: local buckets, open (admit), or closed (503).
#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include <boost/asio/any_io_executor.hpp>

#include "keygate/config/config.hpp"
#include "keygate/core/clock.hpp"
#include "keygate/ratelimit/backend.hpp"
#include "keygate/ratelimit/circuit_breaker.hpp"
#include "keygate/ratelimit/deny_cache.hpp"

namespace keygate {

namespace redis {
class Connection;
}

class RedisBackend final : public RateLimitBackend {
 public:
  struct Settings {
    RedisConfig redis;  // endpoint, per-command timeout, on_error
    CircuitBreaker::Settings breaker;
    std::chrono::milliseconds connect_timeout{1000};
    std::chrono::milliseconds reconnect_min{50};
    std::chrono::milliseconds reconnect_max{2000};
    // Connection events for the log: ("connected", "") and ("unreachable", why).
    std::function<void(std::string_view event, std::string_view detail)> on_event;
  };
  // Counters and state, readable from any thread (metrics, tests).
  struct Stats {
    std::uint64_t round_trips = 0;     // GCRA commands sent (EVALSHA, NOSCRIPT retries included)
    std::uint64_t shared = 0;          // answered by Redis
    std::uint64_t cache_denials = 0;   // answered by the deny cache, no round trip
    std::uint64_t fallbacks = 0;       // answered by on_error
    std::uint64_t failures = 0;        // commands that failed (timeout, error, connection lost)
    std::uint64_t script_loads = 0;    // SCRIPT LOAD after NOSCRIPT
    std::uint64_t breaker_opened = 0;  // times the circuit breaker opened
    bool connected = false;            // as of the last connection event
    CircuitBreaker::State breaker = CircuitBreaker::State::closed;
  };

  // `local` serves on_error: local; `clock` is the local monotonic clock.
  RedisBackend(boost::asio::any_io_executor ex, Settings s, RateLimiter& local, const Clock& clock);
  ~RedisBackend() override;
  RedisBackend(const RedisBackend&) = delete;
  RedisBackend& operator=(const RedisBackend&) = delete;

  void start();  // connects (and keeps reconnecting)
  void stop();   // pending decisions complete with the fallback
  // A reload: the per-command timeout and on_error apply from the next
  // decision; the endpoint (host, port, credentials, db) only on restart.
  void adopt(const RedisConfig& next);

  std::optional<RateOutcome> try_decide(const RateQuery& q) override;
  bool shares_credits() const override { return true; }

  Stats stats() const;
  bool connected() const;
  CircuitBreaker::State breaker_state() const { return breaker_.state(); }
  static std::string bucket_name(bool by_owner, std::string_view id);
  static std::string credits_name(std::string_view key_id);

 private:
  struct Op;  // a decision in flight
  void start_decide(const RateQuery& q, Handler h, boost::asio::any_io_executor ex) override;
  void send(std::unique_ptr<Op> op);
  void finish(std::unique_ptr<Op> op, const void* reply);
  RateOutcome fallback(const RatePolicy& policy, std::string_view id, bool consume,
                       std::uint32_t cost = 1);
  void complete(Handler h, boost::asio::any_io_executor ex, RateOutcome o);
  void count(std::atomic<std::uint64_t>& c) { c.fetch_add(1, std::memory_order_relaxed); }
  void breaker_moved() { breaker_state_.store(breaker_.state(), std::memory_order_relaxed); }

  boost::asio::any_io_executor ex_;
  Settings s_;
  RateLimiter& local_;
  const Clock& clock_;
  std::shared_ptr<redis::Connection> conn_;
  CircuitBreaker breaker_;
  DenyCache cache_;
  std::string scratch_;  // bucket name of the current query, reused
  bool reload_in_flight_ = false;
  struct Counters {
    std::atomic<std::uint64_t> round_trips{0}, shared{0}, cache_denials{0}, fallbacks{0},
        failures{0}, script_loads{0}, breaker_opened{0};
  } counters_;
  // Mirrors of thread-local state for stats() on other threads.
  std::atomic<bool> connected_{false};
  std::atomic<CircuitBreaker::State> breaker_state_{CircuitBreaker::State::closed};
};

}  // namespace keygate
