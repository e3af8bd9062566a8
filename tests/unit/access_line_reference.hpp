#pragma once
// The access log's JSON line as log.cpp built it before AccessLineRenderer: a
// nlohmann::json object dumped with invalid UTF-8 replaced. The renderer must
// write exactly these bytes (the unit tests and fuzz_access_line compare).
#include <cmath>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

#include "keygate/core/time.hpp"
#include "keygate/observe/access_log.hpp"

namespace keygate::test_support {

inline std::string reference_json(const log::AccessRecord& r, UnixMillis now) {
  auto opt = [](std::string_view s) {
    return s.empty() ? nlohmann::json(nullptr) : nlohmann::json(s);
  };
  std::string_view path = r.path.substr(0, r.path.find('?'));
  nlohmann::json j = {
      {"time", format_time(now)},
      {"type", "access"},
      {"request_id", r.request_id},
      {"client_ip", r.client_ip},
      {"method", r.method},
      {"path", path},
      {"status", r.status},
      {"reason", opt(r.reason)},
      {"key_id", opt(r.key_id)},
      {"owner", opt(r.owner)},
      {"bytes_in", r.bytes_in},
      {"bytes_out", r.bytes_out},
      {"duration_ms", std::round(r.duration_ms * 1000) / 1000},
      {"upstream_ms", r.upstream_ms < 0 ? nlohmann::json(nullptr)
                                        : nlohmann::json(std::round(r.upstream_ms * 1000) / 1000)},
      {"shadow_reason", opt(r.shadow_reason)}};
  if (r.deprecated) j["deprecated"] = true;
  return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
}

}  // namespace keygate::test_support
