#include "keygate/proxy/pipeline.hpp"

#include "keygate/proxy/stages.hpp"

namespace keygate {

Verdict Pipeline::reply(const Error& e, Context& ctx) const {
  ctx.reason = e.reason;
  Verdict v;
  v.status = e.status;
  v.body = cache_ ? cache_->take() : std::string();
  rt_.renderer.render_into(v.body, e, ctx.request_id, std::chrono::system_clock::now(), cache_);
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

Admission Pipeline::admit(const RequestView& sent, Context& ctx) const {
  auto target = normalize_target(sent.target, {rt_.config.limits.allow_encoded_slashes});
  if (!target) return {reply(target.error(), ctx)};
  ctx.target = std::move(*target);
  const RequestView req{sent.method, ctx.target.target, sent.fields};
  if (auto v = health(req, ctx)) return {*v};

  auto route = select_route(rt_.config.routes, req.method, req.path());
  if (!route) return {reply(route.error(), ctx)};
  ctx.route = *route;
  if (ctx.route && ctx.route->auth_none) return {Verdict{true}};

  if (auto e = extract_credential(req, rt_.config.auth, ctx)) return {reply(*e, ctx)};
  UnixMillis now = ctx.now = now_millis();
  if (auto e = authenticate(rt_, index_, ctx, now)) {
    Admission refused{reply(*e, ctx)};
    // A 403 goes to an authenticated key: it still gets its rate-limit headers.
    if (ctx.key) refused.rate = RateQuery{ctx.policy, ctx.key->id(), ctx.key->owner(), false};
    return refused;
  }
  if (usage_ && ctx.usage_due) usage_->record({std::string(ctx.key->id()), now, ctx.client_ip});
  ctx.cost = ctx.route ? ctx.route->cost : 1;
  if (limits_.shares_credits()) {  // credits and tokens in one step, on the shared backend
    RateQuery q{ctx.policy, ctx.key->id(), ctx.key->owner(), true, ctx.cost};
    q.credits = shared_credits_query(ctx);
    if (!ctx.policy.rate && !q.credits) return {Verdict{true}};
    return {Verdict{true}, q};
  }
  // No credits for this request: refused before the rate limit takes a token.
  if (auto e = check_credits(ctx)) {
    Admission refused{reply(*e, ctx)};
    refused.rate = RateQuery{ctx.policy, ctx.key->id(), ctx.key->owner(), false};
    return refused;
  }
  if (!ctx.policy.rate) {  // unlimited plan: nothing to ask
    if (auto e = spend_credits(ctx)) return {reply(*e, ctx)};
    return {Verdict{true}};
  }
  return {Verdict{true}, RateQuery{ctx.policy, ctx.key->id(), ctx.key->owner(), true, ctx.cost}};
}

Verdict Pipeline::apply_rate(const RateOutcome& outcome, Context& ctx, Verdict admitted) const {
  ctx.rate = outcome.decision;
  if (!admitted.forward) return admitted;  // a refusal that only wanted the headers
  if (outcome.unavailable) {
    return reply(errors::unavailable("rate_limit_unavailable",
                                     "Rate limiting is unavailable; try again shortly."),
                 ctx);
  }
  if (outcome.credits) {
    if (auto e = adopt_shared_credits(ctx, *outcome.credits)) return reply(*e, ctx);
    if (auto e = rate_limited_error(ctx)) return reply(*e, ctx);
    charge_shared_credits(ctx);
    return admitted;
  }
  if (auto e = rate_limited_error(ctx)) return reply(*e, ctx);
  if (auto e = spend_credits(ctx)) return reply(*e, ctx);  // a race lost since check_credits
  return admitted;
}

Verdict Pipeline::decide(const RequestView& req, Context& ctx) const {
  Admission a = admit(req, ctx);
  if (!a.rate) return std::move(a.verdict);
  std::optional<RateOutcome> now = limits_.try_decide(*a.rate);
  RateOutcome outcome;
  outcome.unavailable = !now;
  return apply_rate(now ? *now : outcome, ctx, std::move(a.verdict));
}

}  // namespace keygate
