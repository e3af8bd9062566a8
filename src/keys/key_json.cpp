#include "keygate/keys/key_json.hpp"

#include <boost/algorithm/hex.hpp>

#include "keygate/config/values.hpp"

namespace keygate {

using nlohmann::json;

std::optional<Error> check_fields(const json& object,
                                  std::initializer_list<std::string_view> allowed) {
  for (const auto& [k, v] : object.items()) {
    bool known = false;
    for (auto a : allowed) known = known || a == k;
    if (!known) return validation_error(k, "unknown field '" + k + "'");
  }
  return std::nullopt;
}

std::expected<std::vector<std::string>, Error> string_list(const json& v, const std::string& f) {
  if (!v.is_array())
    return std::unexpected(validation_error(f, f + " must be an array of strings"));
  std::vector<std::string> out;
  for (const auto& item : v) {
    if (!item.is_string())
      return std::unexpected(validation_error(f, f + " must be an array of strings"));
    out.push_back(item.get<std::string>());
  }
  return out;
}

std::expected<std::optional<Rate>, Error> rate_field(const json& v) {
  if (v.is_null()) return std::optional<Rate>{};
  if (!v.is_object())
    return std::unexpected(
        validation_error("rate", "rate must be an object {requests, period, burst}"));
  Rate r;
  for (const auto& [k, x] : v.items()) {
    if (k == "requests" || k == "burst") {
      if (!x.is_number_unsigned() || (k == "requests" && x.get<std::uint64_t>() == 0))
        return std::unexpected(
            validation_error("rate." + k, "rate." + k + " must be a positive integer"));
      (k == "requests" ? r.requests : r.burst) = x.get<std::uint64_t>();
    } else if (k == "period") {
      if (!x.is_string())
        return std::unexpected(
            validation_error("rate.period", "rate.period must be a duration string like 1m"));
      auto d = parse_duration(x.get<std::string>());
      if (!d || d->count() <= 0)
        return std::unexpected(validation_error("rate.period", "rate.period: invalid duration"));
      r.period = *d;
    } else {
      return std::unexpected(validation_error("rate." + k, "unknown field rate." + k));
    }
  }
  if (!v.contains("requests"))
    return std::unexpected(validation_error("rate.requests", "rate.requests is required"));
  return std::optional<Rate>(r);
}

std::expected<std::map<std::string, std::string>, Error> metadata_field(const json& v) {
  if (!v.is_object())
    return std::unexpected(validation_error("metadata", "metadata must be an object of strings"));
  std::map<std::string, std::string> out;
  for (const auto& [k, x] : v.items()) {
    if (!x.is_string())
      return std::unexpected(validation_error("metadata", "metadata values must be strings"));
    out[k] = x.get<std::string>();
  }
  return out;
}

std::expected<std::optional<CreditsPatch>, Error> credits_field(const json& v) {
  if (v.is_null()) return std::optional<CreditsPatch>{};
  if (!v.is_object())
    return std::unexpected(
        validation_error("credits", "credits must be an object {remaining, refill} or null"));
  CreditsPatch p;
  for (const auto& [k, x] : v.items()) {
    if (k == "remaining") {
      if (!x.is_number_integer() || x.get<std::int64_t>() < 0)
        return std::unexpected(validation_error(
            "credits.remaining", "credits.remaining must be a non-negative integer"));
      p.remaining = x.get<std::int64_t>();
    } else if (k == "refill") {
      if (x.is_null()) {
        p.refill = std::optional<CreditRefill>{};
        continue;
      }
      if (!x.is_object())
        return std::unexpected(validation_error(
            "credits.refill", "credits.refill must be an object {amount, interval} or null"));
      CreditRefill f;
      for (const auto& [rk, rv] : x.items()) {
        if (rk == "amount") {
          if (!rv.is_number_integer() || rv.get<std::int64_t>() < 1)
            return std::unexpected(validation_error(
                "credits.refill.amount", "credits.refill.amount must be a positive integer"));
          f.amount = rv.get<std::int64_t>();
        } else if (rk == "interval") {
          auto d = rv.is_string() ? parse_duration(rv.get<std::string>())
                                  : std::unexpected(std::string("not a string"));
          if (!d)
            return std::unexpected(validation_error(
                "credits.refill.interval", "credits.refill.interval must be a duration like 30d"));
          f.interval = *d;
        } else {
          return std::unexpected(
              validation_error("credits.refill." + rk, "unknown field credits.refill." + rk));
        }
      }
      if (!x.contains("amount") || !x.contains("interval"))
        return std::unexpected(
            validation_error("credits.refill", "credits.refill needs both amount and interval"));
      p.refill = std::optional<CreditRefill>(f);
    } else if (k != "next_refill_at") {
      return std::unexpected(validation_error("credits." + k, "unknown field credits." + k));
    }
  }
  return std::optional<CreditsPatch>(p);
}

std::expected<std::optional<Credits>, Error> new_credits(const std::optional<CreditsPatch>& p) {
  if (!p) return std::optional<Credits>{};
  Credits c;
  if (p->refill) c.refill = *p->refill;
  if (p->remaining)
    c.remaining = *p->remaining;
  else if (c.refill)
    c.remaining = c.refill->amount;
  else
    return std::unexpected(validation_error(
        "credits.remaining", "credits.remaining is required (or a refill to start from)"));
  return std::optional<Credits>(c);
}

std::expected<std::optional<UnixMillis>, Error> time_field(const json& v, const std::string& f) {
  if (v.is_null()) return std::optional<UnixMillis>{};
  if (!v.is_string()) return std::unexpected(validation_error(f, f + " must be an RFC 3339 time"));
  auto t = parse_time(v.get<std::string>());
  if (!t) return std::unexpected(validation_error(f, f + " must be an RFC 3339 time"));
  return std::optional<UnixMillis>(*t);
}

namespace {

// A string field that may also be null or absent (then "").
std::expected<std::string, Error> optional_string(const json& body, const std::string& f) {
  if (!body.contains(f) || body[f].is_null()) return std::string();
  if (!body[f].is_string()) return std::unexpected(validation_error(f, f + " must be a string"));
  return body[f].get<std::string>();
}

}  // namespace

std::expected<KeySpec, Error> key_spec_from_json(const json& body, UnixMillis now) {
  KeySpec spec;
  if (!body.contains("name") || !body["name"].is_string())
    return std::unexpected(validation_error("name", "name is required and must be a string"));
  spec.name = body["name"].get<std::string>();
  auto owner = optional_string(body, "owner");
  if (!owner) return std::unexpected(owner.error());
  spec.owner = *owner;
  auto plan = optional_string(body, "plan");
  if (!plan) return std::unexpected(plan.error());
  spec.plan = *plan;
  if (body.contains("scopes")) {
    auto scopes = string_list(body["scopes"], "scopes");
    if (!scopes) return std::unexpected(scopes.error());
    spec.scopes = *scopes;
  }
  if (body.contains("rate")) {
    auto rate = rate_field(body["rate"]);
    if (!rate) return std::unexpected(rate.error());
    spec.rate = *rate;
  }
  bool has_in = body.contains("expires_in") && !body["expires_in"].is_null();
  if (body.contains("expires_at") && !body["expires_at"].is_null() && has_in)
    return std::unexpected(
        validation_error("expires_at", "give expires_at or expires_in, not both"));
  if (body.contains("expires_at")) {
    auto t = time_field(body["expires_at"], "expires_at");
    if (!t) return std::unexpected(t.error());
    spec.expires_at = *t;
  }
  if (has_in) {
    auto d = body["expires_in"].is_string() ? parse_duration(body["expires_in"].get<std::string>())
                                            : std::unexpected(std::string("not a string"));
    if (!d || d->count() <= 0)
      return std::unexpected(
          validation_error("expires_in", "expires_in must be a duration like 30d"));
    spec.expires_at = now + d->count();
  }
  if (body.contains("allowed_ips")) {
    auto ips = string_list(body["allowed_ips"], "allowed_ips");
    if (!ips) return std::unexpected(ips.error());
    spec.allowed_ips = *ips;
  }
  if (body.contains("metadata")) {
    auto meta = metadata_field(body["metadata"]);
    if (!meta) return std::unexpected(meta.error());
    spec.metadata = *meta;
  }
  if (body.contains("credits")) {
    auto patch = credits_field(body["credits"]);
    if (!patch) return std::unexpected(patch.error());
    auto credits = new_credits(*patch);
    if (!credits) return std::unexpected(credits.error());
    spec.credits = *credits;
  }
  return spec;
}

std::expected<KeyImport, Error> key_import_from_json(const json& line, UnixMillis now) {
  if (!line.is_object()) return std::unexpected(errors::bad_request("not a JSON object"));
  if (auto e = check_fields(
          line, {// what to import
                 "key", "sha256", "prefix", "last4",
                 // the fields of keys create / POST /v1/api-keys
                 "name", "owner", "scopes", "plan", "rate", "expires_at", "expires_in",
                 "allowed_ips", "metadata", "credits",
                 // the rest of an exported key object
                 "enabled", "created_at", "id", "status", "revoked_at", "last_used_at",
                 "last_used_ip", "rotated_from", "created_by", "rotated_at", "credits_key"}))
    return std::unexpected(*e);
  KeyImport out;
  // The CLI's own spelling of a rate ("600/1m") is accepted besides the object.
  json fields = line;
  if (fields.contains("rate") && fields["rate"].is_string()) {
    auto r = parse_rate(fields["rate"].get<std::string>());
    if (!r) return std::unexpected(validation_error("rate", "rate: " + r.error()));
    fields["rate"] = rate_to_json(*r);
  }
  auto spec = key_spec_from_json(fields, now);
  if (!spec) return std::unexpected(spec.error());
  out.spec = std::move(*spec);

  auto key = optional_string(line, "key");
  if (!key) return std::unexpected(key.error());
  auto sha = optional_string(line, "sha256");
  if (!sha) return std::unexpected(sha.error());
  if (key->empty() == sha->empty())
    return std::unexpected(validation_error(
        "key", "give either key (the plaintext) or sha256 (its hex SHA-256), not both"));
  if (!key->empty()) {
    out.key = *key;
  } else {
    bool hex =
        sha->size() == 64 && sha->find_first_not_of("0123456789abcdefABCDEF") == std::string::npos;
    if (!hex)
      return std::unexpected(
          validation_error("sha256", "sha256 must be 64 hex digits (the SHA-256 of the key)"));
    KeyHash h{};
    boost::algorithm::unhex(sha->begin(), sha->end(), h.begin());
    out.sha256 = h;
    for (const char* f : {"prefix", "last4"}) {
      auto v = optional_string(line, f);
      if (!v) return std::unexpected(v.error());
      (std::string_view(f) == "prefix" ? out.prefix : out.last4) = *v;
    }
  }
  if (line.contains("enabled")) {
    if (!line["enabled"].is_boolean())
      return std::unexpected(validation_error("enabled", "enabled must be true or false"));
    out.enabled = line["enabled"].get<bool>();
  }
  if (line.contains("created_at")) {
    auto t = time_field(line["created_at"], "created_at");
    if (!t) return std::unexpected(t.error());
    out.created_at = *t;
  }
  if (line.contains("revoked_at") && !line["revoked_at"].is_null())
    return std::unexpected(
        validation_error("revoked_at", "this key is revoked (revoked_at is set): not imported"));
  return out;
}

}  // namespace keygate
