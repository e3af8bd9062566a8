#include "keygate/proxy/stages.hpp"

namespace keygate {

namespace {

std::optional<Error> refused(const Context& ctx) {
  const CreditAccount::Answer& a = *ctx.credits;
  std::optional<std::int64_t> refill_in;
  if (a.next_refill) refill_in = std::max<std::int64_t>(1, (a.next_refill - ctx.now + 999) / 1000);
  return errors::credits_exhausted(ctx.cost, a.remaining, refill_in);
}

}  // namespace

std::optional<Error> check_credits(Context& ctx) {
  ctx.payer = ctx.meter ? ctx.meter->payer() : nullptr;
  if (!ctx.payer) return std::nullopt;
  ctx.credits = ctx.payer->account()->peek(ctx.cost, ctx.now);
  if (ctx.credits->allowed) return std::nullopt;
  return refused(ctx);
}

std::optional<CreditQuery> shared_credits_query(Context& ctx) {
  ctx.payer = ctx.meter ? ctx.meter->payer() : nullptr;
  if (!ctx.payer) return std::nullopt;
  // The local view until the shared answer: what a deny-cache 429 shows.
  ctx.credits = ctx.payer->account()->peek(ctx.cost, ctx.now);
  const CreditAccount::Seed s = ctx.payer->account()->seed();
  return CreditQuery{ctx.payer->key_id(), ctx.cost,        s.balance,           s.version,
                     s.refilled_at,       s.refill_amount, s.refill_interval_ms};
}

std::optional<Error> adopt_shared_credits(Context& ctx, const CreditOutcome& shared) {
  ctx.credits = CreditAccount::Answer{shared.allowed, shared.remaining, shared.next_refill};
  if (shared.allowed) return std::nullopt;
  return refused(ctx);
}

void charge_shared_credits(Context& ctx) {
  if (ctx.payer) ctx.payer->charge(ctx.cost, ctx.now);
}

std::optional<Error> spend_credits(Context& ctx) {
  if (!ctx.payer) return std::nullopt;
  ctx.credits = ctx.payer->spend(ctx.cost, ctx.now);
  if (ctx.credits->allowed) return std::nullopt;
  return refused(ctx);
}

}  // namespace keygate
