#include "keygate/core/placeholders.hpp"

#include <algorithm>

namespace keygate::placeholders {

std::optional<std::string> first_unknown(std::string_view text) {
  size_t i = 0;
  while ((i = text.find('{', i)) != std::string_view::npos) {
    auto close = text.find('}', i);
    if (close == std::string_view::npos) return std::nullopt;
    auto name = text.substr(i + 1, close - i - 1);
    if (std::find(kNames.begin(), kNames.end(), name) == kNames.end()) return std::string(name);
    i = close + 1;
  }
  return std::nullopt;
}

std::string list() {
  std::string out;
  for (auto p : kNames) out += (out.empty() ? "{" : ", {") + std::string(p) + "}";
  return out;
}

}  // namespace keygate::placeholders
