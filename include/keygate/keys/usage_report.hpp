#pragma once
// A key's usage as the admin API (`GET /v1/api-keys/{id}/usage`) and the CLI
// (`keygate keys usage`) show it: request counts by outcome per hour or per
// UTC day, every period of the range listed (zeros included), with totals.
#include <expected>
#include <optional>
#include <string>

#include <nlohmann/json.hpp>

#include "keygate/core/error.hpp"
#include "keygate/keys/key_store.hpp"

namespace keygate {

struct UsageQuery {
  std::string granularity = "hour";  // hour | day
  std::optional<UnixMillis> from;    // default: 24 hours (hour) or 30 days (day) before `to`
  std::optional<UnixMillis> to;      // default: now
};

// The range is widened to whole periods; at most 744 hours (31 days) or 400 days.
std::expected<nlohmann::json, Error> usage_report(KeyStore& store, const std::string& key_id,
                                                  const UsageQuery& q, UnixMillis now);

}  // namespace keygate
