#pragma once
// What the sessions of one I/O thread share: that thread's io_context, its
// view of the current config generation and its upstream pool; plus the
// process-wide services every thread reads.
#include <boost/intrusive/list.hpp>
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

class StoreWorker;

struct Services {
  KeyIndex& index;
  RateLimiter& limiter;
  UsageSink& usage;
  GatewayState& state;
  Metrics& metrics;
  StoreWorker& store;  // self-service key routes run its admin API handler (SPEC §9)
};

// Fixed-size blocks reused across requests on one thread: no malloc/free per
// request, and memory bounded by concurrent requests, not connections.
template <size_t Size>
class BlockPool {
 public:
  static constexpr size_t kSize = Size;
  std::unique_ptr<char[]> take() {
    if (free_.empty()) return std::make_unique_for_overwrite<char[]>(kSize);
    auto c = std::move(free_.back());
    free_.pop_back();
    return c;
  }
  void give(std::unique_ptr<char[]> c) {
    if (c && free_.size() < kMaxFree) free_.push_back(std::move(c));
  }

 private:
  static constexpr size_t kMaxFree = 256;
  std::vector<std::unique_ptr<char[]>> free_;
};

// Relay buffers: a body moves through one of these, chunk by chunk.
struct ChunkPool : BlockPool<64 * 1024> {
  static constexpr size_t kChunk = kSize;
};
// Arenas for a request's parsed heads (the client's and the upstream's):
// typical heads fit; a bigger one spills to the heap until the request ends.
using ArenaPool = BlockPool<16 * 1024>;

// A connection waiting for its next request, listed so a drain can close it
// (intrusive: listing costs no allocation).
struct IdleConnection
    : boost::intrusive::list_base_hook<boost::intrusive::link_mode<boost::intrusive::auto_unlink>> {
  net::tcp::socket* socket = nullptr;
};
using IdleConnections =
    boost::intrusive::list<IdleConnection, boost::intrusive::constant_time_size<false>>;

struct Worker {
  explicit Worker(RuntimePtr rt) : runtime(std::move(rt)), pool(ioc.get_executor()) {
    pool.adopt(runtime->config.upstream);
  }
  // Declared first, destroyed last: sessions still suspended when the
  // io_context goes return their buffers here.
  ChunkPool chunks;
  ArenaPool arenas;
  RenderCache replies;  // this thread's rendered error bodies (cleared on reload)
  // Every socket of this context is used only from its own thread: no I/O locking.
  net::asio::io_context ioc{BOOST_ASIO_CONCURRENCY_HINT_UNSAFE_IO};
  RuntimePtr runtime;  // only touched on this thread (reload posts the swap here)
  UpstreamPool pool;
  // This thread's way to the buckets (local table, or a shared backend's connection).
  std::unique_ptr<RateLimitBackend> limits;
  std::shared_ptr<net::asio::ssl::context> tls;  // set: the listener speaks HTTPS
  // Connections waiting for their next request: closed on drain.
  IdleConnections idle;
};

// Runs one client connection until it closes.
net::awaitable<void> run_proxy_session(net::tcp::socket socket, Worker& worker, Services& svc);

}  // namespace keygate
