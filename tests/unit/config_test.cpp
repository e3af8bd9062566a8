#include <gtest/gtest.h>

#include <cstdlib>

#include "keygate/config/loader.hpp"
#include "keygate/config/values.hpp"

using namespace keygate;
using namespace std::chrono_literals;

namespace {

Config ok(const std::string& yaml) {
  auto c = load_config_text(yaml, "t.yaml");
  EXPECT_TRUE(c.has_value()) << (c ? "" : c.error().joined());
  return c ? *c : Config{};
}

std::vector<std::string> errors_of(const std::string& yaml) {
  auto c = load_config_text(yaml, "t.yaml");
  EXPECT_FALSE(c.has_value()) << "expected a config error for:\n" << yaml;
  return c ? std::vector<std::string>{} : c.error().messages;
}

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
