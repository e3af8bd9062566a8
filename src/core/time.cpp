#include "keygate/core/time.hpp"

#include <cstdio>
#include <ctime>
#include <regex>

namespace keygate {

UnixMillis now_millis() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

namespace {
// "YYYY-MM-DDTHH:MM:SS" of a Unix time, UTC.
std::string utc_seconds(std::time_t secs) {
  std::tm tm{};
  gmtime_r(&secs, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &tm);
  return buf;
}
}  // namespace

std::string format_time(UnixMillis t) {
  char frac[8];
  std::snprintf(frac, sizeof frac, ".%03dZ", static_cast<int>(t % 1000));
  return utc_seconds(t / 1000) + frac;
}

std::string format_rfc3339(std::chrono::system_clock::time_point t) {
  return utc_seconds(std::chrono::system_clock::to_time_t(t)) + "Z";
}

std::optional<UnixMillis> parse_time(const std::string& s) {
  static const std::regex re(
      R"(^(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(\.\d{1,9})?([Zz]|[+-]\d{2}:\d{2})$)");
  std::smatch m;
  if (!std::regex_match(s, m, re)) return std::nullopt;
  std::tm tm{};
  tm.tm_year = std::stoi(m[1]) - 1900;
  tm.tm_mon = std::stoi(m[2]) - 1;
  tm.tm_mday = std::stoi(m[3]);
  tm.tm_hour = std::stoi(m[4]);
  tm.tm_min = std::stoi(m[5]);
  tm.tm_sec = std::stoi(m[6]);
  if (tm.tm_mon > 11 || tm.tm_mday < 1 || tm.tm_mday > 31 || tm.tm_hour > 23 || tm.tm_min > 59 ||
      tm.tm_sec > 60)
    return std::nullopt;
  std::int64_t secs = timegm(&tm);
  std::int64_t ms = 0;
  if (m[7].matched) {
    std::string frac = m[7].str().substr(1) + "00";
    ms = std::stoi(frac.substr(0, 3));
  }
  std::string tz = m[8];
  if (tz != "Z" && tz != "z") {
    int sign = tz[0] == '-' ? -1 : 1;
    secs -= sign * (std::stoi(tz.substr(1, 2)) * 3600 + std::stoi(tz.substr(4, 2)) * 60);
  }
  return secs * 1000 + ms;
}

}  // namespace keygate
