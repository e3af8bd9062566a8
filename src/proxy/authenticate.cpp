#include "keygate/proxy/stages.hpp"

namespace keygate {

std::optional<Error> authenticate(const Runtime& rt, const KeyIndex& index, Context& ctx,
                                  UnixMillis now) {
  if (!ctx.credential) return errors::auth("missing", MessageText::lasting(rt.missing_message));
  const std::string_view key = ctx.credential->value;
  // Cheap rejections first: garbage of the wrong shape never costs a hash,
  // unknown keys never a store query. Imported foreign-format keys have no
  // checksum: once the index holds any, a credential failing the keygate
  // format is looked up by hash like the rest. The checksum is read only
  // after a miss, to tell a typo from an unknown key: a key the index finds
  // by its hash is well formed, and the checksum (a public CRC, computable by
  // anyone) never kept a deliberate client from costing a hash.
  const bool foreign = index.has_foreign_keys();
  const auto malformed = [] {
    return errors::auth("malformed", "Malformed API key. Check that the whole key was copied.");
  };
  if (!foreign && !rt.key_format.well_shaped(key)) return malformed();
  KeyHash h = rt.hasher.hash(key);
  bool found = index.visit(h, [&](const IndexedKey& k) {
    ctx.hold_key(k);
    ctx.usage_due = k.claim_usage_report(now, kUsageReportInterval);  // on the indexed record
    ctx.meter = &index.meter(k);  // usage counts refusals of a known key too
  });
  if (!found) {
    if (!foreign && !rt.key_format.checksum_matches(key)) return malformed();
    return errors::auth("invalid", "Invalid or revoked API key");
  }

  const AuthKey& k = *ctx.key;
  std::optional<Error> err;
  if (k.revoked_at() && k.revoked_at() <= now)
    err = errors::auth("revoked", "This API key has been revoked.");
  else if (k.expires_at() && k.expires_at() <= now)
    err = errors::auth("expired", "This API key has expired.");
  else if (!k.enabled())
    err = errors::auth("disabled", "This API key is disabled.");
  if (err) {
    ctx.release_key();  // not authenticated: no identity, no rate-limit headers
    return err;
  }
  // Rotated with a grace period: the key works, and its answers say until when.
  ctx.deprecated = k.rotated_at() != 0;
  // Resolved once here; the 403s below, the plan gate and the rate limit reuse it.
  ctx.policy = resolve_policy(k, rt.config);
  ctx.plan = ctx.policy.plan->name;
  if (!k.allowed_nets().empty() &&
      (!ctx.client_address() || !any_contains(k.allowed_nets(), *ctx.client_address())))
    return errors::forbidden("ip", "This API key may not be used from this IP address.");
  if (ctx.route) {
    std::vector<std::string> missing;
    for (const auto& s : ctx.route->require_scopes)
      if (!k.has_scope(s)) missing.push_back(s);
    if (!missing.empty()) {
      Error e = errors::forbidden(
          "scope", "This API key lacks the required scope(s): " + join_csv(missing) + ".");
      e.details["required_scopes"] = ctx.route->require_scopes;
      return e;
    }
  }
  if (!ctx.policy.plan->allow)
    return errors::forbidden("plan", ctx.policy.plan->message.empty()
                                         ? MessageText("Your plan does not include API access.")
                                         : MessageText::lasting(ctx.policy.plan->message));
  return std::nullopt;
}

}  // namespace keygate
