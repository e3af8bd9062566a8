#include "keygate/keys/key_record.hpp"

namespace keygate {

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
