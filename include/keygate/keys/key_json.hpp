#pragma once
// Key fields read from JSON, shared by the admin API's bodies and the lines of
// `keygate keys import`: every field typed, and named in its error.
#include <expected>
#include <initializer_list>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "keygate/core/error.hpp"
#include "keygate/keys/key_service.hpp"

namespace keygate {

// The first field of `object` not in `allowed`, as a validation error.
std::optional<Error> check_fields(const nlohmann::json& object,
                                  std::initializer_list<std::string_view> allowed);

std::expected<std::vector<std::string>, Error> string_list(const nlohmann::json& v,
                                                           const std::string& field);
// {"requests": N, "period": "1m", "burst": N} or null (no per-key rate).
std::expected<std::optional<Rate>, Error> rate_field(const nlohmann::json& v);
std::expected<std::map<std::string, std::string>, Error> metadata_field(const nlohmann::json& v);
// {"remaining": N, "refill": {"amount": A, "interval": "30d"} | null} or null
// (no credits); fields left out are kept by a PATCH. `next_refill_at` (in key
// objects) is accepted and ignored, so a key object can be sent back.
std::expected<std::optional<CreditsPatch>, Error> credits_field(const nlohmann::json& v);
// The credits of a new key: remaining defaults to the refill amount.
std::expected<std::optional<Credits>, Error> new_credits(const std::optional<CreditsPatch>& p);
// An RFC 3339 string or null.
std::expected<std::optional<UnixMillis>, Error> time_field(const nlohmann::json& v,
                                                           const std::string& field);

// The fields of a create body (SPEC §4 `POST /v1/api-keys`: name, owner, scopes,
// plan, rate, expires_at | expires_in, allowed_ips, metadata). Fields outside
// that list are the caller's to allow or refuse.
std::expected<KeySpec, Error> key_spec_from_json(const nlohmann::json& body, UnixMillis now);

// One line of `keys import` (SPEC §10): the create fields plus `key` or
// `sha256`, and the fields of an exported key object (`keys export`), of which
// `enabled`, `created_at` and (with `sha256`) `prefix`/`last4` are kept and the
// rest of the old record's history is ignored; a revoked key is refused.
std::expected<KeyImport, Error> key_import_from_json(const nlohmann::json& line, UnixMillis now);

}  // namespace keygate
