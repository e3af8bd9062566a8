#pragma once
// Appending several pieces to a string with one growth of it: each `+=` checks
// the capacity again (and measures a C string first), which on the per-request
// heads cost more than the copying.
#include <cstring>
#include <initializer_list>
#include <string>
#include <string_view>

namespace keygate {

namespace detail {

// memcpy for a head's short pieces (names, values, ": ", "\r\n"): libc's is a
// call and a size dispatch, which for two bytes costs more than the copy.
// Two overlapping fixed-size copies cover any 4..16 bytes; the compiler turns
// each into one load and one store.
inline void copy_short(char* p, const char* s, std::size_t n) {
  if (n >= 8) {
    if (n > 16) {
      std::memcpy(p, s, n);
      return;
    }
    std::memcpy(p, s, 8);
    std::memcpy(p + n - 8, s + n - 8, 8);
  } else if (n >= 4) {
    std::memcpy(p, s, 4);
    std::memcpy(p + n - 4, s + n - 4, 4);
  } else if (n > 0) {
    p[0] = s[0];
    p[n / 2] = s[n / 2];
    p[n - 1] = s[n - 1];
  }
}

}  // namespace detail

inline void append_parts(std::string& out, std::initializer_list<std::string_view> parts) {
  std::size_t size = 0;
  for (std::string_view part : parts) size += part.size();
  const std::size_t at = out.size();
  // Returns the size asked for, not the lambda's second argument: libstdc++ 12
  // passes the grown capacity there when it reallocates.
  out.resize_and_overwrite(at + size, [&](char* p, std::size_t) {
    p += at;
    for (std::string_view part : parts) {
      detail::copy_short(p, part.data(), part.size());
      p += part.size();
    }
    return at + size;
  });
}

}  // namespace keygate
