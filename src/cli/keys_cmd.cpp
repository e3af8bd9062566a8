// `keygate keys ...`: the CLI face of KeyService (the admin API is the other).
#include <iomanip>
#include <iostream>
#include <sstream>

#include "cli/args.hpp"
#include "keygate/config/values.hpp"
#include "keygate/keys/key_service.hpp"

namespace keygate {

namespace {

constexpr const char* kActor = "cli";

std::vector<std::string> csv(const std::string& s) {
  return split_csv(s);
}

Rate rate_flag(const std::string& text) {
  auto r = parse_rate(text);
  if (!r) throw UsageError("--rate: " + r.error());
  return *r;
}

std::uint64_t burst_flag(const std::string& text) {
  try {
    size_t used = 0;
    long long v = std::stoll(text, &used);
    if (used != text.size() || v < 1) throw std::invalid_argument("");
    return static_cast<std::uint64_t>(v);
  } catch (const std::exception&) {
    throw UsageError("--burst must be a positive integer");
  }
}

UnixMillis expires_at_flag(const std::string& text) {
  auto t = parse_time(text);
  if (!t) throw UsageError("--expires-at must be an RFC 3339 time, e.g. 2027-01-31T00:00:00Z");
  return *t;
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

void print_key(const KeyRecord& r, UnixMillis now) {
  std::cout << "id:           " << r.id << "\n"
            << "prefix:       " << r.prefix << "…" << r.last4 << "\n"
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
            << "status:       " << r.status(now) << (r.enabled ? "" : " (disabled)") << "\n"
            << "created:      " << format_time(r.created_at) << " by " << or_dash(r.created_by)
            << "\n"
            << "expires:      " << (r.expires_at ? format_time(*r.expires_at) : "never") << "\n"
            << "revoked:      " << (r.revoked_at ? format_time(*r.revoked_at) : "-") << "\n"
            << "last used:    " << ago(r.last_used_at)
            << (r.last_used_ip.empty() ? "" : " from " + r.last_used_ip) << "\n";
  if (!r.rotated_from.empty()) std::cout << "rotated from: " << r.rotated_from << "\n";
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

void print_table(const std::vector<KeyRecord>& keys, UnixMillis now) {
  std::vector<std::vector<std::string>> rows = {
      {"ID", "PREFIX", "NAME", "OWNER", "PLAN", "STATUS", "LAST USED", "CREATED"}};
  for (const auto& k : keys)
    rows.push_back({k.id, k.prefix + "…" + k.last4, k.name, or_dash(k.owner), or_dash(k.plan),
                    k.status(now), ago(k.last_used_at), format_time(k.created_at)});
  std::vector<size_t> width(rows[0].size(), 0);
  for (const auto& r : rows)
    for (size_t i = 0; i < r.size(); ++i) width[i] = std::max(width[i], r[i].size());
  for (const auto& r : rows) {
    for (size_t i = 0; i < r.size(); ++i)
      std::cout << std::left << std::setw(static_cast<int>(width[i] + 2)) << r[i];
    std::cout << "\n";
  }
  if (keys.empty()) std::cout << "(no keys)\n";
}

const std::string& one_ref(const Args& a, const std::string& cmd) {
  if (a.positional().size() != 1)
    throw UsageError("keys " + cmd + " needs exactly one ID or PREFIX");
  return a.positional().front();
}

}  // namespace

int run_keys(const std::string& sub, const std::vector<std::string>& argv, const Config& cfg) {
  auto store = open_store(cfg);
  store->migrate();
  KeyService service(*store, cfg);
  UnixMillis now = now_millis();

  if (sub == "create") {
    Args a(argv,
           {"name", "owner", "scopes", "plan", "rate", "burst", "expires-in", "expires-at",
            "allow-ip", "meta"},
           {"json"});
    if (!a.positional().empty())
      throw UsageError("unexpected argument '" + a.positional()[0] + "'");
    KeySpec spec;
    auto name = a.get("name");
    if (!name) throw UsageError("keys create needs --name");
    spec.name = *name;
    spec.owner = a.get("owner").value_or("");
    if (auto s = a.get("scopes")) spec.scopes = csv(*s);
    spec.plan = a.get("plan").value_or("");
    if (auto r = a.get("rate")) spec.rate = rate_flag(*r);
    if (auto b = a.get("burst")) {
      if (!spec.rate) throw UsageError("--burst needs --rate");
      spec.rate->burst = burst_flag(*b);
    }
    if (a.has("expires-in") && a.has("expires-at"))
      throw UsageError("give --expires-in or --expires-at, not both");
    if (auto d = a.get("expires-in")) {
      auto dur = parse_duration(*d);
      if (!dur || dur->count() <= 0) throw UsageError("--expires-in must be a duration like 30d");
      spec.expires_at = now + dur->count();
    }
    if (auto t = a.get("expires-at")) spec.expires_at = expires_at_flag(*t);
    spec.allowed_ips = a.all("allow-ip");
    for (const auto& kv : a.all("meta")) {
      auto eq = kv.find('=');
      if (eq == std::string::npos || eq == 0) throw UsageError("--meta must be key=value");
      spec.metadata[kv.substr(0, eq)] = kv.substr(eq + 1);
    }
    auto issued = service.create(spec, kActor);
    if (!issued) return fail(issued.error());
    print_issued(*issued, a.has("json"), "Created");
    return 0;
  }
  if (sub == "list") {
    Args a(argv, {"owner", "status"}, {"json"});
    if (!a.positional().empty())
      throw UsageError("unexpected argument '" + a.positional()[0] + "'");
    KeyListQuery q;
    q.owner = a.get("owner");
    q.status = a.get("status").value_or("active");
    if (q.status != "active" && q.status != "revoked" && q.status != "expired" && q.status != "all")
      throw UsageError("--status must be active, revoked, expired or all");
    auto keys = store->list_keys(q, now, nullptr);
    if (a.has("json")) {
      auto arr = nlohmann::json::array();
      for (const auto& k : keys) arr.push_back(key_to_json(k, now));
      std::cout << arr.dump() << "\n";
    } else {
      print_table(keys, now);
    }
    return 0;
  }
  if (sub == "show") {
    Args a(argv, {}, {"json"});
    auto r = service.resolve(one_ref(a, "show"));
    if (!r) return fail(r.error());
    if (a.has("json"))
      std::cout << key_to_json(*r, now).dump() << "\n";
    else
      print_key(*r, now);
    return 0;
  }
  if (sub == "update") {
    Args a(argv, {"name", "scopes", "plan", "rate", "burst", "expires-at"},
           {"enable", "disable", "json"});
    const std::string& ref = one_ref(a, "update");
    if (a.has("enable") && a.has("disable"))
      throw UsageError("give --enable or --disable, not both");
    KeyPatch p;
    p.name = a.get("name");
    if (auto s = a.get("scopes")) p.scopes = csv(*s);
    p.plan = a.get("plan");
    if (auto r = a.get("rate")) p.rate = rate_flag(*r);
    if (auto b = a.get("burst")) {
      std::optional<Rate> base = p.rate ? *p.rate : std::optional<Rate>{};
      if (!base) {
        auto current = service.resolve(ref);
        if (!current) return fail(current.error());
        base = current->rate;
      }
      if (!base) throw UsageError("--burst needs --rate (the key has no rate of its own)");
      base->burst = burst_flag(*b);
      p.rate = base;
    }
    if (a.has("enable")) p.enabled = true;
    if (a.has("disable")) p.enabled = false;
    if (auto t = a.get("expires-at")) p.expires_at = std::optional<UnixMillis>(expires_at_flag(*t));
    auto r = service.update(ref, p, kActor);
    if (!r) return fail(r.error());
    if (a.has("json"))
      std::cout << key_to_json(*r, now_millis()).dump() << "\n";
    else
      std::cout << "Updated key " << r->id << "\n";
    return 0;
  }
  if (sub == "revoke") {
    Args a(argv, {}, {"json"});
    auto r = service.revoke(one_ref(a, "revoke"), kActor);
    if (!r) return fail(r.error());
    if (a.has("json"))
      std::cout << nlohmann::json{{"id", r->id}, {"revoked", true}}.dump() << "\n";
    else
      std::cout << "Revoked key " << r->id << " (" << r->prefix << "…" << r->last4 << ")\n";
    return 0;
  }
  if (sub == "rotate") {
    Args a(argv, {"grace"}, {"json"});
    Millis grace{0};
    if (auto g = a.get("grace")) {
      auto d = parse_duration(*g);
      if (!d) throw UsageError("--grace: " + d.error());
      grace = *d;
    }
    auto issued = service.rotate(one_ref(a, "rotate"), grace, kActor);
    if (!issued) return fail(issued.error());
    print_issued(*issued, a.has("json"), "Rotated: new");
    if (!a.has("json"))
      std::cout << "\nThe old key " << issued->record.rotated_from
                << (grace.count() ? " keeps working for " + format_duration(grace)
                                  : " is revoked now")
                << ".\n";
    return 0;
  }
  throw UsageError("unknown keys subcommand '" + sub +
                   "' (create, list, show, update, revoke, rotate)");
}

}  // namespace keygate
