#include "keygate/core/http_date.hpp"

#include <chrono>

namespace keygate {

namespace {
constexpr std::string_view kDays = "SunMonTueWedThuFriSat";
constexpr std::string_view kMonths = "JanFebMarAprMayJunJulAugSepOctNovDec";

void put2(char* p, unsigned v) {
  p[0] = static_cast<char>('0' + v / 10 % 10);
  p[1] = static_cast<char>('0' + v % 10);
}
}  // namespace

std::array<char, kHttpDateLength> format_http_date(std::int64_t unix_seconds) {
  using namespace std::chrono;
  const sys_seconds t{seconds(unix_seconds)};
  const sys_days day = floor<days>(t);
  const year_month_day ymd{day};
  const hh_mm_ss hms{t - day};
  const unsigned wd = weekday{day}.c_encoding();  // 0 = Sunday
  const unsigned month = static_cast<unsigned>(ymd.month());
  const int y = static_cast<int>(ymd.year());
  const unsigned year = static_cast<unsigned>(y < 0 ? 0 : y > 9999 ? 9999 : y);

  std::array<char, kHttpDateLength> out;
  // "Www, DD Mmm YYYY HH:MM:SS GMT"
  kDays.copy(out.data(), 3, wd * 3);
  out[3] = ',';
  out[4] = ' ';
  put2(&out[5], static_cast<unsigned>(ymd.day()));
  out[7] = ' ';
  kMonths.copy(&out[8], 3, (month - 1) * 3);
  out[11] = ' ';
  put2(&out[12], year / 100);
  put2(&out[14], year % 100);
  out[16] = ' ';
  put2(&out[17], static_cast<unsigned>(hms.hours().count()));
  out[19] = ':';
  put2(&out[20], static_cast<unsigned>(hms.minutes().count()));
  out[22] = ':';
  put2(&out[23], static_cast<unsigned>(hms.seconds().count()));
  std::string_view(" GMT").copy(&out[25], 4);
  return out;
}

std::string_view HttpDateCache::at(std::int64_t unix_seconds) {
  if (unix_seconds != second_) {
    text_ = format_http_date(unix_seconds);
    second_ = unix_seconds;
    ++formats_;
  }
  return {text_.data(), text_.size()};
}

std::string_view http_date_at(std::int64_t unix_seconds) {
  thread_local HttpDateCache cache;
  return cache.at(unix_seconds);
}

std::string_view http_date_now() {
  const auto now = std::chrono::system_clock::now().time_since_epoch();
  return http_date_at(std::chrono::duration_cast<std::chrono::seconds>(now).count());
}

}  // namespace keygate
