#include "keygate/proxy/response_headers.hpp"

#include "keygate/proxy/pipeline.hpp"
#include "keygate/proxy/stages.hpp"

namespace keygate {

void add_response_headers(HeaderSink& out, const Context& ctx, const Runtime& rt,
                          std::int64_t now_epoch_seconds) {
  out.set("X-Request-Id", ctx.request_id);
  add_rate_limit_headers(rt.config.rate_limit, ctx, out, now_epoch_seconds);
  add_key_lifecycle_headers(ctx, out);  // after: a credits refusal's Retry-After wins
}

void add_local_reply_headers(HeaderSink& out, const Verdict& v, const Context& ctx,
                             const Runtime& rt, std::int64_t now_epoch_seconds) {
  out.set("Content-Type", "application/json");
  if (v.www_authenticate) out.set("WWW-Authenticate", "Bearer realm=\"keygate\"");
  for (const auto& f : v.headers) out.set(f.name_string(), f.value());  // forward auth: identity
  add_response_headers(out, ctx, rt, now_epoch_seconds);
}

}  // namespace keygate
