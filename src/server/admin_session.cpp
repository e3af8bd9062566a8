// Admin listener connections: whole small requests, handled on the store
// worker thread (co_spawn there, resume here), answered in the envelope.
// The metrics.listen listener runs the same loop with only /metrics served.
#include "server/admin_session.hpp"
#include "keygate/core/http_date.hpp"
#include "keygate/observe/log.hpp"
#include "keygate/proxy/forward_headers.hpp"

namespace keygate {

using namespace net;

awaitable<void> run_admin_session(tcp::socket socket, StoreWorker& store, const Metrics& metrics,
                                  const GatewayState& state, bool metrics_only) {
  beast::tcp_stream stream(std::move(socket));
  beast::flat_buffer buffer;
  constexpr std::uint64_t kBodyLimit = 1 << 20;
  while (!state.draining) {
    http::request_parser<http::string_body> parser;
    parser.body_limit(kBodyLimit);
    parser.header_limit(16 * 1024);
    stream.expires_after(std::chrono::seconds(30));
    auto [ec, n] = co_await http::async_read(stream, buffer, parser, use_tuple);
    if (ec == http::error::end_of_stream || ec == asio::error::eof || ec == beast::error::timeout ||
        ec == asio::error::connection_reset)
      break;
    auto& req = parser.get();
    AdminRequest ar{std::string(req.method_string()),
                    std::string(req.target()),
                    req.body(),
                    std::string(req[http::field::authorization]),
                    std::string(req["X-Api-Key"]),
                    choose_request_id(req["X-Request-Id"]),
                    metrics_only};
    AdminResponse res;
    auto started = std::chrono::steady_clock::now();
    if (ec) {
      Error e = ec == http::error::body_limit ? errors::payload_too_large(kBodyLimit)
                                              : errors::bad_request("Malformed HTTP request.");
      res = {e.status, ErrorRenderer::envelope(e, ar.request_id)};
    } else {
      res = co_await asio::co_spawn(
          store.executor(),
          [&]() -> awaitable<AdminResponse> { co_return store.admin(ar, metrics); },
          asio::use_awaitable);
    }
    http::response<http::string_body> out{static_cast<http::status>(res.status), 11};
    out.set(http::field::date, http_date_now());
    out.set(http::field::content_type, res.content_type);
    out.set("X-Request-Id", ar.request_id);
    if (!res.allow.empty()) out.set(http::field::allow, res.allow);
    if (res.status == 401) out.set(http::field::www_authenticate, "Bearer realm=\"keygate\"");
    bool keep = !ec && req.keep_alive();
    out.keep_alive(keep);
    out.body() = std::move(res.body);
    out.prepare_payload();
    stream.expires_after(std::chrono::seconds(30));
    auto [wec, wn] = co_await http::async_write(stream, out, use_tuple);
    std::string path(ar.target.substr(0, ar.target.find('?')));
    // Scrapes come every few seconds: logged at debug, not info.
    const bool scrape = path == "/metrics" && res.status == 200;
    log::event(scrape ? "debug" : "info", "admin request",
               {{"request_id", ar.request_id},
                {"method", ar.method},
                {"path", path},
                {"status", res.status},
                {"duration_ms", std::chrono::duration<double, std::milli>(
                                    std::chrono::steady_clock::now() - started)
                                    .count()}});
    if (wec || !keep) break;
  }
  boost::system::error_code ignored;
  stream.socket().shutdown(tcp::socket::shutdown_both, ignored);
}

}  // namespace keygate
