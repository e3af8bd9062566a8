#include "keygate/config/loader.hpp"

#include <libpq-fe.h>
#include <yaml-cpp/yaml.h>

#include <boost/locale/utf.hpp>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <filesystem>
#include <fstream>
#include <map>
#include <regex>
#include <set>
#include <sstream>

#include "keygate/config/values.hpp"
#include "keygate/core/placeholders.hpp"
#include "keygate/keys/cidr.hpp"

namespace keygate {

std::string ConfigErrors::joined() const {
  std::string out;
  for (const auto& m : messages) out += m + "\n";
  return out;
}

namespace {

// std::filesystem::exists(path) throws for anything but "not there" (a name
// longer than the system allows, a directory it may not search): such a file
// cannot be used either, and the loader reports it instead of its catch-all.
bool file_exists(const std::string& path) {
  std::error_code ec;
  return std::filesystem::exists(path, ec);
}

// Every string of a config may end up in a JSON body or log line (error
// templates, messages, names), and JSON text is UTF-8.
bool is_utf8(std::string_view s) {
  using boost::locale::utf::utf_traits;
  for (auto p = s.begin(); p != s.end();) {
    auto c = utf_traits<char>::decode(p, s.end());
    if (c == boost::locale::utf::illegal || c == boost::locale::utf::incomplete) return false;
  }
  return true;
}

// Walks the YAML tree, expands ${VAR} in scalars and collects every problem
// with its line instead of stopping at the first one.
class Reader {
 public:
  Reader(std::string file, EnvLookup env) : file_(std::move(file)), env_(std::move(env)) {}

  void error(const YAML::Node& at, const std::string& msg) {
    // A key that is absent has no line: 0 names the file as a whole.
    error_line(at.IsDefined() ? at.Mark().line + 1 : 0, msg);
  }
  void error_line(int line, const std::string& msg) {
    errors_.push_back(file_ + ":" + std::to_string(line) + ": " + msg);
  }
  std::vector<std::string> take_errors() { return std::move(errors_); }
  size_t error_count() const { return errors_.size(); }

  // A mapping whose keys must all be in `allowed`; reports unknown keys.
  bool mapping(const YAML::Node& n, const std::string& what,
               std::initializer_list<std::string_view> allowed) {
    if (!n.IsMap()) {
      error(n, what + " must be a mapping");
      return false;
    }
    for (auto it = n.begin(); it != n.end(); ++it) {
      auto key = it->first.Scalar();
      if (std::find(allowed.begin(), allowed.end(), key) == allowed.end()) {
        std::string known;
        for (auto a : allowed) known += (known.empty() ? "" : ", ") + std::string(a);
        error(it->first, "unknown key '" + key + "' in " + what + " (known: " + known + ")");
      }
    }
    return true;
  }

  static bool present(const YAML::Node& n) { return n.IsDefined(); }
  static bool null(const YAML::Node& n) { return n.IsDefined() && n.IsNull(); }

  std::optional<std::string> str(const YAML::Node& n, const std::string& what) {
    if (!n.IsScalar()) {
      error(n, what + " must be a string");
      return std::nullopt;
    }
    auto v = expand_env(n.Scalar(), env_);
    if (!v) {
      error(n, what + ": " + v.error());
      return std::nullopt;
    }
    if (!is_utf8(*v)) {
      // Bytes written in the file itself are reported by the structure check.
      if (is_utf8(n.Scalar()))
        error(n, what + ": an environment variable's value is not UTF-8 text");
      return std::nullopt;
    }
    return *v;
  }

  // Sets `out` when the key is present and valid; nullable keys accept `null`.
  void opt_str(const YAML::Node& n, const std::string& what, std::optional<std::string>& out) {
    if (!present(n)) return;
    if (null(n)) {
      out.reset();
      return;
    }
    if (auto s = str(n, what)) out = s->empty() ? std::nullopt : std::optional(*s);
  }
  void get_str(const YAML::Node& n, const std::string& what, std::string& out) {
    if (!present(n)) return;
    if (auto s = str(n, what)) out = *s;
  }

  template <class Int>
  void get_int(const YAML::Node& n, const std::string& what, Int& out, long long lo, long long hi) {
    if (!present(n)) return;
    auto s = str(n, what);
    if (!s) return;
    long long v = 0;
    auto [ptr, ec] = std::from_chars(s->data(), s->data() + s->size(), v);
    bool whole = !s->empty() && ptr == s->data() + s->size();
    if (!whole || (ec != std::errc{} && ec != std::errc::result_out_of_range)) {
      error(n, what + " must be an integer, got '" + *s + "'");
      return;
    }
    if (ec == std::errc::result_out_of_range) {
      error(n, what + " must be between " + std::to_string(lo) + " and " + std::to_string(hi) +
                   ", got " + *s);
      return;
    }
    if (v < lo || v > hi) {
      error(n, what + " must be between " + std::to_string(lo) + " and " + std::to_string(hi) +
                   ", got " + std::to_string(v));
      return;
    }
    out = static_cast<Int>(v);
  }

  void get_bool(const YAML::Node& n, const std::string& what, bool& out) {
    if (!present(n)) return;
    auto s = str(n, what);
    if (!s) return;
    if (*s == "true")
      out = true;
    else if (*s == "false")
      out = false;
    else
      error(n, what + " must be true or false, got '" + *s + "'");
  }

  void get_duration(const YAML::Node& n, const std::string& what, Millis& out, Millis min,
                    Millis max = Millis::max()) {
    if (!present(n)) return;
    auto s = str(n, what);
    if (!s) return;
    auto d = parse_duration(*s);
    if (!d) return error(n, what + ": " + d.error());
    if (*d < min) return error(n, what + " must be at least " + format_duration(min));
    if (*d > max) return error(n, what + " must be at most " + format_duration(max));
    out = *d;
  }

  template <class Enum>
  void get_enum(const YAML::Node& n, const std::string& what, Enum& out,
                std::initializer_list<std::pair<std::string_view, Enum>> choices) {
    if (!present(n)) return;
    auto s = str(n, what);
    if (!s) return;
    std::string names;
    for (auto& [name, value] : choices) {
      if (*s == name) {
        out = value;
        return;
      }
      names += (names.empty() ? "" : ", ") + std::string(name);
    }
    error(n, what + " must be one of " + names + ", got '" + *s + "'");
  }

  std::vector<std::string> str_list(const YAML::Node& n, const std::string& what) {
    std::vector<std::string> out;
    if (!n.IsSequence()) {
      error(n, what + " must be a list");
      return out;
    }
    for (const auto& item : n)
      if (auto s = str(item, what + " item")) out.push_back(*s);
    return out;
  }

  // YAML -> JSON for error templates: quoted scalars stay strings, plain
  // scalars become numbers/booleans/null when they look like one.
  nlohmann::ordered_json to_json(const YAML::Node& n) {
    switch (n.Type()) {
      case YAML::NodeType::Null:
        return nullptr;
      case YAML::NodeType::Sequence: {
        auto arr = nlohmann::ordered_json::array();
        for (const auto& item : n) arr.push_back(to_json(item));
        return arr;
      }
      case YAML::NodeType::Map: {
        auto obj = nlohmann::ordered_json::object();
        for (auto it = n.begin(); it != n.end(); ++it)
          obj[it->first.Scalar()] = to_json(it->second);
        return obj;
      }
      case YAML::NodeType::Scalar: {
        const std::string& s = n.Scalar();
        if (n.Tag() != "!") {
          if (s == "true") return true;
          if (s == "false") return false;
          auto parsed = nlohmann::ordered_json::parse(s, nullptr, false);
          if (!parsed.is_discarded() && parsed.is_number()) return parsed;
        }
        return s;
      }
      default:
        return nullptr;
    }
  }

 private:
  std::string file_;
  EnvLookup env_;
  std::vector<std::string> errors_;
};

// yaml-cpp keeps every entry of a repeated key (lookups see the first) and
// shares aliased nodes, so `&a [*a]` is a cycle and nested aliases expand
// exponentially; it also takes any bytes as text. One walk before reading
// reports repeated keys and text that is not UTF-8, and refuses trees that no
// later walk could finish.
constexpr int kMaxDepth = 64;
constexpr size_t kMaxNodes = 100'000;  // counted with aliases expanded

struct StructureCheck {
  Reader& r;
  size_t nodes = 0;
  // By position: a node reached again through an alias is checked once.
  std::set<size_t> maps_checked, scalars_checked;

  // False when the tree is too deep or too large to read at all.
  bool walk(const YAML::Node& n, int depth) {
    if (++nodes > kMaxNodes) {
      r.error(n, "the config expands to more than " + std::to_string(kMaxNodes) +
                     " YAML nodes (check anchors and aliases)");
      return false;
    }
    if (depth > kMaxDepth) {
      r.error(n, "nested deeper than " + std::to_string(kMaxDepth) +
                     " levels (or an alias refers to its own anchor)");
      return false;
    }
    if (n.IsScalar()) {
      if (!is_utf8(n.Scalar()) && scalars_checked.insert(n.Mark().pos).second)
        r.error(n, "not UTF-8 text (save the file as UTF-8)");
    } else if (n.IsSequence()) {
      for (const auto& item : n)
        if (!walk(item, depth + 1)) return false;
    } else if (n.IsMap()) {
      const bool first_visit = maps_checked.insert(n.Mark().pos).second;
      std::map<std::string, int> lines;  // key -> line of its first occurrence
      for (auto it = n.begin(); it != n.end(); ++it) {
        const YAML::Node key = it->first;
        const YAML::Node value = it->second;
        if (first_visit && key.IsScalar()) {
          auto [seen, fresh] = lines.emplace(key.Scalar(), key.Mark().line + 1);
          if (!fresh)
            r.error(key, "duplicate key '" + key.Scalar() + "' (first on line " +
                             std::to_string(seen->second) + ")");
        }
        if (!walk(key, depth + 1) || !walk(value, depth + 1)) return false;
      }
    }
    return true;
  }
};

const std::regex& prefix_re() {
  static const std::regex re("^[a-z0-9]{1,16}$");
  return re;
}
const std::regex& token_re() {
  static const std::regex re("^[A-Za-z0-9!#$%&'*+.^_`|~-]+$");
  return re;
}

void read_rate(Reader& r, const YAML::Node& n, const std::string& what, Rate& rate) {
  if (!r.mapping(n, what, {"requests", "period", "burst"})) return;
  const size_t errors_before = r.error_count();
  if (!n["requests"].IsDefined()) r.error(n, what + ".requests is required");
  r.get_int(n["requests"], what + ".requests", rate.requests, 1, kMaxRateRequests);
  r.get_duration(n["period"], what + ".period", rate.period, Millis(1), kMaxRatePeriod);
  r.get_int(n["burst"], what + ".burst", rate.burst, 0, kMaxRateBurst);
  // Each value is in range; what is left are the bounds on their combination.
  if (r.error_count() == errors_before)
    if (auto problem = rate_problem(rate, what)) r.error(n, *problem);
}

void read_plans(Reader& r, const YAML::Node& n, Config& c) {
  if (!n.IsMap()) return r.error(n, "plans must be a mapping of plan name to plan");
  c.plans.clear();
  for (auto it = n.begin(); it != n.end(); ++it) {
    Plan p;
    p.name = it->first.Scalar();
    std::string what = "plans." + p.name;
    if (!std::regex_match(p.name, std::regex("^[A-Za-z0-9_.-]{1,64}$")))
      r.error(it->first, "plan name '" + p.name + "' must be 1-64 of [A-Za-z0-9_.-]");
    const YAML::Node pn = it->second;  // a copy: it-> yields a temporary proxy
    if (r.mapping(pn, what, {"rate", "scope", "allow", "message"})) {
      if (pn["rate"].IsDefined() && !pn["rate"].IsNull()) {
        Rate rate;
        read_rate(r, pn["rate"], what + ".rate", rate);
        p.rate = rate;
      }
      r.get_enum(pn["scope"], what + ".scope", p.scope,
                 {{"key", Plan::Scope::key}, {"owner", Plan::Scope::owner}});
      r.get_bool(pn["allow"], what + ".allow", p.allow);
      r.get_str(pn["message"], what + ".message", p.message);
    }
    c.plans[p.name] = std::move(p);
  }
}

void read_redis(Reader& r, const YAML::Node& n, RedisConfig& redis) {
  if (!r.mapping(n, "rate_limit.redis", {"url", "timeout", "on_error"})) return;
  if (n["url"].IsDefined()) {
    if (auto url = r.str(n["url"], "rate_limit.redis.url")) {
      if (auto ok = parse_redis_url(*url, redis); ok)
        redis.url = *url;
      else
        r.error(n["url"], "rate_limit.redis.url: " + ok.error());
    }
  }
  r.get_duration(n["timeout"], "rate_limit.redis.timeout", redis.timeout, Millis(1));
  if (redis.timeout > Millis(60000))
    r.error(n["timeout"], "rate_limit.redis.timeout must be at most 60s");
  using E = RedisConfig::OnError;
  r.get_enum(n["on_error"], "rate_limit.redis.on_error", redis.on_error,
             {{"local", E::local}, {"open", E::open}, {"closed", E::closed}});
}

void read_routes(Reader& r, const YAML::Node& n, Config& c) {
  if (n.IsNull()) return;
  if (!n.IsSequence()) return r.error(n, "routes must be a list");
  for (const auto& rn : n) {
    Route route;
    if (!r.mapping(rn, "route",
                   {"path_prefix", "methods", "auth", "require_scopes", "cost", "shadow"}))
      continue;
    if (!rn["path_prefix"].IsDefined()) r.error(rn, "route needs path_prefix");
    r.get_str(rn["path_prefix"], "routes.path_prefix", route.path_prefix);
    if (route.path_prefix.empty() || route.path_prefix.front() != '/')
      r.error(rn, "routes.path_prefix must start with '/'");
    if (rn["methods"].IsDefined()) {
      for (auto& m : r.str_list(rn["methods"], "routes.methods")) {
        std::string up = m;
        std::transform(up.begin(), up.end(), up.begin(), ::toupper);
        if (!std::regex_match(up, std::regex("^[A-Z]{1,16}$")))
          r.error(rn["methods"], "routes.methods: invalid method '" + m + "'");
        route.methods.push_back(up);
      }
    }
    std::string auth = "key";
    r.get_str(rn["auth"], "routes.auth", auth);
    if (auth == "none")
      route.auth_none = true;
    else if (auth != "key")
      r.error(rn["auth"], "routes.auth must be none or key, got '" + auth + "'");
    if (rn["require_scopes"].IsDefined())
      route.require_scopes = r.str_list(rn["require_scopes"], "routes.require_scopes");
    if (route.auth_none && !route.require_scopes.empty())
      r.error(rn, "a route with auth: none cannot require_scopes");
    r.get_int(rn["cost"], "routes.cost", route.cost, 1, kMaxRouteCost);
    if (route.auth_none && rn["cost"].IsDefined())
      r.error(rn["cost"], "a route with auth: none has no key to charge: remove cost");
    // A request costing more tokens than a plan's bucket holds could never pass.
    for (const auto& [name, plan] : c.plans)
      if (plan.allow && plan.rate && route.cost > plan.rate->capacity())
        r.error(rn["cost"], "routes.cost " + std::to_string(route.cost) +
                                " exceeds the burst of plan '" + name + "' (" +
                                std::to_string(plan.rate->capacity()) +
                                "): such requests could never be admitted");
    if (rn["shadow"].IsDefined() && !rn["shadow"].IsNull()) {
      bool shadow = false;
      r.get_bool(rn["shadow"], "routes.shadow", shadow);
      route.shadow = shadow;
    }
    c.routes.push_back(std::move(route));
  }
}

void read_auth(Reader& r, const YAML::Node& n, Config& c) {
  if (!r.mapping(n, "auth", {"sources", "forward_credential"})) return;
  r.get_bool(n["forward_credential"], "auth.forward_credential", c.auth.forward_credential);
  const YAML::Node& s = n["sources"];
  if (!s.IsDefined()) return;
  if (!s.IsSequence() || s.size() == 0) return r.error(s, "auth.sources must be a non-empty list");
  c.auth.sources.clear();
  for (const auto& item : s) {
    AuthSource src;
    if (item.IsScalar() && item.Scalar() == "bearer") {
      src = {AuthSource::Kind::bearer, "Authorization"};
    } else if (item.IsMap() && item.size() == 1 &&
               (item["header"].IsDefined() || item["query"].IsDefined())) {
      bool header = item["header"].IsDefined();
      auto name = r.str(header ? item["header"] : item["query"], "auth.sources name");
      if (!name || name->empty()) {
        r.error(item, "auth.sources: empty name");
        continue;
      }
      if (header && !std::regex_match(*name, token_re()))
        r.error(item, "auth.sources: invalid header name '" + *name + "'");
      src = {header ? AuthSource::Kind::header : AuthSource::Kind::query, *name};
    } else {
      r.error(item, "auth.sources items are bearer, {header: NAME} or {query: NAME}");
      continue;
    }
    c.auth.sources.push_back(src);
  }
}

const std::set<std::string>& known_codes() {
  static const std::set<std::string> codes = {
      "VALIDATION_ERROR", "AUTH_ERROR",        "FORBIDDEN",        "NOT_FOUND",
      "CONFLICT",         "PAYLOAD_TOO_LARGE", "RATE_LIMIT_ERROR", "HEADERS_TOO_LARGE",
      "UPSTREAM_ERROR",   "UNAVAILABLE",       "UPSTREAM_TIMEOUT", "INTERNAL_ERROR"};
  return codes;
}

void check_placeholders(Reader& r, const YAML::Node& at, const nlohmann::ordered_json& j,
                        const std::string& what) {
  if (j.is_string()) {
    if (auto bad = placeholders::first_unknown(j.get<std::string>()))
      r.error(at,
              what + ": unknown placeholder {" + *bad + "} (known: " + placeholders::list() + ")");
  } else if (j.is_structured()) {
    for (const auto& [k, v] : j.items()) check_placeholders(r, at, v, what);
  }
}

void read_errors(Reader& r, const YAML::Node& n, Config& c) {
  if (n.IsNull()) {
    c.errors.reset();
    return;
  }
  if (!r.mapping(n, "errors", {"template", "templates", "codes", "messages"})) return;
  ErrorStyle style;
  if (n["template"].IsDefined()) {
    style.template_body = r.to_json(n["template"]);
    check_placeholders(r, n["template"], style.template_body, "errors.template");
  }
  if (n["templates"].IsDefined()) {
    if (!n["templates"].IsMap()) {
      r.error(n["templates"], "errors.templates must be a mapping of reason to template");
    } else {
      for (auto it = n["templates"].begin(); it != n["templates"].end(); ++it) {
        auto body = r.to_json(it->second);
        check_placeholders(r, it->second, body, "errors.templates." + it->first.Scalar());
        style.templates[it->first.Scalar()] = std::move(body);
      }
    }
  }
  auto read_map = [&](const char* key, std::map<std::string, std::string>& out, bool codes) {
    const YAML::Node& m = n[key];
    if (!m.IsDefined()) return;
    if (!m.IsMap()) return r.error(m, std::string("errors.") + key + " must be a mapping");
    for (auto it = m.begin(); it != m.end(); ++it) {
      std::string k = it->first.Scalar();
      if (codes && !known_codes().contains(k))
        r.error(it->first, "errors.codes: unknown code '" + k + "'");
      if (auto v = r.str(it->second, std::string("errors.") + key + "." + k)) {
        if (!codes) check_placeholders(r, it->second, *v, "errors.messages." + k);
        out[k] = *v;
      }
    }
  };
  read_map("codes", style.codes, true);
  read_map("messages", style.messages, false);
  c.errors = std::move(style);
}

// libpq's own parser judges a store.postgres connection string (URI or key=value).
std::optional<std::string> conninfo_error(const std::string& conninfo) {
  char* err = nullptr;
  PQconninfoOption* opts = PQconninfoParse(conninfo.c_str(), &err);
  if (opts) {
    PQconninfoFree(opts);
    return std::nullopt;
  }
  std::string msg = err ? err : "invalid connection string";
  PQfreemem(err);
  while (!msg.empty() && msg.back() == '\n') msg.pop_back();
  return msg;
}

// The key node of `name` in map `m` (its line is where the section starts), or
// `m` itself when the key is absent.
YAML::Node key_of(const YAML::Node& m, std::string_view name) {
  for (auto it = m.begin(); it != m.end(); ++it)
    if (it->first.IsScalar() && it->first.Scalar() == name) return it->first;
  return m;
}

// SPEC §9 (forward_auth, shadow, self_service) and §10 (trusted_proxies).
void read_modes(Reader& r, const YAML::Node& root, Config& c) {
  auto local_path = [&](const YAML::Node& n, const std::string& what,
                        std::optional<std::string>& out) {
    r.opt_str(n, what, out);
    if (out && (!out->starts_with('/') || (out->size() > 1 && out->back() == '/')))
      r.error(n, what + " must start with '/' and not end with '/', got '" + *out + "'");
  };
  if (auto n = root["forward_auth"]; n.IsDefined() && !n.IsNull()) {
    if (r.mapping(n, "forward_auth", {"path"})) {
      local_path(n["path"], "forward_auth.path", c.forward_auth.path);
      for (const auto* h : {&c.health.path, &c.health.ready, &c.health.live})
        if (*h && c.forward_auth.path == *h)
          r.error(n["path"], "forward_auth.path is also a health endpoint: " + **h);
    }
  }
  r.get_bool(root["shadow"], "shadow", c.shadow);
  if (auto n = root["self_service"]; n.IsDefined() && !n.IsNull()) {
    if (r.mapping(n, "self_service", {"path_prefix"})) {
      local_path(n["path_prefix"], "self_service.path_prefix", c.self_service.path_prefix);
      if (c.self_service.path_prefix && !c.admin.key_scope)
        r.error(n["path_prefix"],
                "self_service.path_prefix needs admin.key_scope (the scope a key must hold)");
    }
  }
  if (c.forward_auth.path && c.self_service.path_prefix &&
      (*c.forward_auth.path + "/").starts_with(*c.self_service.path_prefix + "/"))
    r.error(root["forward_auth"], "forward_auth.path lies under self_service.path_prefix");
  if (auto n = root["trusted_proxies"]; n.IsDefined() && !n.IsNull()) {
    for (auto& cidr : r.str_list(n, "trusted_proxies")) {
      if (auto ok = parse_cidr(cidr); !ok)
        r.error(n, "trusted_proxies: " + ok.error());
      else
        c.trusted_proxies.push_back(cidr);
    }
  }
}

void read_config(Reader& r, const YAML::Node& root, Config& c) {
  if (!r.mapping(root, "the config file", {"listen",       "tls",
                                           "threads",      "upstream",
                                           "admin",        "store",
                                           "keys",         "auth",
                                           "identity",     "plans",
                                           "rate_limit",   "routes",
                                           "health",       "errors",
                                           "limits",       "logging",
                                           "usage",        "shutdown_timeout",
                                           "forward_auth", "shadow",
                                           "self_service", "trusted_proxies",
                                           "metrics"}))
    return;
  auto host_port = [&](const YAML::Node& n, const std::string& what, HostPort& out) {
    if (!n.IsDefined()) return;
    auto s = r.str(n, what);
    if (!s) return;
    auto hp = parse_host_port(*s);
    if (!hp) return r.error(n, what + ": " + hp.error());
    out = *hp;
  };
  host_port(root["listen"], "listen", c.listen);
  if (auto n = root["tls"]; n.IsDefined() && !n.IsNull()) {
    if (r.mapping(n, "tls", {"cert", "key"})) {
      r.opt_str(n["cert"], "tls.cert", c.tls.cert);
      r.opt_str(n["key"], "tls.key", c.tls.key);
      if (c.tls.cert.has_value() != c.tls.key.has_value())
        r.error(n, "tls.cert and tls.key must be set together");
      for (auto* f : {&c.tls.cert, &c.tls.key})
        if (*f && !file_exists(**f)) r.error(n, "tls: file not found: " + **f);
    }
  }
  r.get_int(root["threads"], "threads", c.threads, 0, 256);
  if (auto n = root["upstream"]; n.IsDefined()) {
    if (r.mapping(n, "upstream",
                  {"url", "connect_timeout", "timeout", "max_idle_connections", "tls_verify",
                   "ca_file"})) {
      if (n["url"].IsDefined()) {
        if (auto s = r.str(n["url"], "upstream.url")) {
          auto u = parse_upstream_url(*s);
          if (!u) {
            r.error(n["url"], "upstream.url: " + u.error());
          } else {
            c.upstream.url = *s;
            c.upstream.https = u->https;
            c.upstream.host = u->host;
            c.upstream.port = u->port;
            c.upstream.host_header = u->host_header;
          }
        }
      }
      r.get_duration(n["connect_timeout"], "upstream.connect_timeout", c.upstream.connect_timeout,
                     Millis(1));
      r.get_duration(n["timeout"], "upstream.timeout", c.upstream.timeout, Millis(1));
      r.get_int(n["max_idle_connections"], "upstream.max_idle_connections",
                c.upstream.max_idle_connections, 0, 100000);
      r.get_bool(n["tls_verify"], "upstream.tls_verify", c.upstream.tls_verify);
      r.opt_str(n["ca_file"], "upstream.ca_file", c.upstream.ca_file);
      if (c.upstream.ca_file && !file_exists(*c.upstream.ca_file))
        r.error(n["ca_file"], "upstream.ca_file: file not found: " + *c.upstream.ca_file);
    }
  }
  if (auto n = root["admin"]; n.IsDefined()) {
    if (r.mapping(n, "admin", {"listen", "token", "key_scope"})) {
      host_port(n["listen"], "admin.listen", c.admin.listen);
      if (n["token"].IsDefined() && !n["token"].IsNull())
        r.get_str(n["token"], "admin.token", c.admin.token);
      r.opt_str(n["key_scope"], "admin.key_scope", c.admin.key_scope);
    }
  }
  if (auto n = root["metrics"]; n.IsDefined() && !n.IsNull()) {
    if (r.mapping(n, "metrics", {"listen"})) {
      // null or empty ("${KEYGATE_METRICS_LISTEN:-}"): no metrics listener
      std::optional<std::string> listen;
      r.opt_str(n["listen"], "metrics.listen", listen);
      if (listen) host_port(n["listen"], "metrics.listen", c.metrics.listen.emplace());
    }
  }
  if (auto n = root["store"]; n.IsDefined()) {
    if (r.mapping(n, "store", {"sqlite", "postgres"})) {
      if (n["sqlite"].IsDefined() && n["postgres"].IsDefined())
        r.error(n, "store: set exactly one of store.sqlite and store.postgres");
      r.get_str(n["sqlite"], "store.sqlite", c.store_sqlite);
      if (c.store_sqlite.empty()) r.error(n["sqlite"], "store.sqlite must not be empty");
      if (n["postgres"].IsDefined()) {
        r.get_str(n["postgres"], "store.postgres", c.store_postgres);
        if (c.store_postgres.empty())
          r.error(n["postgres"], "store.postgres must not be empty");
        else if (auto bad = conninfo_error(c.store_postgres))
          r.error(n["postgres"], "store.postgres: " + *bad);
      }
    }
  }
  if (auto n = root["keys"]; n.IsDefined()) {
    if (r.mapping(n, "keys", {"prefix", "environment", "display_prefix_length", "pepper"})) {
      r.get_str(n["prefix"], "keys.prefix", c.keys.prefix);
      if (!std::regex_match(c.keys.prefix, prefix_re()))
        r.error(n["prefix"], "keys.prefix must match [a-z0-9]{1,16}, got '" + c.keys.prefix + "'");
      r.opt_str(n["environment"], "keys.environment", c.keys.environment);
      if (c.keys.environment && *c.keys.environment != "live" && *c.keys.environment != "test")
        r.error(n["environment"], "keys.environment must be live, test or null");
      r.get_int(n["display_prefix_length"], "keys.display_prefix_length",
                c.keys.display_prefix_length, 1, 64);
      r.opt_str(n["pepper"], "keys.pepper", c.keys.pepper);
      // The display prefix shows the head plus 1..16 random characters: at least
      // 16 of the 32 random characters (95 bits) always stay secret.
      int head = static_cast<int>(c.keys.prefix.size()) + 1 +
                 (c.keys.environment ? static_cast<int>(c.keys.environment->size()) + 1 : 0);
      if (c.keys.display_prefix_length < head + 1 || c.keys.display_prefix_length > head + 16)
        r.error(n["display_prefix_length"].IsDefined() ? n["display_prefix_length"] : n,
                "keys.display_prefix_length must be between " + std::to_string(head + 1) + " and " +
                    std::to_string(head + 16) + " for this prefix");
    }
  }
  if (auto n = root["auth"]; n.IsDefined()) read_auth(r, n, c);
  if (auto n = root["identity"]; n.IsDefined()) {
    if (r.mapping(n, "identity", {"header_prefix"})) {
      r.get_str(n["header_prefix"], "identity.header_prefix", c.identity_header_prefix);
      if (!std::regex_match(c.identity_header_prefix, token_re()))
        r.error(n["header_prefix"], "identity.header_prefix must be a header-name prefix");
    }
  }
  if (auto n = root["plans"]; n.IsDefined()) read_plans(r, n, c);
  if (auto n = root["rate_limit"]; n.IsDefined()) {
    if (r.mapping(n, "rate_limit",
                  {"default_plan", "headers", "reset_header", "backend", "redis"})) {
      r.get_str(n["default_plan"], "rate_limit.default_plan", c.rate_limit.default_plan);
      using H = RateLimitConfig::Headers;
      r.get_enum(n["headers"], "rate_limit.headers", c.rate_limit.headers,
                 {{"x-ratelimit", H::x_ratelimit},
                  {"ietf", H::ietf},
                  {"both", H::both},
                  {"none", H::none}});
      r.get_enum(
          n["reset_header"], "rate_limit.reset_header", c.rate_limit.reset,
          {{"epoch", RateLimitConfig::Reset::epoch}, {"delta", RateLimitConfig::Reset::delta}});
      r.get_enum(
          n["backend"], "rate_limit.backend", c.rate_limit.backend,
          {{"local", RateLimitConfig::Backend::local}, {"redis", RateLimitConfig::Backend::redis}});
      if (auto rn = n["redis"]; rn.IsDefined() && !rn.IsNull())
        read_redis(r, rn, c.rate_limit.redis);
    }
  }
  // Keys without a plan of their own get the default plan, so it must exist: with
  // `plans` lacking `default` and no rate_limit section this names the plans line.
  if (!c.plans.contains(c.rate_limit.default_plan)) {
    const YAML::Node rl = root["rate_limit"];
    const YAML::Node at = rl.IsDefined() && rl.IsMap() && rl["default_plan"].IsDefined()
                              ? rl["default_plan"]
                              : key_of(root, "plans");
    r.error(at, "rate_limit.default_plan '" + c.rate_limit.default_plan +
                    "' is not defined under plans (define it or set rate_limit.default_plan)");
  }
  if (auto n = root["routes"]; n.IsDefined()) read_routes(r, n, c);
  if (auto n = root["health"]; n.IsDefined()) {
    if (r.mapping(n, "health", {"path", "ready", "live"})) {
      r.opt_str(n["path"], "health.path", c.health.path);
      r.opt_str(n["ready"], "health.ready", c.health.ready);
      r.opt_str(n["live"], "health.live", c.health.live);
      for (auto* p : {&c.health.path, &c.health.ready, &c.health.live})
        if (*p && (*p)->front() != '/') r.error(n, "health paths must start with '/'");
    }
  }
  if (auto n = root["errors"]; n.IsDefined()) read_errors(r, n, c);
  if (auto n = root["limits"]; n.IsDefined()) {
    if (r.mapping(n, "limits",
                  {"max_header_bytes", "max_body_bytes", "header_timeout", "idle_timeout",
                   "max_connections", "allow_encoded_slashes", "allow_underscores_in_headers"})) {
      r.get_int(n["max_header_bytes"], "limits.max_header_bytes", c.limits.max_header_bytes, 1024,
                1 << 20);
      r.get_int(n["max_body_bytes"], "limits.max_body_bytes", c.limits.max_body_bytes, 0,
                1LL << 40);
      r.get_duration(n["header_timeout"], "limits.header_timeout", c.limits.header_timeout,
                     Millis(1));
      r.get_duration(n["idle_timeout"], "limits.idle_timeout", c.limits.idle_timeout, Millis(1));
      r.get_int(n["max_connections"], "limits.max_connections", c.limits.max_connections, 1,
                1'000'000);
      r.get_bool(n["allow_encoded_slashes"], "limits.allow_encoded_slashes",
                 c.limits.allow_encoded_slashes);
      r.get_bool(n["allow_underscores_in_headers"], "limits.allow_underscores_in_headers",
                 c.limits.allow_underscores_in_headers);
    }
  }
  if (auto n = root["logging"]; n.IsDefined()) {
    if (r.mapping(n, "logging", {"level", "format", "access_log"})) {
      r.get_str(n["level"], "logging.level", c.logging.level);
      static const std::set<std::string> levels = {"trace", "debug",    "info", "warn",
                                                   "error", "critical", "off"};
      if (!levels.contains(c.logging.level))
        r.error(n["level"],
                "logging.level must be one of trace, debug, info, warn, error, "
                "critical, off");
      r.get_enum(n["format"], "logging.format", c.logging.format,
                 {{"json", LoggingConfig::Format::json}, {"text", LoggingConfig::Format::text}});
      r.get_bool(n["access_log"], "logging.access_log", c.logging.access_log);
    }
  }
  if (auto n = root["usage"]; n.IsDefined() && !n.IsNull()) {
    if (r.mapping(n, "usage", {"retention"}))
      r.get_duration(n["retention"], "usage.retention", c.usage.retention, Millis(3'600'000));
  }
  r.get_duration(root["shutdown_timeout"], "shutdown_timeout", c.shutdown_timeout, Millis(0));
  read_modes(r, root, c);
}

}  // namespace

std::expected<Config, ConfigErrors> load_config_text(const std::string& yaml,
                                                     const std::string& name) {
  auto failed = [&](int line, const std::string& message) {
    return std::unexpected(ConfigErrors{{name + ":" + std::to_string(line) + ": " + message}});
  };
  // Never throws: a reload must survive any text. Every known problem is reported
  // by the reader with its line; the catch-alls below only guard against a yaml-cpp
  // call that throws where the reader did not expect it (the fuzzer looks for those).
  try {
    Config c;
    c.source_path = name;
    YAML::Node root;
    try {
      root = YAML::Load(yaml);
    } catch (const YAML::Exception& e) {
      return failed(e.mark.line + 1, "YAML syntax error: " + e.msg);
    }
    if (root.IsNull()) return c;  // an empty file: every default
    Reader r(name, process_env());
    StructureCheck structure{r};
    if (structure.walk(root, 0)) read_config(r, root, c);
    auto errors = r.take_errors();
    if (!errors.empty()) return std::unexpected(ConfigErrors{std::move(errors)});
    return c;
  } catch (const YAML::Exception& e) {
    return failed(e.mark.line + 1, std::string(kUnexpectedConfigError) + e.msg);
  } catch (const std::exception& e) {
    return failed(0, std::string(kUnexpectedConfigError) + e.what());
  }
}

std::expected<Config, ConfigErrors> load_config_file(const std::string& path) {
  auto failed = [&](const std::string& why) {
    return std::unexpected(ConfigErrors{{path + ":0: " + why}});
  };
  // A directory opens as an empty stream (and would read as every default).
  std::error_code ec;
  auto status = std::filesystem::status(path, ec);
  if (ec) return failed("cannot read the config file: " + ec.message());
  if (std::filesystem::is_directory(status))
    return failed("cannot read the config file: it is a directory");
  if (!std::filesystem::is_regular_file(status))
    return failed("cannot read the config file: not a regular file");
  std::ifstream in(path, std::ios::binary);
  if (!in) return failed("cannot read the config file: " + std::generic_category().message(errno));
  std::stringstream ss;
  ss << in.rdbuf();
  if (in.bad()) return failed("cannot read the config file: read error");
  return load_config_text(ss.str(), path);
}

}  // namespace keygate
