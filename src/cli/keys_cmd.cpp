// `keygate keys ...`: the CLI face of KeyService (the admin API is the other).
#include <iostream>

#include "cli/command.hpp"
#include "keygate/config/values.hpp"
#include "keygate/keys/key_json.hpp"
#include "keygate/keys/key_service.hpp"
#include "keygate/keys/usage_report.hpp"

namespace keygate::cli {

namespace {

constexpr const char* kActor = "cli";

// Values are checked by the flags' validators at parse time; these convert.
Rate to_rate(const std::string& text) {
  return *parse_rate(text);
}
UnixMillis to_time(const std::string& text) {
  return *parse_time(text);
}

// Service errors: validation is a usage error (2), the rest runtime failures (1).
int fail(const Error& e) {
  std::cerr << "error: " << e.message << "\n";
  return e.status == 400 ? 2 : 1;
}

std::string or_dash(const std::string& s) {
  return s.empty() ? "-" : s;
}

std::string ago(const std::optional<UnixMillis>& t) {
  return t ? format_time(*t) : "never";
}

std::string shown(const KeyRecord& r) {
  return r.prefix + "…" + r.last4;
}

std::string credits_text(const KeyRecord& r, UnixMillis now) {
  if (!r.credits) return r.credits_key.empty() ? "-" : "spends those of " + r.credits_key;
  std::string out = std::to_string(r.credits->remaining_at(now));
  if (const auto& f = r.credits->refill)
    out += " (refill to " + std::to_string(f->amount) + " every " + format_duration(f->interval) +
           ", next " + format_time(r.credits->next_refill(now)) + ")";
  return out;
}

void print_key(const KeyRecord& r, UnixMillis now) {
  std::cout << "id:           " << r.id << "\n"
            << "prefix:       " << shown(r) << (r.foreign_format ? " (imported, own format)" : "")
            << "\n"
            << "name:         " << r.name << "\n"
            << "owner:        " << or_dash(r.owner) << "\n"
            << "scopes:       " << or_dash(join_csv(r.scopes)) << "\n"
            << "plan:         " << or_dash(r.plan) << "\n"
            << "rate:         "
            << (r.rate ? std::to_string(r.rate->requests) + "/" + format_duration(r.rate->period) +
                             " burst " + std::to_string(r.rate->capacity())
                       : "-")
            << "\n"
            << "allowed ips:  " << or_dash(join_csv(r.allowed_ips)) << "\n"
            << "credits:      " << credits_text(r, now) << "\n"
            << "status:       " << r.status(now) << (r.enabled ? "" : " (disabled)") << "\n"
            << "created:      " << format_time(r.created_at) << " by " << or_dash(r.created_by)
            << "\n"
            << "expires:      " << (r.expires_at ? format_time(*r.expires_at) : "never") << "\n"
            << "revoked:      " << (r.revoked_at ? format_time(*r.revoked_at) : "-") << "\n"
            << "last used:    " << ago(r.last_used_at)
            << (r.last_used_ip.empty() ? "" : " from " + r.last_used_ip) << "\n";
  if (!r.rotated_from.empty()) std::cout << "rotated from: " << r.rotated_from << "\n";
  if (r.rotated_at) std::cout << "rotated:      " << format_time(*r.rotated_at) << "\n";
  for (const auto& [k, v] : r.metadata) std::cout << "meta " << k << ": " << v << "\n";
}

void print_issued(const IssuedKey& k, bool json, const char* verb) {
  UnixMillis now = now_millis();
  if (json) {
    std::cout << key_to_json(k.record, now, &k.key).dump() << "\n";
    return;
  }
  std::cout << verb << " key " << k.record.id << " (" << k.record.name << ")\n\n"
            << "  " << k.key << "\n\n"
            << "This is the only time the key is shown. Store it now.\n\n";
  print_key(k.record, now);
}

CLI::Validator refill_check() {
  CLI::Validator v(
      [](std::string& value) {
        auto r = parse_refill(value);
        return r ? std::string() : r.error();
      },
      "");
  v.name("AMOUNT/INTERVAL");
  return v;
}

// The flags shared by create and update.
struct SettingFlags {
  std::string name, owner, scopes, plan, rate, expires_at, refill;
  std::uint64_t burst = 0;
  std::int64_t credits = 0;
  CLI::Option *name_opt = nullptr, *scopes_opt = nullptr, *plan_opt = nullptr, *rate_opt = nullptr,
              *burst_opt = nullptr, *expires_at_opt = nullptr, *credits_opt = nullptr,
              *refill_opt = nullptr;

  // --credits / --refill as a change of the key's credits (nullopt: neither given).
  std::optional<CreditsPatch> credits_patch() const {
    if (!*credits_opt && !*refill_opt) return std::nullopt;
    CreditsPatch p;
    if (*credits_opt) p.remaining = credits;
    if (*refill_opt) p.refill = std::optional<CreditRefill>(*parse_refill(refill));
    return p;
  }

  void add(CLI::App& cmd, bool create) {
    name_opt = cmd.add_option("--name", name, create ? "what the key is for" : "rename the key");
    name_opt->type_name("NAME");
    if (create) name_opt->required();
    if (create)
      cmd.add_option("--owner", owner, "who the key belongs to (user, team, tenant)")
          ->type_name("ID");
    scopes_opt = cmd.add_option("--scopes", scopes, "comma-separated scopes, e.g. read,write")
                     ->type_name("a,b");
    plan_opt =
        cmd.add_option("--plan", plan, "a plan of the config (default: rate_limit.default_plan)")
            ->type_name("NAME");
    rate_opt = cmd.add_option("--rate", rate, "per-key rate instead of the plan's, e.g. 600/1m")
                   ->type_name("N/PERIOD")
                   ->check(rate_check());
    burst_opt = cmd.add_option("--burst", burst, "bucket capacity (default: the rate's N)")
                    ->type_name("N")
                    ->check(CLI::Range(std::uint64_t{1}, std::uint64_t{1} << 53).description(""));
    if (create) burst_opt->needs(rate_opt);
    expires_at_opt =
        cmd.add_option("--expires-at", expires_at, "expiry time, e.g. 2027-01-31T00:00:00Z")
            ->type_name("RFC3339")
            ->check(time_check());
    credits_opt =
        cmd.add_option("--credits", credits,
                       create ? "credits the key starts with; each request spends its route's cost"
                              : "set the key's credits balance")
            ->type_name("N")
            ->check(CLI::Range(std::int64_t{0}, kMaxCredits).description(""));
    refill_opt = cmd.add_option("--refill", refill,
                                "top the credits up to AMOUNT every INTERVAL, e.g. 1000/30d")
                     ->type_name("AMOUNT/INTERVAL")
                     ->check(refill_check());
  }
};

const std::string& key_ref(const std::string& ref) {
  if (ref.empty()) throw UsageError("ID|PREFIX must not be empty");
  return ref;
}

void add_ref(CLI::App& cmd, std::string& ref) {
  cmd.add_option("ID", ref, "the key's id (key_…) or display prefix")
      ->type_name("ID|PREFIX")
      ->required();
}

void add_create(CLI::App& keys, Session& s) {
  struct Flags : SettingFlags {
    std::string expires_in;
    std::vector<std::string> allow_ip, meta;
    bool json = false;
  };
  auto f = std::make_shared<Flags>();
  auto* cmd =
      keys.add_subcommand("create", "create a key and print it (the only time it is shown)");
  s.add_config_option(*cmd);
  f->add(*cmd, true);
  auto* in = cmd->add_option("--expires-in", f->expires_in, "expire after this long, e.g. 30d")
                 ->type_name("DURATION")
                 ->check(duration_check());
  in->excludes(f->expires_at_opt);
  cmd->add_option("--allow-ip", f->allow_ip, "only from this address or range (repeatable)")
      ->type_name("CIDR")
      ->check(cidr_check())
      ->allow_extra_args(false);
  cmd->add_option("--meta", f->meta, "metadata entry (repeatable)")
      ->type_name("k=v")
      ->check(meta_check())
      ->allow_extra_args(false);
  cmd->add_flag("--json", f->json, "print one JSON object");
  on_run(*cmd, s, [&s, f, in] {
    KeyService service = s.key_service();
    KeySpec spec;
    spec.name = f->name;
    spec.owner = f->owner;
    spec.scopes = split_csv(f->scopes);
    spec.plan = f->plan;
    if (*f->rate_opt) spec.rate = to_rate(f->rate);
    if (*f->burst_opt) spec.rate->burst = f->burst;
    if (*in) spec.expires_at = now_millis() + parse_duration(f->expires_in)->count();
    if (*f->expires_at_opt) spec.expires_at = to_time(f->expires_at);
    spec.allowed_ips = f->allow_ip;
    for (const auto& kv : f->meta) {
      auto eq = kv.find('=');
      spec.metadata[kv.substr(0, eq)] = kv.substr(eq + 1);
    }
    auto credits = new_credits(f->credits_patch());
    if (!credits) return fail(credits.error());
    spec.credits = *credits;
    auto issued = service.create(spec, kActor);
    if (!issued) return fail(issued.error());
    print_issued(*issued, f->json, "Created");
    return 0;
  });
}

void print_keys(const std::vector<KeyRecord>& keys, UnixMillis now) {
  std::vector<std::vector<std::string>> rows = {
      {"ID", "PREFIX", "NAME", "OWNER", "PLAN", "STATUS", "LAST USED", "CREATED"}};
  for (const auto& k : keys)
    rows.push_back({k.id, shown(k), k.name, or_dash(k.owner), or_dash(k.plan), k.status(now),
                    ago(k.last_used_at), format_time(k.created_at)});
  print_table(rows);
  if (keys.empty()) std::cout << "(no keys)\n";
}

void add_list(CLI::App& keys, Session& s) {
  struct Flags {
    std::string owner, status = "active";
    bool json = false;
  };
  auto f = std::make_shared<Flags>();
  auto* cmd = keys.add_subcommand("list", "list keys (never the secret, never the hash)");
  s.add_config_option(*cmd);
  auto* owner = cmd->add_option("--owner", f->owner, "only this owner's keys")->type_name("ID");
  cmd->add_option("--status", f->status, "which keys (default: active)")
      ->check(CLI::IsMember({"active", "revoked", "expired", "all"}).description(""))
      ->type_name("active|revoked|expired|all");
  cmd->add_flag("--json", f->json, "print a JSON array of key objects");
  on_run(*cmd, s, [&s, f, owner] {
    KeyListQuery q;
    if (*owner) q.owner = f->owner;
    q.status = f->status;
    UnixMillis now = now_millis();
    auto found = s.migrated_store().list_keys(q, now, nullptr);
    if (f->json) {
      auto arr = nlohmann::json::array();
      for (const auto& k : found) arr.push_back(key_to_json(k, now));
      std::cout << arr.dump() << "\n";
    } else {
      print_keys(found, now);
    }
    return 0;
  });
}

void add_show(CLI::App& keys, Session& s) {
  struct Flags {
    std::string ref;
    bool json = false;
  };
  auto f = std::make_shared<Flags>();
  auto* cmd = keys.add_subcommand("show", "one key's metadata");
  s.add_config_option(*cmd);
  add_ref(*cmd, f->ref);
  cmd->add_flag("--json", f->json, "print one JSON object");
  on_run(*cmd, s, [&s, f] {
    KeyService service = s.key_service();
    auto r = service.resolve(key_ref(f->ref));
    if (!r) return fail(r.error());
    if (f->json)
      std::cout << key_to_json(*r, now_millis()).dump() << "\n";
    else
      print_key(*r, now_millis());
    return 0;
  });
}

void add_update(CLI::App& keys, Session& s) {
  struct Flags : SettingFlags {
    std::string ref;
    bool enable = false, disable = false, json = false, no_refill = false, no_credits = false;
  };
  auto f = std::make_shared<Flags>();
  auto* cmd = keys.add_subcommand("update", "change a key's metadata");
  s.add_config_option(*cmd);
  add_ref(*cmd, f->ref);
  f->add(*cmd, false);
  auto* enable = cmd->add_flag("--enable", f->enable, "accept the key again");
  cmd->add_flag("--disable", f->disable, "refuse the key until --enable")->excludes(enable);
  auto* no_refill = cmd->add_flag("--no-refill", f->no_refill, "stop refilling the key's credits");
  no_refill->excludes(f->refill_opt);
  cmd->add_flag("--no-credits", f->no_credits, "remove the key's credits (no longer metered)")
      ->excludes(f->credits_opt)
      ->excludes(f->refill_opt)
      ->excludes(no_refill);
  cmd->add_flag("--json", f->json, "print the updated key object");
  on_run(*cmd, s, [&s, f] {
    KeyService service = s.key_service();
    const std::string& ref = key_ref(f->ref);
    KeyPatch p;
    if (*f->name_opt) p.name = f->name;
    if (*f->scopes_opt) p.scopes = split_csv(f->scopes);
    if (*f->plan_opt) p.plan = f->plan;
    if (*f->rate_opt) p.rate = to_rate(f->rate);
    if (*f->burst_opt) {
      std::optional<Rate> base = p.rate ? *p.rate : std::optional<Rate>{};
      if (!base) {
        auto current = service.resolve(ref);
        if (!current) return fail(current.error());
        base = current->rate;
      }
      if (!base) throw UsageError("--burst needs --rate (the key has no rate of its own)");
      base->burst = f->burst;
      p.rate = base;
    }
    if (f->enable) p.enabled = true;
    if (f->disable) p.enabled = false;
    if (*f->expires_at_opt) p.expires_at = std::optional<UnixMillis>(to_time(f->expires_at));
    if (f->no_credits) {
      p.credits = std::optional<CreditsPatch>{};
    } else if (auto c = f->credits_patch(); c || f->no_refill) {
      CreditsPatch change = c.value_or(CreditsPatch{});
      if (f->no_refill) change.refill = std::optional<CreditRefill>{};
      p.credits = std::optional<CreditsPatch>(change);
    }
    auto r = service.update(ref, p, kActor);
    if (!r) return fail(r.error());
    if (f->json)
      std::cout << key_to_json(*r, now_millis()).dump() << "\n";
    else
      std::cout << "Updated key " << r->id << "\n";
    return 0;
  });
}

void add_revoke(CLI::App& keys, Session& s) {
  struct Flags {
    std::string ref;
    bool json = false;
  };
  auto f = std::make_shared<Flags>();
  auto* cmd = keys.add_subcommand(
      "revoke", "revoke a key (a running serve on the same store refuses it within 1 s)");
  s.add_config_option(*cmd);
  add_ref(*cmd, f->ref);
  cmd->add_flag("--json", f->json, R"(print {"id":…,"revoked":true})");
  on_run(*cmd, s, [&s, f] {
    KeyService service = s.key_service();
    auto r = service.revoke(key_ref(f->ref), kActor);
    if (!r) return fail(r.error());
    if (f->json)
      std::cout << nlohmann::json{{"id", r->id}, {"revoked", true}}.dump() << "\n";
    else
      std::cout << "Revoked key " << r->id << " (" << shown(*r) << ")\n";
    return 0;
  });
}

void add_rotate(CLI::App& keys, Session& s) {
  struct Flags {
    std::string ref, grace = "0s";
    bool json = false;
  };
  auto f = std::make_shared<Flags>();
  auto* cmd = keys.add_subcommand(
      "rotate", "issue a replacement key with the same settings; the old one ends after --grace");
  s.add_config_option(*cmd);
  add_ref(*cmd, f->ref);
  cmd->add_option("--grace", f->grace, "how long the old key keeps working (default: 0s)")
      ->type_name("DURATION")
      ->check(duration_check(true));
  cmd->add_flag("--json", f->json, "print the new key object (with the key)");
  on_run(*cmd, s, [&s, f] {
    KeyService service = s.key_service();
    Millis grace = *parse_duration(f->grace);
    auto issued = service.rotate(key_ref(f->ref), grace, kActor);
    if (!issued) return fail(issued.error());
    print_issued(*issued, f->json, "Rotated: new");
    if (!f->json)
      std::cout << "\nThe old key " << issued->record.rotated_from
                << (grace.count() ? " keeps working for " + format_duration(grace)
                                  : " is revoked now")
                << ".\n";
    return 0;
  });
}

void add_usage(CLI::App& keys, Session& s) {
  struct Flags {
    std::string ref, granularity = "hour", from, to;
    bool json = false;
  };
  auto f = std::make_shared<Flags>();
  auto* cmd = keys.add_subcommand("usage", "a key's requests per hour or day, by outcome");
  s.add_config_option(*cmd);
  add_ref(*cmd, f->ref);
  cmd->add_option("--granularity", f->granularity, "hour (default) or day (UTC)")
      ->check(CLI::IsMember({"hour", "day"}).description(""))
      ->type_name("hour|day");
  auto* from = cmd->add_option("--from", f->from, "start (default: 24 h or 30 days before --to)")
                   ->type_name("RFC3339")
                   ->check(time_check());
  auto* to = cmd->add_option("--to", f->to, "end (default: now)")
                 ->type_name("RFC3339")
                 ->check(time_check());
  cmd->add_flag("--json", f->json, "print the report as one JSON object");
  on_run(*cmd, s, [&s, f, from, to] {
    KeyService service(s.migrated_store(), s.config());
    auto r = service.resolve(key_ref(f->ref));
    if (!r) return fail(r.error());
    UsageQuery q;
    q.granularity = f->granularity;
    if (*from) q.from = to_time(f->from);
    if (*to) q.to = to_time(f->to);
    auto report = usage_report(s.migrated_store(), r->id, q, now_millis());
    if (!report) return fail(report.error());
    const auto& j = *report;
    if (f->json) {
      std::cout << j.dump() << "\n";
      return 0;
    }
    std::cout << "Usage of " << r->id << " (" << r->name << ") per " << f->granularity << ", "
              << j["from"].get<std::string>() << " to " << j["to"].get<std::string>() << "\n\n";
    std::vector<std::vector<std::string>> rows = {
        {"PERIOD", "OK", "RATE_LIMITED", "DENIED", "UPSTREAM_ERROR", "TOTAL"}};
    auto row = [](std::string label, const nlohmann::json& c) {
      std::vector<std::string> out{std::move(label)};
      for (const char* k : {"ok", "rate_limited", "denied", "upstream_error", "total"})
        out.push_back(std::to_string(c[k].get<std::int64_t>()));
      return out;
    };
    for (const auto& p : j["periods"])
      if (p["total"].get<std::int64_t>() > 0) rows.push_back(row(p["start"].get<std::string>(), p));
    rows.push_back(row("total", j["totals"]));
    print_table(rows);
    return 0;
  });
}

}  // namespace

void add_keys_commands(CLI::App& app, Session& s) {
  auto* keys = app.add_subcommand("keys", "manage API keys");
  keys->require_subcommand(1);
  s.add_config_option(*keys);
  add_create(*keys, s);
  add_list(*keys, s);
  add_show(*keys, s);
  add_update(*keys, s);
  add_revoke(*keys, s);
  add_rotate(*keys, s);
  add_usage(*keys, s);
  add_transfer_commands(*keys, s);
}

}  // namespace keygate::cli
