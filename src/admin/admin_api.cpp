#include "keygate/admin/admin_api.hpp"

#include <openssl/crypto.h>

#include <boost/url/parse.hpp>
#include <boost/url/url_view.hpp>
#include <charconv>
#include <set>

#include "keygate/admin/openapi.hpp"
#include "keygate/config/values.hpp"
#include "keygate/core/ascii.hpp"
#include "keygate/keys/key_json.hpp"
#include "keygate/keys/usage_report.hpp"
#include "keygate/proxy/error_renderer.hpp"
#include "keygate/proxy/runtime.hpp"

namespace keygate {

using nlohmann::json;

bool secret_equals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  return CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

namespace {

struct Caller {
  std::string actor;  // "admin" or the key id
  std::string owner;  // key callers: their owner
  std::vector<std::string> scopes;
  bool is_key = false;
};

AdminResponse error_response(const Error& e, const std::string& request_id) {
  return {e.status, ErrorRenderer::envelope(e, request_id)};
}
AdminResponse ok(int status, json data, std::optional<json> meta = std::nullopt) {
  nlohmann::ordered_json body = {{"success", true}, {"data", std::move(data)}};
  if (meta) body["meta"] = *meta;
  return {status, body.dump()};
}

// The request target, decoded by Boost.URL: path segments and query
// parameters ('+' is a space in a query).
struct Target {
  std::string path;  // as sent, for messages
  std::vector<std::string> segments;
  std::map<std::string, std::string> query;  // a repeated parameter: the last wins
};

std::optional<Target> parse_target(std::string_view target) {
  auto url = boost::urls::parse_origin_form(target);
  if (!url) return std::nullopt;
  Target t;
  t.path = std::string(url->encoded_path());
  for (auto segment : url->segments()) t.segments.push_back(std::move(segment));
  for (auto param : url->params()) t.query[param.key] = param.has_value ? param.value : "";
  return t;
}

std::expected<std::int64_t, Error> int_param(const std::map<std::string, std::string>& q,
                                             const std::string& name, std::int64_t def,
                                             std::int64_t lo, std::int64_t hi) {
  auto it = q.find(name);
  if (it == q.end()) return def;
  std::int64_t v = 0;
  auto [p, ec] = std::from_chars(it->second.data(), it->second.data() + it->second.size(), v);
  if (ec != std::errc{} || p != it->second.data() + it->second.size() || v < lo || v > hi)
    return std::unexpected(validation_error(
        name,
        name + " must be an integer between " + std::to_string(lo) + " and " + std::to_string(hi)));
  return v;
}

json page_meta(std::int64_t page, std::int64_t size, std::int64_t total) {
  return {{"page", page},
          {"pageSize", size},
          {"total", total},
          {"totalPages", size ? (total + size - 1) / size : 0}};
}

std::expected<json, Error> parse_body(const std::string& body) {
  if (body.empty()) return json::object();
  auto j = json::parse(body, nullptr, false);
  if (j.is_discarded())
    return std::unexpected(validation_error("body", "request body is not valid JSON"));
  if (!j.is_object())
    return std::unexpected(validation_error("body", "request body must be a JSON object"));
  return j;
}

#define TRY(var, expr)                                       \
  auto var##_r = (expr);                                     \
  if (!var##_r) return error_response(var##_r.error(), rid); \
  auto var = std::move(*var##_r)

std::optional<Error> scope_grant_check(const Caller& c, const std::vector<std::string>& scopes) {
  if (!c.is_key) return std::nullopt;
  for (const auto& s : scopes)
    if (std::find(c.scopes.begin(), c.scopes.end(), s) == c.scopes.end())
      return errors::forbidden("scope", "A key cannot grant scope '" + s + "' it does not hold.");
  return std::nullopt;
}

class Handler {
 public:
  Handler(const AdminRequest& req, AdminDeps& d) : req_(req), d_(d), rid(req.request_id) {}

  AdminResponse run() {
    auto target = parse_target(req_.target);
    if (!target) return error_response(errors::bad_request("Malformed request target."), rid);
    const std::string& path = target->path;
    const auto& seg = target->segments;
    query_ = std::move(target->query);
    auto no_route = [&] {
      return error_response(errors::not_found("No such route: " + path), rid);
    };
    if (seg.size() == 1 && seg[0] == "metrics") {
      if (req_.method != "GET") return not_allowed("GET");
      return {200, d_.metrics.render(d_.gauges()), "text/plain; version=0.0.4; charset=utf-8"};
    }
    if (req_.metrics_only) return no_route();  // metrics.listen serves nothing else
    // /openapi.json, /v1/api-keys[/{id}[/rotate]], /v1/audit-events; ids are never empty.
    const bool keys = seg.size() >= 2 && seg.size() <= 4 && seg[0] == "v1" &&
                      seg[1] == "api-keys" && (seg.size() < 3 || !seg[2].empty()) &&
                      (seg.size() < 4 || seg[3] == "rotate" || seg[3] == "usage");
    const bool audit_events = seg.size() == 2 && seg[0] == "v1" && seg[1] == "audit-events";
    const bool openapi = seg.size() == 1 && seg[0] == "openapi.json";
    if (!keys && !audit_events && !openapi) return no_route();
    // SPEC §4: every route but /metrics needs the token, the document included.
    if (auto e = authenticate()) return error_response(*e, rid);

    if (openapi) {
      if (req_.method != "GET") return not_allowed("GET");
      return {200, std::string(openapi_document()), "application/json"};
    }
    if (audit_events) {
      if (req_.method == "GET") return audit();
      return not_allowed("GET");
    }
    if (seg.size() == 2) {
      if (req_.method == "POST") return create();
      if (req_.method == "GET") return list();
      return not_allowed("GET, POST");
    }
    const std::string& id = seg[2];
    if (seg.size() == 4 && seg[3] == "usage") {
      if (req_.method == "GET") return usage(id);
      return not_allowed("GET");
    }
    if (seg.size() == 4) {
      if (req_.method == "POST") return rotate(id);
      return not_allowed("POST");
    }
    if (req_.method == "GET") return get(id);
    if (req_.method == "PATCH") return patch(id);
    if (req_.method == "DELETE") return revoke(id);
    return not_allowed("GET, PATCH, DELETE");
  }

 private:
  AdminResponse not_allowed(std::string allow) {
    Error e{405,
            "METHOD_NOT_ALLOWED",
            "method",
            "Method " + req_.method + " is not allowed here; use " + allow + ".",
            json::object(),
            {}};
    auto r = error_response(e, rid);
    r.allow = std::move(allow);
    return r;
  }

  std::optional<Error> authenticate() {
    std::string presented;
    std::string_view auth = req_.authorization;
    if (auth.size() > 7 && ascii_iequals(auth.substr(0, 7), "bearer "))
      presented = std::string(auth.substr(7));
    else if (!req_.api_key.empty())
      presented = req_.api_key;
    if (presented.empty())
      return errors::auth("missing",
                          "Missing admin token. Pass it as 'Authorization: Bearer <token>' or in "
                          "the X-Api-Key header.");
    if (!req_.keys_only && secret_equals(presented, d_.runtime.config.admin.token)) {
      caller_.actor = "admin";
      return std::nullopt;
    }
    const auto& scope = d_.runtime.config.admin.key_scope;
    if (scope && (d_.runtime.key_format.well_formed(presented) || d_.index.has_foreign_keys())) {
      KeyHash h = d_.runtime.hasher.hash(presented);
      std::optional<AuthKey> k;
      d_.index.visit(h, [&](const IndexedKey& a) { k.emplace(a); });
      UnixMillis now = now_millis();
      if (k && k->active(now)) {
        if (!k->has_scope(*scope))
          return errors::forbidden(
              "scope", "This key lacks the '" + *scope + "' scope needed for the admin API.");
        if (k->owner().empty())
          return errors::forbidden("scope", "Only keys with an owner may manage keys.");
        caller_ = {std::string(k->id()), std::string(k->owner()), split_csv(k->scopes_csv()), true};
        return std::nullopt;
      }
    }
    if (req_.keys_only) return errors::auth("invalid", "Invalid or revoked API key");
    return errors::auth("invalid", "Invalid admin token.");
  }

  // Key callers see only their owner's keys; others are "not found".
  std::expected<KeyRecord, Error> visible(const std::string& ref) {
    auto r = d_.service.resolve(ref);
    if (r && caller_.is_key && r->owner != caller_.owner)
      return std::unexpected(errors::not_found("No key with id or prefix '" + ref + "'."));
    return r;
  }

  AdminResponse create() {
    TRY(body, parse_body(req_.body));
    if (auto e = check_fields(body, {"name", "owner", "scopes", "plan", "rate", "expires_at",
                                     "expires_in", "allowed_ips", "metadata", "credits"}))
      return error_response(*e, rid);
    TRY(spec, key_spec_from_json(body, now_millis()));
    if (auto e = credits_grant_check(body)) return error_response(*e, rid);
    if (caller_.is_key) {
      if (!spec.owner.empty() && spec.owner != caller_.owner)
        return error_response(
            errors::forbidden("scope", "A key may only create keys for its own owner."), rid);
      spec.owner = caller_.owner;
      if (auto e = scope_grant_check(caller_, spec.scopes)) return error_response(*e, rid);
    }
    TRY(issued, d_.service.create(spec, caller_.actor));
    return ok(201, key_to_json(issued.record, now_millis(), &issued.key));
  }

  AdminResponse list() {
    for (const auto& [k, v] : query_)
      if (k != "page" && k != "pageSize" && k != "owner" && k != "status")
        return error_response(validation_error(k, "unknown query parameter '" + k + "'"), rid);
    TRY(page, int_param(query_, "page", 1, 1, 1'000'000'000));
    TRY(size, int_param(query_, "pageSize", 20, 1, 100));
    KeyListQuery q;
    q.page = page;
    q.page_size = size;
    if (auto it = query_.find("owner"); it != query_.end()) q.owner = it->second;
    if (caller_.is_key) q.owner = caller_.owner;
    if (auto it = query_.find("status"); it != query_.end()) {
      static const std::set<std::string> ok_status = {"active", "revoked", "expired", "all"};
      if (!ok_status.contains(it->second))
        return error_response(
            validation_error("status", "status must be active, revoked, expired or all"), rid);
      q.status = it->second;
    }
    std::int64_t total = 0;
    UnixMillis now = now_millis();
    auto keys = d_.store.list_keys(q, now, &total);
    json data = json::array();
    for (const auto& k : keys) data.push_back(key_to_json(k, now));
    return ok(200, std::move(data), page_meta(page, size, total));
  }

  AdminResponse get(const std::string& id) {
    TRY(r, visible(id));
    return ok(200, key_to_json(r, now_millis()));
  }

  AdminResponse patch(const std::string& id) {
    TRY(body, parse_body(req_.body));
    if (auto e = check_fields(body, {"name", "scopes", "plan", "rate", "enabled", "expires_at",
                                     "allowed_ips", "metadata", "credits"}))
      return error_response(*e, rid);
    if (auto e = credits_grant_check(body)) return error_response(*e, rid);
    TRY(existing, visible(id));
    KeyPatch p;
    if (body.contains("name")) {
      if (!body["name"].is_string())
        return error_response(validation_error("name", "name must be a string"), rid);
      p.name = body["name"].get<std::string>();
    }
    if (body.contains("scopes")) {
      TRY(scopes, string_list(body["scopes"], "scopes"));
      if (auto e = scope_grant_check(caller_, scopes)) return error_response(*e, rid);
      p.scopes = scopes;
    }
    if (body.contains("plan")) {
      if (!body["plan"].is_string() && !body["plan"].is_null())
        return error_response(validation_error("plan", "plan must be a string"), rid);
      p.plan = body["plan"].is_null() ? "" : body["plan"].get<std::string>();
    }
    if (body.contains("rate")) {
      TRY(rate, rate_field(body["rate"]));
      p.rate = rate;
    }
    if (body.contains("enabled")) {
      if (!body["enabled"].is_boolean())
        return error_response(validation_error("enabled", "enabled must be true or false"), rid);
      p.enabled = body["enabled"].get<bool>();
    }
    if (body.contains("expires_at")) {
      TRY(t, time_field(body["expires_at"], "expires_at"));
      p.expires_at = t;
    }
    if (body.contains("allowed_ips")) {
      TRY(ips, string_list(body["allowed_ips"], "allowed_ips"));
      p.allowed_ips = ips;
    }
    if (body.contains("metadata")) {
      TRY(meta, metadata_field(body["metadata"]));
      p.metadata = meta;
    }
    if (body.contains("credits")) {
      TRY(credits, credits_field(body["credits"]));
      p.credits = credits;
    }
    TRY(r, d_.service.update(existing.id, p, caller_.actor));
    return ok(200, key_to_json(r, now_millis()));
  }

  AdminResponse revoke(const std::string& id) {
    TRY(existing, visible(id));
    TRY(r, d_.service.revoke(existing.id, caller_.actor));
    return ok(200, json{{"id", r.id}, {"revoked", true}});
  }

  AdminResponse rotate(const std::string& id) {
    TRY(body, parse_body(req_.body));
    if (auto e = check_fields(body, {"grace"})) return error_response(*e, rid);
    Millis grace{0};
    if (body.contains("grace") && !body["grace"].is_null()) {
      auto d = body["grace"].is_string() ? parse_duration(body["grace"].get<std::string>())
                                         : std::unexpected(std::string("not a string"));
      if (!d)
        return error_response(validation_error("grace", "grace must be a duration like 24h"), rid);
      grace = *d;
    }
    TRY(existing, visible(id));
    TRY(issued, d_.service.rotate(existing.id, grace, caller_.actor));
    return ok(201, key_to_json(issued.record, now_millis(), &issued.key));
  }

  // A key may not give keys credits: it would mint itself requests.
  std::optional<Error> credits_grant_check(const json& body) const {
    if (caller_.is_key && body.contains("credits"))
      return errors::forbidden("scope", "Credits are set by the operator, not by a key.");
    return std::nullopt;
  }

  AdminResponse usage(const std::string& id) {
    UsageQuery q;
    for (const auto& [k, v] : query_) {
      if (k == "granularity") {
        q.granularity = v;
      } else if (k == "from" || k == "to") {
        auto t = parse_time(v);
        if (!t) return error_response(validation_error(k, k + " must be an RFC 3339 time"), rid);
        (k == "from" ? q.from : q.to) = *t;
      } else {
        return error_response(validation_error(k, "unknown query parameter '" + k + "'"), rid);
      }
    }
    TRY(existing, visible(id));
    TRY(report, usage_report(d_.store, existing.id, q, now_millis()));
    return ok(200, std::move(report));
  }

  AdminResponse audit() {
    for (const auto& [k, v] : query_)
      if (k != "page" && k != "pageSize" && k != "key_id" && k != "action" && k != "since")
        return error_response(validation_error(k, "unknown query parameter '" + k + "'"), rid);
    TRY(page, int_param(query_, "page", 1, 1, 1'000'000'000));
    TRY(size, int_param(query_, "pageSize", 20, 1, 100));
    AuditQuery q;
    q.page = page;
    q.page_size = size;
    if (auto it = query_.find("key_id"); it != query_.end()) q.key_id = it->second;
    if (auto it = query_.find("action"); it != query_.end()) {
      if (std::find(kAuditActions.begin(), kAuditActions.end(), it->second) == kAuditActions.end())
        return error_response(
            validation_error("action", "action must be create, import, update, rotate or revoke"),
            rid);
      q.action = it->second;
    }
    if (auto it = query_.find("since"); it != query_.end()) {
      q.since = parse_time(it->second);
      if (!q.since)
        return error_response(
            validation_error("since",
                             "since must be an RFC 3339 time, e.g. 2027-01-31T00:00:00Z (in a "
                             "query string, write '+' as %2B)"),
            rid);
    }
    // A key caller sees the events of its owner's keys only.
    if (caller_.is_key) q.owner = caller_.owner;
    std::int64_t total = 0;
    auto events = d_.store.list_audit(q, &total);
    json data = json::array();
    for (const auto& e : events) data.push_back(audit_to_json(e));
    return ok(200, std::move(data), page_meta(page, size, total));
  }

  const AdminRequest& req_;
  AdminDeps& d_;
  const std::string& rid;
  std::map<std::string, std::string> query_;
  Caller caller_;
};

}  // namespace

AdminResponse handle_admin(const AdminRequest& req, AdminDeps deps) {
  try {
    return Handler(req, deps).run();
  } catch (const StoreConflict&) {
    Error busy{409,
               "CONFLICT",
               "concurrent_update",
               "The key was changed by another request at the same time; try again.",
               json::object(),
               {}};
    return error_response(busy, req.request_id);
  } catch (const StoreError&) {
    // SPEC §8: while the store is unreachable, admin calls answer 503 STORE_UNAVAILABLE.
    Error unavailable{503,
                      "STORE_UNAVAILABLE",
                      "store",
                      "The key store is unavailable; try again shortly.",
                      json::object(),
                      {}};
    return error_response(unavailable, req.request_id);
  } catch (const std::exception& e) {
    return error_response(errors::internal(), req.request_id);
  }
}

}  // namespace keygate
