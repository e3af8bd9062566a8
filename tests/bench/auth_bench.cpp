// The authentication decision on the request path with 1M keys in the index:
// extract the credential -> check format and checksum -> hash -> look up ->
// status checks. Quoted in the README; run with `make bench`.
#include <benchmark/benchmark.h>

#include "keygate/proxy/stages.hpp"

using namespace keygate;
namespace http = boost::beast::http;

namespace {

struct World {
  Config cfg;  // (a named Config: g++ 12 warns falsely on Runtime{Config{}})
  Runtime rt{cfg};
  KeyIndex index;
  std::vector<std::string> keys;
  World() {
    constexpr int kKeys = 1'000'000;
    keys.reserve(1000);
    for (int i = 0; i < kKeys; ++i) {
      std::string key = rt.key_format.generate();
      KeyRecord r;
      r.id = "key_" + std::to_string(10'000'000'000'000'000 + i).substr(0, 20);
      r.hash = rt.hasher.hash(key);
      r.name = "bench";
      r.owner = "owner-" + std::to_string(i % 1000);
      index.upsert(r);
      if (i % 1000 == 0) keys.push_back(key);
    }
  }
};

World& world() {
  static World w;
  return w;
}

void run(benchmark::State& state, const std::vector<std::string>& keys, bool expect_ok) {
  World& w = world();
  std::vector<Fields> requests(keys.size());
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
}

void BM_AuthValidKey(benchmark::State& state) {
  run(state, world().keys, true);
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
BENCHMARK(BM_AuthUnknownWellFormedKey);
BENCHMARK(BM_AuthGarbageKey);
BENCHMARK_MAIN();
