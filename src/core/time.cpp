#include "keygate/core/time.hpp"

#include <algorithm>
#include <charconv>
#include <cstdio>
#include <ctime>

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

namespace {
// Exactly `width` ASCII digits at `pos` (from_chars alone would take a sign or fewer).
std::optional<int> digits(std::string_view s, size_t pos, size_t width) {
  if (pos > s.size() || s.size() - pos < width) return std::nullopt;
  auto f = s.substr(pos, width);
  if (!std::ranges::all_of(f, [](char c) { return c >= '0' && c <= '9'; })) return std::nullopt;
  int v = 0;
  std::from_chars(f.data(), f.data() + f.size(), v);
  return v;
}
}  // namespace

// RFC 3339 §5.6 date-time: YYYY-MM-DD T HH:MM:SS [.fraction] (Z | +HH:MM | -HH:MM).
// 't'/'z' may be lower case and a space may stand for 'T' (§5.6 note). The calendar
// check is std::chrono's: 2027-02-31 is no date. A leap second (:60) is accepted where
// one can occur, at 23:59:60 UTC, and read as the next second, as POSIX time does.
std::optional<UnixMillis> parse_time(const std::string& text) {
  std::string_view s(text);
  auto at = [&](size_t i, std::string_view allowed) {
    return i < s.size() && allowed.find(s[i]) != std::string_view::npos;
  };
  auto year = digits(s, 0, 4), month = digits(s, 5, 2), day = digits(s, 8, 2);
  auto hour = digits(s, 11, 2), minute = digits(s, 14, 2), second = digits(s, 17, 2);
  if (!year || !month || !day || !hour || !minute || !second || !at(4, "-") || !at(7, "-") ||
      !at(10, "Tt ") || !at(13, ":") || !at(16, ":"))
    return std::nullopt;
  const std::chrono::year_month_day date{std::chrono::year(*year),
                                         std::chrono::month(static_cast<unsigned>(*month)),
                                         std::chrono::day(static_cast<unsigned>(*day))};
  if (!date.ok() || *hour > 23 || *minute > 59 || *second > 60) return std::nullopt;

  size_t i = 19;
  std::int64_t millis = 0;
  if (at(i, ".")) {
    size_t first = ++i;
    while (at(i, "0123456789")) ++i;
    if (i == first) return std::nullopt;  // a '.' needs at least one digit
    for (size_t k = first; k < first + 3; ++k) millis = millis * 10 + (k < i ? s[k] - '0' : 0);
  }
  int offset_minutes = 0;
  if (at(i, "Zz")) {
    ++i;
  } else if (at(i, "+-")) {
    auto oh = digits(s, i + 1, 2), om = digits(s, i + 4, 2);
    if (!oh || !om || !at(i + 3, ":") || *oh > 23 || *om > 59) return std::nullopt;
    offset_minutes = (s[i] == '-' ? -1 : 1) * (*oh * 60 + *om);
    i += 6;
  } else {
    return std::nullopt;
  }
  if (i != s.size()) return std::nullopt;
  if (*second == 60) {
    const int utc_minute_of_day = ((*hour * 60 + *minute - offset_minutes) % 1440 + 1440) % 1440;
    if (utc_minute_of_day != 23 * 60 + 59) return std::nullopt;
  }
  const std::int64_t days = std::chrono::sys_days(date).time_since_epoch().count();
  const std::int64_t secs =
      days * 86'400 + *hour * 3600 + *minute * 60 + *second - offset_minutes * 60;
  return secs * 1000 + millis;
}

}  // namespace keygate
