#pragma once
// Wall-clock time as the store and the wire see it: Unix milliseconds, and
// RFC 3339 UTC text both ways.
#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace keygate {

using UnixMillis = std::int64_t;
UnixMillis now_millis();
// RFC 3339 UTC: with milliseconds (stored times), and in whole seconds.
std::string format_time(UnixMillis t);
std::string format_rfc3339(std::chrono::system_clock::time_point t);
// RFC 3339 date-time (a space may stand for the T); nullopt when malformed or no
// calendar date. See time.cpp for leap seconds.
std::optional<UnixMillis> parse_time(const std::string& rfc3339);

}  // namespace keygate
