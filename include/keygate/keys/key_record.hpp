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

// Credits refill on a fixed grid: every `interval` from the moment the refill
// was set (key creation, or the update or rotation that set it), the balance
// is topped up to `amount` (a balance above it is kept, never lowered).
struct CreditRefill {
  std::int64_t amount = 0;
  Millis interval{0};
  bool operator==(const CreditRefill&) const = default;
};

// A key's credits as stored: what is left, and the refill schedule.
struct Credits {
  std::int64_t remaining = 0;
  std::optional<CreditRefill> refill;
  UnixMillis refilled_at = 0;  // the last refill on the grid (or the grid's start)
  bool operator==(const Credits&) const = default;
  // The grid point at or before `now` (refilled_at itself when none passed);
  // the next one is that plus the interval. Only with a refill.
  UnixMillis last_refill(UnixMillis now) const;
  UnixMillis next_refill(UnixMillis now) const;
  // `remaining` as of `now`, counting a refill that is due but not yet applied.
  std::int64_t remaining_at(UnixMillis now) const;
};

inline constexpr std::int64_t kMaxCredits = 1'000'000'000'000'000;  // 10^15

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
  // Credits (SPEC §11); none: the key is not metered by credits. `credits_version`
  // moves whenever an operator sets the balance, so a serving process adopts
  // the stored balance then and only then (its own spending is newer otherwise).
  std::optional<Credits> credits;
  std::int64_t credits_version = 0;
  // Set on a key rotated with a grace period, whose credits moved to its
  // replacement: this key spends the credits of that key until it ends.
  std::string credits_key;
  std::optional<UnixMillis> rotated_at;  // rotated: deprecated since then (Deprecation header)
  std::int64_t change_seq = 0;

  // active | revoked | expired | disabled
  std::string status(UnixMillis now) const;
};

std::string join_csv(const std::vector<std::string>& items);
std::vector<std::string> split_csv(std::string_view text);
// The same into `out`, reusing its strings.
void split_csv(std::string_view text, std::vector<std::string>& out);

}  // namespace keygate
