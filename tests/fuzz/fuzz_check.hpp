#pragma once
// A property the fuzz target asserts: on failure print what broke and abort,
// which libFuzzer reports as a crash and saves the input for.
#include <cstdio>
#include <cstdlib>
#include <string_view>

namespace keygate::fuzz {

inline void check(bool ok, std::string_view what, std::string_view detail = {}) {
  if (ok) return;
  std::fprintf(stderr, "property violated: %.*s\n%.*s\n", static_cast<int>(what.size()),
               what.data(), static_cast<int>(detail.size()), detail.data());
  std::abort();
}

}  // namespace keygate::fuzz
