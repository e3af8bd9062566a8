// A route's cost (SPEC §11) takes that many tokens at once, or none.
#include <gtest/gtest.h>

#include "keygate/ratelimit/bucket_table.hpp"

using namespace keygate;
using namespace std::chrono_literals;

namespace {
constexpr std::int64_t kSec = 1'000'000'000;
}

TEST(TokenBucketCost, TakesCostTokensOrNone) {
  ManualClock clock;
  BucketTable t(clock);
  const Rate r{10, 10s, 0};  // one token a second, ten at most
  auto d = t.take("k", r, 4);
  ASSERT_TRUE(d.allowed);
  EXPECT_EQ(d.remaining, 6u);
  EXPECT_TRUE(t.take("k", r, 6).allowed);
  auto refused = t.take("k", r, 3);
  EXPECT_FALSE(refused.allowed);
  EXPECT_EQ(refused.remaining, 0u);
  EXPECT_EQ(refused.retry_ns, 3 * kSec);  // until three tokens are back
  clock.advance(2s);
  refused = t.take("k", r, 3);
  EXPECT_FALSE(refused.allowed);  // two are there: nothing is taken
  EXPECT_EQ(refused.remaining, 2u);
  EXPECT_TRUE(t.take("k", r, 2).allowed);
}

TEST(TokenBucketCost, MoreThanTheCapacityIsNeverAdmittedAndDoesNotOverflow) {
  ManualClock clock;
  BucketTable t(clock);
  const Rate r{5, 1h, 0};
  EXPECT_FALSE(t.take("k", r, 6).allowed);
  EXPECT_FALSE(t.take("k", r, 4'000'000'000u).allowed);
  EXPECT_EQ(t.peek("k", r).remaining, 5u);  // the refusals took nothing
}
