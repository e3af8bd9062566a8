// One client connection: read a request head, run the pipeline, then answer
// locally or relay to the upstream, streaming bodies both ways in fixed-size
// chunks (never buffering a whole body). Stages never see a socket; this file
// is the only place of the proxy that does I/O.
#include <sys/socket.h>

#include <memory_resource>

#include "keygate/core/ascii.hpp"
#include "keygate/core/http_date.hpp"
#include "keygate/observe/log.hpp"
#include "keygate/proxy/flat_parser.hpp"
#include "keygate/proxy/forward_headers.hpp"
#include "keygate/proxy/response_headers.hpp"
#include "keygate/proxy/stages.hpp"
#include "server/self_service.hpp"
#include "server/wire.hpp"
#include "server/worker.hpp"

namespace keygate {

using namespace net;
using namespace boost::asio::experimental::awaitable_operators;

namespace {

constexpr std::uint32_t kUpstreamHeaderLimit = 64 * 1024;
// How long a response head waits for its first body bytes before it goes alone.
constexpr Millis kHeadHold{100};

double ms_since(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t).count();
}

std::int64_t epoch_seconds(std::chrono::system_clock::time_point t) {
  return std::chrono::duration_cast<std::chrono::seconds>(t.time_since_epoch()).count();
}

bool timed_out(const boost::system::error_code& ec) {
  return ec == beast::error::timeout || ec == asio::error::timed_out;
}

// A relay buffer borrowed from the thread's pool for one request.
class ChunkLease {
 public:
  explicit ChunkLease(ChunkPool& pool) : pool_(pool), chunk_(pool.take()) {}
  ~ChunkLease() { pool_.give(std::move(chunk_)); }
  ChunkLease(const ChunkLease&) = delete;
  ChunkLease& operator=(const ChunkLease&) = delete;
  char* get() { return chunk_.get(); }

 private:
  ChunkPool& pool_;
  std::unique_ptr<char[]> chunk_;
};

// A request's arena: its parsed heads (the client's and the upstream's) are
// allocated here, from a block borrowed from the thread's pool, and released
// all at once when the request ends. A head bigger than the block spills to
// the heap until then.
class ArenaLease {
 public:
  explicit ArenaLease(ArenaPool& pool)
      : pool_(pool), block_(pool.take()), arena_(block_.get(), ArenaPool::kSize) {}
  ~ArenaLease() {
    arena_.release();
    pool_.give(std::move(block_));
  }
  ArenaLease(const ArenaLease&) = delete;
  ArenaLease& operator=(const ArenaLease&) = delete;
  ArenaAllocator<char> allocator() { return ArenaAllocator<char>(&arena_); }

 private:
  ArenaPool& pool_;
  std::unique_ptr<char[]> block_;
  std::pmr::monotonic_buffer_resource arena_;
};

// What went wrong once a request was on its way upstream. forward() names it
// and fail_forward() builds the Error: an Error held in forward()'s coroutine
// frame, one per failure path, made the frame too big for Asio to recycle.
enum class ForwardFailure {
  timeout,
  unreachable,
  tls,
  closed,
  invalid_response,
  closed_early,
  body_too_large
};

Error forward_error(ForwardFailure failure, const Config& cfg) {
  switch (failure) {
    case ForwardFailure::timeout:
      return errors::upstream_timeout();
    case ForwardFailure::unreachable:
      return errors::upstream_error("The upstream service could not be reached.");
    case ForwardFailure::tls:
      return errors::upstream_error(
          "TLS with the upstream service failed (certificate not trusted or not for this host).");
    case ForwardFailure::closed:
      return errors::upstream_error("The upstream service closed the connection.");
    case ForwardFailure::invalid_response:
      return errors::upstream_error("The upstream service sent no valid response.");
    case ForwardFailure::closed_early:
      return errors::upstream_error(
          "The upstream service closed the connection before its response was complete.");
    case ForwardFailure::body_too_large:
      return errors::payload_too_large(cfg.limits.max_body_bytes);
  }
  return errors::upstream_error("The upstream service failed.");  // (every failure is named above)
}

// Writes what `to` takes of `frame` at once (Stream::write_now) and drops it
// from `frame`: true when that settled the write (all of it went, or it
// failed: `ec`), false when the rest needs an async write.
bool write_now(Stream& to, wire::Frame& frame, boost::system::error_code& ec) {
  const std::size_t n = to.write_now(frame.buffers(), ec);
  if (ec) return true;
  frame.consume(n);
  return frame.empty();
}

// Parses what `buffer` already holds, without I/O: true when that settled the
// read (the parser got what it asked for, or failed: `ec`), false when it needs
// more bytes. Beast's async reads start the same way, but then post their
// completion: a trip through the scheduler when the bytes were already here
// (a request read with the wait for its first byte, a body behind its head).
template <class Parser>
bool parse_buffered(Parser& parser, beast::flat_buffer& buffer, boost::system::error_code& ec) {
  if (buffer.size() == 0) return false;
  buffer.consume(parser.put(buffer.data(), ec));
  if (ec != http::error::need_more) return true;
  ec = {};
  return false;
}

// After the head: the rest of the message is already in `buffer` (no body,
// or a Content-Length body that arrived with the head; a chunked or
// EOF-delimited body has no remaining length).
template <class Parser>
bool whole_message_buffered(const Parser& parser, const beast::flat_buffer& buffer) {
  if (parser.is_done()) return true;
  const boost::optional<std::uint64_t> rest = parser.content_length_remaining();
  return rest && *rest <= buffer.size();
}

// What a failed read means to `parser`, as Beast's reads tell it: EOF before
// any byte is end_of_stream, EOF inside a head what put_eof() says of it.
template <class Parser>
boost::system::error_code read_failed(Parser& parser, const boost::system::error_code& ec) {
  if (ec != asio::error::eof) return ec;
  if (!parser.got_some()) return http::error::end_of_stream;
  boost::system::error_code eof;
  parser.put_eof(eof);
  return eof ? eof : boost::system::error_code(http::error::partial_message);
}

// Empties an optional when the scope ends.
template <class T>
class ResetOnExit {
 public:
  explicit ResetOnExit(std::optional<T>& o) : o_(o) {}
  ~ResetOnExit() { o_.reset(); }
  ResetOnExit(const ResetOnExit&) = delete;
  ResetOnExit& operator=(const ResetOnExit&) = delete;

 private:
  std::optional<T>& o_;
};

class ProxySession {
 public:
  ProxySession(Stream s, std::shared_ptr<asio::ssl::context> tls, Worker& w, Services& svc)
      : stream_(std::move(s)), tls_(std::move(tls)), w_(w), svc_(svc) {
    boost::system::error_code ec;
    auto ep = stream_.socket().remote_endpoint(ec);
    if (!ec) {
      auto addr = ep.address();
      if (addr.is_v6() && addr.to_v6().is_v4_mapped())
        addr = asio::ip::make_address_v4(asio::ip::v4_mapped, addr.to_v6());
      ctx_.peer_ip = addr.to_string();
    }
    stream_.socket().set_option(tcp::no_delay(true), ec);
  }

  awaitable<void> run() {
    svc_.metrics.connection_opened();
    bool ready = true;  // (no co_await inside || : another g++ 12 coroutine pitfall)
    if (stream_.tls()) ready = co_await handshake();
    if (ready) co_await serve_requests();
    boost::system::error_code ec;
    stream_.socket().shutdown(tcp::socket::shutdown_send, ec);
    stream_.close();
    svc_.metrics.connection_closed();
  }

 private:
  struct Outcome {
    int status = 0;
    std::uint64_t bytes_in = 0, bytes_out = 0;
    double upstream_ms = -1;
  };

  // TLS listener: a client speaking plain HTTP gets a plain 400 saying so
  // (instead of a handshake error it cannot read); others get the handshake.
  awaitable<bool> handshake() {
    const Config& cfg = w_.runtime->config;
    stream_.expires_after(cfg.limits.header_timeout);
    auto [wec] = co_await stream_.socket().async_wait(tcp::socket::wait_read, use_tuple);
    if (wec) co_return false;
    unsigned char first = 0;
    ssize_t n = ::recv(stream_.socket().native_handle(), &first, 1, MSG_PEEK);
    if (n != 1) co_return false;
    if (first != 0x16) {  // not a TLS handshake record
      Error e = errors::bad_request("This port speaks HTTPS; the request was plain HTTP.");
      e.reason = "plain_http";
      std::string body = ErrorRenderer::envelope(e, new_request_id());
      std::string reply =
          "HTTP/1.1 400 Bad Request\r\nDate: " + std::string(http_date_now()) +
          "\r\nContent-Type: application/json\r\nConnection: close\r\nContent-Length: " +
          std::to_string(body.size()) + "\r\n\r\n" + body;
      co_await asio::async_write(stream_.socket(), asio::buffer(reply), use_tuple);
      svc_.metrics.count_request(400, "bad_request");
      co_return false;
    }
    auto [hec] = co_await stream_.tls()->async_handshake(asio::ssl::stream_base::server, use_tuple);
    co_return !hec;
  }

  // Whether the first bytes of the next request are in buffer_: already
  // there (a client that sent it before our reply reached it) or not, told
  // without a system call when the reactor knows (read_readiness.hpp).
  enum class Arrival { here, closed, wait };
  static constexpr std::size_t kRequestRead = 16 * 1024;
  Arrival request_arrival() {
    if (buffer_.size() > 0) return Arrival::here;
    boost::system::error_code ec;
    if (const std::size_t n = stream_.read_now(buffer_.prepare(kRequestRead), ec)) {
      buffer_.commit(n);
      return Arrival::here;
    }
    return ec ? Arrival::closed : Arrival::wait;
  }
  // Before and after waiting for a request: idle connections are listed so
  // a drain can close them.
  void start_waiting(const Config& cfg) {
    stream_.expires_after(first_ ? cfg.limits.header_timeout : cfg.limits.idle_timeout);
    idle_.socket = &stream_.socket();
    w_.idle.push_back(idle_);
  }
  bool request_read(const boost::system::error_code& ec, std::size_t n) {
    idle_.unlink();
    if (ec) return false;
    stream_.read_completed(n, kRequestRead);
    buffer_.commit(n);
    return true;
  }

  // The connection's requests, one after another, in one coroutine: a
  // coroutine per request (and one each for the wait and the local reply)
  // cost its frame, push, resumption and pop, ~250 instructions apiece.
  // Only what must outlive a co_await is a local here (it lives in the
  // coroutine's frame): the verdict, the outcome and the rate query are
  // members, and what is decided without I/O is done in plain member
  // functions (a Verdict, Error or Admission held here was a malloc per
  // request when the frame was a request's).
  awaitable<void> serve_requests() {
    while (!svc_.state.draining.load(std::memory_order_relaxed)) {
      if (const Arrival arrival = request_arrival(); arrival != Arrival::here) {
        if (arrival == Arrival::closed) break;
        start_waiting(w_.runtime->config);
        auto [rec, rn] = co_await stream_.async_read_some(buffer_.prepare(kRequestRead), use_tuple);
        if (!request_read(rec, rn)) break;
      }
      // Taken once the request is here, not before the wait: a request that
      // comes after a reload gets the new config. It keeps that generation.
      RuntimePtr rt = w_.runtime;
      const Config& cfg = rt->config;
      first_ = false;
      const auto start = std::chrono::steady_clock::now();

      // Declared before the parser, which allocates from it.
      ArenaLease arena(w_.arenas);
      RequestParser parser(request_fields_, arena.allocator());
      parser.header_limit(static_cast<std::uint32_t>(cfg.limits.max_header_bytes));
      parser.body_limit(cfg.limits.max_body_bytes);
      stream_.expires_at(start + cfg.limits.header_timeout);
      boost::system::error_code ec;
      if (parse_buffered(parser, buffer_, ec)) {
        // The whole request came in one read, body included: the next read
        // waits for epoll. Marked now, before any co_await (an edge epoll
        // reports later sets the mark back). Left marked readable after a
        // POST, the next request's read was tried before the client could
        // have sent it (EAGAIN once a request). (A client that half-closed
        // after its request is then seen at the idle timeout.)
        if (!ec && whole_message_buffered(parser, buffer_)) stream_.mark_drained();
      } else {
        auto [rec, rn] = co_await http::async_read_header(stream_, buffer_, parser, use_tuple);
        ec = rec;
      }
      // The head is in: its deadline ends here (every later read or write on
      // this connection sets its own). Left armed, it closed the connection while
      // a slow upstream was still within upstream.timeout.
      if (!ec) stream_.expires_never();
      head_ = !ec && parser.get().method() == http::verb::head;

      // One context per connection, cleared per request: its strings keep their capacity.
      ctx_.clear();
      outcome_ = Outcome{};
      Pipeline pipeline(*rt, svc_.index, *w_.limits, &svc_.usage, svc_.state, &w_.replies);
      if (ec) {
        // A slow or vanished client is just cut off; a malformed one gets told why.
        if (timed_out(ec) || ec == asio::error::eof || ec == http::error::end_of_stream ||
            ec == asio::error::connection_reset || ec == http::error::partial_message)
          break;
        reply_to_unreadable_head(ec, cfg, pipeline);
        co_await write_local(verdict_, *rt, false, 11);
        finish(ctx_, "-", "-", outcome_, start);
        break;
      }

      auto& req = parser.get();  // its fields are in request_fields_
      choose_request_id(request_fields_["X-Request-Id"], ctx_.request_id);
      const std::string_view method = req.method_string();  // lives as long as the parser
      // The target is rewritten before the access log is written: the one sent
      // (the log drops its query string).
      std::string_view path;
      if (log::access_enabled()) path = req.target();
      if (refuse_framing(req, pipeline)) {
        // The body's extent is in doubt: never read on, or it becomes the next request.
        co_await write_local(verdict_, *rt, false, req.version());
        finish(ctx_, method, path, outcome_, start);
        break;
      }
      if (!admit(req, pipeline)) co_await ask_rate_limit_backend(pipeline);
      // The parser's flags: the header holds no fields (they are in request_fields_).
      bool keep = parser.keep_alive() && !svc_.state.draining.load(std::memory_order_relaxed);
      if (verdict_.self_service) co_await serve_self_service(parser, pipeline, cfg);
      if (!verdict_.forward) {
        keep = keep && parser.is_done();  // an unread body: the connection cannot continue
        outcome_.status = verdict_.status;
        outcome_.bytes_out = verdict_.body.size();
        // write_local, inlined for the hot 401/429 path.
        Written written = write_local_now(verdict_, *rt, keep, req.version());
        if (written == Written::pending) written = co_await write_rest(cfg);
        w_.replies.give(std::move(verdict_.body));
        finish(ctx_, method, path, outcome_, start);
        if (written != Written::all || !keep) break;
        continue;
      }
      const bool again = co_await forward(parser, ctx_, arena, *rt, pipeline, keep, outcome_);
      finish(ctx_, method, path, outcome_, start);
      if (!again) break;
    }
  }

  // The head could not be read (too large, malformed): verdict_ says why.
  void reply_to_unreadable_head(const boost::system::error_code& ec, const Config& cfg,
                                const Pipeline& pipeline) {
    new_request_id(ctx_.request_id);
    Error err = ec == http::error::header_limit
                    ? errors::headers_too_large(cfg.limits.max_header_bytes)
                : ec == http::error::body_limit
                    ? errors::payload_too_large(cfg.limits.max_body_bytes)
                    : errors::bad_request("Malformed HTTP request: " + ec.message() + ".");
    if (err.status == 400) err.reason = "bad_request";
    verdict_ = pipeline.reply(err, ctx_);
    outcome_.status = verdict_.status;
  }

  // A head whose framing is in doubt: its 400 in verdict_, and true.
  bool refuse_framing(const RequestParser::value_type& req, const Pipeline& pipeline) {
    const std::optional<Error> err = check_framing(request_fields_, req.version());
    if (!err) return false;
    verdict_ = pipeline.reply(*err, ctx_);
    outcome_.status = verdict_.status;
    outcome_.bytes_out = verdict_.body.size();
    return true;
  }

  // Every stage up to the rate limit, and the rate limit too when its backend
  // answers at once (the local one always does): the verdict in verdict_.
  // False when a shared backend needs a round trip for rate_query_.
  bool admit(const RequestParser::value_type& req, const Pipeline& pipeline) {
    const RequestView view{req.method_string(), req.target(), request_fields_};
    Admission admission = pipeline.admit(view, ctx_);
    verdict_ = std::move(admission.verdict);
    if (!admission.rate) return true;
    if (std::optional<RateOutcome> at_once = w_.limits->try_decide(*admission.rate)) {
      pipeline.apply_rate(*at_once, ctx_, verdict_);
      return true;
    }
    rate_query_ = std::move(admission.rate);
    return false;
  }

  awaitable<void> ask_rate_limit_backend(const Pipeline& pipeline) {
    const RateOutcome outcome = co_await w_.limits->async_decide(*rate_query_, asio::use_awaitable);
    pipeline.apply_rate(outcome, ctx_, verdict_);
  }

  // Admin key routes on this listener (SPEC §9).
  awaitable<void> serve_self_service(RequestParser& parser, const Pipeline& pipeline,
                                     const Config& cfg) {
    verdict_ = co_await run_self_service(stream_, buffer_, parser, ctx_, pipeline, svc_, cfg);
  }

  // A local reply: one head written flat (status line, date, content type,
  // challenge, X-Request-Id, rate-limit headers, length, connection) and the
  // body, in one write. The body's string goes back to the thread's cache.
  awaitable<bool> write_local(Verdict& v, const Runtime& rt, bool keep_alive, unsigned version) {
    Written w = write_local_now(v, rt, keep_alive, version);
    if (w == Written::pending) w = co_await write_rest(rt.config);
    w_.replies.give(std::move(v.body));
    co_return w == Written::all;
  }

  // write_local's part that needs no waiting: the reply rendered into
  // reply_head_ and reply_frame_, and written if the socket takes it all.
  enum class Written { all, failed, pending };
  Written write_local_now(Verdict& v, const Runtime& rt, bool keep_alive, unsigned version) {
    reply_head_.clear();
    wire::status_line(reply_head_, version, static_cast<unsigned>(v.status));
    const std::int64_t now_s = epoch_seconds(ctx_.decided_at());
    wire::field(reply_head_, "Date", http_date_at(now_s));
    edits_.clear();
    add_local_reply_headers(edits_, v, ctx_, rt, now_s);
    edits_.append_to(reply_head_);
    wire::number_field(reply_head_, "Content-Length", v.body.size());
    wire::connection(reply_head_, version, keep_alive);
    reply_head_.push_back('\r');
    reply_head_.push_back('\n');
    // The answer to HEAD is the head alone (with the length a GET would get).
    reply_frame_ = wire::Frame{};
    reply_frame_.head(reply_head_);
    if (!head_) reply_frame_.data(v.body.data(), v.body.size(), false);
    boost::system::error_code ec;
    if (!write_now(stream_, reply_frame_, ec)) return Written::pending;
    return ec ? Written::failed : Written::all;
  }
  // What the socket did not take of reply_frame_.
  awaitable<Written> write_rest(const Config& cfg) {
    stream_.expires_after(cfg.limits.idle_timeout);
    auto [ec, n] = co_await asio::async_write(stream_, reply_frame_.buffers(), use_tuple);
    co_return ec ? Written::failed : Written::all;
  }

  // Local error after the request was accepted for forwarding.
  awaitable<bool> fail_forward(ForwardFailure failure, Context& ctx, const Runtime& rt,
                               const Pipeline& pipeline, bool keep, unsigned version, Outcome& o) {
    verdict_ = pipeline.reply(forward_error(failure, rt.config), ctx);
    o.status = verdict_.status;
    o.bytes_out = verdict_.body.size();
    const bool ok = co_await write_local(verdict_, rt, keep, version);
    co_return (ok && keep);
  }

  awaitable<bool> forward(RequestParser& parser, Context& ctx, ArenaLease& arena, const Runtime& rt,
                          const Pipeline& pipeline, bool keep, Outcome& o) {
    const Config& cfg = rt.config;
    auto& req = parser.get();
    const unsigned client_version = req.version();
    const bool head = ascii_iequals(req.method_string(), "HEAD");  // routes read `head` so too
    RequestFields& fields = parser.fields();
    const bool websocket = ascii_iequals(fields[http::field::upgrade], "websocket");

    if (ascii_iequals(fields[http::field::expect], "100-continue")) {
      // We answer the expectation ourselves once the key is accepted; the
      // upstream then receives an ordinary request with a body.
      fields.erase(http::field::expect);
      if (!parser.is_done()) {
        static constexpr std::string_view kContinue = "HTTP/1.1 100 Continue\r\n\r\n";
        stream_.expires_after(cfg.limits.idle_timeout);
        auto [ec, n] = co_await asio::async_write(stream_, asio::buffer(kContinue), use_tuple);
        if (ec) co_return false;
      }
    }
    // The head going upstream, written once (a retry sends the same bytes).
    request_head_.clear();
    write_request_head(request_head_, req.method_string(), ctx.target.target, fields, ctx, rt,
                       {stream_.tls() != nullptr, websocket});

    // Retry once, on a fresh connection, when a reused one fails before any
    // response byte and no body was sent (Pingora's rule): the upstream may
    // have closed it while it sat in the pool.
    const bool bodiless = parser.is_done();
    ChunkLease chunk(w_.chunks);
    std::unique_ptr<UpstreamConn> conn;
    // The upstream's response head, parsed into this request's arena; a member,
    // not a local (it would take 288 of the frame's bytes), gone before the arena.
    std::optional<ResponseParser>& rp = response_parser_;
    const ResetOnExit reset_response_parser{rp};
    auto upstream_start = std::chrono::steady_clock::now();
    for (int attempt = 0;; ++attempt) {
      boost::system::error_code ec;
      bool tls_failed = false;
      if (attempt == 0)
        conn = w_.pool.take_idle(cfg.upstream, bodiless, upstream_start);  // no coroutine
      else
        conn.reset();  // the retry: a fresh connection
      if (!conn) conn = co_await w_.pool.acquire(cfg.upstream, ec, tls_failed, attempt > 0);
      if (!conn) {
        bool timeout = timed_out(ec);
        svc_.metrics.count_upstream_error(timeout ? "timeout" : tls_failed ? "tls" : "connect");
        log::warn(tls_failed ? "upstream TLS failed" : "upstream connect failed",
                  {{"request_id", ctx.request_id}, {"error", ec.message()}});
        const ForwardFailure failure = timeout      ? ForwardFailure::timeout
                                       : tls_failed ? ForwardFailure::tls
                                                    : ForwardFailure::unreachable;
        co_return co_await fail_forward(failure, ctx, rt, pipeline, keep && parser.is_done(),
                                        client_version, o);
      }
      const bool may_retry = attempt == 0 && conn->reused && bodiless;

      // Request: head, then the body as it arrives.
      RelayResult sent =
          co_await relay(stream_, buffer_, parser, conn->stream, request_head_, parser.chunked(),
                         chunk.get(), cfg.limits.idle_timeout, Millis(0), o.bytes_in);
      if (sent.read) {
        if (sent.read == http::error::body_limit) {
          co_return co_await fail_forward(ForwardFailure::body_too_large, ctx, rt, pipeline, false,
                                          client_version, o);
        }
        o.status = 499;  // client went away mid-body
        ctx.reason = "client_closed";
        co_return false;
      }
      const boost::system::error_code wec = sent.write;
      if (wec && may_retry && !timed_out(wec)) continue;
      if (wec) {
        svc_.metrics.count_upstream_error(timed_out(wec) ? "timeout" : "reset");
        const ForwardFailure failure =
            timed_out(wec) ? ForwardFailure::timeout : ForwardFailure::closed;
        co_return co_await fail_forward(failure, ctx, rt, pipeline, false, client_version, o);
      }

      // Response head (interim 1xx other than 101 are dropped).
      boost::system::error_code hec;
      for (int interim = 0; interim < 8; ++interim) {
        rp.emplace(response_fields_, arena.allocator());
        rp->body_limit(boost::none);
        rp->header_limit(kUpstreamHeaderLimit);
        if (head) rp->skip(true);
        conn->stream.expires_after(cfg.upstream.timeout);
        // Reads and parses here rather than through http::async_read_header:
        // its two composed operations (and their work tracking) cost more than
        // the read itself; the end-of-stream rules are Beast's (read_failed).
        while (!parse_buffered(*rp, conn->buffer, hec)) {
          const auto space = conn->buffer.prepare(beast::read_size(conn->buffer, 65536));
          boost::system::error_code rec;
          std::size_t rn = conn->stream.read_now(space, rec);
          if (rn == 0 && !rec) {
            auto [aec, an] = co_await conn->stream.async_read_some(space, use_tuple);
            rec = aec;
            rn = an;
            conn->stream.read_completed(rn, space.size());
          }
          conn->buffer.commit(rn);
          if (rec) {
            hec = read_failed(*rp, rec);
            break;
          }
        }
        // Beast reads any three digits; below 100 is no status (RFC 9110 §15),
        // and neither interim nor something a client could parse.
        if (!hec && rp->get().result_int() < 100) hec = http::error::bad_status;
        // As many Connection options as a request may carry (check_framing).
        if (!hec && too_many_connection_options(response_fields_)) hec = http::error::bad_field;
        if (hec || rp->get().result_int() >= 200 || rp->get().result_int() == 101) break;
      }
      // All of it read (a body that came with the head too): nothing waits on
      // this connection until its reuse, which asks the socket. Left marked
      // readable, the next request on it tried a recv before the response
      // could be there (EAGAIN 0.7 a request under wrk on one CPU).
      if (!hec && whole_message_buffered(*rp, conn->buffer)) conn->stream.mark_drained();
      const bool nothing_received = hec == http::error::end_of_stream ||
                                    hec == asio::error::connection_reset || hec == asio::error::eof;
      if (hec && may_retry && nothing_received) continue;
      if (hec) {
        bool timeout = timed_out(hec);
        svc_.metrics.count_upstream_error(timeout            ? "timeout"
                                          : nothing_received ? "reset"
                                                             : "protocol");
        const ForwardFailure failure =
            timeout ? ForwardFailure::timeout : ForwardFailure::invalid_response;
        co_return co_await fail_forward(failure, ctx, rt, pipeline, keep, client_version, o);
      }
      break;
    }
    const auto upstream_end = std::chrono::steady_clock::now();
    o.upstream_ms =
        std::chrono::duration<double, std::milli>(upstream_end - upstream_start).count();
    svc_.metrics.upstream_seconds.observe(o.upstream_ms / 1000);
    auto& res = rp->get();
    o.status = static_cast<int>(res.result_int());

    edits_.clear();
    if (websocket && res.result() == http::status::switching_protocols) {
      edits_.set("X-Request-Id", ctx.request_id);
      reply_head_.clear();
      wire::upgrade_head(reply_head_, res, response_fields_, edits_);
      co_await tunnel(*conn, cfg);
      co_return false;
    }

    // Framing from the parser's flags (set while it read the head; keep_alive()
    // includes need_eof()): res.keep_alive() and res.chunked() parse the field
    // lists again, ~700 instructions a response.
    const bool upstream_reusable = rp->keep_alive();
    const bool upstream_chunked = rp->chunked();
    // The decision's time, as a local reply has it: X-RateLimit-Reset (epoch)
    // counts from when the bucket was read, not from the upstream's answer.
    add_response_headers(edits_, ctx, rt, epoch_seconds(ctx.decided_at()));
    const bool no_body = head || o.status == 204 || o.status == 304 || o.status < 200;
    bool rechunk = false;  // body until EOF upstream: chunk it to keep the client connection
    if (!no_body && !upstream_chunked && !rp->content_length()) {
      if (client_version >= 11)
        rechunk = true;
      else
        keep = false;
    }
    const bool chunked = !no_body && (rechunk || upstream_chunked);
    reply_head_.clear();
    wire::response_head(reply_head_, res, response_fields_, client_version, edits_, rechunk, keep);

    RelayResult got = co_await relay(conn->stream, conn->buffer, *rp, stream_, reply_head_, chunked,
                                     chunk.get(), cfg.limits.idle_timeout, kHeadHold, o.bytes_out);
    if (got.read) {
      const bool timeout = timed_out(got.read);
      svc_.metrics.count_upstream_error(timeout ? "timeout" : "reset");
      if (!got.sent_any) {  // nothing reached the client yet: it gets a proper answer
        const ForwardFailure failure =
            timeout ? ForwardFailure::timeout : ForwardFailure::closed_early;
        co_return co_await fail_forward(failure, ctx, rt, pipeline, false, client_version, o);
      }
      ctx.reason = "upstream";  // too late for an error reply: cut the client off
      co_return false;
    }
    if (got.write) co_return false;

    // Only an exchange read exactly to its end is pooled (the pool then checks
    // that nothing follows it): no client ever reads another one's bytes.
    if (upstream_reusable && rp->is_done())
      w_.pool.release(std::move(conn), cfg.upstream, upstream_end);
    co_return keep;
  }

  struct RelayResult {
    boost::system::error_code read, write;  // which side failed, if one did
    bool sent_any = false;                  // some byte went to `to`
  };

  // `head`, then the body as `parser` reads it from `from`: whatever has arrived
  // is forwarded at once (re-chunked when `chunked`), so event streams flow,
  // with `idle` as the limit between bytes. Each write is one gather of at most
  // five buffers. When no body byte came with the head, the head waits up to
  // `head_hold` for the first ones (one write instead of two, and a reset right
  // after the head still gets a clean 502) and then goes alone.
  // Used both ways: client -> upstream and upstream -> client.
  template <class Parser>
  awaitable<RelayResult> relay(Stream& from, beast::flat_buffer& from_buffer, Parser& parser,
                               Stream& to, std::string_view head, bool chunked, char* chunk,
                               Millis idle, Millis head_hold, std::uint64_t& bytes) {
    auto& body = parser.get().body();
    RelayResult r;
    bool head_pending = true;
    // Beast reads at most the buffer's spare capacity (512 bytes after a small
    // head): without this a 1 MB body took 2,048 reads and 2,048 writes.
    from_buffer.reserve(ChunkPool::kChunk);
    if (!parser.is_done() && from_buffer.size() == 0 && !from.tls_buffered()) {
      bool readable = false;
      if (head_hold.count() > 0) readable = co_await wait_readable(from, head_hold);
      if (!readable) {
        to.expires_after(idle);
        auto [wec, wn] = co_await asio::async_write(to, asio::buffer(head), use_tuple);
        if (wec) {
          r.write = wec;
          co_return r;
        }
        r.sent_any = true;
        head_pending = false;
      }
    }
    for (bool done = false; !done;) {
      size_t n = 0;
      if (!parser.is_done()) {
        body.data = chunk;
        body.size = ChunkPool::kChunk;
        boost::system::error_code ec;
        if (!parse_buffered(parser, from_buffer, ec)) {
          from.expires_after(idle);
          auto [rec, rn] = co_await http::async_read_some(from, from_buffer, parser, use_tuple);
          ec = rec;
        }
        if (ec && ec != http::error::need_buffer) {
          r.read = ec;
          co_return r;
        }
        n = ChunkPool::kChunk - body.size;
        bytes += n;
      }
      done = parser.is_done();
      wire::Frame frame;
      if (head_pending) frame.head(head);
      head_pending = false;
      frame.data(chunk, n, chunked);
      if (done && chunked) frame.last_chunk();
      if (frame.empty()) continue;
      boost::system::error_code wec;
      if (!write_now(to, frame, wec)) {
        to.expires_after(idle);
        auto [aec, wn] = co_await asio::async_write(to, frame.buffers(), use_tuple);
        wec = aec;
      }
      if (wec) {
        r.write = wec;
        co_return r;
      }
      r.sent_any = true;
    }
    co_return r;
  }

  // True when `s` has bytes (or an error, or EOF) to read within `hold`.
  static awaitable<bool> wait_readable(Stream& s, Millis hold) {
    asio::steady_timer timer(co_await asio::this_coro::executor, hold);
    auto first = co_await (s.socket().async_wait(tcp::socket::wait_read, use_tuple) ||
                           timer.async_wait(use_tuple));
    co_return first.index() == 0;
  }

  // After a 101 from the upstream: its head (in reply_head_) to the client,
  // then bytes both ways until either side closes or goes idle.
  awaitable<void> tunnel(UpstreamConn& up, const Config& cfg) {
    stream_.expires_after(cfg.limits.idle_timeout);
    auto [ec, n] = co_await asio::async_write(stream_, asio::buffer(reply_head_), use_tuple);
    if (ec) co_return;
    auto pump = [&cfg](Stream& from, beast::flat_buffer& pending, Stream& to) -> awaitable<void> {
      std::vector<char> buf(ChunkPool::kChunk);
      if (pending.size() > 0) {
        to.expires_after(cfg.limits.idle_timeout);
        auto [wec, wn] = co_await asio::async_write(to, pending.data(), use_tuple);
        if (wec) co_return;
        pending.consume(pending.size());
      }
      for (;;) {
        from.expires_after(cfg.limits.idle_timeout);
        auto [rec, rn] = co_await from.async_read_some(asio::buffer(buf), use_tuple);
        if (rec) co_return;
        to.expires_after(cfg.limits.idle_timeout);
        auto [wec, wn] = co_await asio::async_write(to, asio::buffer(buf.data(), rn), use_tuple);
        if (wec) co_return;
      }
    };
    co_await (pump(stream_, buffer_, up.stream) || pump(up.stream, up.buffer, stream_));
  }

  void finish(const Context& ctx, std::string_view method, std::string_view path, const Outcome& o,
              std::chrono::steady_clock::time_point start) {
    double ms = ms_since(start);
    svc_.metrics.count_request(o.status, ctx.reason);
    svc_.metrics.request_seconds.observe(ms / 1000);
    meter_request(ctx, o.status);
    if (!ctx.shadow_reason.empty()) svc_.metrics.count_shadow_denied(ctx.shadow_reason);
    if (!log::access_enabled()) return;
    // A forward-auth check is logged as the request it was about.
    if (ctx.mode == Context::Mode::forward_auth) {
      method = ctx.judged_method;
      path = ctx.target.target;
    }
    log::access({ctx.request_id, ctx.client_ip, method, path, ctx.reason,
                 ctx.key ? ctx.key->id() : std::string_view{},
                 ctx.key ? ctx.key->owner() : std::string_view{}, o.status, o.bytes_in, o.bytes_out,
                 ms, o.upstream_ms, ctx.deprecated, ctx.shadow_reason});
  }

  Stream stream_;
  std::shared_ptr<asio::ssl::context> tls_;  // keeps the listener context alive
  beast::flat_buffer buffer_;
  Worker& w_;
  Services& svc_;
  Context ctx_;  // the request being served (peer_ip set once)
  // The request's verdict, what came of it (for the log and metrics), and a
  // rate-limit question waiting for a shared backend.
  Verdict verdict_;
  Outcome outcome_;
  std::optional<RateQuery> rate_query_;
  // The request's fields (the parser's), the views in ctx_ point into them.
  RequestFields request_fields_;
  std::optional<ResponseParser> response_parser_;  // while forward() runs
  FlatFields response_fields_;                     // its fields
  // Reused across the connection's requests (their capacity kept): the head
  // going upstream, the head going to the client, the gateway's response fields.
  std::string request_head_, reply_head_;
  wire::Frame reply_frame_;  // a local reply being written (reply_head_ and the body)
  HeaderList edits_;
  IdleConnection idle_;  // listed in the worker while waiting for a request
  bool first_ = true;
  bool head_ = false;  // the request being answered is a HEAD
};

}  // namespace

// A plain function, not a ?: inside the coroutine: g++ 12 miscompiles
// conditional-expression temporaries in coroutine bodies.
Stream client_stream(tcp::socket socket, const std::shared_ptr<asio::ssl::context>& tls) {
  if (tls) return Stream(std::move(socket), *tls);
  return Stream(std::move(socket));
}

awaitable<void> run_proxy_session(tcp::socket socket, Worker& worker, Services& svc) {
  auto tls = worker.tls;  // the listener's context when this connection arrived
  Stream stream = client_stream(std::move(socket), tls);
  ProxySession session(std::move(stream), tls, worker, svc);
  co_await session.run();
}

}  // namespace keygate
