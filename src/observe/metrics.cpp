#include "keygate/observe/metrics.hpp"

#include <cstdio>

namespace keygate {

namespace {
bool is_auth_failure(std::string_view r) {
  return r == "missing" || r == "malformed" || r == "invalid" || r == "revoked" ||
         r == "disabled" || r == "expired" || r == "conflict" || r == "scope" || r == "ip" ||
         r == "plan";
}
void line(std::string& out, std::string_view name, std::string_view labels, std::uint64_t v) {
  out += name;
  if (!labels.empty()) {
    out += '{';
    out += labels;
    out += '}';
  }
  out += ' ';
  out += std::to_string(v);
  out += '\n';
}
void header(std::string& out, std::string_view name, std::string_view type, std::string_view help) {
  out += "# HELP " + std::string(name) + " " + std::string(help) + "\n# TYPE " + std::string(name) +
         " " + std::string(type) + "\n";
}
}  // namespace

void Histogram::observe(double seconds) {
  size_t i = 0;
  while (i < kBounds.size() && seconds > kBounds[i]) ++i;
  buckets_[i].fetch_add(1, std::memory_order_relaxed);
  count_.fetch_add(1, std::memory_order_relaxed);
  sum_us_.fetch_add(static_cast<std::uint64_t>(seconds * 1e6), std::memory_order_relaxed);
}

void Histogram::render(std::string& out, std::string_view name, std::string_view help) const {
  header(out, name, "histogram", help);
  std::uint64_t cumulative = 0;
  char le[32];
  for (size_t i = 0; i < kBounds.size(); ++i) {
    cumulative += buckets_[i].load(std::memory_order_relaxed);
    std::snprintf(le, sizeof le, "le=\"%g\"", kBounds[i]);
    line(out, std::string(name) + "_bucket", le, cumulative);
  }
  cumulative += buckets_.back().load(std::memory_order_relaxed);
  line(out, std::string(name) + "_bucket", "le=\"+Inf\"", cumulative);
  char sum[64];
  std::snprintf(sum, sizeof sum, "%.6f", static_cast<double>(sum_us_.load()) / 1e6);
  out += std::string(name) + "_sum " + sum + "\n";
  line(out, std::string(name) + "_count", "", count_.load(std::memory_order_relaxed));
}

void Metrics::render_shared_limits(std::string& out, const SharedLimits& s) {
  header(out, "keygate_redis_connections", "gauge", "Connections to Redis (one per I/O thread).");
  line(out, "keygate_redis_connections", "", static_cast<std::uint64_t>(s.connections));
  header(out, "keygate_redis_connections_up", "gauge", "Connections to Redis that are ready.");
  line(out, "keygate_redis_connections_up", "", static_cast<std::uint64_t>(s.connections_up));
  header(out, "keygate_redis_round_trips_total", "counter",
         "Rate-limit commands sent to Redis (one per decision Redis answers).");
  line(out, "keygate_redis_round_trips_total", "", s.round_trips);
  header(out, "keygate_redis_errors_total", "counter",
         "Rate-limit commands that failed (timeout, error reply, connection lost).");
  line(out, "keygate_redis_errors_total", "", s.errors);
  header(out, "keygate_rate_limit_decisions_total", "counter",
         "Shared rate-limit decisions: by Redis, by the local deny cache, by on_error.");
  line(out, "keygate_rate_limit_decisions_total", "source=\"shared\"", s.shared);
  line(out, "keygate_rate_limit_decisions_total", "source=\"cache\"", s.cache);
  line(out, "keygate_rate_limit_decisions_total", "source=\"fallback\"", s.fallback);
  header(out, "keygate_redis_breaker_state", "gauge",
         "I/O threads whose Redis circuit breaker is in each state.");
  constexpr std::array<std::string_view, 3> kStates = {"closed", "open", "half_open"};
  for (size_t i = 0; i < kStates.size(); ++i)
    line(out, "keygate_redis_breaker_state", "state=\"" + std::string(kStates[i]) + "\"",
         static_cast<std::uint64_t>(s.breakers[i]));
  header(out, "keygate_redis_breaker_opened_total", "counter",
         "Times a Redis circuit breaker opened.");
  line(out, "keygate_redis_breaker_opened_total", "", s.breaker_opened);
}

size_t Metrics::reason_index(std::string_view reason) {
  if (reason.empty()) return 0;
  for (size_t i = 0; i < kReasons.size(); ++i)
    if (kReasons[i] == reason) return i;
  return kReasons.size() - 1;
}

void Metrics::count_request(int status, std::string_view reason) {
  size_t cls = status >= 100 && status < 600 ? static_cast<size_t>(status / 100 - 1) : 4;
  requests_[cls][reason_index(reason)].fetch_add(1, std::memory_order_relaxed);
}

void Metrics::count_upstream_error(std::string_view kind) {
  for (size_t i = 0; i < kUpstreamKinds.size(); ++i)
    if (kUpstreamKinds[i] == kind) upstream_errors_[i].fetch_add(1, std::memory_order_relaxed);
}

std::string Metrics::render(const Gauges& g) const {
  std::string out;
  out.reserve(8192);
  header(out, "keygate_requests_total", "counter",
         "Requests answered, by status class and reason.");
  std::uint64_t rate_limited = 0;
  std::array<std::uint64_t, kReasons.size()> auth_failures{};
  for (size_t c = 0; c < requests_.size(); ++c) {
    for (size_t r = 0; r < kReasons.size(); ++r) {
      std::uint64_t v = requests_[c][r].load(std::memory_order_relaxed);
      if (v == 0) continue;
      line(out, "keygate_requests_total",
           "class=\"" + std::to_string(c + 1) + "xx\",reason=\"" + std::string(kReasons[r]) + "\"",
           v);
      if (kReasons[r] == "rate_limit") rate_limited += v;
      if (is_auth_failure(kReasons[r])) auth_failures[r] += v;
    }
  }
  header(out, "keygate_auth_failures_total", "counter", "Requests refused by authentication.");
  for (size_t r = 0; r < kReasons.size(); ++r)
    if (is_auth_failure(kReasons[r]))
      line(out, "keygate_auth_failures_total", "reason=\"" + std::string(kReasons[r]) + "\"",
           auth_failures[r]);
  header(out, "keygate_rate_limited_total", "counter", "Requests refused by rate limiting.");
  line(out, "keygate_rate_limited_total", "", rate_limited);
  header(out, "keygate_upstream_errors_total", "counter", "Failed upstream exchanges, by kind.");
  for (size_t k = 0; k < kUpstreamKinds.size(); ++k)
    line(out, "keygate_upstream_errors_total", "kind=\"" + std::string(kUpstreamKinds[k]) + "\"",
         upstream_errors_[k].load(std::memory_order_relaxed));
  request_seconds.render(out, "keygate_request_duration_seconds",
                         "Time from request head to the end of the response.");
  upstream_seconds.render(out, "keygate_upstream_duration_seconds",
                          "Time from sending upstream to the response head.");
  auto gauge = [&](std::string_view name, std::string_view help, std::int64_t v) {
    header(out, name, "gauge", help);
    out += std::string(name) + " " + std::to_string(v) + "\n";
  };
  gauge("keygate_keys_active", "Keys that are enabled, not revoked and not expired.",
        g.keys_active);
  gauge("keygate_keys_total", "Keys held in memory (all statuses).", g.keys_total);
  gauge("keygate_open_connections", "Open client connections.", open_connections());
  gauge("keygate_rate_limit_buckets", "Token buckets in memory.", g.buckets);
  gauge("keygate_config_generation",
        "Config generation in force on every thread (1 at start, +1 per adopted reload).",
        config_generation_.load());
  gauge("keygate_config_last_reload_successful", "1 if the last reload (or the start) succeeded.",
        last_reload_ok_.load());
  gauge("keygate_config_last_reload_success_timestamp_seconds",
        "Unix time of the last successful config load.", last_reload_success_s_.load());
  header(out, "keygate_store_queries_total", "counter",
         "Statements run by the serving process that read key rows from the store.");
  line(out, "keygate_store_queries_total", "", static_cast<std::uint64_t>(g.store_queries));
  gauge("keygate_store_up", "1 while the key store is reachable.", g.store_up);
  header(out, "keygate_store_lag_seconds", "gauge",
         "Seconds since the in-memory keys were last confirmed current with the store.");
  char lag[64];
  std::snprintf(lag, sizeof lag, "keygate_store_lag_seconds %.3f\n", g.store_lag_seconds);
  out += lag;
  gauge("keygate_store_applied_sequence", "Highest store change sequence applied in memory.",
        g.store_applied_sequence);
  if (shared_limits_) render_shared_limits(out, shared_limits_());
  return out;
}

}  // namespace keygate
