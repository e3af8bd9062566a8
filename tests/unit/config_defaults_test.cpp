// config/keygate.yaml says it lists "every key, with its default". This holds
// it to that: the file loads to exactly the built-in defaults, and it names
// exactly the keys compared here (a key added to the loader or to the file
// without the other fails below, naming the key).
#include <gtest/gtest.h>
#include <yaml-cpp/yaml.h>

#include <cstdlib>
#include <map>
#include <set>
#include <string>

#include "keygate/config/loader.hpp"
#include "keygate/config/values.hpp"

using namespace keygate;

namespace {

std::string opt(const std::optional<std::string>& v) {
  return v ? "'" + *v + "'" : "null";
}
std::string ms(Millis d) {
  return std::to_string(d.count()) + "ms";
}
std::string rate(const std::optional<Rate>& r) {
  if (!r) return "unlimited";
  return std::to_string(r->requests) + "/" + ms(r->period) + " burst " + std::to_string(r->burst);
}

// Every setting, by the dotted path under which config/keygate.yaml lists it.
std::map<std::string, std::string> settings(const Config& c) {
  std::map<std::string, std::string> s;
  s["listen"] = c.listen.str();
  s["tls.cert"] = opt(c.tls.cert);
  s["tls.key"] = opt(c.tls.key);
  s["threads"] = std::to_string(c.threads);
  s["upstream.url"] = c.upstream.url;
  s["upstream.connect_timeout"] = ms(c.upstream.connect_timeout);
  s["upstream.timeout"] = ms(c.upstream.timeout);
  s["upstream.max_idle_connections"] = std::to_string(c.upstream.max_idle_connections);
  s["upstream.tls_verify"] = c.upstream.tls_verify ? "true" : "false";
  s["upstream.ca_file"] = opt(c.upstream.ca_file);
  s["admin.listen"] = c.admin.listen.str();
  s["metrics.listen"] = c.metrics.listen ? c.metrics.listen->str() : "null";
  s["admin.token"] = "'" + c.admin.token + "'";
  s["admin.key_scope"] = opt(c.admin.key_scope);
  s["store.sqlite"] = c.store_sqlite;  // store.postgres is listed commented out (one of the two)
  s["keys.prefix"] = c.keys.prefix;
  s["keys.environment"] = opt(c.keys.environment);
  s["keys.display_prefix_length"] = std::to_string(c.keys.display_prefix_length);
  s["keys.pepper"] = opt(c.keys.pepper);
  std::string sources;
  for (const auto& src : c.auth.sources)
    sources += std::to_string(static_cast<int>(src.kind)) + ":" + src.name + " ";
  s["auth.sources"] = sources;
  s["auth.forward_credential"] = c.auth.forward_credential ? "true" : "false";
  s["identity.header_prefix"] = c.identity_header_prefix;
  std::string plans;
  for (const auto& [name, p] : c.plans)
    plans += name + "=" + rate(p.rate) + " scope " + std::to_string(static_cast<int>(p.scope)) +
             " allow " + std::to_string(p.allow) + " '" + p.message + "'; ";
  s["plans"] = plans;
  s["rate_limit.default_plan"] = c.rate_limit.default_plan;
  s["rate_limit.headers"] = std::to_string(static_cast<int>(c.rate_limit.headers));
  s["rate_limit.reset_header"] = std::to_string(static_cast<int>(c.rate_limit.reset));
  s["rate_limit.backend"] = std::to_string(static_cast<int>(c.rate_limit.backend));
  s["rate_limit.redis"] = c.rate_limit.redis.url + " " + ms(c.rate_limit.redis.timeout) + " " +
                          std::to_string(static_cast<int>(c.rate_limit.redis.on_error));
  s["routes"] = std::to_string(c.routes.size()) + " routes";
  s["health.path"] = opt(c.health.path);
  s["health.ready"] = opt(c.health.ready);
  s["health.live"] = opt(c.health.live);
  s["errors"] = c.errors ? "a style" : "null";
  s["limits.max_header_bytes"] = std::to_string(c.limits.max_header_bytes);
  s["limits.max_body_bytes"] = std::to_string(c.limits.max_body_bytes);
  s["limits.header_timeout"] = ms(c.limits.header_timeout);
  s["limits.idle_timeout"] = ms(c.limits.idle_timeout);
  s["limits.max_connections"] = std::to_string(c.limits.max_connections);
  s["limits.allow_encoded_slashes"] = c.limits.allow_encoded_slashes ? "true" : "false";
  s["limits.allow_underscores_in_headers"] =
      c.limits.allow_underscores_in_headers ? "true" : "false";
  s["logging.level"] = c.logging.level;
  s["logging.format"] = std::to_string(static_cast<int>(c.logging.format));
  s["logging.access_log"] = c.logging.access_log ? "true" : "false";
  s["usage.retention"] = ms(c.usage.retention);
  s["shutdown_timeout"] = ms(c.shutdown_timeout);
  s["forward_auth.path"] = opt(c.forward_auth.path);
  s["shadow"] = c.shadow ? "true" : "false";
  s["self_service.path_prefix"] = opt(c.self_service.path_prefix);
  std::string proxies;
  for (const auto& cidr : c.trusted_proxies) proxies += cidr + " ";
  s["trusted_proxies"] = proxies;
  return s;
}

// Dotted paths of the file's keys: top-level keys, and one level below for
// sections that are mappings of settings (plans is keyed by plan names, so
// it is one setting).
std::set<std::string> listed_paths(const YAML::Node& root) {
  std::set<std::string> out;
  for (auto it = root.begin(); it != root.end(); ++it) {
    const std::string key = it->first.Scalar();
    const YAML::Node value = it->second;
    if (value.IsMap() && key != "plans") {  // (rate_limit.redis is one setting too)
      for (auto jt = value.begin(); jt != value.end(); ++jt)
        out.insert(key + "." + jt->first.Scalar());
    } else {
      out.insert(key);
    }
  }
  return out;
}

const char* const kPath = KEYGATE_SOURCE_DIR "/config/keygate.yaml";

}  // namespace

TEST(ShippedConfig, HoldsExactlyTheBuiltInDefaults) {
  // The file reads these from the environment, with the defaults as fallbacks.
  for (const char* var :
       {"KEYGATE_LISTEN", "KEYGATE_UPSTREAM", "KEYGATE_ADMIN_TOKEN", "KEYGATE_DB"})
    ::unsetenv(var);
  auto shipped = load_config_file(kPath);
  ASSERT_TRUE(shipped.has_value()) << shipped.error().joined();
  auto defaults = load_config_text("", "empty.yaml");
  ASSERT_TRUE(defaults.has_value());
  auto want = settings(*defaults);
  auto got = settings(*shipped);
  for (const auto& [path, value] : want)
    EXPECT_EQ(got[path], value) << "config/keygate.yaml: " << path
                                << " differs from the built-in default";
}

TEST(ShippedConfig, ListsEveryComparedKeyAndNoOther) {
  YAML::Node root = YAML::LoadFile(kPath);
  auto listed = listed_paths(root);
  const Config defaults;
  auto compared = settings(defaults);
  for (const auto& [path, value] : compared)
    EXPECT_TRUE(listed.contains(path)) << "config/keygate.yaml does not list " << path;
  for (const auto& path : listed)
    EXPECT_TRUE(compared.contains(path))
        << "config/keygate.yaml lists " << path
        << ", which this test does not compare with its default: add it to settings()";
}

TEST(ShippedConfig, ComparisonSeesADifferentDefault) {
  // The comparison itself can fail: a changed value shows up under its path.
  auto changed = load_config_text("limits: {idle_timeout: 61s}\nkeys: {pepper: p}", "t.yaml");
  ASSERT_TRUE(changed.has_value());
  const Config defaults;
  auto a = settings(defaults);
  auto b = settings(*changed);
  std::set<std::string> differ;
  for (const auto& [path, value] : a)
    if (b[path] != value) differ.insert(path);
  EXPECT_EQ(differ, (std::set<std::string>{"limits.idle_timeout", "keys.pepper"}));
}

TEST(ShippedConfig, NamesTheSqliteStore) {
  const Config defaults;
  EXPECT_TRUE(defaults.store_postgres.empty());  // the embedded store is the default
  auto shipped = load_config_file(kPath);
  ASSERT_TRUE(shipped.has_value()) << shipped.error().joined();
  EXPECT_TRUE(shipped->store_postgres.empty());
}
