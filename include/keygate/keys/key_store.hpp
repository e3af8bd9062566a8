#pragma once
// The key store seam: what the CLI, KeyService, the admin API and the store
// worker need of persistent storage. Two implementations: SqliteStore (the
// embedded default) and PostgresStore (shared by replicas). Both are blocking:
// in `serve` they are used only from the store worker thread, never an I/O thread.
#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "keygate/config/config.hpp"
#include "keygate/keys/key_record.hpp"

namespace keygate {

// The store cannot be reached or refused a statement. The admin API answers
// 503 STORE_UNAVAILABLE, the CLI exits 1.
struct StoreError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// update_key found the row changed since it was read (another writer won the
// race): read it again and re-apply the change.
struct StoreConflict : StoreError {
  using StoreError::StoreError;
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

// Credits a serving process spent (and refilled) since it last wrote them
// (CreditAccount::take_flush). Applied to the stored balance as
//   remaining = max(remaining - spent_before_refill, refill_amount) - spent   (with a refill)
//   remaining = remaining - spent                                              (without)
// never below zero, which reproduces the process' own balance exactly and adds
// up the spending of several processes.
struct CreditDelta {
  std::string key_id;
  std::int64_t version = 0;  // the credits_version it was spent under
  std::int64_t spent_before_refill = 0;
  std::int64_t spent = 0;
  std::optional<UnixMillis> refilled_at;  // the last refill of the batch, if one happened
  std::int64_t refill_amount = 0;
};

// Requests of one key in one hour, by outcome (SPEC §11).
enum class UsageOutcome { ok, rate_limited, denied, upstream_error };
inline constexpr std::array<std::string_view, 4> kUsageOutcomes = {"ok", "rate_limited", "denied",
                                                                   "upstream_error"};
struct UsageCounts {
  std::string key_id;
  UnixMillis hour = 0;                   // Unix milliseconds of the hour's start (UTC)
  std::array<std::int64_t, 4> counts{};  // by UsageOutcome
};

// GET /v1/audit-events and `keygate audit list`: newest first, every filter optional.
struct AuditQuery {
  std::optional<std::string> key_id;
  std::optional<std::string> action;
  std::optional<UnixMillis> since;   // events at or after this time
  std::optional<std::string> owner;  // only events of this owner's keys (key callers)
  std::int64_t page = 1;
  std::int64_t page_size = 0;  // 0: everything
};

struct AuditEvent {
  std::int64_t id = 0;
  UnixMillis at = 0;
  std::string action, key_id, actor;
  std::string details_json = "{}";
};

// How a serving process learns that someone else (another replica, the CLI)
// changed keys. Every key write bumps the store's change sequence in its own
// transaction, and writers are serialised on that counter, so "rows changed
// after sequence N" never skips a row that commits later with a smaller
// sequence. The feed only says when to ask; the rows come from
// KeyStore::for_each_changed.
class ChangeFeed {
 public:
  virtual ~ChangeFeed() = default;
  // Opens the notification channel if the store has one (PostgreSQL: LISTEN on
  // a connection of its own). Returns the descriptor to watch for readability,
  // or -1 when there is nothing to watch (SQLite: polling only). Throws StoreError.
  virtual int open() = 0;
  virtual void close() = 0;
  // The descriptor became readable: consume it. Returns the highest sequence
  // announced so far (0: none). Throws StoreError when the channel broke.
  virtual std::int64_t consume() = 0;
  // The store's current change sequence, asked cheaply (the safety-net poll).
  virtual std::int64_t latest() = 0;
  virtual std::chrono::milliseconds poll_interval() const = 0;
};

class KeyStore {
 public:
  virtual ~KeyStore() = default;

  // Where the store is, for logs and messages (never a password).
  virtual std::string describe() const = 0;
  // True for a server shared by replicas: while it is unreachable, a replica
  // keeps serving the keys it knows (and stays ready).
  virtual bool remote() const = 0;

  // Applies pending embedded migrations; returns the names applied.
  virtual std::vector<std::string> migrate() = 0;
  virtual bool has_pending_migrations() = 0;

  // Runs f inside one transaction (rolled back on exception).
  virtual void transaction(const std::function<void()>& f) = 0;

  // Key writes bump the change sequence (call inside transaction()); r.change_seq
  // is set to the sequence of this write. update_key writes only if the row
  // still has the r.change_seq it was read with, else throws StoreConflict;
  // it never writes last_used_* (record_usage does).
  virtual void insert_key(KeyRecord& r) = 0;
  virtual void update_key(KeyRecord& r) = 0;
  virtual void add_audit(const AuditEvent& e) = 0;

  virtual std::optional<KeyRecord> get_key(const std::string& id) = 0;
  virtual std::vector<KeyRecord> keys_with_prefix(const std::string& display_prefix) = 0;
  virtual std::vector<KeyRecord> list_keys(const KeyListQuery& q, UnixMillis now,
                                           std::int64_t* total) = 0;
  virtual std::vector<AuditEvent> list_audit(const AuditQuery& q, std::int64_t* total) = 0;

  // Every key changed after `seq`, in change order (catch-up); with seq 0 (the
  // start-up load: every key, each once) in whatever order the store reads fastest.
  // The record passed to `f` is valid during the call only, and holds what the
  // gateway's index and meters need: a store may leave prefix, last4,
  // metadata, created_*, last_used_* and rotated_from empty (get_key has them).
  virtual void for_each_changed(std::int64_t seq,
                                const std::function<void(const KeyRecord&)>& f) = 0;
  // The same rows a batch at a time, so that the index applies a batch
  // together (KeyIndex::apply): a store that reads ahead hands over what it
  // has read. Default: batches of one row.
  virtual void for_each_changed_batch(std::int64_t seq,
                                      const std::function<void(std::span<const KeyRecord>)>& f) {
    for_each_changed(seq, [&](const KeyRecord& r) { f(std::span(&r, 1)); });
  }
  virtual std::int64_t change_seq() = 0;
  // Last-used times and addresses; never bumps the change sequence.
  virtual void record_usage(const std::vector<UsageEvent>& events) = 0;

  // Credits and usage from a serving process (call inside transaction(); never
  // bump the change sequence). A delta applies only while the row still has
  // its credits_version (an operator's newer balance wins); the answer is the
  // stored balance after each delta, nullopt where it was skipped.
  virtual std::vector<std::optional<std::int64_t>> apply_credit_deltas(
      const std::vector<CreditDelta>& deltas) = 0;
  virtual void add_usage_counts(const std::vector<UsageCounts>& counts) = 0;
  // One key's hourly rows with from <= hour < to, oldest first.
  virtual std::vector<UsageCounts> usage_counts(const std::string& key_id, UnixMillis from,
                                                UnixMillis to) = 0;
  // Deletes the rows of hours before `before` (retention); returns how many.
  virtual std::int64_t prune_usage(UnixMillis before) = 0;

  // The change feed of this store (the store must outlive it).
  virtual std::unique_ptr<ChangeFeed> change_feed() = 0;

  // Statements run that read key rows (any SQL reading FROM api_keys): what a
  // request would cost if it reached the store. Counted where each store
  // prepares its SQL, so a new query path is counted without opting in.
  std::int64_t key_reads() const { return key_reads_.load(std::memory_order_relaxed); }

 protected:
  void count_statement(std::string_view sql) {
    if (sql.find("FROM api_keys") != std::string_view::npos)
      key_reads_.fetch_add(1, std::memory_order_relaxed);
  }

 private:
  std::atomic<std::int64_t> key_reads_{0};
};

// The store the config names (store.sqlite or store.postgres). SQLite opens
// the file at once (throws StoreError); PostgreSQL connects on first use, so
// a replica can start while the database is down.
std::unique_ptr<KeyStore> open_store(const Config& config);

}  // namespace keygate
