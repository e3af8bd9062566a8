// The Redis rate-limit backend against a real redis-server (started per test
// on a free loopback port, no persistence, killed after): the GCRA script,
// exact admission counts across connections, the deny cache, NOSCRIPT,
// on_error and the circuit breaker. Waits are on observable state, bounded.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <charconv>
#include <latch>
#include <mutex>
#include <thread>

#include <boost/asio/bind_executor.hpp>
#include <boost/asio/io_context.hpp>

#include "keygate/config/values.hpp"
#include "keygate/ratelimit/redis_backend.hpp"
#include "ratelimit/gcra_script.hpp"
#include "support/redis_server.hpp"

using namespace keygate;
using namespace std::chrono_literals;
namespace asio = boost::asio;
using keygate::testing::RedisServer;
using Source = RateOutcome::Source;

namespace {

template <class Pred>
bool run_until(asio::io_context& ioc, Pred pred, std::chrono::milliseconds limit = 10s) {
  auto deadline = std::chrono::steady_clock::now() + limit;
  while (!pred()) {
    if (std::chrono::steady_clock::now() >= deadline) return false;
    if (ioc.stopped()) ioc.restart();
    ioc.run_one_for(10ms);
  }
  return true;
}

// One backend on its own io_context: the shape of one I/O thread of a replica.
struct Replica {
  Replica(const std::string& url, RedisConfig::OnError on_error, RateLimiter& local,
          const Clock& clock, std::chrono::milliseconds timeout = 1000ms,
          std::chrono::milliseconds connect_timeout = 300ms)
      : backend(ioc.get_executor(), settings(url, on_error, timeout, connect_timeout), local,
                clock) {
    backend.start();
  }
  RedisBackend::Settings settings(const std::string& url, RedisConfig::OnError on_error,
                                  std::chrono::milliseconds timeout,
                                  std::chrono::milliseconds connect_timeout) {
    RedisBackend::Settings s;
    EXPECT_TRUE(parse_redis_url(url, s.redis));
    s.redis.timeout = timeout;
    s.redis.on_error = on_error;
    s.connect_timeout = connect_timeout;
    s.reconnect_min = 10ms;
    s.reconnect_max = 100ms;
    s.breaker = {3, 100ms, 400ms};
    s.on_event = [this](std::string_view e, std::string_view detail) {
      events.push_back(std::string(e) + ":" + std::string(detail));
    };
    return s;
  }
  bool wait_connected() {
    return run_until(ioc, [&] { return backend.connected(); });
  }
  // try_decide, then the asynchronous answer if it had none.
  RateOutcome decide(const RateQuery& q) {
    if (auto o = backend.try_decide(q)) return *o;
    std::optional<RateOutcome> out;
    backend.async_decide(q, asio::bind_executor(ioc, [&](RateOutcome o) { out = std::move(o); }));
    EXPECT_TRUE(run_until(ioc, [&] { return out.has_value(); }));
    return out.value_or(RateOutcome{});
  }

  asio::io_context ioc;
  std::vector<std::string> events;
  RedisBackend backend;
};

struct Policy {
  explicit Policy(Rate r, bool by_owner = false)
      : plan{"p", r, by_owner ? Plan::Scope::owner : Plan::Scope::key, true, {}},
        policy{&plan, r, by_owner} {}
  RateQuery take(std::string_view key, std::string_view owner = "acme") const {
    return {policy, key, owner, true};
  }
  RateQuery look(std::string_view key, std::string_view owner = "acme") const {
    return {policy, key, owner, false};
  }
  Plan plan;
  RatePolicy policy;
};

const Rate k30PerMinute{30, 1min, 30};

class RedisBackendTest : public ::testing::Test {
 protected:
  SteadyClock clock;
  RateLimiter local{clock};
  RedisServer srv;
  std::unique_ptr<Replica> replica(RedisConfig::OnError mode = RedisConfig::OnError::closed,
                                   std::chrono::milliseconds timeout = 1000ms) {
    auto r = std::make_unique<Replica>(srv.url(), mode, local, clock, timeout);
    EXPECT_TRUE(r->wait_connected()) << ::testing::PrintToString(r->events);
    return r;
  }
  long long pttl(const std::string& key) {
    auto r = srv.command({"PTTL", key});
    return r && r->type == REDIS_REPLY_INTEGER ? r->integer : -100;
  }
};

}  // namespace

TEST_F(RedisBackendTest, ScriptLoadAnswersTheShaWeSend) {
  auto r = srv.command({"SCRIPT", "LOAD", std::string(redis::gcra_script())});
  ASSERT_TRUE(r);
  ASSERT_EQ(r->type, REDIS_REPLY_STRING) << r->str;
  EXPECT_EQ(std::string(r->str, r->len), redis::gcra_script_sha1());
}

// Three "replicas" (each its own thread, io_context and connection) fire 40
// pipelined requests each at one key at the same moment: exactly 30 pass.
TEST_F(RedisBackendTest, ExactlyTheBurstIsAdmittedAcrossConcurrentConnections) {
  for (bool by_owner : {false, true}) {
    Policy p(k30PerMinute, by_owner);
    constexpr int kReplicas = 3, kEach = 40;
    std::vector<std::unique_ptr<Replica>> replicas;
    for (int i = 0; i < kReplicas; ++i) replicas.push_back(replica());
    std::atomic<int> allowed{0}, denied{0}, other{0};
    std::latch go(kReplicas);
    std::vector<std::thread> threads;
    for (int i = 0; i < kReplicas; ++i) {
      threads.emplace_back([&, i] {
        Replica& r = *replicas[i];
        // Owner scope: every replica uses another key of the same owner.
        std::string key = by_owner ? "key_" + std::to_string(i) : "key_shared";
        int done = 0;
        auto count = [&](const RateOutcome& o) {
          ++done;
          if (o.unavailable || !o.decision)
            ++other;
          else if (o.decision->allowed)
            ++allowed;
          else
            ++denied;
        };
        go.arrive_and_wait();
        for (int n = 0; n < kEach; ++n) {
          if (auto o = r.backend.try_decide(p.take(key))) {
            count(*o);
            continue;
          }
          r.backend.async_decide(p.take(key),
                                 asio::bind_executor(r.ioc, [&](RateOutcome o) { count(o); }));
        }
        run_until(r.ioc, [&] { return done == kEach; });
      });
    }
    for (auto& t : threads) t.join();
    EXPECT_EQ(allowed.load(), 30) << "by_owner=" << by_owner;
    EXPECT_EQ(denied.load(), kReplicas * kEach - 30);
    EXPECT_EQ(other.load(), 0);
    std::string bucket = RedisBackend::bucket_name(by_owner, by_owner ? "acme" : "key_shared");
    EXPECT_GT(pttl(bucket), 58'000);  // empty: full again in a minute
    EXPECT_LE(pttl(bucket), 60'000);
  }
}

// The same sequence on the shared bucket and on the local one (whose clock
// stands still): the same admissions and remaining counts; reset and retry
// differ only by the time that passed on Redis' clock during the test. The
// deny cache dates Redis' answer from when the command was *sent* (so a cached
// refusal never outlives Redis' own), which ages its answers by up to one more
// round trip: the one that filled it.
TEST_F(RedisBackendTest, DecisionsEqualTheLocalBucket) {
  auto r = replica();
  ManualClock manual;
  BucketTable table(manual);
  const Rate rate{5, 1min, 0};  // a token per 12 s
  Policy p(rate);
  auto start = std::chrono::steady_clock::now();
  std::int64_t last_round_trip = 0;
  for (int i = 0; i < 8; ++i) {
    auto sent = std::chrono::steady_clock::now();
    RateOutcome o = r->decide(p.take("key_eq"));
    auto now = std::chrono::steady_clock::now();
    std::int64_t elapsed = (now - start).count();
    if (o.source == Source::shared)
      last_round_trip = (now - sent).count();
    else
      elapsed += last_round_trip;
    Decision want = table.take("key_eq", rate);
    ASSERT_TRUE(o.decision) << i;
    const Decision& got = *o.decision;
    EXPECT_EQ(got.allowed, want.allowed) << i;
    EXPECT_EQ(got.remaining, want.remaining) << i;
    EXPECT_EQ(got.limit, want.limit);
    EXPECT_EQ(got.window_ns, want.window_ns);
    EXPECT_LE(got.reset_ns, want.reset_ns) << i;
    EXPECT_GE(got.reset_ns, want.reset_ns - elapsed) << i;
    EXPECT_LE(got.retry_ns, want.retry_ns) << i;
    EXPECT_GE(got.retry_ns, want.retry_ns - elapsed) << i;
    // The 5th request takes the last token: from then on the cache answers.
    EXPECT_EQ(o.source, i < 5 ? Source::shared : Source::cache) << i;
  }
  // A look at a fresh bucket: full, and it creates nothing.
  RateOutcome look = r->decide(p.look("key_fresh"));
  ASSERT_TRUE(look.decision);
  EXPECT_TRUE(look.decision->allowed);
  EXPECT_EQ(look.decision->remaining, 5u);
  EXPECT_EQ(look.decision->reset_ns, 0);
  auto exists = srv.command({"EXISTS", RedisBackend::bucket_name(false, "key_fresh")});
  EXPECT_EQ(exists->integer, 0);
}

// Time passing on the shared bucket, simulated by moving its stored TAT back
// (the limit cannot refill during the test): it refills like the local one.
TEST_F(RedisBackendTest, RefillsLikeTheLocalBucket) {
  auto r = replica();
  ManualClock manual;
  BucketTable table(manual);
  const Rate rate{5, 1min, 0};
  Policy p(rate);
  for (int i = 0; i < 4; ++i) {
    r->decide(p.take("key_refill"));
    table.take("key_refill", rate);
  }
  const std::string bucket = RedisBackend::bucket_name(false, "key_refill");
  auto v = srv.command({"GET", bucket});
  ASSERT_TRUE(v && v->type == REDIS_REPLY_STRING);
  std::string value(v->str, v->len);
  auto space = value.find(' ');
  std::int64_t tat = 0;
  std::from_chars(value.data(), value.data() + space, tat);
  EXPECT_EQ(value.substr(space), " 12000000000 5");  // the shape it was written with
  tat -= 30'000'000'000;                             // 30 s later: 2.5 tokens back
  srv.command({"SET", bucket, std::to_string(tat) + value.substr(space), "PX", "60000"});
  manual.advance(30s);
  RateOutcome o = r->decide(p.take("key_refill"));
  Decision want = table.take("key_refill", rate);
  ASSERT_TRUE(o.decision);
  EXPECT_TRUE(o.decision->allowed);
  EXPECT_EQ(o.decision->remaining, want.remaining);
  EXPECT_EQ(want.remaining, 2u);
}

TEST_F(RedisBackendTest, ARateChangeKeepsTheTokensHeld) {
  auto r = replica();
  ManualClock manual;
  BucketTable table(manual);
  const Rate before{10, 1min, 0}, after{20, 1min, 20};
  for (int i = 0; i < 3; ++i) {
    r->decide(Policy(before).take("key_reshape"));
    table.take("key_reshape", before);
  }
  RateOutcome o = r->decide(Policy(after).take("key_reshape"));
  Decision want = table.take("key_reshape", after);
  ASSERT_TRUE(o.decision);
  EXPECT_EQ(o.decision->limit, 20u);
  EXPECT_EQ(o.decision->remaining, want.remaining);
  EXPECT_EQ(want.remaining, 6u);  // 7 tokens held, one taken
}

TEST_F(RedisBackendTest, BucketsExpireWhenFull) {
  auto r = replica();
  Policy p(k30PerMinute);  // a token per 2 s
  r->decide(p.take("key_ttl"));
  long long one = pttl(RedisBackend::bucket_name(false, "key_ttl"));
  EXPECT_GT(one, 0);
  EXPECT_LE(one, 2000);
}

TEST_F(RedisBackendTest, ScriptFlushIsAnsweredByOneReload) {
  auto r = replica();
  Policy p(k30PerMinute);
  EXPECT_EQ(r->decide(p.take("key_ns")).decision->remaining, 29u);
  auto flushed = srv.command({"SCRIPT", "FLUSH"});
  ASSERT_TRUE(flushed && flushed->type == REDIS_REPLY_STATUS);
  RateOutcome o = r->decide(p.take("key_ns"));
  ASSERT_TRUE(o.decision);
  EXPECT_EQ(o.source, Source::shared);
  EXPECT_EQ(o.decision->remaining, 28u);
  EXPECT_EQ(r->decide(p.take("key_ns")).decision->remaining, 27u);
  EXPECT_EQ(r->backend.stats().script_loads, 1u);
  EXPECT_EQ(srv.calls("script|load"), 2);  // on connect, and after the flush
  EXPECT_EQ(r->backend.stats().failures, 0u);
}

TEST_F(RedisBackendTest, AKeyWithoutTokensCostsNoRoundTrip) {
  auto r = replica();
  srv.command({"CONFIG", "RESETSTAT"});
  Policy p(Rate{3, 1h, 0});
  int allowed = 0;
  for (int i = 0; i < 10; ++i) allowed += r->decide(p.take("key_rt")).decision->allowed;
  EXPECT_EQ(allowed, 3);
  EXPECT_EQ(srv.calls("evalsha"), 3);  // the third took the last token: the rest stayed local
  auto st = r->backend.stats();
  EXPECT_EQ(st.round_trips, 3u);
  EXPECT_EQ(st.cache_denials, 7u);
}

// Redis stops answering (SIGSTOP: the connection stays open): after the
// command timeout each on_error mode answers as SPEC §8 says.
TEST_F(RedisBackendTest, TimeoutsFallBackAsOnErrorSays) {
  using E = RedisConfig::OnError;
  auto local_mode = replica(E::local, 50ms);
  auto open_mode = replica(E::open, 50ms);
  auto closed_mode = replica(E::closed, 50ms);
  Policy p(k30PerMinute);
  srv.pause();

  RateOutcome l = local_mode->decide(p.take("key_to"));
  EXPECT_EQ(l.source, Source::fallback);
  ASSERT_TRUE(l.decision);
  EXPECT_TRUE(l.decision->allowed);
  EXPECT_EQ(l.decision->remaining, 29u);
  // … and it is this replica's own bucket that counts.
  EXPECT_EQ(local.peek(p.policy, "key_to", "acme")->remaining, 29u);

  RateOutcome o = open_mode->decide(p.take("key_to"));
  EXPECT_EQ(o.source, Source::fallback);
  ASSERT_TRUE(o.decision);
  EXPECT_TRUE(o.decision->allowed);
  EXPECT_FALSE(o.unavailable);

  RateOutcome c = closed_mode->decide(p.take("key_to"));
  EXPECT_EQ(c.source, Source::fallback);
  EXPECT_TRUE(c.unavailable);
  EXPECT_FALSE(c.decision);
  // A look (a 403's headers) is never turned into a 503.
  RateOutcome cl = closed_mode->decide(p.look("key_to"));
  EXPECT_FALSE(cl.unavailable);

  for (auto* r : {local_mode.get(), open_mode.get(), closed_mode.get()}) {
    EXPECT_GE(r->backend.stats().failures, 1u);
    // Timed out: the connection is dropped and every further decision answers at
    // once, without a round trip, while Redis stays silent.
    auto sent = r->backend.stats().round_trips;
    for (int i = 0; i < 5; ++i) {
      auto now = r->backend.try_decide(p.take("key_to2"));
      ASSERT_TRUE(now) << "a decision waited for a timeout";
      EXPECT_EQ(now->source, Source::fallback);
    }
    EXPECT_EQ(r->backend.stats().round_trips, sent);
  }
  srv.resume();
  // Back: the shared bucket decides again.
  EXPECT_TRUE(local_mode->wait_connected());
  EXPECT_EQ(local_mode->decide(p.take("key_back")).source, Source::shared);
}

// Error replies on a live connection (Redis out of memory refuses the
// script's write): three failures open the breaker; while open, decisions
// answer at once; after the back-off one probe goes and its success closes it.
TEST_F(RedisBackendTest, TheCircuitBreakerOpensAndCloses) {
  auto r = replica(RedisConfig::OnError::local);
  Policy p(k30PerMinute);
  ASSERT_EQ(r->decide(p.take("key_cb")).source, Source::shared);
  srv.command({"CONFIG", "SET", "maxmemory", "1"});
  for (int i = 0; i < 3; ++i) {
    RateOutcome o = r->decide(p.take("key_cb"));
    EXPECT_EQ(o.source, Source::fallback) << i;
  }
  EXPECT_EQ(r->backend.breaker_state(), CircuitBreaker::State::open);
  EXPECT_EQ(r->backend.stats().breaker, CircuitBreaker::State::open);  // what /metrics reads
  EXPECT_EQ(r->backend.stats().breaker_opened, 1u);
  EXPECT_TRUE(r->backend.connected());  // the connection is fine; Redis refuses
  auto sent = r->backend.stats().round_trips;
  auto now = r->backend.try_decide(p.take("key_cb"));
  ASSERT_TRUE(now);
  EXPECT_EQ(now->source, Source::fallback);
  EXPECT_EQ(r->backend.stats().round_trips, sent);

  srv.command({"CONFIG", "SET", "maxmemory", "0"});
  bool shared = false;
  auto deadline = std::chrono::steady_clock::now() + 5s;
  while (!shared && std::chrono::steady_clock::now() < deadline) {
    shared = r->decide(p.take("key_cb")).source == Source::shared;
    if (!shared)
      run_until(
          r->ioc, [] { return false; }, 20ms);
  }
  EXPECT_TRUE(shared);
  EXPECT_EQ(r->backend.breaker_state(), CircuitBreaker::State::closed);
  EXPECT_EQ(r->backend.stats().breaker, CircuitBreaker::State::closed);
}

TEST_F(RedisBackendTest, AKilledRedisFallsBackAndItsReturnIsPickedUp) {
  auto r = replica(RedisConfig::OnError::local);
  Policy p(k30PerMinute);
  for (int i = 0; i < 5; ++i) r->decide(p.take("key_kill"));
  EXPECT_TRUE(r->backend.stats().connected);
  EXPECT_EQ(r->backend.stats().shared, 5u);
  srv.stop();
  ASSERT_TRUE(run_until(r->ioc, [&] { return !r->backend.connected(); }));
  ASSERT_TRUE(run_until(r->ioc, [&] { return !r->backend.stats().connected; }));
  auto now = r->backend.try_decide(p.take("key_kill"));
  ASSERT_TRUE(now);
  EXPECT_EQ(now->source, Source::fallback);
  EXPECT_EQ(now->decision->remaining, 29u);  // the local bucket had not been used
  srv.start();                               // same port, empty (no persistence)
  ASSERT_TRUE(r->wait_connected());
  RateOutcome o = r->decide(p.take("key_kill"));
  EXPECT_EQ(o.source, Source::shared);
  EXPECT_EQ(o.decision->remaining, 29u);
  ASSERT_GE(r->events.size(), 3u);  // connected, unreachable, connected
  EXPECT_EQ(r->events[0], "connected:");
  EXPECT_EQ(r->events[1].rfind("unreachable:", 0), 0u) << r->events[1];
  EXPECT_EQ(r->events.back(), "connected:");
}

// Each command times out on its own deadline, also when an earlier command
// with a longer one (the setup commands use connect_timeout) armed the timer:
// a hung Redis right after connecting costs 50 ms, not the connect timeout.
TEST_F(RedisBackendTest, ACommandTimesOutOnItsOwnDeadlineRightAfterConnect) {
  Replica r(srv.url(), RedisConfig::OnError::open, local, clock, 50ms, 10'000ms);
  ASSERT_TRUE(r.wait_connected()) << ::testing::PrintToString(r.events);
  Policy p(k30PerMinute);
  srv.pause();
  std::optional<RateOutcome> out;
  ASSERT_FALSE(r.backend.try_decide(p.take("key_deadline")));
  r.backend.async_decide(p.take("key_deadline"),
                         asio::bind_executor(r.ioc, [&](RateOutcome o) { out = o; }));
  EXPECT_TRUE(run_until(
      r.ioc, [&] { return out.has_value(); }, 5s));
  srv.resume();
  ASSERT_TRUE(out);
  EXPECT_EQ(out->source, Source::fallback);
  EXPECT_EQ(r.backend.stats().failures, 1u);
}

// A reload: on_error and the command timeout apply from the next decision.
TEST_F(RedisBackendTest, AdoptChangesOnErrorAndTimeout) {
  auto r = replica(RedisConfig::OnError::closed, 1000ms);
  Policy p(k30PerMinute);
  RedisConfig next;
  next.on_error = RedisConfig::OnError::open;
  next.timeout = 50ms;
  r->backend.adopt(next);
  srv.pause();
  // The old 1 s timeout would make this wait for the run_until limit below.
  std::optional<RateOutcome> out;
  ASSERT_FALSE(r->backend.try_decide(p.take("key_adopt")));
  r->backend.async_decide(p.take("key_adopt"),
                          asio::bind_executor(r->ioc, [&](RateOutcome o) { out = o; }));
  ASSERT_TRUE(run_until(
      r->ioc, [&] { return out.has_value(); }, 500ms));
  EXPECT_EQ(out->source, Source::fallback);
  EXPECT_FALSE(out->unavailable);  // open now, not closed
  EXPECT_TRUE(out->decision->allowed);
  srv.resume();
}

TEST_F(RedisBackendTest, StopAnswersPendingDecisionsWithTheFallback) {
  auto r = replica(RedisConfig::OnError::open);
  Policy p(k30PerMinute);
  srv.pause();
  ASSERT_FALSE(r->backend.try_decide(p.take("key_stop")));
  std::optional<RateOutcome> out;
  r->backend.async_decide(p.take("key_stop"),
                          asio::bind_executor(r->ioc, [&](RateOutcome o) { out = o; }));
  r->ioc.poll();
  r->backend.stop();
  ASSERT_TRUE(run_until(
      r->ioc, [&] { return out.has_value(); }, 1s));
  EXPECT_EQ(out->source, Source::fallback);
  EXPECT_TRUE(out->decision->allowed);
  srv.resume();
}

TEST(RedisBackendAuth, PasswordAndDatabaseComeFromTheUrl) {
  RedisServer srv({"--requirepass", "pa55word"});
  SteadyClock clock;
  RateLimiter local(clock);
  Policy p(k30PerMinute);
  Replica good(srv.url(":pa55word@", 3), RedisConfig::OnError::closed, local, clock);
  ASSERT_TRUE(good.wait_connected()) << ::testing::PrintToString(good.events);
  EXPECT_EQ(good.decide(p.take("key_db")).source, Source::shared);
  auto in3 = srv.commands({{"AUTH", "pa55word"},
                           {"SELECT", "3"},
                           {"EXISTS", RedisBackend::bucket_name(false, "key_db")}});
  ASSERT_TRUE(in3);
  EXPECT_EQ(in3->integer, 1);

  Replica bad(srv.url(":wrong-secret@", 3), RedisConfig::OnError::closed, local, clock);
  ASSERT_TRUE(run_until(bad.ioc, [&] { return !bad.events.empty(); }));
  EXPECT_FALSE(bad.backend.connected());
  EXPECT_NE(bad.events[0].find("AUTH failed"), std::string::npos) << bad.events[0];
  EXPECT_EQ(bad.events[0].find("wrong-secret"), std::string::npos) << bad.events[0];
  EXPECT_TRUE(bad.decide(p.take("key_db")).unavailable);
}

TEST(RedisBackendResolve, AHostNameIsResolvedOffTheIoThread) {
  RedisServer srv;
  SteadyClock clock;
  RateLimiter local(clock);
  // localhost may list ::1 first, where nothing listens: the next address is tried.
  Replica r("redis://localhost:" + std::to_string(srv.port()) + "/0", RedisConfig::OnError::closed,
            local, clock);
  ASSERT_TRUE(r.wait_connected()) << ::testing::PrintToString(r.events);
  EXPECT_EQ(r.decide(Policy(k30PerMinute).take("key_dns")).source, Source::shared);
}

// A route's cost (SPEC §11) takes that many tokens from the shared bucket, all
// or none, as the local bucket does.
TEST_F(RedisBackendTest, ACostTakesThatManyTokensLikeTheLocalBucket) {
  auto r = replica();
  const Rate rate{10, 1h, 0};
  Policy p(rate);
  RateQuery q = p.take("key_cost");
  q.cost = 4;
  for (std::uint64_t want : {6u, 2u}) {
    RateOutcome o = r->decide(q);
    ASSERT_TRUE(o.decision);
    EXPECT_TRUE(o.decision->allowed);
    EXPECT_EQ(o.decision->remaining, want);
    EXPECT_EQ(o.source, Source::shared);
  }
  RateOutcome refused = r->decide(q);  // 2 left, 4 asked: nothing taken
  ASSERT_TRUE(refused.decision);
  EXPECT_FALSE(refused.decision->allowed);
  EXPECT_EQ(refused.decision->remaining, 2u);
  q.cost = 2;  // the 2 left can still be taken (the refusal cached no denial)
  RateOutcome last = r->decide(q);
  ASSERT_TRUE(last.decision);
  EXPECT_TRUE(last.decision->allowed);
  EXPECT_EQ(last.decision->remaining, 0u);
}

// ---- Credits (SPEC §11): spent in the same script as the tokens, shared by replicas.

namespace {

CreditQuery credits(std::string_view key, std::int64_t balance, std::int64_t version = 1,
                    std::int64_t cost = 1) {
  return CreditQuery{key, cost, balance, version, 0, 0, 0};
}

RateQuery with_credits(RateQuery q, CreditQuery c) {
  q.cost = static_cast<std::uint32_t>(c.cost);
  q.credits = c;
  return q;
}

std::string hget(const RedisServer& srv, const std::string& key, const std::string& field) {
  auto r = srv.command({"HGET", key, field});
  return r && r->type == REDIS_REPLY_STRING ? std::string(r->str, r->len) : "";
}

std::int64_t unix_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

}  // namespace

// Three replicas, 10 requests each at the same moment, on a key with 10
// credits and 30 tokens: exactly 10 are admitted, each sees its own remaining
// balance (9..0, once each), the 20 others are refused for credits and take
// no token.
TEST_F(RedisBackendTest, CreditsAreSpentExactlyAcrossConcurrentConnections) {
  Policy p(k30PerMinute);
  constexpr int kReplicas = 3, kEach = 10;
  std::vector<std::unique_ptr<Replica>> replicas;
  for (int i = 0; i < kReplicas; ++i) replicas.push_back(replica());
  std::mutex mu;
  std::vector<std::int64_t> remaining;
  int refused = 0, other = 0;
  std::latch go(kReplicas);
  std::vector<std::thread> threads;
  for (int i = 0; i < kReplicas; ++i) {
    threads.emplace_back([&, i] {
      Replica& r = *replicas[i];
      int done = 0;
      auto count = [&](const RateOutcome& o) {
        ++done;
        std::lock_guard lock(mu);
        if (o.source != Source::shared || !o.credits || !o.decision || !o.decision->allowed)
          ++other;
        else if (o.credits->allowed)
          remaining.push_back(o.credits->remaining);
        else
          ++refused;
      };
      const RateQuery q = with_credits(p.take("key_paid"), credits("key_paid", 10));
      go.arrive_and_wait();
      for (int n = 0; n < kEach; ++n) {
        if (auto o = r.backend.try_decide(q)) {
          count(*o);
          continue;
        }
        r.backend.async_decide(q, asio::bind_executor(r.ioc, [&](RateOutcome o) { count(o); }));
      }
      run_until(r.ioc, [&] { return done == kEach; });
    });
  }
  for (auto& t : threads) t.join();
  std::sort(remaining.begin(), remaining.end());
  EXPECT_EQ(remaining, (std::vector<std::int64_t>{0, 1, 2, 3, 4, 5, 6, 7, 8, 9}));
  EXPECT_EQ(refused, 20);
  EXPECT_EQ(other, 0);
  EXPECT_EQ(hget(srv, RedisBackend::credits_name("key_paid"), "b"), "0");
  auto look = replicas[0]->decide(p.look("key_paid"));
  ASSERT_TRUE(look.decision);
  EXPECT_EQ(look.decision->remaining, 20u);  // tokens: only the paid requests took one
}

// Tokens refused spend no credits: all or none.
TEST_F(RedisBackendTest, ARequestRefusedTokensSpendsNoCredits) {
  Policy p(Rate{3, 1h, 3});
  auto r = replica();
  const RateQuery q = with_credits(p.take("k"), credits("k", 10));
  int admitted = 0, limited = 0;
  for (int i = 0; i < 5; ++i) {
    RateOutcome o = r->decide(q);
    ASSERT_TRUE(o.decision);
    // (Once Redis said "no token", the deny cache answers: no credits asked.)
    if (o.source != Source::cache) {
      ASSERT_TRUE(o.credits);
      EXPECT_TRUE(o.credits->allowed);
    }
    (o.decision->allowed ? admitted : limited)++;
  }
  EXPECT_EQ(admitted, 3);
  EXPECT_EQ(limited, 2);
  EXPECT_EQ(hget(srv, RedisBackend::credits_name("k"), "b"), "7");
}

// The shared balance is seeded once, kept while the version is the same (a
// replica's older view does not reset it), and replaced by a newer version
// (an operator set a new balance); an older version never replaces a newer.
TEST_F(RedisBackendTest, TheSharedBalanceIsSeededOnceAndReplacedByANewerVersion) {
  Policy p(k30PerMinute);
  auto r = replica();
  auto spend = [&](std::int64_t balance, std::int64_t version, std::int64_t cost = 1) {
    RateOutcome o = r->decide(with_credits(p.take("k"), credits("k", balance, version, cost)));
    EXPECT_TRUE(o.credits && o.credits->allowed);
    return o.credits ? o.credits->remaining : -1;
  };
  EXPECT_EQ(spend(10, 1), 9);
  EXPECT_EQ(spend(10, 1), 8);  // the seed of version 1 is not applied again
  EXPECT_EQ(spend(100, 2), 99);
  EXPECT_EQ(spend(10, 1), 98);  // a replica that has not seen version 2 yet
  EXPECT_EQ(spend(100, 2, 5), 93);
  EXPECT_EQ(hget(srv, RedisBackend::credits_name("k"), "v"), "2");
  // Not enough for the cost: refused, nothing spent, the tokens only looked at.
  RateOutcome o = r->decide(with_credits(p.take("k"), credits("k", 100, 2, 94)));
  ASSERT_TRUE(o.credits && o.decision);
  EXPECT_FALSE(o.credits->allowed);
  EXPECT_EQ(o.credits->remaining, 93);
  EXPECT_EQ(o.decision->remaining, 30u - 4u - 5u);  // four requests of cost 1, one of 5
}

// A refill that is due is applied on the grid by Redis' clock: the balance
// goes up to the amount, the next refill is the grid's next point.
TEST_F(RedisBackendTest, CreditsRefillOnTheGridByRedisTime) {
  Policy p(k30PerMinute);
  auto r = replica();
  const std::int64_t hour = 3'600'000, start = unix_ms() - 7 * hour / 2;  // 3.5 intervals ago
  CreditQuery c{"k", 1, 0, 1, start, 5, hour};
  RateOutcome o = r->decide(with_credits(p.take("k"), c));
  ASSERT_TRUE(o.credits);
  EXPECT_TRUE(o.credits->allowed);
  EXPECT_EQ(o.credits->remaining, 4);
  EXPECT_EQ(o.credits->next_refill, start + 4 * hour);
  EXPECT_EQ(hget(srv, RedisBackend::credits_name("k"), "a"), std::to_string(start + 3 * hour));
  // No refill: spent to zero, then refused with no next refill.
  CreditQuery once{"once", 1, 1, 1, 0, 0, 0};
  EXPECT_TRUE(r->decide(with_credits(p.take("once"), once)).credits->allowed);
  RateOutcome no = r->decide(with_credits(p.take("once"), once));
  ASSERT_TRUE(no.credits);
  EXPECT_FALSE(no.credits->allowed);
  EXPECT_EQ(no.credits->next_refill, 0);
}

// An unlimited plan still spends its credits in Redis: no bucket, no decision.
TEST_F(RedisBackendTest, AnUnlimitedPlanSpendsSharedCredits) {
  Policy p(k30PerMinute);
  RateQuery q = p.take("k");
  q.policy.rate.reset();
  q = with_credits(q, credits("k", 2));
  auto r = replica();
  for (std::int64_t left : {1, 0}) {
    RateOutcome o = r->decide(q);
    EXPECT_EQ(o.source, Source::shared);
    EXPECT_FALSE(o.decision);
    ASSERT_TRUE(o.credits);
    EXPECT_TRUE(o.credits->allowed);
    EXPECT_EQ(o.credits->remaining, left);
  }
  RateOutcome o = r->decide(q);
  ASSERT_TRUE(o.credits);
  EXPECT_FALSE(o.credits->allowed);
}
