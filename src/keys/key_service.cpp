#include "keygate/keys/key_service.hpp"

#include <charconv>
#include <ctime>
#include <regex>
#include <unordered_set>

#include "keygate/config/values.hpp"
#include "keygate/keys/cidr.hpp"

namespace keygate {

namespace {
constexpr Millis kMinRefillInterval{1000};
constexpr Millis kMaxRefillInterval{3650LL * 24 * 3600 * 1000};
}  // namespace

Error validation_error(const std::string& field, const std::string& message) {
  Error e = errors::bad_request(message);
  e.details = nlohmann::json{{"field", field}};
  return e;
}

KeyService::KeyService(KeyStore& store, const Config& config)
    : store_(store), config_(config), format_(config.keys), hasher_(config.keys.pepper) {}

std::optional<Error> KeyService::validate(const KeySpec& s) const {
  static const std::regex scope_re("^[A-Za-z0-9:._*/-]{1,64}$");
  static const std::regex owner_re("^[A-Za-z0-9:@._/-]{0,128}$");
  if (s.name.empty() || s.name.size() > 200)
    return validation_error("name", "name is required (1-200 characters)");
  for (char c : s.name)
    if (static_cast<unsigned char>(c) < 0x20)
      return validation_error("name", "name must not contain control characters");
  if (!std::regex_match(s.owner, owner_re))
    return validation_error("owner", "owner must be up to 128 of [A-Za-z0-9:@._/-]");
  for (const auto& sc : s.scopes)
    if (!std::regex_match(sc, scope_re))
      return validation_error("scopes", "invalid scope '" + sc + "' (1-64 of [A-Za-z0-9:._*/-])");
  if (!s.plan.empty() && !config_.plans.contains(s.plan))
    return validation_error("plan", "unknown plan '" + s.plan + "'");
  if (s.rate)
    if (auto problem = rate_problem(*s.rate)) return validation_error("rate", *problem);
  if (s.expires_at && *s.expires_at <= now_millis())
    return validation_error("expires_at", "expires_at must be in the future");
  for (const auto& ip : s.allowed_ips)
    if (auto c = parse_cidr(ip); !c) return validation_error("allowed_ips", c.error());
  if (s.credits) {
    if (s.credits->remaining < 0 || s.credits->remaining > kMaxCredits)
      return validation_error("credits.remaining", "credits.remaining must be between 0 and " +
                                                       std::to_string(kMaxCredits));
    if (const auto& f = s.credits->refill) {
      if (f->amount < 1 || f->amount > kMaxCredits)
        return validation_error(
            "credits.refill.amount",
            "credits.refill.amount must be between 1 and " + std::to_string(kMaxCredits));
      if (f->interval < kMinRefillInterval || f->interval > kMaxRefillInterval)
        return validation_error("credits.refill.interval",
                                "credits.refill.interval must be between " +
                                    format_duration(kMinRefillInterval) + " and " +
                                    format_duration(kMaxRefillInterval));
    }
  }
  if (s.metadata.size() > 64) return validation_error("metadata", "at most 64 metadata entries");
  for (const auto& [k, v] : s.metadata)
    if (k.empty() || k.size() > 64 || v.size() > 1024)
      return validation_error("metadata", "metadata keys are 1-64 and values 0-1024 characters");
  return std::nullopt;
}

IssuedKey KeyService::issue(KeyRecord r) {
  IssuedKey out;
  out.key = format_.generate();
  r.id = generate_key_id();
  r.prefix = format_.display_prefix(out.key);
  r.last4 = out.key.substr(out.key.size() - 4);
  r.hash = hasher_.hash(out.key);
  r.created_at = now_millis();
  r.revoked_at.reset();
  r.last_used_at.reset();
  r.last_used_ip.clear();
  r.foreign_format = false;  // a rotated foreign key's successor is a keygate key
  out.record = std::move(r);
  return out;
}

void KeyService::changed(const KeyRecord& r) {
  if (on_change_) on_change_(r);
}

void KeyService::audited(const AuditEvent& e) {
  if (on_audit_) on_audit_(e);
}

std::expected<IssuedKey, Error> KeyService::create(const KeySpec& spec, const std::string& actor) {
  if (auto err = validate(spec)) return std::unexpected(*err);
  KeyRecord base;
  base.name = spec.name;
  base.owner = spec.owner;
  base.scopes = spec.scopes;
  base.plan = spec.plan;
  base.rate = spec.rate;
  base.expires_at = spec.expires_at;
  base.allowed_ips = spec.allowed_ips;
  base.metadata = spec.metadata;
  base.created_by = actor;
  IssuedKey issued = issue(std::move(base));
  if (spec.credits) {
    issued.record.credits = *spec.credits;
    issued.record.credits->refilled_at = issued.record.created_at;  // the refill grid starts here
    issued.record.credits_version = 1;
  }
  const AuditEvent event{
      0,
      issued.record.created_at,
      "create",
      issued.record.id,
      actor,
      nlohmann::json{{"prefix", issued.record.prefix}, {"name", issued.record.name}}.dump()};
  store_.transaction([&] {
    store_.insert_key(issued.record);
    store_.add_audit(event);
  });
  changed(issued.record);
  audited(event);
  return issued;
}

std::expected<KeyRecord, Error> KeyService::resolve(const std::string& ref) {
  if (ref.starts_with("key_")) {
    if (auto r = store_.get_key(ref)) return *r;
  }
  auto matches = store_.keys_with_prefix(ref);
  if (matches.size() == 1) return matches.front();
  if (matches.size() > 1) {
    Error e{409,
            "CONFLICT",
            "ambiguous",
            "Prefix '" + ref + "' matches " + std::to_string(matches.size()) +
                " keys; use the key id instead.",
            nlohmann::json::object(),
            {}};
    return std::unexpected(e);
  }
  return std::unexpected(errors::not_found("No key with id or prefix '" + ref + "'."));
}

namespace {
// Another writer changed the key between this read and this write (update_key's
// check): read it again and redo the change; give up after a few rounds.
template <class F>
auto retry_on_conflict(F&& attempt) {
  for (int round = 1;; ++round) {
    try {
      return attempt();
    } catch (const StoreConflict&) {
      if (round == 3) throw;
    }
  }
}
}  // namespace

std::expected<KeyRecord, Error> KeyService::update(const std::string& ref, const KeyPatch& p,
                                                   const std::string& actor) {
  return retry_on_conflict([&] { return update_once(ref, p, actor); });
}

std::expected<KeyRecord, Error> KeyService::revoke(const std::string& ref,
                                                   const std::string& actor) {
  return retry_on_conflict([&] { return revoke_once(ref, actor); });
}

std::expected<IssuedKey, Error> KeyService::rotate(const std::string& ref, Millis grace,
                                                   const std::string& actor) {
  return retry_on_conflict([&] { return rotate_once(ref, grace, actor); });
}

namespace {
std::optional<Credits> patched_credits(const std::optional<Credits>& current,
                                       const std::optional<CreditsPatch>& patch, UnixMillis now) {
  if (!patch) return std::nullopt;
  Credits c;
  if (current) {  // as of now: a refill that is due counts
    c = *current;
    c.remaining = current->remaining_at(now);
    c.refilled_at = current->last_refill(now);
  }
  if (patch->refill) {
    c.refill = *patch->refill;
    c.refilled_at = now;  // a new schedule starts now
  }
  if (patch->remaining)
    c.remaining = *patch->remaining;
  else if (!current)
    c.remaining = c.refill ? c.refill->amount : 0;
  return c;
}
}  // namespace

std::expected<KeyRecord, Error> KeyService::update_once(const std::string& ref, const KeyPatch& p,
                                                        const std::string& actor) {
  auto found = resolve(ref);
  if (!found) return found;
  KeyRecord r = *found;
  KeySpec check{r.name,       r.owner,       r.scopes,   r.plan,   r.rate,
                std::nullopt, r.allowed_ips, r.metadata, r.credits};
  nlohmann::json changed_fields = nlohmann::json::array();
  if (p.name) check.name = *p.name, changed_fields.push_back("name");
  if (p.scopes) check.scopes = *p.scopes, changed_fields.push_back("scopes");
  if (p.plan) check.plan = *p.plan, changed_fields.push_back("plan");
  if (p.rate) check.rate = *p.rate, changed_fields.push_back("rate");
  if (p.allowed_ips) check.allowed_ips = *p.allowed_ips, changed_fields.push_back("allowed_ips");
  if (p.metadata) check.metadata = *p.metadata, changed_fields.push_back("metadata");
  if (p.expires_at) check.expires_at = *p.expires_at, changed_fields.push_back("expires_at");
  if (p.enabled) changed_fields.push_back("enabled");
  if (p.credits) {
    check.credits = patched_credits(r.credits, *p.credits, now_millis());
    changed_fields.push_back("credits");
  }
  if (auto err = validate(check)) return std::unexpected(*err);
  if (r.revoked_at)
    return std::unexpected(Error{409,
                                 "CONFLICT",
                                 "revoked",
                                 "Key " + r.id + " is revoked and cannot change.",
                                 nlohmann::json::object(),
                                 {}});
  r.name = check.name;
  r.scopes = check.scopes;
  r.plan = check.plan;
  r.rate = check.rate;
  r.allowed_ips = check.allowed_ips;
  r.metadata = check.metadata;
  if (p.credits) {
    r.credits = check.credits;
    ++r.credits_version;  // a serving process adopts this balance
  }
  if (p.expires_at) r.expires_at = *p.expires_at;
  if (p.enabled) r.enabled = *p.enabled;
  const AuditEvent event{0,    now_millis(), "update",
                         r.id, actor,        nlohmann::json{{"fields", changed_fields}}.dump()};
  store_.transaction([&] {
    store_.update_key(r);
    store_.add_audit(event);
  });
  changed(r);
  audited(event);
  return r;
}

std::expected<KeyRecord, Error> KeyService::revoke_once(const std::string& ref,
                                                        const std::string& actor) {
  auto found = resolve(ref);
  if (!found) return found;
  KeyRecord r = *found;
  UnixMillis now = now_millis();
  if (r.revoked_at && *r.revoked_at <= now) return r;  // idempotent
  r.revoked_at = now;
  const AuditEvent event{0, now, "revoke", r.id, actor, "{}"};
  store_.transaction([&] {
    store_.update_key(r);
    store_.add_audit(event);
  });
  changed(r);
  audited(event);
  return r;
}

std::expected<IssuedKey, Error> KeyService::rotate_once(const std::string& ref, Millis grace,
                                                        const std::string& actor) {
  auto found = resolve(ref);
  if (!found) return std::unexpected(found.error());
  KeyRecord old = *found;
  UnixMillis now = now_millis();
  if (old.revoked_at && *old.revoked_at <= now)
    return std::unexpected(Error{409,
                                 "CONFLICT",
                                 "revoked",
                                 "Key " + old.id + " is revoked; create a new key instead.",
                                 nlohmann::json::object(),
                                 {}});
  KeyRecord base = old;
  base.rotated_from = old.id;
  base.created_by = actor;
  base.rotated_at.reset();
  IssuedKey issued = issue(std::move(base));
  // The credits move to the replacement (balance as of now, same refill grid);
  // during the grace the old key spends the replacement's, so the two never
  // hold the same credits twice.
  if (old.credits) {
    Credits moved = *old.credits;
    moved.remaining = old.credits->remaining_at(now);
    moved.refilled_at = old.credits->last_refill(now);
    issued.record.credits = moved;
    issued.record.credits_version = 1;
    old.credits.reset();
    ++old.credits_version;
    old.credits_key = issued.record.id;
  }
  old.rotated_at = now;  // deprecated from now (the Deprecation header)
  // The old key works until the grace ends, then answers 401 expired.
  if (grace.count() > 0) {
    UnixMillis until = now + grace.count();
    if (!old.expires_at || *old.expires_at > until) old.expires_at = until;
  } else {
    old.revoked_at = now;
  }
  const AuditEvent event{
      0,
      now,
      "rotate",
      old.id,
      actor,
      nlohmann::json{{"new_key_id", issued.record.id}, {"grace", format_duration(grace)}}.dump()};
  store_.transaction([&] {
    store_.insert_key(issued.record);
    store_.update_key(old);
    store_.add_audit(event);
  });
  // The replacement first: the old key's credits point at it.
  changed(issued.record);
  changed(old);
  audited(event);
  return issued;
}

namespace {

// Foreign plaintexts are printable ASCII without spaces (they travel in a header)
// and long enough that their SHA-256 cannot be brute-forced; at least this many
// of their characters are never displayed.
constexpr size_t kMinForeignKeyChars = 16;
constexpr size_t kMaxForeignKeyChars = 512;
constexpr size_t kHiddenForeignChars = 12;

std::optional<Error> check_plaintext(const std::string& key) {
  if (key.size() < kMinForeignKeyChars || key.size() > kMaxForeignKeyChars)
    return validation_error("key", "key must be " + std::to_string(kMinForeignKeyChars) + "-" +
                                       std::to_string(kMaxForeignKeyChars) + " characters long");
  for (char c : key)
    if (c <= ' ' || c > '~')
      return validation_error("key", "key must be printable ASCII without spaces");
  return std::nullopt;
}

std::optional<Error> check_display(const std::string& field, const std::string& v, size_t max) {
  if (v.size() > max)
    return validation_error(field,
                            field + " must be at most " + std::to_string(max) + " characters");
  for (char c : v)
    if (c <= ' ' || c > '~')
      return validation_error(field, field + " must be printable ASCII without spaces");
  return std::nullopt;
}

}  // namespace

std::expected<std::vector<KeyRecord>, std::vector<ImportProblem>> KeyService::check_import(
    const std::vector<KeyImport>& batch, const std::string& actor) {
  std::vector<ImportProblem> problems;
  std::vector<KeyRecord> records;
  UnixMillis now = now_millis();
  // A hash must be new to the store and to the batch (the store's unique index
  // would refuse it anyway, but without saying which line).
  std::unordered_set<KeyHash, KeyHashHasher> seen;
  store_.for_each_changed(0, [&](const KeyRecord& r) { seen.insert(r.hash); });
  for (size_t i = 0; i < batch.size(); ++i) {
    const KeyImport& in = batch[i];
    auto problem = [&](Error e) { problems.push_back({i, std::move(e)}); };
    if (auto err = validate(in.spec)) {
      problem(*err);
      continue;
    }
    KeyRecord r;
    if (in.key) {
      const std::string& key = *in.key;
      if (format_.well_formed(key)) {
        r.prefix = format_.display_prefix(key);
      } else if (auto err = check_plaintext(key)) {
        problem(*err);
        continue;
      } else {
        r.foreign_format = true;
        r.prefix = key.substr(
            0, std::min(format_.display_prefix_length(), key.size() - 4 - kHiddenForeignChars));
      }
      r.last4 = key.substr(key.size() - 4);
      r.hash = hasher_.hash(key);
    } else if (in.sha256) {
      if (config_.keys.pepper) {
        problem(validation_error(
            "sha256",
            "keys.pepper is set, so the store keeps HMAC-SHA-256 digests, which cannot be derived "
            "from a SHA-256; import the plaintext key instead"));
        continue;
      }
      if (auto err = check_display("prefix", in.prefix, 32)) {
        problem(*err);
        continue;
      }
      if (auto err = check_display("last4", in.last4, 4)) {
        problem(*err);
        continue;
      }
      r.foreign_format = true;  // the plaintext's format is unknown
      r.prefix = in.prefix;
      r.last4 = in.last4;
      r.hash = *in.sha256;
    } else {
      problem(validation_error("key", "give either key or sha256"));
      continue;
    }
    if (in.created_at && *in.created_at > now) {
      problem(validation_error("created_at", "created_at must not be in the future"));
      continue;
    }
    if (!seen.insert(r.hash).second) {
      problem(Error{409,
                    "CONFLICT",
                    "duplicate",
                    "This key is already in the store, or earlier in this import.",
                    nlohmann::json::object(),
                    {}});
      continue;
    }
    r.id = generate_key_id();
    r.name = in.spec.name;
    r.owner = in.spec.owner;
    r.scopes = in.spec.scopes;
    r.plan = in.spec.plan;
    r.rate = in.spec.rate;
    r.expires_at = in.spec.expires_at;
    r.allowed_ips = in.spec.allowed_ips;
    r.metadata = in.spec.metadata;
    r.enabled = in.enabled;
    r.created_at = in.created_at.value_or(now);
    r.created_by = actor;
    if (in.spec.credits) {
      r.credits = in.spec.credits;
      r.credits->refilled_at = now;  // the refill grid starts with the import
      r.credits_version = 1;
    }
    records.push_back(std::move(r));
  }
  if (!problems.empty()) return std::unexpected(std::move(problems));
  return records;
}

std::expected<std::vector<KeyRecord>, std::vector<ImportProblem>> KeyService::import(
    const std::vector<KeyImport>& batch, const std::string& actor) {
  auto checked = check_import(batch, actor);
  if (!checked) return checked;
  std::vector<KeyRecord>& records = *checked;
  UnixMillis now = now_millis();
  std::vector<AuditEvent> events;
  for (const auto& r : records)
    events.push_back({0, now, "import", r.id, actor,
                      nlohmann::json{{"prefix", r.prefix},
                                     {"name", r.name},
                                     {"format", r.foreign_format ? "foreign" : "keygate"}}
                          .dump()});
  store_.transaction([&] {
    for (size_t i = 0; i < records.size(); ++i) {
      store_.insert_key(records[i]);
      store_.add_audit(events[i]);
    }
  });
  for (const auto& r : records) changed(r);
  for (const auto& e : events) audited(e);
  return checked;
}

nlohmann::json audit_to_json(const AuditEvent& e) {
  auto details = nlohmann::json::parse(e.details_json, nullptr, false);
  return {{"id", e.id},
          {"time", format_time(e.at)},
          {"action", e.action},
          {"key_id", e.key_id},
          {"actor", e.actor},
          {"details", details.is_discarded() ? nlohmann::json::object() : details}};
}

nlohmann::json rate_to_json(const std::optional<Rate>& r) {
  if (!r) return nullptr;
  nlohmann::json j = {{"requests", r->requests}, {"period", format_duration(r->period)}};
  j["burst"] = r->burst ? nlohmann::json(r->burst) : nlohmann::json(r->requests);
  return j;
}

nlohmann::json credits_to_json(const std::optional<Credits>& c, UnixMillis now) {
  if (!c) return nullptr;
  nlohmann::json j = {
      {"remaining", c->remaining_at(now)}, {"refill", nullptr}, {"next_refill_at", nullptr}};
  if (c->refill) {
    j["refill"] = {{"amount", c->refill->amount},
                   {"interval", format_duration(c->refill->interval)}};
    j["next_refill_at"] = format_time(c->next_refill(now));
  }
  return j;
}

std::expected<CreditRefill, std::string> parse_refill(std::string_view text) {
  auto slash = text.find('/');
  if (slash == std::string_view::npos)
    return std::unexpected("expected AMOUNT/INTERVAL, e.g. 1000/30d");
  std::int64_t amount = 0;
  auto digits = text.substr(0, slash);
  auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), amount);
  if (ec != std::errc{} || end != digits.data() + digits.size() || amount < 1)
    return std::unexpected("AMOUNT must be a positive integer, e.g. 1000/30d");
  auto interval = parse_duration(text.substr(slash + 1));
  if (!interval) return std::unexpected("INTERVAL: " + interval.error());
  return CreditRefill{amount, *interval};
}

nlohmann::json key_to_json(const KeyRecord& r, UnixMillis now, const std::string* secret) {
  auto opt_time = [](const std::optional<UnixMillis>& t) {
    return t ? nlohmann::json(format_time(*t)) : nlohmann::json(nullptr);
  };
  auto opt_str = [](const std::string& s) {
    return s.empty() ? nlohmann::json(nullptr) : nlohmann::json(s);
  };
  nlohmann::json j = {{"id", r.id},
                      {"prefix", r.prefix},
                      {"last4", r.last4},
                      {"name", r.name},
                      {"owner", opt_str(r.owner)},
                      {"scopes", r.scopes},
                      {"plan", opt_str(r.plan)},
                      {"rate", rate_to_json(r.rate)},
                      {"allowed_ips", r.allowed_ips},
                      {"metadata", r.metadata},
                      {"enabled", r.enabled},
                      {"status", r.status(now)},
                      {"created_at", format_time(r.created_at)},
                      {"expires_at", opt_time(r.expires_at)},
                      {"revoked_at", opt_time(r.revoked_at)},
                      {"last_used_at", opt_time(r.last_used_at)},
                      {"last_used_ip", opt_str(r.last_used_ip)},
                      {"rotated_from", opt_str(r.rotated_from)},
                      {"rotated_at", opt_time(r.rotated_at)},
                      {"credits", credits_to_json(r.credits, now)},
                      {"credits_key", opt_str(r.credits_key)},
                      {"created_by", opt_str(r.created_by)}};
  if (secret) j["key"] = *secret;
  return j;
}

}  // namespace keygate
