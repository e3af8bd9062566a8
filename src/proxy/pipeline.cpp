#include "keygate/proxy/pipeline.hpp"

#include "keygate/proxy/client_ip.hpp"
#include "keygate/proxy/forward_headers.hpp"
#include "keygate/proxy/stages.hpp"

namespace keygate {

Verdict Pipeline::reply(const Error& e, Context& ctx) const {
  ctx.reason = e.reason;
  Verdict v;
  v.status = e.status;
  v.body = cache_ ? cache_->take() : std::string();
  rt_.renderer.render_into(v.body, e, ctx.request_id, ctx.decided_at(), cache_);
  v.www_authenticate = e.status == 401;
  return v;
}

std::optional<Verdict> Pipeline::health(const RequestView& req, Context& ctx) const {
  const HealthConfig& h = rt_.config.health;
  std::string_view path = req.path();
  bool live = h.live && path == *h.live;
  bool ready = h.ready && path == *h.ready;
  bool health = h.path && path == *h.path;
  if (!live && !ready && !health) return std::nullopt;
  if (ready || health) {
    if (state_.draining)
      return reply(errors::unavailable("draining", "The gateway is shutting down."), ctx);
    if (!state_.store_ok)
      return reply(errors::unavailable("unavailable", "The key store is unavailable."), ctx);
  }
  return Verdict{false, 200, R"({"success":true,"data":{"status":"ok"}})", false};
}

Verdict Pipeline::admitted(const Context& ctx) const {
  Verdict v;
  switch (ctx.mode) {
    case Context::Mode::proxy:
      v.forward = true;
      break;
    case Context::Mode::forward_auth:
      set_identity_headers(v.headers, ctx, rt_.config);  // 200, empty body
      break;
    case Context::Mode::self_service:
      v.self_service = true;
      break;
  }
  return v;
}

Verdict Pipeline::refuse(const Error& e, Context& ctx) const {
  bool shadow = rt_.config.shadow;
  if (ctx.route && ctx.route->shadow) shadow = *ctx.route->shadow;
  // Keys are never created or changed on a refused key, shadow or not.
  if (!shadow || ctx.mode == Context::Mode::self_service) return reply(e, ctx);
  ctx.shadow_reason = e.reason;
  return admitted(ctx);
}

Admission Pipeline::admit(const RequestView& sent, Context& ctx) const {
  // Without trusted proxies the client is the peer: copied into the kept
  // string (a fresh one was an allocation a request for an IPv6 peer).
  if (rt_.trusted_proxies.empty())
    ctx.client_ip.assign(ctx.peer_ip);
  else
    ctx.client_ip = resolve_client_ip(ctx.peer_ip, sent.fields, rt_.trusted_proxies);
  const NormalizeOptions options{rt_.config.limits.allow_encoded_slashes};
  if (auto e = normalize_target(sent.target, options, ctx.target)) return {reply(*e, ctx)};
  std::string_view method = sent.method;
  if (at_forward_auth(rt_.config.forward_auth, ctx.target.path())) {
    auto original = original_request(sent, ctx.target, rt_.config.forward_auth, options);
    if (!original) return {reply(original.error(), ctx)};
    ctx.mode = Context::Mode::forward_auth;
    method = ctx.judged_method = original->method;
    ctx.target = std::move(original->target);
  }
  const RequestView req{method, ctx.target.target, sent.fields};

  if (ctx.mode == Context::Mode::proxy) {
    if (auto v = health(req, ctx)) return {*v};
    if (under_self_service(rt_.config.self_service, req.path())) {
      auto admin = self_service_target(rt_.config.self_service, ctx.target);
      if (!admin) return {reply(admin.error(), ctx)};
      ctx.mode = Context::Mode::self_service;
      ctx.admin_target = std::move(*admin);
    }
  }
  if (ctx.mode != Context::Mode::self_service) {  // self-service keys need no route's blessing
    auto route = select_route(rt_.config.routes, req.method, req.path());
    if (!route) return {reply(route.error(), ctx)};
    ctx.route = *route;
    if (auto e = check_method_override(rt_.config.routes, ctx.route, req.path(), sent.fields))
      return {reply(*e, ctx)};
    if (ctx.route && ctx.route->auth_none) return {admitted(ctx)};
  }

  if (auto e = extract_credential(req, rt_.config.auth, ctx)) return {refuse(*e, ctx)};
  UnixMillis now = ctx.now = now_millis();
  if (auto e = authenticate(rt_, index_, ctx, now)) {
    Admission refused{refuse(*e, ctx)};
    // A 403 goes to an authenticated key: it still gets its rate-limit headers
    // (and, shadowed, takes no token: enforcing would not have taken one).
    if (ctx.key) refused.rate = RateQuery{ctx.policy, ctx.key->id(), ctx.key->owner(), false};
    return refused;
  }
  if (usage_ && ctx.usage_due) usage_->record({std::string(ctx.key->id()), now, ctx.client_ip});
  ctx.cost = ctx.route ? ctx.route->cost : 1;
  if (limits_.shares_credits()) {  // credits and tokens in one step, on the shared backend
    RateQuery q{ctx.policy, ctx.key->id(), ctx.key->owner(), true, ctx.cost};
    q.credits = shared_credits_query(ctx);
    if (!ctx.policy.rate && !q.credits) return {admitted(ctx)};
    return {Verdict{true}, q};
  }
  // No credits for this request: refused before the rate limit takes a token
  // (shadowed: forwarded, spending nothing, as enforcing would have spent nothing).
  if (auto e = check_credits(ctx)) {
    Admission refused{refuse(*e, ctx)};
    refused.rate = RateQuery{ctx.policy, ctx.key->id(), ctx.key->owner(), false};
    return refused;
  }
  if (!ctx.policy.rate) {  // unlimited plan: nothing to ask
    if (auto e = spend_credits(ctx)) return {refuse(*e, ctx)};
    return {admitted(ctx)};
  }
  // Passed so far; apply_rate() turns this into the mode's verdict.
  return {Verdict{true}, RateQuery{ctx.policy, ctx.key->id(), ctx.key->owner(), true, ctx.cost}};
}

void Pipeline::apply_rate(const RateOutcome& outcome, Context& ctx, Verdict& verdict) const {
  ctx.rate = outcome.decision;
  // Decided already: a refusal, or a shadowed one, that only wanted the headers.
  if (!verdict.forward || !ctx.shadow_reason.empty()) return;
  if (outcome.unavailable) {
    verdict = reply(errors::unavailable("rate_limit_unavailable",
                                        "Rate limiting is unavailable; try again shortly."),
                    ctx);
    return;
  }
  if (outcome.credits) {  // the shared step spent credits only if it took the tokens too
    if (auto e = adopt_shared_credits(ctx, *outcome.credits)) {
      verdict = refuse(*e, ctx);
      return;
    }
    if (auto e = rate_limited_error(ctx)) {
      verdict = refuse(*e, ctx);
      return;
    }
    charge_shared_credits(ctx);
    verdict = admitted(ctx);
    return;
  }
  if (auto e = rate_limited_error(ctx)) {
    verdict = refuse(*e, ctx);
    return;
  }
  if (auto e = spend_credits(ctx)) {  // a race lost since check_credits
    verdict = refuse(*e, ctx);
    return;
  }
  verdict = admitted(ctx);
}

Verdict Pipeline::decide(const RequestView& req, Context& ctx) const {
  Admission a = admit(req, ctx);
  if (!a.rate) return std::move(a.verdict);
  std::optional<RateOutcome> now = limits_.try_decide(*a.rate);
  RateOutcome outcome;
  outcome.unavailable = !now;
  apply_rate(now ? *now : outcome, ctx, a.verdict);
  return std::move(a.verdict);
}

}  // namespace keygate
