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

std::optional<Error> spend_credits(Context& ctx) {
  if (!ctx.payer) return std::nullopt;
  ctx.credits = ctx.payer->spend(ctx.cost, ctx.now);
  if (ctx.credits->allowed) return std::nullopt;
  return refused(ctx);
}

}  // namespace keygate
