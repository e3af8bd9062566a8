#pragma once
// Application logs (stderr) and the access log (stdout), JSON or text.
// Keys, hashes and the admin token are never passed here: log display prefixes.
#include <cstdint>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "keygate/config/config.hpp"

namespace keygate {
struct AuditEvent;
}

namespace keygate::log {

void setup(const LoggingConfig& cfg);  // also on reload
void shutdown();                       // flushes the async access log

void event(std::string_view level, std::string_view msg, const nlohmann::json& fields = {});
inline void info(std::string_view msg, const nlohmann::json& f = {}) {
  event("info", msg, f);
}
inline void warn(std::string_view msg, const nlohmann::json& f = {}) {
  event("warn", msg, f);
}
inline void error(std::string_view msg, const nlohmann::json& f = {}) {
  event("error", msg, f);
}
inline void debug(std::string_view msg, const nlohmann::json& f = {}) {
  event("debug", msg, f);
}

struct AccessRecord {
  std::string_view request_id, client_ip, method, path, reason, key_id, owner;
  int status = 0;
  std::uint64_t bytes_in = 0, bytes_out = 0;
  double duration_ms = 0;
  double upstream_ms = -1;         // < 0: not forwarded
  bool deprecated = false;         // the key is in a rotation's grace period (SPEC §11)
  std::string_view shadow_reason;  // shadow mode: why enforcing would have refused it
};
void access(const AccessRecord& r);
bool access_enabled();

// An audit event (a key created, updated, rotated, revoked, imported) as one
// JSON line with "audit": true on the application log stream (SPEC §10),
// whatever logging.format and at every logging.level but off. No secrets: the
// event holds ids, the display prefix and field names.
void audit(const AuditEvent& e);

}  // namespace keygate::log
