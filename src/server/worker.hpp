#pragma once
// What the sessions of one I/O thread share: that thread's io_context, its
// view of the current config generation and its upstream pool; plus the
// process-wide services every thread reads.
#include <list>
#include <memory>
#include <vector>

#include "keygate/keys/key_index.hpp"
#include "keygate/observe/metrics.hpp"
#include "keygate/proxy/pipeline.hpp"
#include "keygate/proxy/runtime.hpp"
#include "keygate/ratelimit/backend.hpp"
#include "keygate/ratelimit/rate_limiter.hpp"
#include "server/upstream_pool.hpp"

namespace keygate {

struct Services {
  KeyIndex& index;
  RateLimiter& limiter;
  UsageSink& usage;
  GatewayState& state;
  Metrics& metrics;
};

// Relay buffers reused across requests on one thread: no 64 KiB malloc/free
// per request, and memory bounded by concurrent requests, not connections.
class ChunkPool {
 public:
  static constexpr size_t kChunk = 64 * 1024;
  std::unique_ptr<char[]> take() {
    if (free_.empty()) return std::make_unique_for_overwrite<char[]>(kChunk);
    auto c = std::move(free_.back());
    free_.pop_back();
    return c;
  }
  void give(std::unique_ptr<char[]> c) {
    if (free_.size() < kMaxFree) free_.push_back(std::move(c));
  }

 private:
  static constexpr size_t kMaxFree = 256;
  std::vector<std::unique_ptr<char[]>> free_;
};

struct Worker {
  explicit Worker(RuntimePtr rt) : runtime(std::move(rt)), pool(ioc.get_executor()) {}
  // Declared first, destroyed last: sessions still suspended when the
  // io_context goes return their buffers here.
  ChunkPool chunks;
  // Every socket of this context is used only from its own thread: no I/O locking.
  net::asio::io_context ioc{BOOST_ASIO_CONCURRENCY_HINT_UNSAFE_IO};
  RuntimePtr runtime;  // only touched on this thread (reload posts the swap here)
  UpstreamPool pool;
  // This thread's way to the buckets (local table, or a shared backend's connection).
  std::unique_ptr<RateLimitBackend> limits;
  std::shared_ptr<net::asio::ssl::context> tls;  // set: the listener speaks HTTPS
  // Sockets of connections waiting for their next request: closed on drain.
  std::list<net::beast::tcp_stream*> idle_streams;
};

// Runs one client connection until it closes.
net::awaitable<void> run_proxy_session(net::tcp::socket socket, Worker& worker, Services& svc);

}  // namespace keygate
