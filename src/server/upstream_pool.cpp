#include "server/upstream_pool.hpp"

#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <sys/socket.h>

#include "keygate/observe/log.hpp"
#include "server/tls.hpp"

namespace keygate {

using namespace net;

namespace {
constexpr auto kMaxIdleAge = std::chrono::seconds(30);
// How long a thread's pool keeps no connection after the upstream sent bytes
// no request asked for (UpstreamPool::stray).
constexpr auto kStrayQuarantine = std::chrono::seconds(30);
// Bytes on a connection idle longer than this are taken for an upstream's
// goodbye (a 408 some servers send before closing an idle connection), not
// for stray bytes: those come right after a response, where the next reuse
// can take them (under load, within microseconds).
constexpr auto kStraySoon = std::chrono::seconds(2);

// What the upstream sent while the connection idled, data or EOF
// (MSG_PEEK|MSG_DONTWAIT answers without blocking). Asked once, right before
// the reuse: asked at the release too, it would miss what comes later and cost
// a system call per request.
//
// `retryable`: the request may go again on a fresh connection if this one
// fails before any response byte (proxy_session's rule), so the socket is asked
// only when epoll has reported it readable since its last read drained it, as
// nginx's keepalive module asks only a connection whose read event is ready.
// What epoll has not reported yet (a FIN in flight, or one that came with the
// response's last bytes) then costs a failed attempt and the retry, not a 502;
// a request that cannot be retried is still asked every time.
enum class Idled { quiet, closed, sent_bytes };
Idled what_came_while_idle(UpstreamConn& c, bool retryable) {
  if (retryable && !c.stream.may_be_readable()) return Idled::quiet;
  char b;
  ssize_t n = ::recv(c.stream.socket().native_handle(), &b, 1, MSG_PEEK | MSG_DONTWAIT);
  if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return Idled::quiet;
  // On TLS the socket shows records, and a close_notify is one: only a plain
  // connection's bytes are known to be a response nobody asked for.
  return n > 0 && !c.stream.tls() ? Idled::sent_bytes : Idled::closed;
}

std::string settings_key(const UpstreamConfig& cfg) {
  return cfg.url + "|" + cfg.ca_file.value_or("") + "|" + (cfg.tls_verify ? "1" : "0");
}
}  // namespace

void UpstreamPool::adopt(const UpstreamConfig& cfg) {
  current_ = &cfg;
  std::string key = settings_key(cfg);
  if (key == current_key_) return;
  current_key_ = std::move(key);
  idle_.clear();
}

asio::ssl::context* UpstreamPool::tls_for(const UpstreamConfig& cfg) {
  std::string key = settings_key(cfg);
  if (!tls_ || key != tls_key_) {  // first use, or changed by a reload
    tls_ = make_upstream_tls(cfg);
    tls_key_ = key;
    idle_.clear();
  }
  return tls_.get();
}

awaitable<std::unique_ptr<UpstreamConn>> UpstreamPool::acquire(const UpstreamConfig& cfg,
                                                               boost::system::error_code& ec,
                                                               bool& tls_failed, bool fresh) {
  tls_failed = false;
  asio::ssl::context* tls = nullptr;
  if (cfg.https) {
    try {
      tls = tls_for(cfg);
    } catch (const std::exception&) {
      tls_failed = true;
      ec = asio::error::invalid_argument;
      co_return nullptr;
    }
  }
  if (!fresh) {
    if (auto c = reuse_idle(false, std::chrono::steady_clock::now())) co_return c;
  }
  auto [rec, endpoints] =
      co_await resolver_.async_resolve(cfg.host, std::to_string(cfg.port), use_tuple);
  if (rec) {
    ec = rec;
    co_return nullptr;
  }
  auto c = std::make_unique<UpstreamConn>(ex_);
  c->stream.expires_after(cfg.connect_timeout);
  auto [cec, ep] = co_await asio::async_connect(c->stream.socket(), endpoints, use_tuple);
  if (cec) {
    ec = c->stream.map_timeout(cec);
    co_return nullptr;
  }
  c->stream.socket().set_option(tcp::no_delay(true));
  if (tls) {
    c->stream.start_tls(*tls);
    SSL* ssl = c->stream.tls()->native_handle();
    SSL_set_tlsext_host_name(ssl, cfg.host.c_str());  // SNI
    if (cfg.tls_verify) {
      // The certificate must name the host we dialled (IP or DNS name).
      X509_VERIFY_PARAM* param = SSL_get0_param(ssl);
      boost::system::error_code aec;
      asio::ip::make_address(cfg.host, aec);
      if (!aec)
        X509_VERIFY_PARAM_set1_ip_asc(param, cfg.host.c_str());
      else
        X509_VERIFY_PARAM_set1_host(param, cfg.host.c_str(), 0);
    }
    c->stream.expires_after(cfg.connect_timeout);
    auto [hec] =
        co_await c->stream.tls()->async_handshake(asio::ssl::stream_base::client, use_tuple);
    if (hec) {
      ec = c->stream.map_timeout(hec);
      tls_failed = ec != beast::error::timeout;
      co_return nullptr;
    }
  }
  co_return c;
}

std::unique_ptr<UpstreamConn> UpstreamPool::reuse_idle(bool retryable, Clock::time_point now) {
  while (!idle_.empty()) {
    auto c = std::move(idle_.back());
    idle_.pop_back();
    // Bytes may have arrived since the release, however short the idle
    // (what_came_while_idle says when the socket is asked).
    if (now - c->idle_since >= kMaxIdleAge) continue;
    switch (what_came_while_idle(*c, retryable)) {
      case Idled::quiet:
        c->reused = true;
        return c;
      case Idled::sent_bytes:
        if (now - c->idle_since < kStraySoon) {
          stray(now);
          return nullptr;
        }
        break;
      case Idled::closed:
        break;
    }
  }
  return nullptr;
}

std::unique_ptr<UpstreamConn> UpstreamPool::take_idle(const UpstreamConfig& cfg, bool retryable,
                                                      Clock::time_point now) {
  if (cfg.https) return nullptr;
  return reuse_idle(retryable, now);
}

void UpstreamPool::release(std::unique_ptr<UpstreamConn> c, const UpstreamConfig& cfg,
                           Clock::time_point now) {
  // Bytes already read past the response (decrypted, on TLS): an upstream that
  // sent more than its response declared (a body on a HEAD reply, bytes after
  // Content-Length). Reused, they would be the next client's response. Checked
  // here: nothing reads a pooled connection, so they cannot appear later.
  if (c->buffer.size() > 0) {
    stray(now);
    return;  // closed
  }
  // Closed too: a connection made for a config a reload has since replaced
  // (maybe another upstream), TLS bytes not yet decrypted (a close_notify,
  // perhaps), and any while the upstream is in quarantine.
  if (&cfg != current_ || cfg.max_idle_connections == 0 || c->stream.tls_buffered() ||
      now < stray_until_)
    return;
  if (idle_.size() >= static_cast<size_t>(cfg.max_idle_connections)) idle_.pop_front();
  c->stream.expires_never();
  c->idle_since = now;
  idle_.push_back(std::move(c));
}

void UpstreamPool::stray(Clock::time_point now) {
  if (now >= stray_until_)
    log::warn("upstream sent bytes outside a response: its connections are not reused",
              {{"seconds", static_cast<std::int64_t>(kStrayQuarantine.count())}});
  stray_until_ = now + kStrayQuarantine;
  idle_.clear();
}

}  // namespace keygate
