#pragma once
// Application logs (stderr) and the access log (stdout), JSON or text.
// Keys, hashes and the admin token are never passed here: log display prefixes.
#include <cstdint>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "keygate/config/config.hpp"
#include "keygate/observe/access_log.hpp"

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

// One access line (SPEC §6), rendered on this thread and written by the
// access log's own thread: no I/O here, and no allocation once warm.
void access(const AccessRecord& r);
bool access_enabled();

// An audit event (a key created, updated, rotated, revoked, imported) as one
// JSON line with "audit": true on the application log stream (SPEC §10),
// whatever logging.format and at every logging.level but off. No secrets: the
// event holds ids, the display prefix and field names.
void audit(const AuditEvent& e);

}  // namespace keygate::log
