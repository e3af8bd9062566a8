// The head going upstream (write_request_head: hop-by-hop fields, spoofed
// identity and keys dropped, the gateway's fields added) for wrk's two fields
// and a browser's ten; and what check_framing makes of the worst a 16 KiB head
// could ask of it, 3000 Connection options over 2400 fields (refused: written
// upstream, that head cost ~50 ms). Quoted in the README; run with `make bench`.
#include <benchmark/benchmark.h>

#include <string>

#include "keygate/config/loader.hpp"
#include "keygate/proxy/forward_headers.hpp"
#include "keygate/proxy/stages.hpp"

using namespace keygate;
namespace http = boost::beast::http;

namespace {

const Runtime& runtime() {
  static const Runtime rt = [] {
    auto c = load_config_text("{}\n", "bench.yaml");
    if (!c) std::abort();
    return Runtime(*c);
  }();
  return rt;
}

void add(RequestFields& f, std::string_view name, std::string_view value) {
  f.add(http::string_to_field(name), name, value);
}

RequestFields wrk_head() {
  RequestFields f;
  add(f, "Host", "127.0.0.1:8080");
  add(f, "X-Api-Key", "bk_00000000000000000000000000000000");
  return f;
}

RequestFields browser_head() {
  RequestFields f = wrk_head();
  add(f, "User-Agent",
      "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 "
      "Safari/537.36");
  add(f, "Accept", "application/json, text/plain, */*");
  add(f, "Accept-Encoding", "gzip, deflate, br");
  add(f, "Accept-Language", "en-US,en;q=0.9");
  add(f, "Cache-Control", "no-cache");
  add(f, "Connection", "keep-alive");
  add(f, "Referer", "https://app.example.com/dashboard");
  add(f, "Cookie", "session=abcdef0123456789; theme=dark");
  return f;
}

// 3000 Connection options and 2400 empty fields: ~15.6 KiB, under the default
// limits.max_header_bytes.
RequestFields many_connection_names() {
  RequestFields f;
  add(f, "Host", "a");
  std::string names = "x";
  for (int i = 1; i < 3000; ++i) names += ",x";
  add(f, "Connection", names);
  for (int i = 0; i < 2400; ++i) add(f, "y", "");
  return f;
}

void run(benchmark::State& state, const RequestFields& f) {
  const Runtime& rt = runtime();
  Context ctx;
  ctx.request_id = "0123456789abcdef0123456789abcdef";
  ctx.peer_ip = ctx.client_ip = "127.0.0.1";
  std::string out;
  for (auto _ : state) {
    out.clear();
    write_request_head(out, "GET", "/v1/x", f, ctx, rt, {});
    benchmark::DoNotOptimize(out.data());
  }
  state.counters["bytes"] = static_cast<double>(out.size());
}

void BM_ForwardHeadWrk(benchmark::State& state) {
  run(state, wrk_head());
}
void BM_ForwardHeadBrowser(benchmark::State& state) {
  run(state, browser_head());
}
void BM_FramingRefusesManyConnectionOptions(benchmark::State& state) {
  const RequestFields f = many_connection_names();
  for (auto _ : state) {
    auto refused = check_framing(f, 11);
    if (!refused) state.SkipWithError("the head was not refused");
    benchmark::DoNotOptimize(refused);
  }
}

}  // namespace

BENCHMARK(BM_ForwardHeadWrk);
BENCHMARK(BM_ForwardHeadBrowser);
BENCHMARK(BM_FramingRefusesManyConnectionOptions)->Unit(benchmark::kMicrosecond);
BENCHMARK_MAIN();
