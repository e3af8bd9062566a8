#pragma once
// Keep-alive connections to the upstream, one pool per I/O thread (no locks).
// A connection is pooled only after a response read exactly to its end, and
// only while nothing follows it: no byte read past the response at release,
// nothing from the upstream (data or EOF) before a reuse (upstream_pool.cpp),
// and none for 30 s after the upstream sent bytes outside a response (SPEC §7).
// https:// upstreams get TLS with SNI and host-name verification.
#include <chrono>
#include <deque>
#include <memory>

#include "keygate/config/config.hpp"
#include "server/stream.hpp"

namespace keygate {

struct UpstreamConn {
  explicit UpstreamConn(net::asio::any_io_executor ex) : stream(ex) {}
  Stream stream;
  net::beast::flat_buffer buffer;
  std::chrono::steady_clock::time_point idle_since;
  bool reused = false;
};

class UpstreamPool {
 public:
  using Clock = std::chrono::steady_clock;
  explicit UpstreamPool(net::asio::any_io_executor ex) : ex_(ex), resolver_(ex) {}

  // A connected (and, for https, handshaken) stream; on failure `ec` is set.
  // `tls_failed` tells a TLS failure (bad certificate, wrong name) from a TCP one.
  // `fresh`: never reuse (the retry after a reused connection failed).
  net::awaitable<std::unique_ptr<UpstreamConn>> acquire(const UpstreamConfig& cfg,
                                                        boost::system::error_code& ec,
                                                        bool& tls_failed, bool fresh = false);
  // A pooled connection that may be reused now, or null: what acquire() would
  // take first, without a coroutine (one less frame and resumption per
  // request). Plain upstreams only: an https one goes through acquire(), which
  // checks its TLS settings first. `retryable`: the request may be sent again
  // on a fresh connection should this one turn out closed (upstream_pool.cpp).
  // `now` (and release's): a time the caller read anyway, a clock read less.
  std::unique_ptr<UpstreamConn> take_idle(const UpstreamConfig& cfg, bool retryable,
                                          Clock::time_point now);
  void release(std::unique_ptr<UpstreamConn> c, const UpstreamConfig& cfg, Clock::time_point now);
  // The upstream settings of the config in force (the worker's runtime, which
  // outlives them there): on a reload that names another upstream or other
  // TLS settings the pooled connections go, and a connection released under
  // any other config (a request admitted before the reload) is closed.
  void adopt(const UpstreamConfig& cfg);

 private:
  std::unique_ptr<UpstreamConn> reuse_idle(bool retryable, Clock::time_point now);
  // The upstream sent bytes no request asked for: after a response's end, or
  // while a connection idled. More may be on their way that arrive only after
  // the next reuse (no check can see bytes not yet sent), where they would be
  // the next client's response and shift every later one on that connection.
  // For kStrayQuarantine this pool keeps no connection, so a misbehaving
  // upstream costs the requests already in flight, not a lasting desync.
  void stray(Clock::time_point now);
  Clock::time_point stray_until_{};
  net::asio::ssl::context* tls_for(const UpstreamConfig& cfg);
  net::asio::any_io_executor ex_;
  net::tcp::resolver resolver_;
  std::deque<std::unique_ptr<UpstreamConn>> idle_;
  const UpstreamConfig* current_ = nullptr;  // adopt()'s
  std::string current_key_;                  // its settings
  std::shared_ptr<net::asio::ssl::context> tls_;
  std::string tls_key_;  // the settings tls_ was built from
};

}  // namespace keygate
