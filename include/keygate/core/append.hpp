#pragma once
// Appending several pieces to a string with one growth of it: each `+=` checks
// the capacity again (and measures a C string first), which on the per-request
// heads cost more than the copying.
#include <cstring>
#include <initializer_list>
#include <string>
#include <string_view>

namespace keygate {

inline void append_parts(std::string& out, std::initializer_list<std::string_view> parts) {
  std::size_t size = 0;
  for (std::string_view part : parts) size += part.size();
  const std::size_t at = out.size();
  // Returns the size asked for, not the lambda's second argument: libstdc++ 12
  // passes the grown capacity there when it reallocates.
  out.resize_and_overwrite(at + size, [&](char* p, std::size_t) {
    p += at;
    for (std::string_view part : parts) {
      if (part.empty()) continue;
      std::memcpy(p, part.data(), part.size());
      p += part.size();
    }
    return at + size;
  });
}

}  // namespace keygate
