#include "keygate/observe/log.hpp"

#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <atomic>

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
// Access lines go to stdout through the writer's thread: the I/O thread never
// waits on stdout (it waits for room only if a megabyte of lines is pending).
// Not spdlog's async logger: its queue copies each message into a buffer of
// 250 bytes inline (an access line is longer: one malloc a line) and its
// stdout sink flushes every line (one write() a line).
AccessLogWriter& access_writer() {
  static AccessLogWriter writer(STDOUT_FILENO);
  return writer;
}

std::string now_iso() {
  return format_time(now_millis());
}
}  // namespace

void setup(const LoggingConfig& cfg) {
  g_json = cfg.format == LoggingConfig::Format::json;
  g_access = cfg.access_log;
  app_logger()->set_level(spdlog::level::from_str(cfg.level));
  access_writer();
}

void shutdown() {
  access_writer().flush();
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
  thread_local AccessLineRenderer renderer;  // its buffers keep their capacity
  access_writer().append(renderer.render(r, now_millis(), g_json));
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
