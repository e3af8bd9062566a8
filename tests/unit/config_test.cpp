#include <gtest/gtest.h>
#include <sys/stat.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "config_errors.hpp"
#include "keygate/config/loader.hpp"
#include "keygate/config/values.hpp"
#include "keygate/core/time.hpp"
#include "keygate/keys/key_service.hpp"
#include "keygate/keys/sqlite_store.hpp"
#include "keygate/proxy/error_renderer.hpp"
#include "keygate/ratelimit/token_bucket.hpp"

using namespace keygate;
using namespace std::chrono_literals;

namespace {

Config ok(const std::string& yaml) {
  auto c = load_config_text(yaml, "t.yaml");
  EXPECT_TRUE(c.has_value()) << (c ? "" : c.error().joined());
  return c ? *c : Config{};
}

using keygate::test_support::errors_of;

// The single error, which must mention `needle` and name line `line`.
void expect_error(const std::string& yaml, const std::string& needle, int line) {
  auto errs = errors_of(yaml);
  ASSERT_EQ(errs.size(), 1u) << ::testing::PrintToString(errs);
  EXPECT_NE(errs[0].find(needle), std::string::npos) << errs[0];
  EXPECT_EQ(errs[0].rfind("t.yaml:" + std::to_string(line) + ": ", 0), 0u) << errs[0];
}

}  // namespace

TEST(Durations, ParsesEveryUnit) {
  EXPECT_EQ(*parse_duration("500ms"), 500ms);
  EXPECT_EQ(*parse_duration("30s"), 30s);
  EXPECT_EQ(*parse_duration("5m"), 5min);
  EXPECT_EQ(*parse_duration("24h"), 24h);
  EXPECT_EQ(*parse_duration("30d"), Millis(30LL * 86'400'000));
  EXPECT_EQ(*parse_duration("1.5s"), 1500ms);
  EXPECT_EQ(*parse_duration("0s"), 0ms);
}

TEST(Durations, RejectsMalformed) {
  for (const char* bad : {"", "10", "s", "5 s", "-1s", "1w", "1.2.3s", "abc", "10sec"})
    EXPECT_FALSE(parse_duration(bad).has_value()) << bad;
}

TEST(Durations, FormatsBack) {
  EXPECT_EQ(format_duration(60000ms), "1m");
  EXPECT_EQ(format_duration(1500ms), "1500ms");
  EXPECT_EQ(format_duration(86'400'000ms), "1d");
  EXPECT_EQ(format_duration(0ms), "0s");
}

TEST(Rates, ParsesShortAndDurationPeriods) {
  auto r = parse_rate("600/1m");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->requests, 600u);
  EXPECT_EQ(r->period, 60s);
  EXPECT_EQ(parse_rate("10/s")->period, 1s);
  EXPECT_EQ(parse_rate("1/h")->period, 1h);
  EXPECT_EQ(parse_rate("5/d")->period, 24h);
  for (const char* bad : {"10", "/s", "0/s", "10/", "10/x", "a/s", "10/0s"})
    EXPECT_FALSE(parse_rate(bad).has_value()) << bad;
}

TEST(HostPort, ParsesV4V6AndNames) {
  EXPECT_EQ(parse_host_port("0.0.0.0:8080")->port, 8080);
  auto v6 = parse_host_port("[::1]:9");
  ASSERT_TRUE(v6);
  EXPECT_EQ(v6->host, "::1");
  EXPECT_EQ(v6->str(), "[::1]:9");
  EXPECT_EQ(parse_host_port("localhost:1")->host, "localhost");
  for (const char* bad : {"8080", ":80", "a:", "a:70000", "a:-1", "[::1]9"})
    EXPECT_FALSE(parse_host_port(bad).has_value()) << bad;
}

TEST(Urls, ParsesHttpAndHttps) {
  auto u = parse_upstream_url("http://api.internal:9000");
  ASSERT_TRUE(u);
  EXPECT_FALSE(u->https);
  EXPECT_EQ(u->host, "api.internal");
  EXPECT_EQ(u->port, 9000);
  EXPECT_EQ(u->host_header, "api.internal:9000");
  auto s = parse_upstream_url("https://example.com/");
  ASSERT_TRUE(s);
  EXPECT_TRUE(s->https);
  EXPECT_EQ(s->port, 443);
  EXPECT_EQ(parse_upstream_url("http://[::1]:81")->host, "::1");
  for (const char* bad : {"ftp://x", "x:80", "http://", "http://a/b", "http://a:99999"})
    EXPECT_FALSE(parse_upstream_url(bad).has_value()) << bad;
}

TEST(EnvExpansion, VariablesAndDefaults) {
  EnvLookup env = [](const std::string& n) -> std::optional<std::string> {
    if (n == "A") return "alpha";
    if (n == "EMPTY") return "";
    return std::nullopt;
  };
  EXPECT_EQ(*expand_env("x-${A}-y", env), "x-alpha-y");
  EXPECT_EQ(*expand_env("${B:-bee}", env), "bee");
  EXPECT_EQ(*expand_env("${A:-bee}", env), "alpha");
  EXPECT_EQ(*expand_env("${EMPTY:-dflt}", env), "dflt");
  EXPECT_EQ(*expand_env("${EMPTY}", env), "");
  EXPECT_EQ(*expand_env("${B:-}", env), "");
  EXPECT_EQ(*expand_env("no vars $ here", env), "no vars $ here");
  EXPECT_FALSE(expand_env("${B}", env).has_value());
  EXPECT_FALSE(expand_env("${A", env).has_value());
  EXPECT_FALSE(expand_env("${}", env).has_value());
  EXPECT_FALSE(expand_env("${A-B}", env).has_value());
}

TEST(ConfigLoad, EmptyFileGivesEveryDefault) {
  Config c = ok("");
  EXPECT_EQ(c.listen.str(), "0.0.0.0:8080");
  EXPECT_EQ(c.upstream.url, "http://127.0.0.1:9000");
  EXPECT_EQ(c.upstream.timeout, 30s);
  EXPECT_EQ(c.admin.listen.str(), "127.0.0.1:8081");
  EXPECT_FALSE(c.admin.enabled());
  EXPECT_EQ(c.keys.prefix, "kg");
  EXPECT_EQ(*c.keys.environment, "live");
  EXPECT_EQ(c.keys.display_prefix_length, 12);
  ASSERT_EQ(c.auth.sources.size(), 2u);
  EXPECT_EQ(c.auth.sources[1].name, "X-Api-Key");
  EXPECT_EQ(c.plans.at("default").rate->requests, 60u);
  EXPECT_EQ(c.limits.max_body_bytes, 10485760u);
  EXPECT_EQ(c.shutdown_timeout, 15s);
  EXPECT_FALSE(c.errors.has_value());
}

TEST(ConfigLoad, TheShippedConfigIsValid) {
  auto c = load_config_file(KEYGATE_SOURCE_DIR "/config/keygate.yaml");
  ASSERT_TRUE(c.has_value()) << c.error().joined();
}

TEST(ConfigLoad, FullConfig) {
  ::setenv("KG_TEST_TOKEN", "0123456789abcdef0123", 1);
  Config c = ok(R"(
listen: "127.0.0.1:${KG_TEST_PORT:-8181}"
threads: 4
upstream: {url: http://10.0.0.2:81, connect_timeout: 250ms, timeout: 5s, max_idle_connections: 8, tls_verify: false}
admin: {listen: "127.0.0.1:9191", token: "${KG_TEST_TOKEN}", key_scope: keys:admin}
keys: {prefix: fs, environment: test, display_prefix_length: 14, pepper: "pepper-pepper-pepper"}
auth: {sources: [{header: X-API-Key}, bearer, {query: api_key}], forward_credential: true}
identity: {header_prefix: X-Gw-}
plans:
  free: {allow: false, message: "Upgrade to Pro."}
  pro: {rate: {requests: 6000, period: 1m, burst: 100}, scope: owner}
rate_limit: {default_plan: pro, headers: both, reset_header: delta}
routes:
  - {path_prefix: /docs, auth: none}
  - {path_prefix: /v1/admin/, methods: [post, DELETE], require_scopes: [admin]}
health: {path: null, ready: /readyz, live: /livez}
limits: {max_header_bytes: 8192, max_body_bytes: 0, header_timeout: 2s, idle_timeout: 30s, max_connections: 10}
logging: {level: debug, format: text, access_log: false}
shutdown_timeout: 0s
)");
  EXPECT_EQ(c.listen.port, 8181);
  EXPECT_EQ(c.threads, 4);
  EXPECT_EQ(c.upstream.connect_timeout, 250ms);
  EXPECT_FALSE(c.upstream.tls_verify);
  EXPECT_EQ(c.admin.token, "0123456789abcdef0123");
  EXPECT_EQ(*c.admin.key_scope, "keys:admin");
  EXPECT_EQ(c.keys.prefix, "fs");
  EXPECT_EQ(*c.keys.pepper, "pepper-pepper-pepper");
  ASSERT_EQ(c.auth.sources.size(), 3u);
  EXPECT_EQ(c.auth.sources[0].kind, AuthSource::Kind::header);
  EXPECT_EQ(c.auth.sources[2].kind, AuthSource::Kind::query);
  EXPECT_TRUE(c.auth.forward_credential);
  EXPECT_EQ(c.identity_header_prefix, "X-Gw-");
  EXPECT_FALSE(c.plans.at("free").allow);
  EXPECT_EQ(c.plans.at("pro").rate->capacity(), 100u);
  EXPECT_EQ(c.plans.at("pro").scope, Plan::Scope::owner);
  EXPECT_FALSE(c.plans.contains("default"));
  EXPECT_EQ(c.rate_limit.headers, RateLimitConfig::Headers::both);
  EXPECT_EQ(c.rate_limit.reset, RateLimitConfig::Reset::delta);
  ASSERT_EQ(c.routes.size(), 2u);
  EXPECT_TRUE(c.routes[0].auth_none);
  EXPECT_EQ(c.routes[1].methods, (std::vector<std::string>{"POST", "DELETE"}));
  EXPECT_FALSE(c.health.path.has_value());
  EXPECT_EQ(*c.health.live, "/livez");
  EXPECT_EQ(c.limits.max_connections, 10u);
  EXPECT_EQ(c.logging.format, LoggingConfig::Format::text);
  EXPECT_EQ(c.shutdown_timeout, 0s);
}

TEST(ConfigErrors, EveryProblemAtOnceWithLines) {
  auto errs = errors_of("listen: nope\nthreads: -1\nbogus: 1\nupstream:\n  timeout: 5x\n");
  ASSERT_EQ(errs.size(), 4u) << ::testing::PrintToString(errs);
  EXPECT_EQ(errs[0].rfind("t.yaml:3: unknown key 'bogus'", 0), 0u) << errs[0];
  EXPECT_EQ(errs[1].rfind("t.yaml:1: listen", 0), 0u) << errs[1];
  EXPECT_EQ(errs[2].rfind("t.yaml:2: threads must be between 0 and 256", 0), 0u) << errs[2];
  EXPECT_EQ(errs[3].rfind("t.yaml:5: upstream.timeout", 0), 0u) << errs[3];
}

TEST(ConfigErrors, EachValidationPath) {
  expect_error("x: 1", "unknown key 'x'", 1);
  expect_error("upstream: {urll: http://a:1}", "unknown key 'urll' in upstream", 1);
  expect_error("listen: 1.2.3.4", "expected host:port", 1);
  expect_error("threads: two", "must be an integer", 1);
  expect_error("threads: 300", "between 0 and 256", 1);
  expect_error("tls: {cert: /dev/null}", "must be set together", 1);
  expect_error("upstream: {url: ftp://a}", "http:// or https://", 1);
  expect_error("upstream: {connect_timeout: 0s}", "at least 1ms", 1);
  expect_error("upstream: {tls_verify: maybe}", "true or false", 1);
  expect_error("upstream: {ca_file: /nonexistent.pem}", "file not found", 1);
  // A name longer than the system allows: std::filesystem::exists threw, and
  // the loader answered with its catch-all (found by fuzz_config in CI).
  const std::string too_long = "/" + std::string(300, 'x') + ".pem";
  expect_error("upstream: {ca_file: " + too_long + "}", "file not found", 1);
  expect_error("tls: {cert: " + too_long + ", key: /dev/null}", "file not found", 1);
  expect_error("upstream: 5", "upstream must be a mapping", 1);
  expect_error("store: {sqlite: ''}", "must not be empty", 1);
  expect_error("keys: {environment: prod}", "live, test or null", 1);
  expect_error("keys: {display_prefix_length: 8}", "between 9 and 24", 1);
  expect_error("auth: {sources: []}", "non-empty list", 1);
  expect_error("auth: {sources: [cookie]}", "bearer, {header: NAME}", 1);
  expect_error("auth: {sources: [{header: 'bad name'}]}", "invalid header name", 1);
  expect_error("identity: {header_prefix: 'a b'}", "header-name prefix", 1);
  expect_error("plans:\n  default: {rate: {period: 1m}}", "requests is required", 2);
  expect_error("plans:\n  default: {rate: {requests: 5, period: 1m, brust: 2}}",
               "unknown key 'brust'", 2);
  expect_error("plans:\n  default: {scope: team}", "key, owner", 2);
  expect_error("plans: {'bad name': {}, default: {}}", "plan name", 1);
  expect_error("rate_limit: {default_plan: gold}", "'gold' is not defined", 1);
  expect_error("rate_limit: {reset_header: later}", "epoch, delta", 1);
  expect_error("routes:\n  - {methods: [GET]}", "needs path_prefix", 2);
  expect_error("routes:\n  - {path_prefix: docs}", "must start with '/'", 2);
  expect_error("routes:\n  - {path_prefix: /a, auth: maybe}", "none or key", 2);
  expect_error("routes:\n  - {path_prefix: /a, auth: none, require_scopes: [x]}",
               "cannot require_scopes", 2);
  expect_error("routes:\n  - {path_prefix: /a, methods: ['G T']}", "invalid method", 2);
  expect_error("health: {path: health}", "must start with '/'", 1);
  expect_error("errors: {template: {\"e\": \"{oops}\"}}", "unknown placeholder {oops}", 1);
  expect_error("errors: {codes: {NOPE: x}}", "unknown code 'NOPE'", 1);
  expect_error("errors: {messages: {missing: 'try {later}'}}", "unknown placeholder {later}", 1);
  expect_error("limits: {max_header_bytes: 10}", "between 1024", 1);
  expect_error("logging: {level: loud}", "logging.level", 1);
  expect_error("logging: {format: xml}", "json, text", 1);
  expect_error("shutdown_timeout: soon", "invalid duration", 1);
  expect_error("listen: ${KG_SURELY_UNSET_VAR}", "KG_SURELY_UNSET_VAR is not set", 1);
}

TEST(ConfigLoad, ShortSecretsAreAllowed) {
  // SPEC sets no minimum length; serve logs a warning instead.
  Config c = ok("admin: {token: short}\nkeys: {pepper: tiny}");
  EXPECT_EQ(c.admin.token, "short");
  EXPECT_EQ(*c.keys.pepper, "tiny");
}

TEST(ConfigErrors, YamlSyntaxErrorHasLine) {
  auto errs = errors_of("listen: 1\nplans: [unclosed\n");
  ASSERT_EQ(errs.size(), 1u);
  EXPECT_NE(errs[0].find("YAML syntax error"), std::string::npos);
}

TEST(ConfigErrors, MissingFile) {
  auto c = load_config_file("/nonexistent/keygate.yaml");
  ASSERT_FALSE(c);
  EXPECT_NE(c.error().messages[0].find("cannot read"), std::string::npos);
}

TEST(ConfigLoad, ErrorStyleTemplatesKeepTypes) {
  Config c = ok(R"(
errors:
  template: {"success": false, "status": "{status}", "error": {"code": "{code}", "msg": "x {message}"}, "n": 3, "b": true}
  templates: {missing: {"detail": [{"type": "missing"}]}}
  codes: {AUTH_ERROR: unauthorized}
  messages: {invalid: "Invalid API key."}
)");
  ASSERT_TRUE(c.errors);
  const auto& t = c.errors->template_body;
  EXPECT_TRUE(t["success"].is_boolean());
  EXPECT_TRUE(t["n"].is_number());
  EXPECT_EQ(t["status"], "{status}");
  EXPECT_TRUE(c.errors->templates.at("missing")["detail"].is_array());
  EXPECT_EQ(c.errors->codes.at("AUTH_ERROR"), "unauthorized");
}

TEST(ConfigLoad, StoreIsSqliteOrPostgres) {
  EXPECT_EQ(ok("store: {postgres: 'postgresql://kg:pw@db:5432/keygate'}").store_postgres,
            "postgresql://kg:pw@db:5432/keygate");
  EXPECT_EQ(ok("store: {postgres: 'host=db dbname=keygate'}").store_postgres,
            "host=db dbname=keygate");
  EXPECT_TRUE(ok("store: {sqlite: x.db}").store_postgres.empty());
  expect_error("store:\n  sqlite: a.db\n  postgres: postgresql://db/k\n", "exactly one", 2);
  expect_error("store: {postgres: ''}", "must not be empty", 1);
  expect_error("store: {postgres: 'postgresql://db/k?bogus=1'}", "store.postgres: ", 1);
  expect_error("store: {postgres: 'host=db bogus=1'}", "store.postgres: ", 1);
}

// ---- Reload never kills: every failure is an error value, never an exception ----

namespace {

// Loads `yaml` and requires a clean failure: errors, none of them the loader's
// catch-all for a yaml-cpp call that threw (those are bugs).
std::vector<std::string> rejected(const std::string& yaml) {
  auto errs = errors_of(yaml);
  for (const auto& e : errs)
    EXPECT_EQ(e.find(kUnexpectedConfigError), std::string::npos) << yaml << "\n" << e;
  return errs;
}

struct TempDir {
  std::filesystem::path path;
  TempDir() {
    std::string tmpl = (std::filesystem::temp_directory_path() / "kg-config-XXXXXX").string();
    path = ::mkdtemp(tmpl.data());
  }
  ~TempDir() { std::filesystem::remove_all(path); }
  std::string file(const std::string& name, const std::string& text) const {
    auto p = path / name;
    std::ofstream(p) << text;
    return p.string();
  }
};

}  // namespace

TEST(ConfigErrors, PlansWithoutDefaultAndNoRateLimitSectionIsAnErrorNotACrash) {
  // Was: yaml-cpp threw InvalidNode while naming the line ("terminate called", exit 134
  // on SIGHUP). Keys without a plan need the default plan, so it must exist.
  expect_error("listen: 127.0.0.1:1\nplans:\n  pro: {rate: {requests: 5, period: 1m}}\n",
               "rate_limit.default_plan 'default' is not defined under plans", 2);
  // Naming an existing plan as the default makes the same plans valid.
  Config c =
      ok("plans:\n  pro: {rate: {requests: 5, period: 1m}}\nrate_limit: {default_plan: pro}");
  EXPECT_EQ(c.rate_limit.default_plan, "pro");
}

TEST(ConfigErrors, SectionsOfTheWrongTypeAreErrorsNotExceptions) {
  // Each of these made yaml-cpp throw (operator[] on a scalar or an absent node).
  EXPECT_EQ(rejected("plans: {pro: {}}\nrate_limit: 5").size(), 2u);
  EXPECT_EQ(rejected("rate_limit: [a]\nplans: {pro: {}}").size(), 2u);
  expect_error("keys: 5", "keys must be a mapping", 1);
  expect_error("keys: [a, b]", "keys must be a mapping", 1);
  for (const char* yaml : {"5",
                           "[1, 2]",
                           "plans: 5",
                           "plans: [a]",
                           "routes: {a: 1}",
                           "routes: [5]",
                           "auth: {sources: [{header: [x]}]}",
                           "errors: [1]",
                           "errors: {templates: 5}",
                           "errors: {codes: [1]}",
                           "tls: 5",
                           "upstream: {url: [1]}",
                           "health: 5",
                           "limits: 5",
                           "logging: 5",
                           "plans: {default: {rate: 5}}",
                           "plans: {default: 5}",
                           "plans: {? [a] : {}}",
                           "{? {a: 1} : 2}",
                           "admin: {token: [x]}"})
    EXPECT_FALSE(rejected(yaml).empty()) << yaml;
}

TEST(ConfigErrors, DuplicateKeysNameBothLines) {
  expect_error("listen: 127.0.0.1:1\nthreads: 2\nlisten: 127.0.0.1:2\n",
               "duplicate key 'listen' (first on line 1)", 3);
  expect_error(
      "plans:\n  default: {rate: {requests: 5, period: 1m}}\n"
      "  default: {rate: {requests: 6, period: 1m}}\n",
      "duplicate key 'default' (first on line 2)", 3);
  expect_error("plans:\n  default: {rate: {requests: 5, requests: 6, period: 1m}}\n",
               "duplicate key 'requests'", 2);
  expect_error("errors:\n  template: {\"a\": 1,\n              \"a\": 2}\n", "duplicate key 'a'",
               3);
  expect_error("errors:\n  messages: {invalid: x}\n  messages: {missing: y}\n",
               "duplicate key 'messages' (first on line 2)", 3);
  // Every duplicate at once, each once even when its map is reached through aliases.
  auto errs = rejected(
      "plans:\n  a: &p {rate: {requests: 5, period: 1m}, scope: key, scope: owner}\n"
      "  b: *p\n  c: *p\nlisten: 127.0.0.1:1\nlisten: 127.0.0.1:2\n");
  ASSERT_EQ(errs.size(), 3u) << ::testing::PrintToString(errs);  // scope, listen, no default
  EXPECT_EQ(errs[0], "t.yaml:2: duplicate key 'scope' (first on line 2)");
  EXPECT_EQ(errs[1], "t.yaml:6: duplicate key 'listen' (first on line 5)");
  // Aliased plans without duplicates are fine.
  Config c = ok("plans:\n  default: &p {rate: {requests: 5, period: 1m}}\n  team: *p\n");
  EXPECT_EQ(c.plans.at("team").rate->requests, 5u);
}

TEST(ConfigErrors, TextThatIsNotUtf8IsRefused) {
  // Found by fuzz_config: a Latin-1 message was accepted, and every error reply
  // then threw in nlohmann's dump() (invalid UTF-8) on the request path.
  expect_error("errors:\n  messages: {invalid: \"Cl\xe9 invalide\"}\n", "not UTF-8 text", 2);
  expect_error("errors:\n  template: {\"k\xff\": 1}\n", "not UTF-8 text", 2);
  expect_error("errors:\n  template: {\"e\": \"\xe2\x82\"}\n", "not UTF-8 text", 2);  // cut short
  // An overlong '/', reached twice through an alias, reported once.
  expect_error("plans:\n  default: &p {message: \"\xc0\xaf\"}\n  team: *p\n", "not UTF-8 text", 2);
  ::setenv("KG_TEST_LATIN1", "caf\xe9", 1);
  expect_error("errors:\n  messages: {invalid: \"${KG_TEST_LATIN1}\"}\n",
               "an environment variable's value is not UTF-8 text", 2);
  Config c = ok("errors:\n  messages: {invalid: \"Cl\xc3\xa9 invalide \xe2\x9c\x93\"}\n");
  EXPECT_EQ(c.errors->messages.at("invalid"), "Cl\xc3\xa9 invalide \xe2\x9c\x93");
}

TEST(ConfigErrors, AliasCyclesBombsAndDeepNestingAreRefused) {
  expect_error("errors:\n  template: &t {a: [1, *t]}\n", "alias refers to its own anchor", 2);
  // 10 levels of 10 aliases: 10^10 nodes if expanded.
  std::string bomb = "errors:\n  template:\n    l0: &l0 [x, x, x, x, x, x, x, x, x, x]\n";
  for (int i = 1; i < 10; ++i) {
    std::string prev = "*l" + std::to_string(i - 1);
    bomb += "    l" + std::to_string(i) + ": &l" + std::to_string(i) + " [" + prev;
    for (int k = 1; k < 10; ++k) bomb += ", " + prev;
    bomb += "]\n";
  }
  auto errs = rejected(bomb);
  ASSERT_EQ(errs.size(), 1u) << ::testing::PrintToString(errs);
  EXPECT_NE(errs[0].find("expands to more than 100000 YAML nodes"), std::string::npos) << errs[0];
  std::string deep = "errors: {template: " + std::string(100, '[') + std::string(100, ']') + "}";
  EXPECT_NE(rejected(deep)[0].find("nested deeper than 64 levels"), std::string::npos);
}

TEST(ConfigErrors, ADirectoryOrAFifoIsNoConfigFile) {
  TempDir dir;
  // A directory used to read as an empty file: every default, admin token off.
  auto d = load_config_file(dir.path.string());
  ASSERT_FALSE(d);
  ASSERT_EQ(d.error().messages.size(), 1u);
  EXPECT_EQ(d.error().messages[0],
            dir.path.string() + ":0: cannot read the config file: it is a directory");
  auto fifo = (dir.path / "fifo").string();
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  auto f = load_config_file(fifo);  // must not block waiting for a writer
  ASSERT_FALSE(f);
  EXPECT_EQ(f.error().messages[0], fifo + ":0: cannot read the config file: not a regular file");
  auto missing = load_config_file((dir.path / "none.yaml").string());
  ASSERT_FALSE(missing);
  EXPECT_NE(missing.error().messages[0].find(":0: cannot read the config file: No such file"),
            std::string::npos)
      << missing.error().messages[0];
  // A regular file still loads, through a symlink too (ConfigMap mounts are symlinks).
  auto good = dir.file("good.yaml", "threads: 3\n");
  std::filesystem::create_symlink(good, dir.path / "link.yaml");
  auto linked = load_config_file((dir.path / "link.yaml").string());
  ASSERT_TRUE(linked) << linked.error().joined();
  EXPECT_EQ(linked->threads, 3);
}

TEST(ConfigErrors, AnUnreadableFileIsAnError) {
  if (::geteuid() == 0) GTEST_SKIP() << "root reads files whatever their mode";
  TempDir dir;
  auto path = dir.file("secret.yaml", "threads: 1\n");
  ::chmod(path.c_str(), 0);
  auto c = load_config_file(path);
  ASSERT_FALSE(c);
  EXPECT_EQ(c.error().messages[0], path + ":0: cannot read the config file: Permission denied");
}

// ---- Rate bounds: what the headers report is what the token bucket enforces ----

namespace {

constexpr Millis kDay{86'400'000};

// The bucket for `r` holds exactly r.capacity() tokens, refills one every
// ceil(period / requests) ns, and is neither clamped nor overflowed.
void expect_enforced_exactly(const Rate& r) {
  SCOPED_TRACE(::testing::Message()
               << r.requests << "/" << r.period.count() << "ms burst " << r.burst);
  ASSERT_EQ(rate_problem(r), std::nullopt);
  const BucketShape shape = BucketShape::of(r);
  const auto period_ns = static_cast<std::int64_t>(r.period.count()) * 1'000'000;
  const auto requests = static_cast<std::int64_t>(r.requests);
  EXPECT_EQ(shape.capacity, r.capacity());
  EXPECT_EQ(shape.interval_ns, (period_ns + requests - 1) / requests);
  EXPECT_EQ(shape.window_ns, static_cast<std::int64_t>(shape.capacity) * shape.interval_ns);

  const std::int64_t t0 = 1'000'000'000;
  TokenBucket fresh(shape);
  Decision first = fresh.take(t0);
  EXPECT_TRUE(first.allowed);
  EXPECT_EQ(first.limit, r.capacity());  // X-RateLimit-Limit
  EXPECT_EQ(first.remaining, r.capacity() - 1);

  // An emptied bucket: no token now, exactly one after one interval, and all
  // `capacity` of them (no more) once a whole window has passed.
  TokenBucket bucket(BucketShape{1, shape.interval_ns, shape.interval_ns});
  ASSERT_TRUE(bucket.take(t0).allowed);
  bucket.reshape(shape, t0);
  EXPECT_EQ(bucket.available(t0), 0u);
  EXPECT_FALSE(bucket.take(t0).allowed);
  EXPECT_EQ(bucket.available(t0 + shape.interval_ns - 1), 0u);
  EXPECT_EQ(bucket.available(t0 + shape.interval_ns), 1u);
  EXPECT_EQ(bucket.available(t0 + shape.window_ns - 1), r.capacity() - 1);
  EXPECT_EQ(bucket.available(t0 + shape.window_ns), r.capacity());
  EXPECT_EQ(bucket.available(t0 + 2 * shape.window_ns), r.capacity());
  Decision last = bucket.take(t0 + shape.interval_ns);
  EXPECT_TRUE(last.allowed);
  EXPECT_EQ(last.remaining, 0u);
  EXPECT_EQ(last.limit, r.capacity());
  EXPECT_FALSE(bucket.take(t0 + shape.interval_ns).allowed);
}

}  // namespace

TEST(RateBounds, TheLargestAcceptedRatesAreEnforcedExactly) {
  expect_enforced_exactly(Rate{kMaxRateRequests, Millis(1000), kMaxRateBurst});  // 1/ns
  expect_enforced_exactly(Rate{1'000'000, Millis(1), 0});                        // 1/ns
  expect_enforced_exactly(Rate{1, kMaxRatePeriod, 10});                          // refills in 3650d
  expect_enforced_exactly(Rate{100'000'000, kMaxRatePeriod, kMaxRateBurst});     // 3650d too
  expect_enforced_exactly(Rate{kMaxRateRequests, kMaxRatePeriod, 0});
  expect_enforced_exactly(Rate{7, Millis(60'000), 3});  // interval rounded up: 8571428572 ns
  expect_enforced_exactly(Rate{1, Millis(1), 0});
}

TEST(RateBounds, OneBeyondEachBoundIsRejected) {
  auto problem = [](Rate r) { return rate_problem(r, "plans.x.rate").value_or("(accepted)"); };
  EXPECT_EQ(problem({kMaxRateRequests + 1, Millis(2000), 0}),
            "plans.x.rate.requests must be between 1 and 1000000000, got 1000000001");
  EXPECT_EQ(problem({0, Millis(1000), 0}),
            "plans.x.rate.requests must be between 1 and 1000000000, got 0");
  EXPECT_EQ(problem({10, Millis(1000), kMaxRateBurst + 1}),
            "plans.x.rate.burst must be between 0 and 1000000000, got 1000000001");
  EXPECT_EQ(problem({10, Millis(1000), ~0ULL}),
            "plans.x.rate.burst must be between 0 and 1000000000, got 18446744073709551615");
  EXPECT_EQ(problem({10, kMaxRatePeriod + Millis(1), 0}),
            "plans.x.rate.period must be between 1ms and 365d, got 31536000001ms");
  EXPECT_EQ(problem({10, Millis(0), 0}),
            "plans.x.rate.period must be between 1ms and 365d, got 0s");
  EXPECT_NE(problem({kMaxRateRequests, Millis(999), 0}).find("too fast"), std::string::npos);
  EXPECT_NE(problem({1'000'001, Millis(1), 0}).find("too fast"), std::string::npos);
  EXPECT_NE(problem({1, kMaxRatePeriod, 11}).find("more than 3650d to refill"), std::string::npos);
  EXPECT_NE(problem({100'000'000 - 1, kMaxRatePeriod, kMaxRateBurst}).find("3650d"),
            std::string::npos);
}

TEST(RateBounds, TheConfigFileRejectsOutOfRangeRatesAtTheirLine) {
  expect_error(
      "plans:\n  default:\n    rate:\n      requests: 5\n      period: 1m\n"
      "      burst: 18446744073709551615\n",
      "plans.default.rate.burst must be between 0 and 1000000000", 6);
  expect_error("plans:\n  default: {rate: {requests: 1000000001, period: 1h}}",
               "plans.default.rate.requests must be between 1 and 1000000000", 2);
  expect_error("plans:\n  default: {rate: {requests: 99999999999999999999999, period: 1h}}",
               "must be between 1 and 1000000000, got 99999999999999999999999", 2);
  expect_error("plans:\n  default: {rate: {requests: 1, period: 366d}}",
               "plans.default.rate.period must be at most 365d", 2);
  expect_error("plans:\n  default: {rate: {requests: 1000000, period: 999us}}", "invalid duration",
               2);
  expect_error("plans:\n  default: {rate: {requests: 1000001, period: 1ms}}", "too fast", 2);
  expect_error("plans:\n  default: {rate: {requests: 1, period: 1d, burst: 3651}}",
               "more than 3650d to refill", 2);
  Config c = ok("plans:\n  default: {rate: {requests: 1000000000, period: 1s, burst: 1000000000}}");
  EXPECT_EQ(c.plans.at("default").rate->capacity(), kMaxRateBurst);
}

TEST(RateBounds, TheCliAndAdminApiRatesShareTheBounds) {
  // --rate N/PERIOD (CLI) and rate.requests (admin API) end in the same checks.
  EXPECT_TRUE(parse_rate("1000000000/s"));
  EXPECT_EQ(parse_rate("1000000001/h").error(),
            "rate.requests must be between 1 and 1000000000, got 1000000001");
  EXPECT_EQ(parse_rate("99999999999999999999/h").error(),
            "rate.requests must be between 1 and 1000000000, got 99999999999999999999");
  EXPECT_NE(parse_rate("10/366d").error().find("365d"), std::string::npos);
  EXPECT_NE(parse_rate("1000001/1ms").error().find("too fast"), std::string::npos);

  SqliteStore store(":memory:");
  const Config config;
  KeyService svc(store, config);
  auto with_rate = [](Rate r) { return KeySpec{.name = "k", .rate = r}; };
  auto accepted = svc.validate(with_rate({kMaxRateRequests, Millis(1000), kMaxRateBurst}));
  EXPECT_FALSE(accepted) << accepted->message;
  for (Rate bad : {Rate{5, Millis(60'000), kMaxRateBurst + 1}, Rate{5, Millis(60'000), ~0ULL},
                   Rate{kMaxRateRequests + 1, Millis(60'000), 0}, Rate{0, Millis(60'000), 0},
                   Rate{5, Millis(0), 0}, Rate{5, kMaxRatePeriod + Millis(1), 0}}) {
    auto e = svc.validate(with_rate(bad));
    ASSERT_TRUE(e) << bad.requests << "/" << bad.period.count() << " burst " << bad.burst;
    EXPECT_EQ(e->status, 400);
    EXPECT_EQ(e->details["field"], "rate");
  }
}

// ---- RFC 3339 ----

TEST(Rfc3339, ReadsEveryFormTheRfcAllows) {
  const UnixMillis t = 1'801'657'805'000;  // 2027-02-03T12:30:05Z
  EXPECT_EQ(parse_time("2027-02-03T12:30:05Z"), t);
  EXPECT_EQ(parse_time("2027-02-03t12:30:05z"), t);
  EXPECT_EQ(parse_time("2027-02-03 12:30:05Z"), t);
  EXPECT_EQ(parse_time("2027-02-03T14:30:05+02:00"), t);
  EXPECT_EQ(parse_time("2027-02-03T07:00:05-05:30"), t);
  EXPECT_EQ(parse_time("2027-02-03T12:30:05-00:00"), t);
  EXPECT_EQ(parse_time("2027-02-04T00:29:05+11:59"), t);
  EXPECT_EQ(parse_time("2027-02-03T12:30:05.5Z"), t + 500);
  EXPECT_EQ(parse_time("2027-02-03T12:30:05.25Z"), t + 250);
  EXPECT_EQ(parse_time("2027-02-03T12:30:05.999999999999Z"), t + 999);  // truncated to ms
  EXPECT_EQ(parse_time("1970-01-01T00:00:00Z"), 0);
  EXPECT_EQ(parse_time("1969-12-31T23:59:59Z"), -1000);
  EXPECT_EQ(parse_time("9999-12-31T23:59:59Z"), 253'402'300'799'000);
}

TEST(Rfc3339, RejectsDatesThatDoNotExist) {
  // Was: read as 3 March (timegm normalises).
  EXPECT_FALSE(parse_time("2027-02-31T00:00:00Z"));
  EXPECT_FALSE(parse_time("2027-02-29T00:00:00Z"));  // 2027 is no leap year
  EXPECT_FALSE(parse_time("2100-02-29T00:00:00Z"));  // divisible by 100, not by 400
  EXPECT_FALSE(parse_time("2027-04-31T00:00:00Z"));
  EXPECT_FALSE(parse_time("2027-00-10T00:00:00Z"));
  EXPECT_FALSE(parse_time("2027-13-01T00:00:00Z"));
  EXPECT_FALSE(parse_time("2027-01-00T00:00:00Z"));
  EXPECT_EQ(parse_time("2028-02-29T00:00:00Z"), *parse_time("2028-02-28T00:00:00Z") + 86'400'000);
  EXPECT_EQ(parse_time("2000-02-29T00:00:00Z"), *parse_time("2000-03-01T00:00:00Z") - 86'400'000);
}

TEST(Rfc3339, LeapSecondsOnlyWhereTheyCanOccur) {
  // 23:59:60 UTC (in any offset) is the leap second, read as the next second.
  auto midnight = *parse_time("2017-01-01T00:00:00Z");
  EXPECT_EQ(parse_time("2016-12-31T23:59:60Z"), midnight);
  EXPECT_EQ(parse_time("2016-12-31T15:59:60-08:00"), midnight);
  EXPECT_EQ(parse_time("2017-01-01T05:29:60.5+05:30"), midnight + 500);
  EXPECT_FALSE(parse_time("2016-12-31T23:58:60Z"));
  EXPECT_FALSE(parse_time("2016-12-31T12:59:60Z"));
  EXPECT_FALSE(parse_time("2016-12-31T23:59:61Z"));
}

TEST(Rfc3339, RejectsMalformedText) {
  for (const char* bad : {"",
                          "2027-01-31",
                          "2027-01-31T12:30Z",
                          "2027-01-31T12:30:05",
                          "2027-01-31T24:00:00Z",
                          "2027-01-31T12:60:00Z",
                          "2027-1-31T12:30:05Z",
                          "27-01-31T12:30:05Z",
                          "2027/01/31T12:30:05Z",
                          "2027-01-31X12:30:05Z",
                          "2027-01-31T12:30:05.Z",
                          "2027-01-31T12:30:05,5Z",
                          "2027-01-31T12:30:05+0200",
                          "2027-01-31T12:30:05+24:00",
                          "2027-01-31T12:30:05+02:60",
                          "2027-01-31T12:30:05+2:00",
                          "2027-01-31T12:30:05ZZ",
                          "2027-01-31T12:30:05Z ",
                          " 2027-01-31T12:30:05Z",
                          "+027-01-31T12:30:05Z",
                          "2027-+1-31T12:30:05Z",
                          "2027-01-31T12:30:05UTC",
                          "2027-01-31T12:30:05GMT",
                          "2027-01-31T12:30:05.1",
                          "２０２７-01-31T12:30:05Z"})
    EXPECT_FALSE(parse_time(bad)) << bad;
  EXPECT_FALSE(parse_time(std::string("2027-01-31T12:30:05Z\0", 21)));
}

// ---- Regressions found by the fuzz targets (tests/fuzz) ----

TEST(FuzzRegressions, ErrorsCarryingBytesThatAreNotUtf8StillRenderAsJson) {
  // fuzz_error_template: dump() threw on such text (a 500 on the admin API for
  // GET /v1/\xff, whose 404 message quotes the path).
  Error e = errors::not_found("No such route: /v1/\xff");
  e.code = "NOT_\xdfOUND";
  e.details = nlohmann::json{{"path", "/v1/\xc0\xaf"}};
  const std::string envelope = ErrorRenderer::envelope(e, "rid");
  ASSERT_TRUE(nlohmann::json::accept(envelope)) << envelope;
  EXPECT_EQ(nlohmann::json::parse(envelope)["error"]["message"], "No such route: /v1/\xef\xbf\xbd");
  Config c = ok(
      R"y(errors: {template: {"e": "{code}", "m": "{message} ({details})", "d": "{details}"}})y");
  const std::string styled =
      ErrorRenderer(c.errors).render(e, "rid", std::chrono::system_clock::time_point{});
  ASSERT_TRUE(nlohmann::json::accept(styled)) << styled;
  EXPECT_EQ(nlohmann::json::parse(styled)["e"], "NOT_\xef\xbf\xbdOUND");
}
