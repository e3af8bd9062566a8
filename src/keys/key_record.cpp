#include "keygate/keys/key_record.hpp"

#include <chrono>
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

std::string KeyRecord::status(UnixMillis now) const {
  if (revoked_at && *revoked_at <= now) return "revoked";
  if (expires_at && *expires_at <= now) return "expired";
  if (!enabled) return "disabled";
  return "active";
}

std::string join_csv(const std::vector<std::string>& items) {
  std::string out;
  for (const auto& s : items) {
    if (!out.empty()) out += ',';
    out += s;
  }
  return out;
}

std::vector<std::string> split_csv(std::string_view text) {
  std::vector<std::string> out;
  while (!text.empty()) {
    auto comma = text.find(',');
    auto item = text.substr(0, comma);
    if (!item.empty()) out.emplace_back(item);
    if (comma == std::string_view::npos) break;
    text.remove_prefix(comma + 1);
  }
  return out;
}

}  // namespace keygate
