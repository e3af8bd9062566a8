#include <gtest/gtest.h>

#include <thread>

#include "keygate/proxy/stages.hpp"
#include "keygate/ratelimit/bucket_table.hpp"
#include "keygate/ratelimit/rate_limiter.hpp"

using namespace keygate;
using namespace std::chrono_literals;

namespace {
constexpr std::int64_t kSec = 1'000'000'000;
Rate rate(std::uint64_t n, Millis per, std::uint64_t burst = 0) {
  return Rate{n, per, burst};
}
std::optional<Decision> take(RateLimiter& limiter, const AuthKey& k, const RatePolicy& p) {
  return limiter.take(p, k.id(), k.owner());
}
}  // namespace

TEST(TokenBucket, StartsFullAndAdmitsExactlyCapacity) {
  ManualClock clock;
  BucketTable t(clock);
  for (int i = 0; i < 10; ++i) {
    auto d = t.take("k", rate(10, 1min));
    ASSERT_TRUE(d.allowed) << i;
    EXPECT_EQ(d.limit, 10u);
    EXPECT_EQ(d.remaining, static_cast<std::uint64_t>(9 - i));
  }
  auto d = t.take("k", rate(10, 1min));
  EXPECT_FALSE(d.allowed);
  EXPECT_EQ(d.remaining, 0u);
  EXPECT_EQ(d.retry_ns, 6 * kSec);   // one token per 6 s
  EXPECT_EQ(d.reset_ns, 60 * kSec);  // all ten back after a minute
}

TEST(TokenBucket, RefillsContinuously) {
  ManualClock clock;
  BucketTable t(clock);
  for (int i = 0; i < 10; ++i) t.take("k", rate(10, 10s));
  EXPECT_FALSE(t.take("k", rate(10, 10s)).allowed);
  clock.advance(999ms);
  EXPECT_FALSE(t.take("k", rate(10, 10s)).allowed);
  clock.advance(1ms);
  auto d = t.take("k", rate(10, 10s));
  EXPECT_TRUE(d.allowed);
  EXPECT_EQ(d.remaining, 0u);
  clock.advance(5s);
  EXPECT_EQ(t.take("k", rate(10, 10s)).remaining, 4u);
  clock.advance(1h);  // never above capacity
  EXPECT_EQ(t.take("k", rate(10, 10s)).remaining, 9u);
}

TEST(TokenBucket, BurstIsCapacityAndRateIsRequestsPerPeriod) {
  ManualClock clock;
  BucketTable t(clock);
  const Rate r = rate(60, 1min, 5);  // 1/s, bursts of 5
  for (int i = 0; i < 5; ++i) ASSERT_TRUE(t.take("k", r).allowed);
  auto d = t.take("k", r);
  EXPECT_FALSE(d.allowed);
  EXPECT_EQ(d.limit, 5u);
  EXPECT_EQ(d.retry_ns, kSec);
  clock.advance(3s);
  EXPECT_EQ(t.take("k", r).remaining, 2u);
}

TEST(TokenBucket, FractionalRateOnePerHour) {
  ManualClock clock;
  BucketTable t(clock);
  const Rate r = rate(1, 1h);
  EXPECT_TRUE(t.take("k", r).allowed);
  auto d = t.take("k", r);
  EXPECT_FALSE(d.allowed);
  EXPECT_EQ(d.retry_ns, 3600 * kSec);
  clock.advance(59min + 59s);
  EXPECT_FALSE(t.take("k", r).allowed);
  clock.advance(1s);
  EXPECT_TRUE(t.take("k", r).allowed);
}

TEST(TokenBucket, ResetAndRetryAfterValues) {
  ManualClock clock;
  BucketTable t(clock);
  const Rate r = rate(3, 1s);  // interval rounds up to 333,333,334 ns: never over-admits
  auto d = t.take("k", r);
  EXPECT_EQ(d.remaining, 2u);
  EXPECT_EQ(d.reset_ns, 333'333'334);
  t.take("k", r);
  t.take("k", r);
  d = t.take("k", r);
  EXPECT_FALSE(d.allowed);
  EXPECT_EQ(d.retry_ns, 333'333'334);
  EXPECT_EQ(d.reset_ns, 1'000'000'002);
}

TEST(TokenBucket, KeysAreIsolated) {
  ManualClock clock;
  BucketTable t(clock);
  for (int i = 0; i < 3; ++i) t.take("a", rate(3, 1min));
  EXPECT_FALSE(t.take("a", rate(3, 1min)).allowed);
  EXPECT_TRUE(t.take("b", rate(3, 1min)).allowed);
  EXPECT_EQ(t.size(), 2u);
}

TEST(TokenBucket, PeekDoesNotConsume) {
  ManualClock clock;
  BucketTable t(clock);
  EXPECT_EQ(t.peek("k", rate(5, 1min)).remaining, 5u);
  t.take("k", rate(5, 1min));
  EXPECT_EQ(t.peek("k", rate(5, 1min)).remaining, 4u);
  EXPECT_EQ(t.peek("k", rate(5, 1min)).remaining, 4u);
  EXPECT_EQ(t.size(), 1u);
}

TEST(TokenBucket, IdleFullBucketsAreEvicted) {
  ManualClock clock;
  BucketTable t(clock);
  t.take("busy", rate(10, 10s));
  t.take("idle", rate(1, 1s));
  clock.advance(2s);
  for (int i = 0; i < 10; ++i) t.take("busy", rate(10, 10s));  // empty now
  EXPECT_EQ(t.evict_idle(1s), 1u);                             // idle was full for >1 s
  EXPECT_EQ(t.size(), 1u);
  EXPECT_FALSE(t.take("busy", rate(10, 10s)).allowed);  // state kept for the active one
  clock.advance(1h);
  EXPECT_EQ(t.evict_idle(60s), 1u);
  EXPECT_EQ(t.size(), 0u);
}

TEST(TokenBucket, ReloadAdoptsNewRateWithoutRefilling) {
  ManualClock clock;
  BucketTable t(clock);
  for (int i = 0; i < 8; ++i) t.take("k", rate(10, 10s));  // 2 left
  // Double the capacity: the 2 tokens carry over, nothing is handed out for free.
  auto d = t.take("k", rate(20, 10s));
  EXPECT_TRUE(d.allowed);
  EXPECT_EQ(d.limit, 20u);
  EXPECT_EQ(d.remaining, 1u);
  // Shrink below what is held: clamped to the new capacity.
  clock.advance(1h);
  d = t.take("k", rate(3, 10s));
  EXPECT_EQ(d.limit, 3u);
  EXPECT_EQ(d.remaining, 2u);
}

TEST(RateLimiter, OwnerScopeSharesOneBucket) {
  ManualClock clock;
  RateLimiter limiter(clock);
  Config cfg;
  cfg.plans["team"] = Plan{"team", rate(4, 1min), Plan::Scope::owner, true, {}};
  KeyRecord a, b, c;
  a.id = "key_a";
  a.owner = "acme";
  a.plan = "team";
  b = a;
  b.id = "key_b";
  c = a;
  c.id = "key_c";
  c.owner = "other";
  AuthKey ka(a), kb(b), kc(c);
  auto pol = resolve_policy(ka, cfg);
  EXPECT_TRUE(pol.by_owner);
  EXPECT_TRUE(take(limiter, ka, pol)->allowed);
  EXPECT_TRUE(take(limiter, kb, pol)->allowed);
  EXPECT_TRUE(take(limiter, ka, pol)->allowed);
  EXPECT_EQ(take(limiter, kb, pol)->remaining, 0u);
  EXPECT_FALSE(take(limiter, ka, pol)->allowed);
  EXPECT_TRUE(take(limiter, kc, resolve_policy(kc, cfg))->allowed);  // another owner
}

TEST(RateLimiter, PolicyResolution) {
  Config cfg;
  cfg.plans["free"] = Plan{"free", std::nullopt, Plan::Scope::key, false, "no"};
  cfg.plans["unlimited"] = Plan{"unlimited", std::nullopt, Plan::Scope::key, true, {}};
  KeyRecord r;
  r.id = "key_x";
  EXPECT_EQ(resolve_policy(AuthKey(r), cfg).plan->name, "default");
  EXPECT_EQ(resolve_policy(AuthKey(r), cfg).rate->requests, 60u);
  r.plan = "gone";  // plan removed by a reload: the default plan applies
  EXPECT_EQ(resolve_policy(AuthKey(r), cfg).plan->name, "default");
  r.plan = "unlimited";
  EXPECT_FALSE(resolve_policy(AuthKey(r), cfg).rate.has_value());
  r.rate = rate(7, 1s);  // a key's own rate wins over its plan's
  EXPECT_EQ(resolve_policy(AuthKey(r), cfg).rate->requests, 7u);
  ManualClock clock;
  RateLimiter limiter(clock);
  r.rate.reset();
  EXPECT_FALSE(take(limiter, AuthKey(r), resolve_policy(AuthKey(r), cfg)).has_value());
}

TEST(TokenBucket, ExactUnderContention) {
  // 8 threads hammer one key while time moves: admitted <= capacity + elapsed * rate.
  ManualClock clock;
  BucketTable t(clock);
  const Rate r = rate(1000, 1s, 50);  // 1 token per ms, burst 50
  std::atomic<std::uint64_t> admitted{0};
  std::atomic<bool> go{false};
  std::vector<std::thread> threads;
  for (int i = 0; i < 8; ++i) {
    threads.emplace_back([&] {
      while (!go) {
      }
      for (int n = 0; n < 20'000; ++n)
        if (t.take("hot", r).allowed) admitted.fetch_add(1, std::memory_order_relaxed);
    });
  }
  std::int64_t start = clock.now_ns();
  go = true;
  std::thread ticker([&] {
    for (int i = 0; i < 200; ++i) {
      clock.advance(std::chrono::microseconds(250));
      std::this_thread::yield();
    }
  });
  for (auto& th : threads) th.join();
  ticker.join();
  double elapsed_ms = static_cast<double>(clock.now_ns() - start) / 1e6;
  EXPECT_LE(static_cast<double>(admitted.load()), 50 + elapsed_ms * 1.0);
  EXPECT_GE(admitted.load(), 50u);
}
