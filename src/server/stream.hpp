#pragma once
// A TCP connection that is either plain or TLS, decided at run time. One type
// for the client side and the upstream side keeps the session code single
// (no template instantiation per combination); each async operation
// dispatches to the right layer, and timeouts always live on the TCP layer.
#include <boost/asio/ssl.hpp>
#include <boost/beast/ssl/ssl_stream.hpp>
#include <memory>

#include "server/asio.hpp"

namespace keygate {

class Stream {
 public:
  using executor_type = net::asio::any_io_executor;
  using tls_stream = net::beast::ssl_stream<net::beast::tcp_stream>;

  explicit Stream(net::tcp::socket s) : tcp_(std::move(s)) {}
  explicit Stream(executor_type ex) : tcp_(ex) {}
  Stream(net::tcp::socket s, net::asio::ssl::context& ctx)
      : tcp_(s.get_executor()), tls_(std::make_unique<tls_stream>(std::move(s), ctx)) {}
  // Wraps an already connected plain stream in TLS (upstream, after connect).
  void start_tls(net::asio::ssl::context& ctx) {
    tls_ = std::make_unique<tls_stream>(std::move(tcp_), ctx);
  }

  executor_type get_executor() { return tcp().get_executor(); }
  net::beast::tcp_stream& tcp() { return tls_ ? net::beast::get_lowest_layer(*tls_) : tcp_; }
  net::tcp::socket& socket() { return tcp().socket(); }
  tls_stream* tls() { return tls_.get(); }
  template <class Duration>
  void expires_after(Duration d) {
    tcp().expires_after(d);
  }
  void expires_never() { tcp().expires_never(); }
  // Bytes received but held inside the TLS layer (decrypted or not), which a
  // look at the socket does not show.
  bool tls_buffered() {
    if (!tls_) return false;
    SSL* ssl = tls_->native_handle();
    return SSL_pending(ssl) > 0 || BIO_ctrl_pending(SSL_get_rbio(ssl)) > 0;
  }
  void close() { tcp().close(); }

  template <class MutableBuffers, class Token>
  auto async_read_some(const MutableBuffers& buffers, Token&& token) {
    return net::asio::async_initiate<Token, void(boost::system::error_code, std::size_t)>(
        [this](auto handler, const MutableBuffers& b) {
          if (tls_)
            tls_->async_read_some(b, std::move(handler));
          else
            tcp_.async_read_some(b, std::move(handler));
        },
        token, buffers);
  }
  template <class ConstBuffers, class Token>
  auto async_write_some(const ConstBuffers& buffers, Token&& token) {
    return net::asio::async_initiate<Token, void(boost::system::error_code, std::size_t)>(
        [this](auto handler, const ConstBuffers& b) {
          if (tls_)
            tls_->async_write_some(b, std::move(handler));
          else
            tcp_.async_write_some(b, std::move(handler));
        },
        token, buffers);
  }

 private:
  net::beast::tcp_stream tcp_;
  std::unique_ptr<tls_stream> tls_;
};

}  // namespace keygate
