#include "keygate/observe/log.hpp"

#include <spdlog/async.h>
#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>

#include "keygate/keys/key_record.hpp"
#include "keygate/keys/key_store.hpp"

namespace keygate::log {

namespace {
std::atomic<bool> g_json{true};
std::atomic<bool> g_access{true};

std::shared_ptr<spdlog::logger> app_logger() {
  static auto l = [] {
    auto logger = spdlog::stderr_logger_mt("keygate");
    logger->set_pattern("%v");
    return logger;
  }();
  return l;
}
// Access lines go through a queue to a background thread: the I/O thread never
// waits on stdout. The queue blocks rather than drop lines when full.
std::shared_ptr<spdlog::logger> access_logger() {
  static auto l = [] {
    spdlog::init_thread_pool(65536, 1);
    auto logger = spdlog::create_async<spdlog::sinks::stdout_sink_mt>("access");
    logger->set_pattern("%v");
    logger->flush_on(spdlog::level::info);
    return logger;
  }();
  return l;
}

std::string now_iso() {
  return format_time(now_millis());
}
}  // namespace

void setup(const LoggingConfig& cfg) {
  g_json = cfg.format == LoggingConfig::Format::json;
  g_access = cfg.access_log;
  app_logger()->set_level(spdlog::level::from_str(cfg.level));
  access_logger();
}

void shutdown() {
  access_logger()->flush();
  app_logger()->flush();
}

void event(std::string_view level, std::string_view msg, const nlohmann::json& fields) {
  auto lvl = spdlog::level::from_str(std::string(level));
  auto logger = app_logger();
  if (!logger->should_log(lvl)) return;
  if (g_json) {
    nlohmann::json j = {{"time", now_iso()}, {"level", level}, {"msg", msg}};
    if (fields.is_object())
      for (const auto& [k, v] : fields.items()) j[k] = v;
    logger->log(lvl, "{}", j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace));
  } else {
    std::string line = now_iso() + " " + std::string(level) + " " + std::string(msg);
    if (fields.is_object())
      for (const auto& [k, v] : fields.items())
        line += " " + k + "=" + (v.is_string() ? v.get<std::string>() : v.dump());
    logger->log(lvl, "{}", line);
  }
}

bool access_enabled() {
  return g_access;
}

void access(const AccessRecord& r) {
  if (!g_access) return;
  std::string line;
  if (g_json) {
    nlohmann::json j = {
        {"time", now_iso()},
        {"type", "access"},
        {"request_id", r.request_id},
        {"client_ip", r.client_ip},
        {"method", r.method},
        {"path", r.path},
        {"status", r.status},
        {"reason", r.reason.empty() ? nlohmann::json(nullptr) : nlohmann::json(r.reason)},
        {"key_id", r.key_id.empty() ? nlohmann::json(nullptr) : nlohmann::json(r.key_id)},
        {"owner", r.owner.empty() ? nlohmann::json(nullptr) : nlohmann::json(r.owner)},
        {"bytes_in", r.bytes_in},
        {"bytes_out", r.bytes_out},
        {"duration_ms", std::round(r.duration_ms * 1000) / 1000},
        {"upstream_ms", r.upstream_ms < 0
                            ? nlohmann::json(nullptr)
                            : nlohmann::json(std::round(r.upstream_ms * 1000) / 1000)},
        {"shadow_reason",
         r.shadow_reason.empty() ? nlohmann::json(nullptr) : nlohmann::json(r.shadow_reason)}};
    if (r.deprecated) j["deprecated"] = true;
    line = j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  } else {
    char buf[64];
    std::snprintf(buf, sizeof buf, " %.3fms", r.duration_ms);
    line = now_iso() + " " + std::string(r.client_ip) + " " + std::string(r.method) + " " +
           std::string(r.path) + " " + std::to_string(r.status) + " " +
           (r.reason.empty() ? "-" : std::string(r.reason)) + " " +
           (r.key_id.empty() ? "-" : std::string(r.key_id)) + " " + std::string(r.request_id) +
           buf + (r.deprecated ? " deprecated" : "");
    if (!r.shadow_reason.empty()) line += " shadow=" + std::string(r.shadow_reason);
  }
  access_logger()->info("{}", line);
}

void audit(const AuditEvent& e) {
  auto details = nlohmann::json::parse(e.details_json, nullptr, false);
  nlohmann::json j = {{"time", format_time(e.at)},
                      {"level", "info"},
                      {"msg", "audit"},
                      {"audit", true},
                      {"action", e.action},
                      {"key_id", e.key_id},
                      {"actor", e.actor},
                      {"details", details.is_object() ? details : nlohmann::json::object()}};
  // Logged at the logger's highest level so that logging.level: error keeps it;
  // the pattern prints only the JSON, whose "level" says info.
  app_logger()->log(spdlog::level::critical, "{}",
                    j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace));
}

}  // namespace keygate::log
