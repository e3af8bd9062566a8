#pragma once
// What the sessions of one I/O thread share: that thread's io_context, its
// view of the current config generation and its upstream pool; plus the
// process-wide services every thread reads.
#include <list>
#include <memory>

#include "keygate/keys/key_index.hpp"
#include "keygate/observe/metrics.hpp"
#include "keygate/proxy/pipeline.hpp"
#include "keygate/proxy/runtime.hpp"
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

struct Worker {
  explicit Worker(RuntimePtr rt) : runtime(std::move(rt)), pool(ioc.get_executor()) {}
  net::asio::io_context ioc{1};
  RuntimePtr runtime;  // only touched on this thread (reload posts the swap here)
  UpstreamPool pool;
  // Sockets of connections waiting for their next request: closed on drain.
  std::list<net::beast::tcp_stream*> idle_streams;
};

// Runs one client connection until it closes.
net::awaitable<void> run_proxy_session(net::tcp::socket socket, Worker& worker, Services& svc);

}  // namespace keygate
