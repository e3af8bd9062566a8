// The rate-limit decision on the Redis backend beside the local one, against
// a real redis-server on loopback (started here, killed after):
//   Local          the CAS bucket table (the baseline);
//   RedisOneByOne  one decision at a time: the round-trip latency;
//   RedisInFlight  `range` decisions in flight on one connection (pipelined):
//                  the cost per decision when an I/O thread is busy;
//   RedisCached    a key without tokens: answered by the deny cache.
// Counters: round_trips per decision (EVALSHA sent / decisions).
#include <benchmark/benchmark.h>

#include <boost/asio/bind_executor.hpp>
#include <boost/asio/io_context.hpp>

#include "keygate/config/values.hpp"
#include "keygate/ratelimit/redis_backend.hpp"
#include "support/redis_server.hpp"

using namespace keygate;
namespace asio = boost::asio;

namespace {

SteadyClock clock_;
const Rate kNeverDenies{1'000'000'000, std::chrono::seconds(1), 0};
const Plan kPlan{"bench", kNeverDenies, Plan::Scope::key, true, {}};
const RatePolicy kPolicy{&kPlan, kNeverDenies, false};

struct Fixture {
  Fixture() : local(clock_) {
    RedisBackend::Settings s;
    (void)parse_redis_url(server.url(), s.redis);
    s.redis.timeout = std::chrono::milliseconds(1000);
    s.redis.on_error = RedisConfig::OnError::closed;
    backend = std::make_unique<RedisBackend>(ioc.get_executor(), s, local, clock_);
    backend->start();
    for (int i = 0; i < 500 && !backend->connected(); ++i) {
      if (ioc.stopped()) ioc.restart();
      ioc.run_one_for(std::chrono::milliseconds(10));
    }
  }
  testing::RedisServer server;
  asio::io_context ioc;
  RateLimiter local;
  std::unique_ptr<RedisBackend> backend;
};

Fixture& fixture() {
  static Fixture f;  // one server for the whole run
  return f;
}

void report_round_trips(benchmark::State& state, std::uint64_t before) {
  auto sent = fixture().backend->stats().round_trips - before;
  state.counters["round_trips"] =
      benchmark::Counter(static_cast<double>(sent) / static_cast<double>(state.iterations()));
}

void BM_Local(benchmark::State& state) {
  RateLimiter limiter(clock_);
  LocalBackend local(limiter);
  for (auto _ : state) benchmark::DoNotOptimize(local.try_decide({kPolicy, "key_bench", "", true}));
}

void BM_RedisOneByOne(benchmark::State& state) {
  Fixture& f = fixture();
  if (!f.backend->connected()) return state.SkipWithError("redis not connected");
  auto before = f.backend->stats().round_trips;
  for (auto _ : state) {
    RateQuery q{kPolicy, "key_bench", "", true};
    if (f.backend->try_decide(q)) continue;
    bool done = false;
    f.backend->async_decide(q, asio::bind_executor(f.ioc, [&](RateOutcome o) {
                              benchmark::DoNotOptimize(o);
                              done = true;
                            }));
    while (!done) {
      if (f.ioc.stopped()) f.ioc.restart();
      f.ioc.run_one();
    }
  }
  report_round_trips(state, before);
}

void BM_RedisInFlight(benchmark::State& state) {
  Fixture& f = fixture();
  if (!f.backend->connected()) return state.SkipWithError("redis not connected");
  const auto batch = static_cast<int>(state.range(0));
  auto before = f.backend->stats().round_trips;
  for (auto _ : state) {
    int done = 0;
    for (int i = 0; i < batch; ++i) {
      RateQuery q{kPolicy, "key_bench", "", true};
      if (f.backend->try_decide(q)) {
        ++done;
        continue;
      }
      f.backend->async_decide(q, asio::bind_executor(f.ioc, [&](RateOutcome) { ++done; }));
    }
    while (done < batch) {
      if (f.ioc.stopped()) f.ioc.restart();
      f.ioc.run_one();
    }
  }
  state.SetItemsProcessed(state.iterations() * batch);
  auto sent = f.backend->stats().round_trips - before;
  state.counters["round_trips"] = benchmark::Counter(
      static_cast<double>(sent) / static_cast<double>(state.iterations() * batch));
}

void BM_RedisCached(benchmark::State& state) {
  Fixture& f = fixture();
  if (!f.backend->connected()) return state.SkipWithError("redis not connected");
  static const Rate one_per_hour{1, std::chrono::hours(1), 0};
  static const RatePolicy policy{&kPlan, one_per_hour, false};
  // Take the only token (one round trip); from then on the cache answers.
  RateQuery q{policy, "key_empty", "", true};
  if (!f.backend->try_decide(q)) {
    bool done = false;
    f.backend->async_decide(q, asio::bind_executor(f.ioc, [&](RateOutcome) { done = true; }));
    while (!done) f.ioc.run_one();
  }
  auto before = f.backend->stats().round_trips;
  for (auto _ : state) benchmark::DoNotOptimize(f.backend->try_decide(q));
  report_round_trips(state, before);
}

}  // namespace

BENCHMARK(BM_Local);
BENCHMARK(BM_RedisOneByOne)->UseRealTime();
BENCHMARK(BM_RedisInFlight)->Arg(16)->Arg(64)->UseRealTime();
BENCHMARK(BM_RedisCached);
BENCHMARK_MAIN();
