#include "keygate/config/values.hpp"

#include <cctype>
#include <charconv>
#include <cmath>
#include <cstdlib>
#include <thread>

#include <boost/url/parse.hpp>

namespace keygate {

std::string HostPort::str() const {
  if (host.find(':') != std::string::npos) return "[" + host + "]:" + std::to_string(port);
  return host + ":" + std::to_string(port);
}

int Config::effective_threads() const {
  if (threads > 0) return threads;
  unsigned n = std::thread::hardware_concurrency();
  return n ? static_cast<int>(n) : 1;
}

std::expected<Millis, std::string> parse_duration(std::string_view text) {
  auto bad = [&] {
    return std::unexpected("invalid duration '" + std::string(text) +
                           "' (expected e.g. 500ms, 30s, 5m, 24h, 30d)");
  };
  size_t i = 0;
  while (i < text.size() && (std::isdigit(static_cast<unsigned char>(text[i])) || text[i] == '.'))
    ++i;
  if (i == 0 || i == text.size()) return bad();
  double value = 0;
  auto [ptr, ec] = std::from_chars(text.data(), text.data() + i, value);
  if (ec != std::errc{} || ptr != text.data() + i || !std::isfinite(value)) return bad();
  std::string_view unit = text.substr(i);
  double ms_per_unit = 0;
  if (unit == "ms")
    ms_per_unit = 1;
  else if (unit == "s")
    ms_per_unit = 1000;
  else if (unit == "m")
    ms_per_unit = 60'000;
  else if (unit == "h")
    ms_per_unit = 3'600'000;
  else if (unit == "d")
    ms_per_unit = 86'400'000;
  else
    return bad();
  double ms = value * ms_per_unit;
  if (ms > 1e15) return std::unexpected("duration '" + std::string(text) + "' is too large");
  return Millis(static_cast<long long>(std::llround(ms)));
}

std::string format_duration(Millis d) {
  long long ms = d.count();
  if (ms == 0) return "0s";
  struct Unit {
    long long ms;
    const char* suffix;
  };
  for (Unit u : {Unit{86'400'000, "d"}, Unit{3'600'000, "h"}, Unit{60'000, "m"}, Unit{1000, "s"}}) {
    if (ms % u.ms == 0) return std::to_string(ms / u.ms) + u.suffix;
  }
  return std::to_string(ms) + "ms";
}

std::expected<Rate, std::string> parse_rate(std::string_view text) {
  auto slash = text.find('/');
  auto bad = [&] {
    return std::unexpected("invalid rate '" + std::string(text) +
                           "' (expected N/PERIOD, e.g. 600/1m or 10/s)");
  };
  if (slash == std::string_view::npos || slash == 0) return bad();
  std::uint64_t n = 0;
  auto head = text.substr(0, slash);
  auto [ptr, ec] = std::from_chars(head.data(), head.data() + head.size(), n);
  if (ec == std::errc::result_out_of_range && ptr == head.data() + head.size())
    return std::unexpected("rate.requests must be between 1 and " +
                           std::to_string(kMaxRateRequests) + ", got " + std::string(head));
  if (ec != std::errc{} || ptr != head.data() + head.size() || n == 0) return bad();
  std::string period(text.substr(slash + 1));
  if (period == "s" || period == "m" || period == "h" || period == "d") period = "1" + period;
  auto d = parse_duration(period);
  if (!d || d->count() <= 0) return bad();
  Rate rate{n, *d, 0};
  if (auto problem = rate_problem(rate)) return std::unexpected(*problem);
  return rate;
}

std::optional<std::string> rate_problem(const Rate& r, const std::string& what) {
  if (r.requests < 1 || r.requests > kMaxRateRequests)
    return what + ".requests must be between 1 and " + std::to_string(kMaxRateRequests) + ", got " +
           std::to_string(r.requests);
  if (r.burst > kMaxRateBurst)
    return what + ".burst must be between 0 and " + std::to_string(kMaxRateBurst) + ", got " +
           std::to_string(r.burst);
  if (r.period < Millis(1) || r.period > kMaxRatePeriod)
    return what + ".period must be between 1ms and " + format_duration(kMaxRatePeriod) + ", got " +
           format_duration(r.period);
  // The bucket refills one token every ceil(period / requests) nanoseconds and
  // holds `capacity` of them: both must be whole, non-zero and fit in int64.
  const auto period_ns = static_cast<std::uint64_t>(r.period.count()) * 1'000'000;
  if (r.requests > period_ns)
    return what + " is too fast: at most one request per nanosecond (" +
           std::to_string(kMaxRateRequests) + "/1s) can be enforced";
  const std::uint64_t interval_ns = (period_ns + r.requests - 1) / r.requests;
  const auto max_window_ns = static_cast<std::uint64_t>(kMaxRateRefillWindow.count()) * 1'000'000;
  if (r.capacity() > max_window_ns / interval_ns)
    return what + ": an empty bucket would take more than " +
           format_duration(kMaxRateRefillWindow) +
           " to refill (burst x period / requests); lower the burst or raise the rate";
  return std::nullopt;
}

std::expected<HostPort, std::string> parse_host_port(std::string_view text) {
  auto bad = [&](const std::string& why) {
    return std::unexpected("invalid address '" + std::string(text) + "': " + why);
  };
  std::string_view host, port;
  if (!text.empty() && text.front() == '[') {
    auto close = text.find(']');
    if (close == std::string_view::npos || close + 1 >= text.size() || text[close + 1] != ':')
      return bad("expected [v6]:port");
    host = text.substr(1, close - 1);
    port = text.substr(close + 2);
  } else {
    auto colon = text.rfind(':');
    if (colon == std::string_view::npos) return bad("expected host:port");
    host = text.substr(0, colon);
    port = text.substr(colon + 1);
  }
  if (host.empty()) return bad("empty host");
  unsigned p = 0;
  auto [ptr, ec] = std::from_chars(port.data(), port.data() + port.size(), p);
  if (port.empty() || ec != std::errc{} || ptr != port.data() + port.size() || p > 65535)
    return bad("port must be 0-65535");
  return HostPort{std::string(host), static_cast<std::uint16_t>(p)};
}

std::expected<ParsedUrl, std::string> parse_upstream_url(std::string_view text) {
  ParsedUrl u;
  std::string_view rest;
  if (text.starts_with("http://")) {
    rest = text.substr(7);
  } else if (text.starts_with("https://")) {
    u.https = true;
    rest = text.substr(8);
  } else {
    return std::unexpected("invalid url '" + std::string(text) +
                           "': must start with http:// or https://");
  }
  if (auto slash = rest.find('/'); slash != std::string_view::npos) {
    if (rest.substr(slash) != "/")
      return std::unexpected("invalid url '" + std::string(text) +
                             "': a path is not supported; the request path is forwarded as is");
    rest = rest.substr(0, slash);
  }
  if (rest.empty()) return std::unexpected("invalid url '" + std::string(text) + "': no host");
  u.host_header = std::string(rest);
  bool bracketed = rest.front() == '[';
  auto colon = rest.rfind(':');
  bool has_port = colon != std::string_view::npos && (!bracketed || rest[colon - 1] == ']');
  if (has_port) {
    auto hp = parse_host_port(rest);
    if (!hp) return std::unexpected("invalid url '" + std::string(text) + "': bad port");
    u.host = hp->host;
    u.port = hp->port;
  } else {
    u.host = std::string(bracketed ? rest.substr(1, rest.size() - 2) : rest);
    u.port = u.https ? 443 : 80;
  }
  if (u.host.empty()) return std::unexpected("invalid url '" + std::string(text) + "': no host");
  return u;
}

std::expected<void, std::string> parse_redis_url(std::string_view text, RedisConfig& out) {
  // Never echo the text: it may carry a password.
  auto bad = [](std::string why) {
    return std::unexpected("invalid redis url: " + std::move(why) +
                           " (expected redis://[:password@]host:port/db)");
  };
  auto parsed = boost::urls::parse_uri(text);
  if (!parsed) return bad("not a URL");
  const auto& u = *parsed;
  if (u.scheme() != "redis") return bad("the scheme must be redis:// (no TLS support)");
  if (u.has_query() || u.has_fragment()) return bad("no query or fragment allowed");
  std::string host = u.host_address();
  if (host.empty()) return bad("no host");
  std::uint16_t port = 6379;
  if (u.has_port()) {
    std::string_view digits = u.port();
    unsigned p = 0;
    auto [ptr, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), p);
    if (digits.empty() || ec != std::errc{} || ptr != digits.data() + digits.size() || p == 0 ||
        p > 65535)
      return bad("port must be 1-65535");
    port = static_cast<std::uint16_t>(p);
  }
  int db = 0;
  std::string path = u.path();
  if (!path.empty() && path != "/") {
    std::string_view digits = std::string_view(path).substr(1);
    auto [ptr, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), db);
    if (path.front() != '/' || ec != std::errc{} || ptr != digits.data() + digits.size() || db < 0)
      return bad("the path must be a database number");
  }
  out.host = std::move(host);
  out.port = port;
  out.username = u.has_userinfo() ? std::string(u.user()) : std::string();
  out.password = u.has_password() ? std::string(u.password()) : std::string();
  out.db = db;
  return {};
}

std::string RedisConfig::redacted() const {
  std::string auth = password.empty() ? "" : username + ":***@";
  bool v6 = host.find(':') != std::string::npos;
  return "redis://" + auth + (v6 ? "[" + host + "]" : host) + ":" + std::to_string(port) + "/" +
         std::to_string(db);
}

std::expected<std::string, std::string> expand_env(std::string_view text, const EnvLookup& lookup) {
  std::string out;
  out.reserve(text.size());
  size_t i = 0;
  while (i < text.size()) {
    if (text[i] == '$' && i + 1 < text.size() && text[i + 1] == '{') {
      auto close = text.find('}', i + 2);
      if (close == std::string_view::npos)
        return std::unexpected("unterminated ${ in '" + std::string(text) + "'");
      std::string_view inner = text.substr(i + 2, close - i - 2);
      std::optional<std::string_view> fallback;
      if (auto sep = inner.find(":-"); sep != std::string_view::npos) {
        fallback = inner.substr(sep + 2);
        inner = inner.substr(0, sep);
      }
      if (inner.empty())
        return std::unexpected("empty variable name in '" + std::string(text) + "'");
      for (char c : inner) {
        if (!std::isalnum(static_cast<unsigned char>(c)) && c != '_')
          return std::unexpected("invalid variable name '" + std::string(inner) + "'");
      }
      auto value = lookup(std::string(inner));
      if (value && (!value->empty() || !fallback)) {
        out += *value;
      } else if (fallback) {
        out += *fallback;
      } else {
        return std::unexpected("environment variable " + std::string(inner) +
                               " is not set (use ${" + std::string(inner) +
                               ":-default} to give a default)");
      }
      i = close + 1;
    } else {
      out += text[i++];
    }
  }
  return out;
}

EnvLookup process_env() {
  return [](const std::string& name) -> std::optional<std::string> {
    if (const char* v = std::getenv(name.c_str())) return std::string(v);
    return std::nullopt;
  };
}

}  // namespace keygate
