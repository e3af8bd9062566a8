// The authentication decision on the request path with 1M keys in the index
// (KEYGATE_BENCH_KEYS=10000000 for 10M): extract the credential -> check
// format and checksum -> hash -> look up -> status checks. Quoted in the
// README; run with `make bench`.
#include <benchmark/benchmark.h>

#include <cstdlib>

#include "keygate/proxy/stages.hpp"

using namespace keygate;
namespace http = boost::beast::http;

namespace {

size_t index_size() {
  const char* v = std::getenv("KEYGATE_BENCH_KEYS");
  return v ? std::strtoul(v, nullptr, 10) : 1'000'000;
}

struct World {
  Config cfg;  // (a named Config: g++ 12 warns falsely on Runtime{Config{}})
  Runtime rt{cfg};
  KeyIndex index;
  std::vector<std::string> hot;   // 1000 keys: their index entries stay in cache
  std::vector<std::string> cold;  // 100k keys spread over the index: mostly cache misses
  World() {
    const size_t n = std::max<size_t>(index_size(), 100'000);
    const size_t cold_every = n / 100'000, hot_every = n / 1000;
    for (size_t i = 0; i < n; ++i) {
      KeyRecord r;
      r.id = "key_" + std::to_string(10'000'000'000'000'000 + i).substr(0, 20);
      r.name = "bench";
      r.owner = "owner-" + std::to_string(i % 1000);
      if (i % cold_every == 0) {  // a real key (format, checksum) to present
        std::string key = rt.key_format.generate();
        r.hash = rt.hasher.hash(key);
        if (i % hot_every == 0) hot.push_back(key);
        cold.push_back(std::move(key));
      } else {  // never presented: any distinct hash will do, and is quicker to make
        r.hash = rt.hasher.hash(std::to_string(i));
      }
      index.upsert(r);
    }
  }
};

World& world() {
  static World w;
  return w;
}

void run(benchmark::State& state, const std::vector<std::string>& keys, bool expect_ok) {
  World& w = world();
  std::vector<RequestFields> requests(keys.size());
  for (size_t i = 0; i < keys.size(); ++i) requests[i].set("X-Api-Key", keys[i]);
  size_t i = 0;
  UnixMillis now = now_millis();
  for (auto _ : state) {
    Context ctx;
    RequestView v{"GET", "/v1/x", requests[i++ % requests.size()]};
    auto err = extract_credential(v, w.rt.config.auth, ctx);
    if (!err) err = authenticate(w.rt, w.index, ctx, now);
    if (err.has_value() == expect_ok) state.SkipWithError("unexpected decision");
    benchmark::DoNotOptimize(err);
  }
  state.counters["keys"] = static_cast<double>(w.index.size());
}

void BM_AuthValidKey(benchmark::State& state) {
  run(state, world().hot, true);
}

void BM_AuthValidKeyColdCache(benchmark::State& state) {
  run(state, world().cold, true);
}

void BM_AuthUnknownWellFormedKey(benchmark::State& state) {
  std::vector<std::string> unknown;
  for (int i = 0; i < 1000; ++i) unknown.push_back(world().rt.key_format.generate());
  run(state, unknown, false);
}

void BM_AuthGarbageKey(benchmark::State& state) {
  std::vector<std::string> garbage;
  for (int i = 0; i < 1000; ++i) garbage.push_back("kg_live_" + std::string(38, 'x'));
  run(state, garbage, false);
}

}  // namespace

BENCHMARK(BM_AuthValidKey);
BENCHMARK(BM_AuthValidKeyColdCache);
BENCHMARK(BM_AuthUnknownWellFormedKey);
BENCHMARK(BM_AuthGarbageKey);
BENCHMARK_MAIN();
