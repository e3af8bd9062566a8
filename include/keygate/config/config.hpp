#pragma once
// The whole configuration as an immutable value. Parsed and validated once
// (config/loader.cpp); a reload builds a new one. Nothing reads YAML after that.
#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace keygate {

using Millis = std::chrono::milliseconds;

struct HostPort {
  std::string host;
  std::uint16_t port = 0;
  std::string str() const;
};

struct TlsConfig {
  std::optional<std::string> cert;
  std::optional<std::string> key;
  bool enabled() const { return cert.has_value() && key.has_value(); }
};

struct UpstreamConfig {
  std::string url = "http://127.0.0.1:9000";
  bool https = false;
  std::string host = "127.0.0.1";
  std::uint16_t port = 9000;
  std::string host_header = "127.0.0.1:9000";  // host[:port] as written in the URL
  Millis connect_timeout{2000};
  Millis timeout{30000};
  int max_idle_connections = 64;
  bool tls_verify = true;
  std::optional<std::string> ca_file;
};

struct AdminConfig {
  HostPort listen{"127.0.0.1", 8081};
  std::string token;  // empty: the admin API is off
  std::optional<std::string> key_scope;
  bool enabled() const { return !token.empty(); }
};

// A listener serving only GET /metrics, without a token (SPEC §10).
struct MetricsConfig {
  std::optional<HostPort> listen;  // none: /metrics only on the admin listener
};

struct KeysConfig {
  std::string prefix = "kg";
  std::optional<std::string> environment = "live";
  int display_prefix_length = 12;
  std::optional<std::string> pepper;
};

struct AuthSource {
  enum class Kind { bearer, header, query };
  Kind kind = Kind::bearer;
  std::string name;  // header name or query parameter; "Authorization" for bearer
};

struct AuthConfig {
  std::vector<AuthSource> sources{{AuthSource::Kind::bearer, "Authorization"},
                                  {AuthSource::Kind::header, "X-Api-Key"}};
  bool forward_credential = false;
};

struct Rate {
  std::uint64_t requests = 60;
  Millis period{60000};
  std::uint64_t burst = 0;  // 0: same as requests
  std::uint64_t capacity() const { return burst ? burst : requests; }
  bool operator==(const Rate&) const = default;
};

struct Plan {
  std::string name;
  std::optional<Rate> rate;  // none: unlimited
  enum class Scope { key, owner } scope = Scope::key;
  bool allow = true;
  std::string message;
};

// rate_limit.redis (SPEC §8): where the shared buckets live. The URL is
// parsed and checked by the loader; `url` keeps the text (it may hold a
// password: never log it, log redacted() instead).
struct RedisConfig {
  std::string url = "redis://127.0.0.1:6379/0";
  std::string host = "127.0.0.1";
  std::uint16_t port = 6379;
  std::string username;  // empty: AUTH <password> (no ACL user)
  std::string password;  // empty: no AUTH
  int db = 0;
  Millis timeout{50};  // per command
  enum class OnError { local, open, closed } on_error = OnError::local;
  std::string redacted() const;  // the URL without its password
};

struct RateLimitConfig {
  std::string default_plan = "default";
  enum class Headers { x_ratelimit, ietf, both, none } headers = Headers::x_ratelimit;
  enum class Reset { epoch, delta } reset = Reset::epoch;
  enum class Backend { local, redis } backend = Backend::local;
  RedisConfig redis;
};

struct Route {
  std::string path_prefix = "/";
  std::vector<std::string> methods;  // empty: any
  bool auth_none = false;
  std::vector<std::string> require_scopes;
  std::uint32_t cost = 1;      // credits and rate-limit tokens a request takes (SPEC §11)
  std::optional<bool> shadow;  // unset: the global `shadow` (SPEC §9)
};

inline constexpr std::uint32_t kMaxRouteCost = 1'000'000;

// usage (SPEC §11): per-key request counts by hour, kept this long.
struct UsageConfig {
  Millis retention{90LL * 24 * 3600 * 1000};
};

struct HealthConfig {
  std::optional<std::string> path = "/health";
  std::optional<std::string> ready = "/ready";
  std::optional<std::string> live = "/live";
};

struct ErrorStyle {
  // ordered_json: bodies keep the key order the operator wrote (the API's docs).
  nlohmann::ordered_json template_body;                     // null: the SPEC envelope
  std::map<std::string, nlohmann::ordered_json> templates;  // by reason
  std::map<std::string, std::string> codes;                 // SPEC code -> API code
  std::map<std::string, std::string> messages;              // by reason
};

struct Limits {
  std::uint64_t max_header_bytes = 16384;
  std::uint64_t max_body_bytes = 10485760;
  Millis header_timeout{10000};
  Millis idle_timeout{60000};
  std::uint64_t max_connections = 10000;
  bool allow_encoded_slashes = false;         // %2F/%5C kept encoded and opaque instead of 400
  bool allow_underscores_in_headers = false;  // else header names with '_' are dropped
};

// SPEC §9 deployment modes.
struct ForwardAuthConfig {
  std::optional<std::string> path;  // set: requests to it are judged, never forwarded
};
struct SelfServiceConfig {
  std::optional<std::string> path_prefix;  // set: the admin key routes also on the proxy listener
};

struct LoggingConfig {
  std::string level = "info";
  enum class Format { json, text } format = Format::json;
  bool access_log = true;
};

struct Config {
  std::string source_path;
  HostPort listen{"0.0.0.0", 8080};
  TlsConfig tls;
  int threads = 0;
  UpstreamConfig upstream;
  AdminConfig admin;
  MetricsConfig metrics;
  std::string store_sqlite = "data/keygate.db";
  std::string store_postgres;  // a libpq connection string; set: PostgreSQL instead of SQLite
  KeysConfig keys;
  AuthConfig auth;
  std::string identity_header_prefix = "X-Keygate-";
  std::map<std::string, Plan> plans{
      {"default", Plan{"default", Rate{}, Plan::Scope::key, true, {}}}};
  RateLimitConfig rate_limit;
  std::vector<Route> routes;
  HealthConfig health;
  std::optional<ErrorStyle> errors;
  Limits limits;
  LoggingConfig logging;
  UsageConfig usage;
  Millis shutdown_timeout{15000};
  ForwardAuthConfig forward_auth;
  bool shadow = false;  // decide, log and count refusals, but forward everything
  SelfServiceConfig self_service;
  std::vector<std::string> trusted_proxies;  // CIDRs whose X-Forwarded-For is believed (§10)

  int effective_threads() const;
};

}  // namespace keygate
