#pragma once
// Prometheus counters and histograms as fixed arrays of relaxed atomics:
// counting on the request path never takes a lock. Names follow Prometheus
// conventions (SPEC §10): counters end in _total, gauges never do, seconds
// and bytes as units; every series of a known label value is exported from
// the start, at zero, so rate() and alerts see it before its first event.
#include <array>
#include <atomic>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>

#include "keygate/observe/process_metrics.hpp"

namespace keygate {

class Histogram {
 public:
  // Up to and past the default upstream timeout (30 s): slow upstreams land in
  // a bucket of their own instead of +Inf.
  static constexpr std::array<double, 16> kBounds = {
      0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60};
  void observe(double seconds);
  void render(std::string& out, std::string_view name, std::string_view help) const;

 private:
  std::array<std::atomic<std::uint64_t>, kBounds.size() + 1> buckets_{};
  std::atomic<std::uint64_t> sum_us_{0};
};

class Metrics {
 public:
  // Reasons known to the counters; anything else is counted as "other".
  static constexpr std::array<std::string_view, 23> kReasons = {"none",
                                                                "missing",
                                                                "malformed",
                                                                "invalid",
                                                                "revoked",
                                                                "disabled",
                                                                "expired",
                                                                "conflict",
                                                                "scope",
                                                                "ip",
                                                                "plan",
                                                                "rate_limit",
                                                                "rate_limit_unavailable",
                                                                "upstream",
                                                                "upstream_timeout",
                                                                "body_too_large",
                                                                "headers_too_large",
                                                                "bad_request",
                                                                "client_closed",
                                                                "draining",
                                                                "unavailable",
                                                                "credits",
                                                                "other"};
  static constexpr std::array<std::string_view, 5> kUpstreamKinds = {"connect", "timeout", "reset",
                                                                     "protocol", "tls"};

  void count_request(int status, std::string_view reason);
  void count_upstream_error(std::string_view kind);
  // Shadow mode (SPEC §9): a request forwarded that enforcing would have refused.
  void count_shadow_denied(std::string_view reason);
  void connection_opened() { open_connections_.fetch_add(1, std::memory_order_relaxed); }
  void connection_closed() { open_connections_.fetch_sub(1, std::memory_order_relaxed); }
  std::int64_t open_connections() const { return open_connections_.load(); }

  // Config generations: 1 at start, +1 once every thread adopted a reload, so
  // a test or an operator can wait for a reload to be in force. (A reload whose
  // certificate does not load is refused whole: config_reload_failed.)
  void config_adopted(std::int64_t generation, std::int64_t unix_seconds);
  // The file did not validate: the running config stays.
  void config_reload_failed();
  std::int64_t config_generation() const { return config_generation_.load(); }

  // notAfter of the listener's certificate (Unix seconds); 0: no TLS.
  void tls_certificate_expiry(std::int64_t unix_seconds) { tls_expiry_s_.store(unix_seconds); }

  Histogram request_seconds;
  Histogram upstream_seconds;

  // Values read at scrape time from their owners.
  struct Gauges {
    std::int64_t keys_active = 0;
    std::int64_t keys_loaded = 0;
    std::int64_t buckets = 0;
    std::int64_t store_queries = 0;  // monotonic
    std::int64_t store_up = 1;
    double store_lag_seconds = 0;
    std::int64_t store_applied_sequence = 0;
    std::optional<ProcessStats> process;
  };
  std::string render(const Gauges& g) const;

  // Shared rate limits (rate_limit.backend: redis), summed over the I/O
  // threads' backends when /metrics is rendered.
  struct SharedLimits {
    std::int64_t connections = 0, connections_up = 0;  // one connection per I/O thread
    std::uint64_t round_trips = 0, errors = 0, breaker_opened = 0;
    std::uint64_t shared = 0, cache = 0, fallback = 0;  // decisions by where they came from
    std::array<std::int64_t, 3> breakers{};  // threads whose breaker is closed, open, half-open
  };
  // Set once before serving; without it no Redis metrics are rendered.
  void set_shared_limits(std::function<SharedLimits()> read) { shared_limits_ = std::move(read); }

 private:
  static size_t reason_index(std::string_view reason);
  static void render_shared_limits(std::string& out, const SharedLimits& s);
  std::array<std::array<std::atomic<std::uint64_t>, kReasons.size()>, 5> requests_{};
  std::array<std::atomic<std::uint64_t>, kUpstreamKinds.size()> upstream_errors_{};
  std::array<std::atomic<std::uint64_t>, kReasons.size()> shadow_denied_{};
  std::atomic<std::int64_t> open_connections_{0};
  std::atomic<std::int64_t> config_generation_{1};
  std::atomic<std::int64_t> last_reload_ok_{1};
  std::atomic<std::int64_t> last_reload_success_s_{0};
  std::function<SharedLimits()> shared_limits_;
  std::atomic<std::uint64_t> reloads_ok_{0};
  std::atomic<std::uint64_t> reloads_failed_{0};
  std::atomic<std::int64_t> tls_expiry_s_{0};
};

}  // namespace keygate
