#include "server/upstream_pool.hpp"

#include <sys/socket.h>

namespace keygate {

using namespace net;

namespace {
constexpr auto kMaxIdleAge = std::chrono::seconds(30);
constexpr auto kPeekAfterIdle = std::chrono::seconds(1);

// An idle connection the upstream has closed (EOF) or that has stray bytes is
// not reusable. MSG_PEEK|MSG_DONTWAIT answers without blocking.
bool still_usable(UpstreamConn& c) {
  char b;
  ssize_t n = ::recv(c.stream.socket().native_handle(), &b, 1, MSG_PEEK | MSG_DONTWAIT);
  return n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK);
}
}  // namespace

awaitable<std::unique_ptr<UpstreamConn>> UpstreamPool::acquire(const UpstreamConfig& cfg,
                                                               boost::system::error_code& ec,
                                                               bool fresh) {
  auto now = std::chrono::steady_clock::now();
  while (!fresh && !idle_.empty()) {
    auto c = std::move(idle_.back());
    idle_.pop_back();
    // A connection idle for a moment is almost surely alive (and the session
    // retries once if it was not); after a longer idle, ask the kernel first.
    auto idle = now - c->idle_since;
    if (idle < kMaxIdleAge && (idle < kPeekAfterIdle || still_usable(*c))) {
      c->reused = true;
      co_return c;
    }
  }
  auto [rec, endpoints] =
      co_await resolver_.async_resolve(cfg.host, std::to_string(cfg.port), use_tuple);
  if (rec) {
    ec = rec;
    co_return nullptr;
  }
  auto c = std::make_unique<UpstreamConn>(ex_);
  c->stream.expires_after(cfg.connect_timeout);
  auto [cec, ep] = co_await c->stream.async_connect(endpoints, use_tuple);
  if (cec) {
    ec = cec;
    co_return nullptr;
  }
  c->stream.socket().set_option(tcp::no_delay(true));
  ++opened_;
  co_return c;
}

void UpstreamPool::release(std::unique_ptr<UpstreamConn> c, const UpstreamConfig& cfg) {
  if (idle_.size() >= static_cast<size_t>(cfg.max_idle_connections)) idle_.pop_front();
  if (cfg.max_idle_connections == 0) return;
  c->stream.expires_never();
  c->idle_since = std::chrono::steady_clock::now();
  c->buffer.clear();
  idle_.push_back(std::move(c));
}

}  // namespace keygate
