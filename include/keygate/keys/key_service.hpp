#pragma once
// Key management shared by the CLI and the admin API: validation, generation,
// create/update/revoke/rotate, each in one transaction with its audit event.
#include <array>
#include <expected>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "keygate/config/config.hpp"
#include "keygate/core/error.hpp"
#include "keygate/keys/key_format.hpp"
#include "keygate/keys/key_hasher.hpp"
#include "keygate/keys/key_record.hpp"
#include "keygate/keys/key_store.hpp"

namespace keygate {

struct KeySpec {
  std::string name;
  std::string owner;
  std::vector<std::string> scopes;
  std::string plan;
  std::optional<Rate> rate;
  std::optional<UnixMillis> expires_at;
  std::vector<std::string> allowed_ips;
  std::map<std::string, std::string> metadata;
  std::optional<Credits> credits;  // remaining and refill (the grid starts at creation)
};

// A change of a key's credits: what is given is set, the rest kept. Setting
// either moves credits_version, so a serving process adopts the stored
// balance. A new refill starts its grid now; credits given to a key without
// any start at `remaining`, else full (the refill amount).
struct CreditsPatch {
  std::optional<std::int64_t> remaining;
  std::optional<std::optional<CreditRefill>> refill;  // set to nullopt: no refill
};

struct KeyPatch {
  std::optional<std::string> name;
  std::optional<std::vector<std::string>> scopes;
  std::optional<std::string> plan;
  std::optional<std::optional<Rate>> rate;  // set to nullopt: remove the override
  std::optional<bool> enabled;
  std::optional<std::optional<UnixMillis>> expires_at;
  std::optional<std::vector<std::string>> allowed_ips;
  std::optional<std::map<std::string, std::string>> metadata;
  std::optional<std::optional<CreditsPatch>> credits;  // set to nullopt: no credits
};

// A key an API already issued (`keys import`): its plaintext or the SHA-256 of
// its plaintext, with the settings of a new key. A plaintext that is not a
// well-formed keygate key makes a foreign-format key, looked up by hash only.
struct KeyImport {
  KeySpec spec;
  std::optional<std::string> key;  // the plaintext, any format
  std::optional<KeyHash> sha256;   // or the SHA-256 of the plaintext
  std::string prefix, last4;       // with sha256: what to display (may be empty)
  bool enabled = true;
  std::optional<UnixMillis> created_at;
};

struct ImportProblem {
  size_t item;  // index into the batch
  Error error;
};

struct IssuedKey {
  KeyRecord record;
  std::string key;  // the secret, shown once
};

class KeyService {
 public:
  KeyService(KeyStore& store, const Config& config);

  // Called after every committed change (serve: refresh the in-memory index).
  void on_change(std::function<void(const KeyRecord&)> f) { on_change_ = std::move(f); }
  // Called with each audit event once its transaction committed (the log stream).
  void on_audit(std::function<void(const AuditEvent&)> f) { on_audit_ = std::move(f); }

  std::expected<IssuedKey, Error> create(const KeySpec& spec, const std::string& actor);
  // By id or display prefix; ambiguous prefix -> 409 CONFLICT, unknown -> 404.
  std::expected<KeyRecord, Error> resolve(const std::string& id_or_prefix);
  std::expected<KeyRecord, Error> update(const std::string& id_or_prefix, const KeyPatch& patch,
                                         const std::string& actor);
  std::expected<KeyRecord, Error> revoke(const std::string& id_or_prefix, const std::string& actor);
  std::expected<IssuedKey, Error> rotate(const std::string& id_or_prefix, Millis grace,
                                         const std::string& actor);

  // Every item checked (a problem for each bad one) against the config, the
  // store and the rest of the batch; writes nothing.
  std::expected<std::vector<KeyRecord>, std::vector<ImportProblem>> check_import(
      const std::vector<KeyImport>& batch, const std::string& actor);
  // All or nothing: check_import, then every key inserted in one transaction
  // with one `import` audit event each.
  std::expected<std::vector<KeyRecord>, std::vector<ImportProblem>> import(
      const std::vector<KeyImport>& batch, const std::string& actor);

  // Field validation shared with the CLI and admin parsers.
  std::optional<Error> validate(const KeySpec& spec) const;

 private:
  std::expected<KeyRecord, Error> update_once(const std::string& id_or_prefix,
                                              const KeyPatch& patch, const std::string& actor);
  std::expected<KeyRecord, Error> revoke_once(const std::string& id_or_prefix,
                                              const std::string& actor);
  std::expected<IssuedKey, Error> rotate_once(const std::string& id_or_prefix, Millis grace,
                                              const std::string& actor);
  IssuedKey issue(KeyRecord base);
  void changed(const KeyRecord& r);
  void audited(const AuditEvent& e);
  KeyStore& store_;
  const Config& config_;
  KeyFormat format_;
  KeyHasher hasher_;
  std::function<void(const KeyRecord&)> on_change_;
  std::function<void(const AuditEvent&)> on_audit_;
};

Error validation_error(const std::string& field, const std::string& message);

// The key object of SPEC §4 (never the hash; `key` only when given).
nlohmann::json key_to_json(const KeyRecord& r, UnixMillis now, const std::string* secret = nullptr);
nlohmann::json rate_to_json(const std::optional<Rate>& r);
// {"remaining", "refill": {"amount", "interval"} | null, "next_refill_at"} or null, as of `now`.
nlohmann::json credits_to_json(const std::optional<Credits>& c, UnixMillis now);
// "1000/30d": AMOUNT/INTERVAL (the CLI's --refill).
std::expected<CreditRefill, std::string> parse_refill(std::string_view text);
// Every action an audit event can record (the audit filters accept only these).
inline constexpr std::array<std::string_view, 5> kAuditActions = {"create", "import", "update",
                                                                  "rotate", "revoke"};

// An audit event as GET /v1/audit-events and `keygate audit list --json` show it.
nlohmann::json audit_to_json(const AuditEvent& e);

}  // namespace keygate
