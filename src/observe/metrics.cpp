#include "keygate/observe/metrics.hpp"

#include <charconv>

#ifndef KEYGATE_VERSION
#define KEYGATE_VERSION "unknown"
#endif

namespace keygate {

namespace {

bool is_auth_failure(std::string_view r) {
  return r == "missing" || r == "malformed" || r == "invalid" || r == "revoked" ||
         r == "disabled" || r == "expired" || r == "conflict" || r == "scope" || r == "ip" ||
         r == "plan";
}

// The text exposition format (version 0.0.4): a family's HELP and TYPE lines,
// then its samples.
class Exposition {
 public:
  explicit Exposition(std::string& out) : out_(out) {}

  void family(std::string_view name, std::string_view type, std::string_view help) {
    out_ += "# HELP ";
    out_ += name;
    out_ += ' ';
    out_ += help;
    out_ += "\n# TYPE ";
    out_ += name;
    out_ += ' ';
    out_ += type;
    out_ += '\n';
  }
  // `labels` is the text between the braces, values already escaped.
  template <class V>
  void sample(std::string_view name, std::string_view labels, V value) {
    out_ += name;
    if (!labels.empty()) {
      out_ += '{';
      out_ += labels;
      out_ += '}';
    }
    out_ += ' ';
    number(value);
    out_ += '\n';
  }
  template <class V>
  void gauge(std::string_view name, std::string_view help, V value) {
    family(name, "gauge", help);
    sample(name, "", value);
  }
  template <class V>
  void counter(std::string_view name, std::string_view help, V value) {
    family(name, "counter", help);
    sample(name, "", value);
  }

 private:
  template <class V>
  void number(V v) {
    char buf[32];
    auto r = std::to_chars(buf, buf + sizeof buf, v);  // shortest round-trip form
    out_.append(buf, r.ptr);
  }
  std::string& out_;
};

// A label value as the exposition format quotes it.
std::string label_value(std::string_view v) {
  std::string out;
  for (char c : v) {
    if (c == '\\' || c == '"')
      out += '\\', out += c;
    else if (c == '\n')
      out += "\\n";
    else
      out += c;
  }
  return out;
}

}  // namespace

void Histogram::observe(double seconds) {
  size_t i = 0;
  while (i < kBounds.size() && seconds > kBounds[i]) ++i;
  buckets_[i].fetch_add(1, std::memory_order_relaxed);
  sum_us_.fetch_add(static_cast<std::uint64_t>(seconds * 1e6), std::memory_order_relaxed);
}

void Histogram::render(std::string& out, std::string_view name, std::string_view help) const {
  Exposition x(out);
  x.family(name, "histogram", help);
  const std::string bucket = std::string(name) + "_bucket";
  // Read the buckets first and derive the count from them: a scrape racing an
  // observation still shows cumulative buckets that end in _count.
  std::uint64_t cumulative = 0;
  for (size_t i = 0; i < kBounds.size(); ++i) {
    cumulative += buckets_[i].load(std::memory_order_relaxed);
    char le[32] = "le=\"";
    // %g style, as Prometheus clients write le: "0.0005", "2.5", "60"
    auto r = std::to_chars(le + 4, le + sizeof le - 2, kBounds[i], std::chars_format::general);
    *r.ptr++ = '"';
    x.sample(bucket, std::string_view(le, static_cast<size_t>(r.ptr - le)), cumulative);
  }
  cumulative += buckets_.back().load(std::memory_order_relaxed);
  x.sample(bucket, "le=\"+Inf\"", cumulative);
  x.sample(std::string(name) + "_sum", "",
           static_cast<double>(sum_us_.load(std::memory_order_relaxed)) / 1e6);
  x.sample(std::string(name) + "_count", "", cumulative);
}

void Metrics::render_shared_limits(std::string& out, const SharedLimits& s) {
  Exposition x(out);
  x.gauge("keygate_redis_connections", "Connections to Redis (one per I/O thread).", s.connections);
  x.gauge("keygate_redis_connections_up", "Connections to Redis that are ready.", s.connections_up);
  x.counter("keygate_redis_round_trips_total",
            "Rate-limit commands sent to Redis (one per decision Redis answers).", s.round_trips);
  x.counter("keygate_redis_errors_total",
            "Rate-limit commands that failed (timeout, error reply, connection lost).", s.errors);
  x.family("keygate_rate_limit_decisions_total", "counter",
           "Shared rate-limit decisions: by Redis, by the local deny cache, by on_error.");
  x.sample("keygate_rate_limit_decisions_total", "source=\"shared\"", s.shared);
  x.sample("keygate_rate_limit_decisions_total", "source=\"cache\"", s.cache);
  x.sample("keygate_rate_limit_decisions_total", "source=\"fallback\"", s.fallback);
  x.family("keygate_redis_breaker_state", "gauge",
           "I/O threads whose Redis circuit breaker is in each state.");
  constexpr std::array<std::string_view, 3> kStates = {"closed", "open", "half_open"};
  for (size_t i = 0; i < kStates.size(); ++i)
    x.sample("keygate_redis_breaker_state", "state=\"" + std::string(kStates[i]) + "\"",
             s.breakers[i]);
  x.counter("keygate_redis_breaker_opened_total", "Times a Redis circuit breaker opened.",
            s.breaker_opened);
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

void Metrics::config_adopted(std::int64_t generation, std::int64_t unix_seconds) {
  config_generation_.store(generation);
  last_reload_ok_.store(1);
  last_reload_success_s_.store(unix_seconds);
  if (generation > 1) reloads_ok_.fetch_add(1);  // generation 1 is the start, not a reload
}

void Metrics::config_reload_failed() {
  last_reload_ok_.store(0);
  reloads_failed_.fetch_add(1);
}

void Metrics::count_shadow_denied(std::string_view reason) {
  shadow_denied_[reason_index(reason)].fetch_add(1, std::memory_order_relaxed);
}

std::string Metrics::render(const Gauges& g) const {
  std::string out;
  out.reserve(16384);
  Exposition x(out);

  x.family("keygate_build_info", "gauge", "Always 1; the version of the running binary.");
  x.sample("keygate_build_info", "version=\"" + label_value(KEYGATE_VERSION) + "\"", 1);

  // Every class x reason pair, zeros included (a small, fixed set).
  x.family("keygate_requests_total", "counter",
           "Requests answered, by status class and reason (none: forwarded or served).");
  std::uint64_t rate_limited = 0;
  std::array<std::uint64_t, kReasons.size()> by_reason{};
  for (size_t c = 0; c < requests_.size(); ++c) {
    for (size_t r = 0; r < kReasons.size(); ++r) {
      std::uint64_t v = requests_[c][r].load(std::memory_order_relaxed);
      x.sample(
          "keygate_requests_total",
          "class=\"" + std::to_string(c + 1) + "xx\",reason=\"" + std::string(kReasons[r]) + "\"",
          v);
      by_reason[r] += v;
      if (kReasons[r] == "rate_limit") rate_limited += v;
    }
  }
  x.family("keygate_auth_failures_total", "counter",
           "Requests refused by authentication or authorisation, by reason.");
  for (size_t r = 0; r < kReasons.size(); ++r)
    if (is_auth_failure(kReasons[r]))
      x.sample("keygate_auth_failures_total", "reason=\"" + std::string(kReasons[r]) + "\"",
               by_reason[r]);
  x.counter("keygate_rate_limited_total", "Requests refused by rate limiting.", rate_limited);
  x.family("keygate_upstream_errors_total", "counter", "Failed upstream exchanges, by kind.");
  for (size_t k = 0; k < kUpstreamKinds.size(); ++k)
    x.sample("keygate_upstream_errors_total", "kind=\"" + std::string(kUpstreamKinds[k]) + "\"",
             upstream_errors_[k].load(std::memory_order_relaxed));
  x.family("keygate_shadow_denied_total", "counter",
           "Requests forwarded in shadow mode that enforcing would have refused, by reason.");
  for (size_t r = 0; r < kReasons.size(); ++r)
    if (kReasons[r] != "none")
      x.sample("keygate_shadow_denied_total", "reason=\"" + std::string(kReasons[r]) + "\"",
               shadow_denied_[r].load(std::memory_order_relaxed));
  request_seconds.render(out, "keygate_request_duration_seconds",
                         "Time from request head to the end of the response.");
  upstream_seconds.render(out, "keygate_upstream_duration_seconds",
                          "Time from sending upstream to the response head.");

  x.gauge("keygate_keys_active", "Keys that are enabled, not revoked and not expired.",
          g.keys_active);
  x.gauge("keygate_keys_loaded", "Keys held in memory (every status).", g.keys_loaded);
  x.gauge("keygate_open_connections", "Open client connections.", open_connections());
  x.gauge("keygate_rate_limit_buckets", "Token buckets in memory.", g.buckets);

  x.gauge("keygate_config_generation",
          "Config generation in force on every thread (1 at start, +1 per adopted reload).",
          config_generation_.load());
  x.gauge("keygate_config_last_reload_successful",
          "1 if the last reload (or the start) loaded the whole config, certificate included.",
          last_reload_ok_.load());
  x.gauge("keygate_config_last_reload_success_timestamp_seconds",
          "Unix time of the last successful config load.", last_reload_success_s_.load());
  x.family("keygate_config_reloads_total", "counter", "Config reloads (SIGHUP), by result.");
  x.sample("keygate_config_reloads_total", "result=\"success\"", reloads_ok_.load());
  x.sample("keygate_config_reloads_total", "result=\"failure\"", reloads_failed_.load());
  if (std::int64_t expiry = tls_expiry_s_.load())
    x.gauge("keygate_tls_certificate_expiry_timestamp_seconds",
            "Unix time at which the listener's TLS certificate expires (notAfter).", expiry);

  x.counter("keygate_store_queries_total",
            "Store reads of keys by the serving process (catch-ups and admin reads).",
            g.store_queries);
  x.gauge("keygate_store_up", "1 while the key store is reachable.", g.store_up);
  x.gauge("keygate_store_lag_seconds",
          "Seconds since the in-memory keys were last confirmed current with the store.",
          g.store_lag_seconds);
  x.gauge("keygate_store_applied_sequence", "Highest store change sequence applied in memory.",
          g.store_applied_sequence);

  if (const auto& p = g.process) {
    x.counter("process_cpu_seconds_total", "Total user and system CPU time spent in seconds.",
              p->cpu_seconds);
    x.gauge("process_resident_memory_bytes", "Resident memory size in bytes.", p->resident_bytes);
    x.gauge("process_virtual_memory_bytes", "Virtual memory size in bytes.", p->virtual_bytes);
    x.gauge("process_start_time_seconds", "Start time of the process since unix epoch in seconds.",
            p->start_time_seconds);
    x.gauge("process_open_fds", "Number of open file descriptors.", p->open_fds);
    x.gauge("process_max_fds", "Maximum number of open file descriptors.", p->max_fds);
  }
  if (shared_limits_) render_shared_limits(out, shared_limits_());
  return out;
}

}  // namespace keygate
