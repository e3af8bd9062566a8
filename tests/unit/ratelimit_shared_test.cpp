// The pure parts of the shared (Redis) backend: the circuit breaker, the
// local deny cache, and the backend-neutral interface on the local backend.
#include <gtest/gtest.h>

#include <random>

#include <boost/asio/bind_executor.hpp>
#include <boost/asio/io_context.hpp>

#include "keygate/ratelimit/backend.hpp"
#include "keygate/ratelimit/circuit_breaker.hpp"
#include "keygate/ratelimit/deny_cache.hpp"

using namespace keygate;
using namespace std::chrono_literals;

namespace {
constexpr std::int64_t kMs = 1'000'000;
constexpr std::int64_t kSec = 1'000'000'000;
}  // namespace

TEST(CircuitBreaker, OpensAfterConsecutiveFailuresOnly) {
  CircuitBreaker b({3, 100ms, 1s});
  std::int64_t t = 0;
  b.failure(t);
  b.failure(t);
  b.success();  // not consecutive any more
  b.failure(t);
  b.failure(t);
  EXPECT_EQ(b.state(), CircuitBreaker::State::closed);
  EXPECT_TRUE(b.allow(t));
  b.failure(t);
  EXPECT_EQ(b.state(), CircuitBreaker::State::open);
  EXPECT_EQ(b.times_opened(), 1u);
  EXPECT_FALSE(b.allow(t));
  EXPECT_FALSE(b.allow(t + 100 * kMs - 1));
}

TEST(CircuitBreaker, OneProbeAfterTheBackoffThenClosesOnSuccess) {
  CircuitBreaker b({1, 100ms, 1s});
  b.failure(0);
  ASSERT_EQ(b.state(), CircuitBreaker::State::open);
  EXPECT_TRUE(b.allow(100 * kMs));  // the probe
  EXPECT_EQ(b.state(), CircuitBreaker::State::half_open);
  EXPECT_FALSE(b.allow(100 * kMs));  // only one in flight
  EXPECT_FALSE(b.allow(500 * kMs));
  b.success();
  EXPECT_EQ(b.state(), CircuitBreaker::State::closed);
  EXPECT_TRUE(b.allow(500 * kMs));
  EXPECT_TRUE(b.allow(500 * kMs));
}

TEST(CircuitBreaker, FailedProbesBackOffTwiceAsLongUpToTheMaximum) {
  CircuitBreaker b({1, 100ms, 300ms});
  std::int64_t t = 0;
  b.failure(t);  // open for 100 ms
  t += 100 * kMs;
  ASSERT_TRUE(b.allow(t));
  b.failure(t);  // probe failed: 200 ms
  EXPECT_FALSE(b.allow(t + 200 * kMs - 1));
  t += 200 * kMs;
  ASSERT_TRUE(b.allow(t));
  b.failure(t);  // 400 ms capped at 300 ms
  EXPECT_FALSE(b.allow(t + 300 * kMs - 1));
  t += 300 * kMs;
  ASSERT_TRUE(b.allow(t));
  b.success();  // and back to 100 ms
  b.failure(t);
  EXPECT_TRUE(b.allow(t + 100 * kMs));
  EXPECT_EQ(b.times_opened(), 4u);
}

TEST(CircuitBreaker, LateFailuresWhileOpenDoNotExtendIt) {
  CircuitBreaker b({1, 100ms, 1s});
  b.failure(0);
  b.failure(50 * kMs);  // a request sent before it opened
  EXPECT_TRUE(b.allow(100 * kMs));
}

namespace {
// What Redis answers, computed by the local bucket (the same GCRA).
Decision redis_take(TokenBucket& bucket, std::int64_t redis_now) {
  return bucket.take(redis_now);
}
const Rate kTenPerMinute{10, 1min, 0};
}  // namespace

TEST(DenyCache, NothingIsCachedWhileTokensRemain) {
  DenyCache cache;
  const BucketShape shape = BucketShape::of(kTenPerMinute);
  TokenBucket bucket(shape);
  Decision d = redis_take(bucket, 0);
  ASSERT_EQ(d.remaining, 9u);
  cache.note("k", shape, d, 0);
  EXPECT_EQ(cache.size(), 0u);
  EXPECT_FALSE(cache.check("k", shape, 0));
}

TEST(DenyCache, TheLastTokenTakenDeniesLocallyUntilTheNextIsDue) {
  DenyCache cache;
  const BucketShape shape = BucketShape::of(kTenPerMinute);  // a token per 6 s
  TokenBucket bucket(shape);
  Decision d;
  for (int i = 0; i < 10; ++i) d = redis_take(bucket, 0);
  ASSERT_TRUE(d.allowed);
  ASSERT_EQ(d.remaining, 0u);
  cache.note("k", shape, d, 0);
  auto c = cache.check("k", shape, 1 * kSec);
  ASSERT_TRUE(c);
  EXPECT_FALSE(c->allowed);
  EXPECT_EQ(c->limit, 10u);
  EXPECT_EQ(c->remaining, 0u);
  EXPECT_EQ(c->retry_ns, 5 * kSec);
  EXPECT_EQ(c->reset_ns, 59 * kSec);
  // Exactly what the bucket itself says at that time.
  Decision truth = bucket.take(1 * kSec);
  EXPECT_FALSE(truth.allowed);
  EXPECT_EQ(c->retry_ns, truth.retry_ns);
  EXPECT_EQ(c->reset_ns, truth.reset_ns);
  // A look (the headers of a 403) is answered too, as allowed with nothing left.
  auto look = cache.check("k", shape, 1 * kSec, false);
  ASSERT_TRUE(look);
  EXPECT_TRUE(look->allowed);
  EXPECT_EQ(look->remaining, 0u);
  EXPECT_EQ(look->retry_ns, 0);
  // Due: ask Redis again (and the entry is gone).
  EXPECT_FALSE(cache.check("k", shape, 6 * kSec));
  EXPECT_EQ(cache.size(), 0u);
}

TEST(DenyCache, ADenialIsCachedFromTheSendTime) {
  DenyCache cache;
  const BucketShape shape = BucketShape::of(kTenPerMinute);
  TokenBucket bucket(shape);
  for (int i = 0; i < 10; ++i) redis_take(bucket, 0);
  // Sent at local 1 s, Redis took it at 1.2 s (its clock reads after the send).
  Decision d = redis_take(bucket, 1200 * kMs);
  ASSERT_FALSE(d.allowed);
  cache.note("k", shape, d, 1 * kSec);
  // The real token is due at 6 s; the cache, counting from the send, stops
  // denying at 5.8 s: it may under-admit by the delay, never over-admit.
  EXPECT_TRUE(cache.check("k", shape, 5800 * kMs - 1));
  EXPECT_FALSE(cache.check("k", shape, 5800 * kMs));
}

TEST(DenyCache, AnotherRateIsAMiss) {
  DenyCache cache;
  const BucketShape shape = BucketShape::of(kTenPerMinute);
  TokenBucket bucket(shape);
  Decision d;
  for (int i = 0; i < 10; ++i) d = redis_take(bucket, 0);
  cache.note("k", shape, d, 0);
  EXPECT_FALSE(cache.check("k", BucketShape::of(Rate{20, 1min, 0}), 0));
  EXPECT_FALSE(cache.check("other", shape, 0));
}

TEST(DenyCache, NeverDeniesWhileTheSharedBucketHasAToken) {
  // Random traffic from one replica against a "Redis" bucket that reads its
  // clock a random delay after each send: whenever the cache denies at local
  // time t, the bucket really holds no token at t.
  std::mt19937_64 rng(42);
  const BucketShape shape = BucketShape::of(Rate{5, 1s, 0});
  TokenBucket bucket(shape);
  DenyCache cache;
  std::int64_t t = 0;
  int cached = 0, asked = 0;
  for (int i = 0; i < 20000; ++i) {
    t += static_cast<std::int64_t>(rng() % (150 * kMs));
    if (auto c = cache.check("k", shape, t)) {
      ASSERT_EQ(bucket.available(t), 0u) << "request " << i;
      ASSERT_GT(c->retry_ns, 0);
      ++cached;
      continue;
    }
    std::int64_t delay = static_cast<std::int64_t>(rng() % (5 * kMs));
    cache.note("k", shape, redis_take(bucket, t + delay), t);
    ++asked;
  }
  EXPECT_GT(cached, 1000);  // the cache does its job…
  EXPECT_GT(asked, 1000);   // …and Redis still decides
}

TEST(DenyCache, ExpiredEntriesAreSweptAsItGrows) {
  DenyCache cache;
  const BucketShape shape = BucketShape::of(Rate{1, 1s, 0});
  Decision last;
  last.allowed = true;
  last.reset_ns = shape.interval_ns;  // took the only token
  for (int i = 0; i < 5000; ++i) cache.note(std::to_string(i), shape, last, i * kSec);
  // Every entry but the most recent ones has expired by the time the last were added.
  EXPECT_LT(cache.size(), 2100u);
}

TEST(LocalBackend, AnswersAtOnceWithTheLocalBucket) {
  ManualClock clock;
  RateLimiter limiter(clock);
  LocalBackend backend(limiter);
  Plan plan{"p", Rate{2, 1h, 0}, Plan::Scope::key, true, {}};
  RatePolicy policy{&plan, plan.rate, false};
  for (std::uint64_t i = 0; i < 3; ++i) {
    auto o = backend.try_decide({policy, "key_a", "owner", true});
    ASSERT_TRUE(o && o->decision);
    EXPECT_EQ(o->decision->allowed, i < 2);
    EXPECT_EQ(o->source, RateOutcome::Source::local);
  }
  // The asynchronous form gives the same answer, on the caller's executor.
  boost::asio::io_context ioc;
  std::optional<RateOutcome> got;
  backend.async_decide({policy, "key_b", "owner", true},
                       boost::asio::bind_executor(ioc, [&](RateOutcome o) { got = o; }));
  EXPECT_FALSE(got);  // never inline
  ioc.run();
  ASSERT_TRUE(got && got->decision);
  EXPECT_TRUE(got->decision->allowed);
  EXPECT_EQ(got->decision->remaining, 1u);
  // Unlimited: no decision at all.
  RatePolicy unlimited{&plan, std::nullopt, false};
  auto u = backend.try_decide({unlimited, "key_a", "owner", true});
  ASSERT_TRUE(u);
  EXPECT_FALSE(u->decision);
}
