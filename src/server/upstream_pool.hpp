#pragma once
// Keep-alive connections to the upstream, one pool per I/O thread (no locks).
// A connection is reused only after an exchange that ended cleanly, and is
// checked for a pending close before reuse (Pingora's rules).
#include <chrono>
#include <deque>
#include <memory>

#include "keygate/config/config.hpp"
#include "server/asio.hpp"

namespace keygate {

struct UpstreamConn {
  explicit UpstreamConn(net::asio::any_io_executor ex) : stream(ex) {}
  net::beast::tcp_stream stream;
  net::beast::flat_buffer buffer;
  std::chrono::steady_clock::time_point idle_since;
  bool reused = false;
};

class UpstreamPool {
 public:
  explicit UpstreamPool(net::asio::any_io_executor ex) : ex_(ex), resolver_(ex) {}

  // A connected stream; on failure `ec` is set (timeout: connect_timeout elapsed).
  // `fresh`: never reuse (the retry after a reused connection failed).
  net::awaitable<std::unique_ptr<UpstreamConn>> acquire(const UpstreamConfig& cfg,
                                                        boost::system::error_code& ec,
                                                        bool fresh = false);
  void release(std::unique_ptr<UpstreamConn> c, const UpstreamConfig& cfg);
  void clear() { idle_.clear(); }
  std::uint64_t connections_opened() const { return opened_; }

 private:
  net::asio::any_io_executor ex_;
  net::tcp::resolver resolver_;
  std::deque<std::unique_ptr<UpstreamConn>> idle_;
  std::uint64_t opened_ = 0;
};

}  // namespace keygate
