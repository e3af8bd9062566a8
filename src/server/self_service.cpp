#include "server/self_service.hpp"

#include "keygate/core/ascii.hpp"
#include "server/store_worker.hpp"

namespace keygate {

using namespace net;

namespace {
// The admin listener's body limit: key bodies are small.
constexpr std::uint64_t kBodyLimit = 1 << 20;
}  // namespace

awaitable<Verdict> run_self_service(Stream& stream, beast::flat_buffer& buffer,
                                    RequestParser& parser, Context& ctx, const Pipeline& pipeline,
                                    Services& svc, const Config& cfg) {
  auto& req = parser.get();
  std::string body;
  if (ascii_iequals(parser.fields()[http::field::expect], "100-continue") && !parser.is_done()) {
    static constexpr std::string_view kContinue = "HTTP/1.1 100 Continue\r\n\r\n";
    stream.expires_after(cfg.limits.idle_timeout);
    auto [ec, n] = co_await asio::async_write(stream, asio::buffer(kContinue), use_tuple);
    if (ec) co_return pipeline.reply(errors::bad_request("The client went away."), ctx);
  }
  char chunk[8192];
  while (!parser.is_done()) {
    req.body().data = chunk;
    req.body().size = sizeof chunk;
    stream.expires_after(cfg.limits.idle_timeout);
    auto [ec, n] = co_await http::async_read_some(stream, buffer, parser, use_tuple);
    if (ec && ec != http::error::need_buffer) {
      Error e = ec == http::error::body_limit ? errors::payload_too_large(cfg.limits.max_body_bytes)
                                              : errors::bad_request("Malformed request body.");
      co_return pipeline.reply(e, ctx);  // the body is unread: the connection closes after it
    }
    body.append(chunk, sizeof chunk - req.body().size);
    if (body.size() > kBodyLimit)
      co_return pipeline.reply(errors::payload_too_large(kBodyLimit), ctx);
  }

  AdminRequest ar;
  ar.method = std::string(req.method_string());
  ar.target = ctx.admin_target;
  ar.body = std::move(body);
  ar.api_key =
      std::string(ctx.credential->value);  // authenticated by the pipeline; checked again there
  ar.request_id = ctx.request_id;
  ar.keys_only = true;
  StoreWorker& store = svc.store;
  const Metrics& metrics = svc.metrics;
  AdminResponse res = co_await asio::co_spawn(
      store.executor(), [&]() -> awaitable<AdminResponse> { co_return store.admin(ar, metrics); },
      asio::use_awaitable);

  Verdict v;
  v.status = res.status;
  v.body = std::move(res.body);
  v.www_authenticate = res.status == 401;
  if (!res.allow.empty()) v.headers.set(http::field::allow, res.allow);
  co_return v;
}

}  // namespace keygate
