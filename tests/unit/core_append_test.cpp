#include <gtest/gtest.h>

#include <string>

#include "keygate/core/append.hpp"

using namespace keygate;

// Growing from empty forces reallocations, where libstdc++ 12's
// resize_and_overwrite hands the callback the new capacity, not the size asked
// for: returning that left stray bytes in the head (a 400 from the upstream).
TEST(AppendParts, MatchesPlainConcatenationAcrossGrowths) {
  std::string fast, plain;
  for (int i = 0; i < 200; ++i) {
    const std::string name = "X-Field-" + std::to_string(i);
    const std::string value(static_cast<size_t>(i % 37), 'v');
    append_parts(fast, {name, ": ", value, "", "\r\n"});
    plain += name + ": " + value + "\r\n";
    ASSERT_EQ(fast, plain) << "after field " << i;
    ASSERT_EQ(fast.size(), plain.size());
  }
}

TEST(AppendParts, EmptyPartsAndEmptyString) {
  std::string out;
  append_parts(out, {});
  append_parts(out, {"", ""});
  EXPECT_EQ(out, "");
  append_parts(out, {"a", "", "b"});
  EXPECT_EQ(out, "ab");
}

// Every length a short copy treats apart (0..3, 4..7, 8..16, longer), in every
// position, with bytes that differ: a piece copied to the wrong offset or cut
// short shows, which a run of one repeated letter would hide.
TEST(AppendParts, EveryShortLengthLandsWhole) {
  std::string pool;
  for (int i = 0; i < 64; ++i) pool += static_cast<char>('!' + i);
  for (size_t a = 0; a <= 40; ++a) {
    for (size_t b = 0; b <= 20; ++b) {
      const std::string_view first(pool.data(), a), second(pool.data() + 3, b);
      std::string fast = "head:", plain = "head:";
      append_parts(fast, {first, ": ", second, "\r\n"});
      plain.append(first).append(": ").append(second).append("\r\n");
      ASSERT_EQ(fast, plain) << a << " then " << b;
    }
  }
}
