#include "keygate/keys/key_record.hpp"

#include <algorithm>

namespace keygate {

UnixMillis Credits::last_refill(UnixMillis now) const {
  if (!refill || refill->interval.count() <= 0 || now < refilled_at) return refilled_at;
  const std::int64_t step = refill->interval.count();
  return refilled_at + (now - refilled_at) / step * step;
}

UnixMillis Credits::next_refill(UnixMillis now) const {
  return refill ? last_refill(now) + refill->interval.count() : 0;
}

std::int64_t Credits::remaining_at(UnixMillis now) const {
  if (refill && last_refill(now) > refilled_at) return std::max(remaining, refill->amount);
  return remaining;
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
  split_csv(text, out);
  return out;
}

void split_csv(std::string_view text, std::vector<std::string>& out) {
  size_t n = 0;
  while (!text.empty()) {
    auto comma = text.find(',');
    auto item = text.substr(0, comma);
    if (!item.empty()) {
      if (n == out.size()) out.emplace_back();
      out[n++].assign(item);
    }
    if (comma == std::string_view::npos) break;
    text.remove_prefix(comma + 1);
  }
  out.resize(n);
}

}  // namespace keygate
