// The rate-limit decision (one token from a bucket) on 1 and 2 threads, for
// one hot key and for 100k keys. Target: under 100 ns uncontended.
#include <benchmark/benchmark.h>

#include "keygate/ratelimit/bucket_table.hpp"

using namespace keygate;

namespace {
SteadyClock clock_;
BucketTable& table() {
  static BucketTable t(clock_);
  return t;
}
const Rate kRate{1'000'000'000, std::chrono::seconds(1), 0};  // never denies: measures the path

std::vector<std::string> make_ids(int n) {
  std::vector<std::string> ids;
  for (int i = 0; i < n; ++i)
    ids.push_back("key_" + std::to_string(100'000'000'000'000'000 + i).substr(0, 20));
  return ids;
}

void BM_HotKey(benchmark::State& state) {
  for (auto _ : state) benchmark::DoNotOptimize(table().take("key_hot0000000000000000", kRate));
}

void BM_ManyKeys(benchmark::State& state) {
  static const auto ids = make_ids(100'000);
  size_t i = static_cast<size_t>(state.thread_index()) * 7919;
  for (auto _ : state) benchmark::DoNotOptimize(table().take(ids[i++ % ids.size()], kRate));
}

// Bytes per bucket, from RSS before/after creating 100k buckets (reported as a counter).
void BM_BucketMemory(benchmark::State& state) {
  auto rss = [] {
    long pages = 0, resident = 0;
    FILE* f = std::fopen("/proc/self/statm", "r");
    if (f && std::fscanf(f, "%ld %ld", &pages, &resident) != 2) resident = 0;
    if (f) std::fclose(f);
    return resident * 4096;
  };
  for (auto _ : state) {
    BucketTable t(clock_);
    auto ids = make_ids(100'000);
    long before = rss();
    for (const auto& id : ids) t.take(id, kRate);
    state.counters["bytes_per_bucket"] = static_cast<double>(rss() - before) / 100'000.0;
  }
}
}  // namespace

BENCHMARK(BM_HotKey)->Threads(1)->Threads(2);
BENCHMARK(BM_ManyKeys)->Threads(1)->Threads(2);
BENCHMARK(BM_BucketMemory)->Iterations(1);
BENCHMARK_MAIN();
