#pragma once
// The SQLite store (WAL, busy timeout, one transaction per write). Blocking:
// in `serve` it is used only from the store worker thread, never an I/O thread.
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "keygate/keys/key_record.hpp"

struct sqlite3;

namespace keygate {

struct StoreError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

struct KeyListQuery {
  std::optional<std::string> owner;
  std::string status = "active";  // active | revoked | expired | all
  std::int64_t page = 1;
  std::int64_t page_size = 0;  // 0: everything
};

struct UsageEvent {
  std::string key_id;
  UnixMillis at = 0;
  std::string ip;
};

struct AuditEvent {
  std::int64_t id = 0;
  UnixMillis at = 0;
  std::string action, key_id, actor;
  std::string details_json = "{}";
};

class KeyStore {
 public:
  explicit KeyStore(const std::string& path);
  ~KeyStore();
  KeyStore(const KeyStore&) = delete;
  KeyStore& operator=(const KeyStore&) = delete;

  // Applies pending embedded migrations; returns the names applied.
  std::vector<std::string> migrate();
  bool has_pending_migrations();

  // Runs f inside BEGIN IMMEDIATE ... COMMIT (ROLLBACK on exception).
  void transaction(const std::function<void()>& f);

  // Key writes bump the store's change sequence (call inside transaction()).
  void insert_key(KeyRecord& r);
  void update_key(KeyRecord& r);
  void add_audit(const AuditEvent& e);

  std::optional<KeyRecord> get_key(const std::string& id);
  std::vector<KeyRecord> keys_with_prefix(const std::string& display_prefix);
  std::vector<KeyRecord> list_keys(const KeyListQuery& q, UnixMillis now, std::int64_t* total);
  std::vector<AuditEvent> list_audit(std::int64_t page, std::int64_t page_size,
                                     std::int64_t* total);

  // Every key changed after `seq`, in change order (the refresh path).
  void for_each_changed(std::int64_t seq, const std::function<void(const KeyRecord&)>& f);
  std::int64_t change_seq();
  // Changes whenever another connection commits (PRAGMA data_version).
  std::int64_t data_version();
  void record_usage(const std::vector<UsageEvent>& events);

 private:
  std::int64_t bump_seq();
  sqlite3* db_ = nullptr;
  friend class Statement;
};

}  // namespace keygate
