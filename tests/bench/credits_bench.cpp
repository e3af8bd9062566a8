// The valid-key decision with credits on vs off (issue 17: within 5%): the
// same stages as the request path from the credential to the usage count —
// extract, authenticate (which finds the key's meter), check and spend
// credits, count the outcome. Run with `make bench`.
#include <benchmark/benchmark.h>

#include "keygate/proxy/stages.hpp"

using namespace keygate;

namespace {

struct World {
  Config cfg;
  Runtime rt{cfg};
  KeyIndex index;
  std::vector<RequestFields> requests;
  explicit World(bool credits) {
    for (int i = 0; i < 1000; ++i) {
      std::string key = rt.key_format.generate();
      KeyRecord r;
      r.id = "key_" + std::to_string(10'000'000'000'000'000 + i).substr(0, 20);
      r.hash = rt.hasher.hash(key);
      r.name = "bench";
      if (credits) {
        r.credits = Credits{kMaxCredits, CreditRefill{kMaxCredits, Millis(30LL * 86'400'000)},
                            now_millis()};
        r.credits_version = 1;
      }
      index.upsert(r);
      requests.emplace_back().set("X-Api-Key", key);
    }
  }
};

void run(benchmark::State& state, bool credits) {
  static World off(false), on(true);
  World& w = credits ? on : off;
  size_t i = 0;
  const UnixMillis now = now_millis();
  for (auto _ : state) {
    Context ctx;
    ctx.now = now;
    RequestView v{"GET", "/v1/x", w.requests[i++ % w.requests.size()]};
    auto err = extract_credential(v, w.rt.config.auth, ctx);
    if (!err) err = authenticate(w.rt, w.index, ctx, now);
    if (!err) err = check_credits(ctx);
    if (!err) err = spend_credits(ctx);
    if (err || ctx.credits.has_value() != credits) state.SkipWithError("unexpected decision");
    meter_request(ctx, 200);
    benchmark::DoNotOptimize(ctx.credits);
  }
}

void BM_ValidKeyCreditsOff(benchmark::State& state) {
  run(state, false);
}
void BM_ValidKeyCreditsOn(benchmark::State& state) {
  run(state, true);
}

}  // namespace

BENCHMARK(BM_ValidKeyCreditsOff);
BENCHMARK(BM_ValidKeyCreditsOn);
BENCHMARK_MAIN();
