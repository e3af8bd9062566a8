#include <gtest/gtest.h>

#include <string>

#include "keygate/core/http_date.hpp"

using namespace keygate;

namespace {
std::string fmt(std::int64_t s) {
  auto a = format_http_date(s);
  return {a.data(), a.size()};
}
}  // namespace

TEST(HttpDate, Rfc9110Example) {
  EXPECT_EQ(fmt(784111777), "Sun, 06 Nov 1994 08:49:37 GMT");
}

TEST(HttpDate, EpochLeapDayAndEndOfYear) {
  EXPECT_EQ(fmt(0), "Thu, 01 Jan 1970 00:00:00 GMT");
  EXPECT_EQ(fmt(951782400), "Tue, 29 Feb 2000 00:00:00 GMT");
  EXPECT_EQ(fmt(1735689599), "Tue, 31 Dec 2024 23:59:59 GMT");
  EXPECT_EQ(fmt(4102444800), "Fri, 01 Jan 2100 00:00:00 GMT");
}

TEST(HttpDate, CacheFormatsOncePerSecond) {
  HttpDateCache cache;
  auto a = cache.at(784111777);
  auto b = cache.at(784111777);
  EXPECT_EQ(a, "Sun, 06 Nov 1994 08:49:37 GMT");
  EXPECT_EQ(a.data(), b.data());
  EXPECT_EQ(cache.formats(), 1u);
  EXPECT_EQ(cache.at(784111778), "Sun, 06 Nov 1994 08:49:38 GMT");
  EXPECT_EQ(cache.formats(), 2u);
}

TEST(HttpDate, NowIsWellFormed) {
  auto d = http_date_now();
  ASSERT_EQ(d.size(), kHttpDateLength);
  EXPECT_EQ(d.substr(25), " GMT");
  EXPECT_EQ(d[3], ',');
}
