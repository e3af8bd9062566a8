#pragma once
// The embedded store: one SQLite file (WAL, busy timeout, one transaction per
// write). Other processes' commits are seen through PRAGMA data_version.
#include "keygate/keys/key_store.hpp"

struct sqlite3;

namespace keygate {

class SqliteStore final : public KeyStore {
 public:
  explicit SqliteStore(const std::string& path);
  ~SqliteStore() override;
  SqliteStore(const SqliteStore&) = delete;
  SqliteStore& operator=(const SqliteStore&) = delete;

  std::string describe() const override { return path_; }
  bool remote() const override { return false; }
  std::vector<std::string> migrate() override;
  bool has_pending_migrations() override;
  void transaction(const std::function<void()>& f) override;
  void insert_key(KeyRecord& r) override;
  void update_key(KeyRecord& r) override;
  void add_audit(const AuditEvent& e) override;
  std::optional<KeyRecord> get_key(const std::string& id) override;
  std::vector<KeyRecord> keys_with_prefix(const std::string& display_prefix) override;
  std::vector<KeyRecord> list_keys(const KeyListQuery& q, UnixMillis now,
                                   std::int64_t* total) override;
  std::vector<AuditEvent> list_audit(const AuditQuery& q, std::int64_t* total) override;
  void for_each_changed(std::int64_t seq, const std::function<void(const KeyRecord&)>& f) override;
  void for_each_changed_batch(std::int64_t seq,
                              const std::function<void(std::span<const KeyRecord>)>& f) override;
  std::int64_t change_seq() override;
  void record_usage(const std::vector<UsageEvent>& events) override;
  std::vector<std::optional<std::int64_t>> apply_credit_deltas(
      const std::vector<CreditDelta>& deltas) override;
  void add_usage_counts(const std::vector<UsageCounts>& counts) override;
  std::vector<UsageCounts> usage_counts(const std::string& key_id, UnixMillis from,
                                        UnixMillis to) override;
  std::int64_t prune_usage(UnixMillis before) override;
  std::unique_ptr<ChangeFeed> change_feed() override;

  // Changes whenever another connection commits.
  std::int64_t data_version();

 private:
  std::int64_t bump_seq();
  std::string path_;
  sqlite3* db_ = nullptr;
  friend class Statement;
};

}  // namespace keygate
