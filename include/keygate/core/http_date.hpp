#pragma once
// The Date header (RFC 9110 §5.6.7, IMF-fixdate: "Sun, 06 Nov 1994 08:49:37 GMT").
// It changes once a second, so each thread formats it once per second and
// every reply in that second copies the same text.
#include <array>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <string_view>

namespace keygate {

inline constexpr std::size_t kHttpDateLength = 29;

// IMF-fixdate of a Unix time in seconds (UTC).
std::array<char, kHttpDateLength> format_http_date(std::int64_t unix_seconds);

// One second's formatted date, reformatted only when the second changes.
class HttpDateCache {
 public:
  std::string_view at(std::int64_t unix_seconds);
  std::uint64_t formats() const { return formats_; }

 private:
  std::int64_t second_ = std::numeric_limits<std::int64_t>::min();
  std::array<char, kHttpDateLength> text_{};
  std::uint64_t formats_ = 0;
};

// Now, from this thread's cache. The view stays valid until this thread's next
// call in a later second: copy it into the reply (Beast's set() does).
std::string_view http_date_now();
// The same for a time already read (formatted once per second per thread).
std::string_view http_date_at(std::int64_t unix_seconds);

}  // namespace keygate
