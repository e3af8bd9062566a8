#pragma once
// A key's stored metadata (everything but the secret) and the compact form the
// request path keeps in memory.
#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "keygate/config/config.hpp"
#include "keygate/core/time.hpp"
#include "keygate/keys/key_hasher.hpp"

namespace keygate {

struct KeyRecord {
  std::string id;
  std::string prefix;  // display prefix
  std::string last4;
  KeyHash hash{};
  std::string name;
  std::string owner;
  std::vector<std::string> scopes;
  std::string plan;  // empty: rate_limit.default_plan
  std::optional<Rate> rate;
  std::vector<std::string> allowed_ips;
  std::map<std::string, std::string> metadata;
  bool enabled = true;
  UnixMillis created_at = 0;
  std::optional<UnixMillis> expires_at, revoked_at, last_used_at;
  std::string last_used_ip;
  std::string rotated_from;
  std::string created_by;
  // Imported with a plaintext that is not a keygate key (or as a bare SHA-256):
  // the gateway must hash credentials that fail the keygate format check.
  bool foreign_format = false;
  std::int64_t change_seq = 0;

  // active | revoked | expired | disabled
  std::string status(UnixMillis now) const;
};

std::string join_csv(const std::vector<std::string>& items);
std::vector<std::string> split_csv(std::string_view text);

}  // namespace keygate
