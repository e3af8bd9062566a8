#pragma once
// ASCII case-insensitive comparison for HTTP tokens (methods, header names,
// schemes). Not boost::beast::iequals: in Boost 1.81 it reads one byte past
// both arguments when they differ only in case, which ASan caught on a method
// string (Beast stores an unknown method without a terminator).
#include <algorithm>
#include <string_view>

namespace keygate {

constexpr char ascii_lower(char c) {
  return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c;
}

constexpr bool ascii_iequals(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return ascii_lower(x) == ascii_lower(y);
         });
}

// A header value without the optional white space around it (RFC 9110 §5.6.3).
constexpr std::string_view trim_ows(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

}  // namespace keygate
