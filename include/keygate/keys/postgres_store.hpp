#pragma once
// The shared store: PostgreSQL through libpq, for replicas that share keys.
// Blocking, like SqliteStore (the store worker thread only, in `serve`); it
// connects on first use and again after a lost connection, at most once per
// back-off period, so a replica starts and keeps serving while the database is down.
#include <chrono>
#include <memory>

#include "keygate/keys/key_store.hpp"

struct pg_conn;

namespace keygate {

namespace pg {
struct ConnCloser {
  void operator()(pg_conn* c) const;
};
using Conn = std::unique_ptr<pg_conn, ConnCloser>;
// Connects (blocking, bounded by connect_timeout) with keygate's defaults for
// timeouts and keep-alives, which the connection string may override.
Conn connect(const std::string& conninfo);
// "postgresql://user@host:port/db": the connection string without secrets.
std::string describe(const std::string& conninfo);
inline constexpr const char* kChangeChannel = "keygate_key_changes";
}  // namespace pg

class PostgresStore final : public KeyStore {
 public:
  explicit PostgresStore(std::string conninfo);
  ~PostgresStore() override;
  PostgresStore(const PostgresStore&) = delete;
  PostgresStore& operator=(const PostgresStore&) = delete;

  std::string describe() const override { return pg::describe(conninfo_); }
  bool remote() const override { return true; }
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
  std::int64_t change_seq() override;
  void record_usage(const std::vector<UsageEvent>& events) override;
  std::vector<std::optional<std::int64_t>> apply_credit_deltas(
      const std::vector<CreditDelta>& deltas) override;
  void add_usage_counts(const std::vector<UsageCounts>& counts) override;
  std::vector<UsageCounts> usage_counts(const std::string& key_id, UnixMillis from,
                                        UnixMillis to) override;
  std::int64_t prune_usage(UnixMillis before) override;
  std::unique_ptr<ChangeFeed> change_feed() override;

  const std::string& conninfo() const { return conninfo_; }

 private:
  friend class PgQuery;
  // The open connection; connects when there is none (throws StoreError).
  pg_conn* connection();
  std::int64_t bump_seq();

  std::string conninfo_;
  pg::Conn conn_;
  bool in_transaction_ = false;
  std::chrono::steady_clock::time_point next_attempt_{};  // after a failed connect
  std::string last_error_;
};

}  // namespace keygate
