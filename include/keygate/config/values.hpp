#pragma once
// Parsers for the scalar value syntaxes shared by the config file, the CLI and
// the admin API: durations, rates, host:port, URLs, ${VAR} expansion.
#include <chrono>
#include <cstdint>
#include <expected>
#include <functional>
#include <optional>
#include <string>
#include <string_view>

#include "keygate/config/config.hpp"

namespace keygate {

// "500ms", "30s", "5m", "24h", "30d" (also "1.5s"); no unit or a negative value is an error.
std::expected<Millis, std::string> parse_duration(std::string_view text);
std::string format_duration(Millis d);

// "600/1m", "10/s", "5/h" (PERIOD: s, m, h, d or a duration), within the bounds below.
std::expected<Rate, std::string> parse_rate(std::string_view text);

// Bounds on a rate, so that the token bucket (GCRA on int64 nanoseconds, see
// ratelimit/token_bucket.hpp) enforces exactly the capacity the headers report:
// no overflow, no clamped window, a refill interval of at least 1 ns.
inline constexpr std::uint64_t kMaxRateRequests = 1'000'000'000;
inline constexpr std::uint64_t kMaxRateBurst = 1'000'000'000;
inline constexpr Millis kMaxRatePeriod{365LL * 86'400'000};         // 365d
inline constexpr Millis kMaxRateRefillWindow{3650LL * 86'400'000};  // 3650d: empty -> full
// The first bound `r` breaks, as a message naming `what` ("rate", "plans.pro.rate");
// nullopt when the bucket can represent it exactly.
std::optional<std::string> rate_problem(const Rate& r, const std::string& what = "rate");

std::expected<HostPort, std::string> parse_host_port(std::string_view text);

struct ParsedUrl {
  bool https = false;
  std::string host;
  std::uint16_t port = 0;
  std::string host_header;
};
std::expected<ParsedUrl, std::string> parse_upstream_url(std::string_view text);

// redis://[[user]:password@]host[:port][/db] (port 6379, db 0 by default);
// fills host, port, username, password, db of `out`.
std::expected<void, std::string> parse_redis_url(std::string_view text, RedisConfig& out);

// ${VAR} and ${VAR:-default}; `lookup` returns the variable's value if set.
using EnvLookup = std::function<std::optional<std::string>(const std::string&)>;
std::expected<std::string, std::string> expand_env(std::string_view text, const EnvLookup& lookup);
EnvLookup process_env();

}  // namespace keygate
