#pragma once
// A TCP connection that is either plain or TLS, decided at run time, with one
// deadline for the whole connection. One type for the client side and the
// upstream side keeps the session code single (no template instantiation per
// combination); each async operation dispatches to the right layer.
//
// Timeouts: beast::tcp_stream arms a timer around every read and write and
// cancels it afterwards (a timer-queue insert and removal, an aborted handler
// run, often a timerfd_settime). Here expires_after() only stores a time; the
// connection's one timer is armed lazily: when it fires before the deadline
// (which moved on meanwhile) it is re-armed, and it is re-armed at once only
// when the deadline moves earlier. When the deadline passes, the socket is
// closed (as beast::tcp_stream does) and pending and later operations complete
// with beast::error::timeout, so callers cannot tell the difference.
#include <boost/asio/ssl.hpp>
#include <boost/beast/ssl/ssl_stream.hpp>
#include <chrono>
#include <memory>

#include "server/asio.hpp"
#include "server/read_readiness.hpp"

namespace keygate {

namespace detail {

struct DeadlineState {
  using clock = std::chrono::steady_clock;
  explicit DeadlineState(const net::asio::any_io_executor& ex) : timer(ex) {}
  net::asio::steady_timer timer;
  clock::time_point at = clock::time_point::max();     // the deadline
  clock::time_point armed = clock::time_point::max();  // what the timer waits for; max: idle
  bool expired = false;                                // the deadline passed: the socket was closed
  net::tcp::socket* socket = nullptr;                  // null once the stream is gone

  static void arm(const std::shared_ptr<DeadlineState>& s, clock::time_point at) {
    s->armed = at;
    s->timer.expires_at(at);  // a pending wait ends with operation_aborted
    s->timer.async_wait([s](const boost::system::error_code& ec) { fired(s, ec); });
  }
  static void fired(const std::shared_ptr<DeadlineState>& s, const boost::system::error_code& ec) {
    if (ec || !s->socket) return;
    auto now = clock::now();
    if (s->armed == clock::time_point::max() || now < s->armed) return;  // a stale wait
    s->armed = clock::time_point::max();
    if (s->at == clock::time_point::max()) return;  // no deadline any more
    if (s->at > now) {                              // moved on while the timer waited
      arm(s, s->at);
      return;
    }
    s->expired = true;
    boost::system::error_code ignored;
    s->socket->close(ignored);
  }
};

// Completes `handler` with beast::error::timeout instead of the error a
// deadline's close produced; executor, allocator and cancellation slot are the
// handler's own (see the associator below). The stream outlives its operations.
template <class Handler>
struct TimeoutMapped {
  Handler handler;
  const DeadlineState* state;
  template <class... Args>
  void operator()(boost::system::error_code ec, Args&&... args) {
    if (ec && state->expired) ec = net::beast::error::timeout;
    std::move(handler)(ec, std::forward<Args>(args)...);
  }
};

}  // namespace detail

class Stream {
 public:
  using executor_type = net::asio::any_io_executor;
  using tls_stream = net::beast::ssl_stream<net::tcp::socket>;
  using clock = std::chrono::steady_clock;

  explicit Stream(net::tcp::socket s) : socket_(std::move(s)) { init(); }
  explicit Stream(executor_type ex) : socket_(ex) { init(); }
  Stream(net::tcp::socket s, net::asio::ssl::context& ctx)
      : socket_(s.get_executor()), tls_(std::make_unique<tls_stream>(std::move(s), ctx)) {
    init();
  }
  Stream(Stream&& o) noexcept
      : socket_(std::move(o.socket_)),
        tls_(std::move(o.tls_)),
        state_(std::move(o.state_)),
        unspeculated_wait_(o.unspeculated_wait_),
        short_read_(o.short_read_) {
    state_->socket = &socket();
  }
  Stream& operator=(Stream&&) = delete;
  ~Stream() {
    if (!state_) return;  // moved from
    state_->socket = nullptr;
    state_->timer.cancel();
  }

  // Wraps an already connected plain stream in TLS (upstream, after connect).
  void start_tls(net::asio::ssl::context& ctx) {
    tls_ = std::make_unique<tls_stream>(std::move(socket_), ctx);
    state_->socket = &socket();
  }

  executor_type get_executor() { return socket_.get_executor(); }
  net::tcp::socket& socket() { return tls_ ? tls_->next_layer() : socket_; }
  tls_stream* tls() { return tls_.get(); }

  template <class Rep, class Period>
  void expires_after(std::chrono::duration<Rep, Period> d) {
    expires_at(clock::now() + std::chrono::duration_cast<clock::duration>(d));
  }
  void expires_at(clock::time_point at) {
    state_->at = at;
    state_->expired = false;
    if (at < state_->armed) detail::DeadlineState::arm(state_, at);
  }
  void expires_never() {
    state_->at = clock::time_point::max();
    state_->expired = false;
  }
  // For operations that bypass this stream (TLS handshakes, connect): the
  // deadline's doing shows as beast::error::timeout.
  boost::system::error_code map_timeout(boost::system::error_code ec) const {
    return ec && state_->expired ? boost::system::error_code(net::beast::error::timeout) : ec;
  }
  // Bytes received but held inside the TLS layer (decrypted or not), which a
  // look at the socket does not show.
  bool tls_buffered() {
    if (!tls_) return false;
    SSL* ssl = tls_->native_handle();
    return SSL_pending(ssl) > 0 || BIO_ctrl_pending(SSL_get_rbio(ssl)) > 0;
  }
  void close() {
    boost::system::error_code ignored;
    socket().close(ignored);
  }

  // Writes what the socket takes at once, without waiting: the bytes written
  // (0 with no error when it must wait, on TLS, or once the deadline passed:
  // the async write then does it all, deadline and timeout mapping included).
  // An async write that completes at once still costs a trip through the
  // scheduler and a coroutine resumption; on the hot path the socket nearly
  // always takes a whole head or reply.
  template <class ConstBuffers>
  std::size_t write_now(const ConstBuffers& buffers, boost::system::error_code& ec) {
    ec = {};
    if (tls_ || state_->expired) return 0;
    if (!socket_.non_blocking()) {
      socket_.non_blocking(true, ec);
      if (ec) return 0;
    }
    std::size_t n = socket_.write_some(buffers, ec);
    if (ec == net::asio::error::would_block || ec == net::asio::error::try_again) ec = {};
    return n;
  }

  // Reads what has arrived, without waiting, unless the reactor has not seen
  // the socket readable since it was last marked drained (read_readiness.hpp):
  // the bytes read; 0 with no error when the caller must wait
  // (async_read_some, then read_completed); 0 with an error at EOF or on a
  // failure. Plain TCP only: TLS (whose records the socket does not show) and
  // an expired deadline always wait.
  std::size_t read_now(net::asio::mutable_buffer b, boost::system::error_code& ec) {
    ec = {};
    unspeculated_wait_ = short_read_ = false;
    if (!KEYGATE_KNOWS_READ_READINESS || tls_ || state_->expired || b.size() == 0) return 0;
    if (detail::may_be_readable(socket_)) {
      ssize_t n;
      do {
        n = ::recv(socket_.native_handle(), b.data(), b.size(), MSG_DONTWAIT);
      } while (n < 0 && errno == EINTR);
      if (n > 0) {
        short_read_ = static_cast<std::size_t>(n) < b.size();
        return static_cast<std::size_t>(n);
      }
      if (n == 0) {
        ec = net::asio::error::eof;
        return 0;
      }
      if (errno != EAGAIN && errno != EWOULDBLOCK) {
        ec = boost::system::error_code(errno, boost::system::system_category());
        return 0;
      }
      detail::mark_drained(socket_);  // empty, and no EOF pending (recv said 0 then)
    }
    // Drained, and nothing reported since: the reactor will not try the read
    // when the operation starts, so it completes from an epoll event, inline.
    unspeculated_wait_ = true;
    return 0;
  }
  // After the async_read_some that followed read_now()'s "wait", with no other
  // operation pending on the socket.
  void read_completed(std::size_t n, std::size_t asked) {
    short_read_ = unspeculated_wait_ && n > 0 && n < asked;
    unspeculated_wait_ = false;
  }
  // Whether epoll has reported the socket readable since it was last marked
  // drained (true when unknown, and on TLS, whose records the socket hides).
  bool may_be_readable() { return tls_ || detail::may_be_readable(socket_); }
  // The last read (read_now's, or the async one read_completed saw) took less
  // than it asked: the socket was empty after it, unless the peer's FIN came
  // with the bytes (a recv returns the data first, then 0, and epoll will not
  // report the FIN again). So only once nobody will wait on this socket for
  // more of the message (a pooled connection is asked again before reuse), and
  // before the next co_await: an epoll event handled in between would be lost.
  void mark_drained() {
    if (short_read_) detail::mark_drained(socket_);
    short_read_ = false;
  }

  template <class MutableBuffers, class Token>
  auto async_read_some(const MutableBuffers& buffers, Token&& token) {
    return net::asio::async_initiate<Token, void(boost::system::error_code, std::size_t)>(
        [this](auto handler, const MutableBuffers& b) {
          short_read_ = false;  // what it reads, read_completed says
          detail::TimeoutMapped<decltype(handler)> h{std::move(handler), state_.get()};
          if (state_->expired)
            net::asio::post(socket_.get_executor(), [h = std::move(h)]() mutable {
              std::move(h)(net::asio::error::operation_aborted, std::size_t{0});
            });
          else if (tls_)
            tls_->async_read_some(b, std::move(h));
          else
            socket_.async_read_some(b, std::move(h));
        },
        token, buffers);
  }
  template <class ConstBuffers, class Token>
  auto async_write_some(const ConstBuffers& buffers, Token&& token) {
    return net::asio::async_initiate<Token, void(boost::system::error_code, std::size_t)>(
        [this](auto handler, const ConstBuffers& b) {
          short_read_ = unspeculated_wait_ = false;  // an operation beside a read: see read_now()
          detail::TimeoutMapped<decltype(handler)> h{std::move(handler), state_.get()};
          if (state_->expired)
            net::asio::post(socket_.get_executor(), [h = std::move(h)]() mutable {
              std::move(h)(net::asio::error::operation_aborted, std::size_t{0});
            });
          else if (tls_)
            tls_->async_write_some(b, std::move(h));
          else
            socket_.async_write_some(b, std::move(h));
        },
        token, buffers);
  }

 private:
  void init() {
    state_ = std::make_shared<detail::DeadlineState>(socket_.get_executor());
    state_->socket = &socket();
  }
  net::tcp::socket socket_;  // moved into tls_ when TLS is on
  std::unique_ptr<tls_stream> tls_;
  std::shared_ptr<detail::DeadlineState> state_;
  bool unspeculated_wait_ = false;  // see read_now()
  bool short_read_ = false;         // see mark_drained()
};

}  // namespace keygate

namespace boost::asio {
template <template <typename, typename> class Associator, typename Handler,
          typename DefaultCandidate>
struct associator<Associator, keygate::detail::TimeoutMapped<Handler>, DefaultCandidate>
    : Associator<Handler, DefaultCandidate> {
  static typename Associator<Handler, DefaultCandidate>::type get(
      const keygate::detail::TimeoutMapped<Handler>& h) noexcept {
    return Associator<Handler, DefaultCandidate>::get(h.handler);
  }
  static auto get(const keygate::detail::TimeoutMapped<Handler>& h,
                  const DefaultCandidate& c) noexcept
      -> decltype(Associator<Handler, DefaultCandidate>::get(h.handler, c)) {
    return Associator<Handler, DefaultCandidate>::get(h.handler, c);
  }
};
}  // namespace boost::asio
