#include "keygate/keys/sqlite_store.hpp"

#include <sqlite3.h>

#include <array>
#include <condition_variable>
#include <cstring>
#include <filesystem>
#include <mutex>
#include <nlohmann/json.hpp>
#include <span>
#include <thread>

#include "keygate/keys/migrations.hpp"

namespace keygate {

// RAII prepared statement with typed bind/column helpers.
class Statement {
 public:
  Statement(SqliteStore& store, const char* sql) : db_(store.db_) {
    store.count_statement(sql);
    if (sqlite3_prepare_v2(db_, sql, -1, &stmt_, nullptr) != SQLITE_OK)
      throw StoreError(std::string("store: prepare failed: ") + sqlite3_errmsg(db_));
  }
  ~Statement() { sqlite3_finalize(stmt_); }
  Statement(const Statement&) = delete;
  Statement& operator=(const Statement&) = delete;

  Statement& bind(int i, const std::string& v) {
    check(sqlite3_bind_text(stmt_, i, v.data(), static_cast<int>(v.size()), SQLITE_TRANSIENT));
    return *this;
  }
  Statement& bind(int i, std::int64_t v) {
    check(sqlite3_bind_int64(stmt_, i, v));
    return *this;
  }
  Statement& bind(int i, const KeyHash& h) {
    check(sqlite3_bind_blob(stmt_, i, h.data(), static_cast<int>(h.size()), SQLITE_TRANSIENT));
    return *this;
  }
  template <class T>
  Statement& bind(int i, const std::optional<T>& v) {
    if (v) return bind(i, *v);
    check(sqlite3_bind_null(stmt_, i));
    return *this;
  }
  // True while a row is available.
  bool step() {
    int rc = sqlite3_step(stmt_);
    if (rc == SQLITE_ROW) return true;
    if (rc == SQLITE_DONE) return false;
    throw StoreError(std::string("store: ") + sqlite3_errmsg(db_));
  }
  void run() {
    while (step()) {
    }
  }
  void reset() {
    sqlite3_reset(stmt_);
    sqlite3_clear_bindings(stmt_);
  }
  std::string text(int c) const { return std::string(text_view(c)); }
  // Valid until the next step or reset.
  std::string_view text_view(int c) const {
    auto* p = sqlite3_column_text(stmt_, c);
    return p ? std::string_view(reinterpret_cast<const char*>(p),
                                static_cast<size_t>(sqlite3_column_bytes(stmt_, c)))
             : std::string_view();
  }
  std::int64_t integer(int c) const { return sqlite3_column_int64(stmt_, c); }
  // Valid until the next step or reset.
  sqlite3_value* value(int c) const { return sqlite3_column_value(stmt_, c); }
  std::optional<std::int64_t> opt_integer(int c) const {
    if (sqlite3_column_type(stmt_, c) == SQLITE_NULL) return std::nullopt;
    return integer(c);
  }
  KeyHash hash(int c) const {
    KeyHash h{};
    if (sqlite3_column_bytes(stmt_, c) == static_cast<int>(h.size()))
      std::memcpy(h.data(), sqlite3_column_blob(stmt_, c), h.size());
    return h;
  }

 private:
  void check(int rc) {
    if (rc != SQLITE_OK) throw StoreError(std::string("store: bind: ") + sqlite3_errmsg(db_));
  }
  sqlite3* db_;
  sqlite3_stmt* stmt_ = nullptr;
};

namespace {

constexpr const char* kKeyColumns =
    "id, prefix, last4, hash, name, owner, scopes, plan, rate_requests, rate_period_ms, "
    "rate_burst, allowed_ips, metadata, enabled, created_at, expires_at, revoked_at, "
    "last_used_at, last_used_ip, rotated_from, created_by, change_seq, foreign_format, "
    "credits_remaining, credits_version, refill_amount, refill_interval_ms, refilled_at, "
    "credits_key, rotated_at";

// Columns 23.. of kKeyColumns (credits and rotation).
void read_lifecycle(const Statement& s, KeyRecord& r) {
  if (auto remaining = s.opt_integer(23)) {
    Credits c;
    c.remaining = *remaining;
    if (auto amount = s.opt_integer(25))
      c.refill = CreditRefill{*amount, Millis(s.opt_integer(26).value_or(0))};
    c.refilled_at = s.opt_integer(27).value_or(0);
    r.credits = c;
  }
  r.credits_version = s.integer(24);
  r.credits_key = s.text(28);
  r.rotated_at = s.opt_integer(29);
}

// The same columns as parameters first..first+6.
void bind_lifecycle(Statement& s, const KeyRecord& r, int first) {
  std::optional<std::int64_t> remaining, amount, interval, refilled_at;
  if (r.credits) {
    remaining = r.credits->remaining;
    refilled_at = r.credits->refilled_at;
    if (r.credits->refill) {
      amount = r.credits->refill->amount;
      interval = r.credits->refill->interval.count();
    }
  }
  s.bind(first, remaining).bind(first + 1, r.credits_version).bind(first + 2, amount);
  s.bind(first + 3, interval).bind(first + 4, refilled_at);
  s.bind(first + 5, r.credits_key.empty() ? std::nullopt : std::optional(r.credits_key));
  s.bind(first + 6, r.rotated_at);
}

KeyRecord read_key(const Statement& s) {
  KeyRecord r;
  r.id = s.text(0);
  r.prefix = s.text(1);
  r.last4 = s.text(2);
  r.hash = s.hash(3);
  r.name = s.text(4);
  r.owner = s.text(5);
  r.scopes = split_csv(s.text_view(6));
  r.plan = s.text(7);
  if (auto req = s.opt_integer(8)) {
    r.rate = Rate{static_cast<std::uint64_t>(*req), Millis(s.integer(9)),
                  static_cast<std::uint64_t>(s.integer(10))};
  }
  r.allowed_ips = split_csv(s.text_view(11));
  auto meta = nlohmann::json::parse(s.text_view(12), nullptr, false);
  if (meta.is_object())
    for (const auto& [k, v] : meta.items())
      if (v.is_string()) r.metadata[k] = v.get<std::string>();
  r.enabled = s.integer(13) != 0;
  r.created_at = s.integer(14);
  r.expires_at = s.opt_integer(15);
  r.revoked_at = s.opt_integer(16);
  r.last_used_at = s.opt_integer(17);
  r.last_used_ip = s.text(18);
  r.rotated_from = s.text(19);
  r.created_by = s.text(20);
  r.change_seq = s.integer(21);
  r.foreign_format = s.integer(22) != 0;
  read_lifecycle(s, r);
  return r;
}

// What for_each_changed reads: what the gateway's index and meters need.
// SQLite spends ~35 ns a column a row: 10M rows are read in seconds only with
// the columns they need, each fetched once as a value, and only when used.
constexpr const char* kChangedColumns =
    "id, hash, name, owner, scopes, plan, rate_requests, rate_period_ms, rate_burst, "
    "allowed_ips, enabled, expires_at, revoked_at, change_seq, foreign_format, "
    "credits_remaining, credits_version, refill_amount, refill_interval_ms, refilled_at, "
    "credits_key, rotated_at";
// A row of kChangedColumns into `r`, reusing r's strings (a load reads
// millions of rows into one record).
void read_changed(const Statement& s, KeyRecord& r) {
  auto text = [&](int c) {
    sqlite3_value* v = s.value(c);
    const auto* p = static_cast<const char*>(sqlite3_value_blob(v));
    return p ? std::string_view(p, static_cast<size_t>(sqlite3_value_bytes(v)))
             : std::string_view();
  };
  auto integer = [&](int c) { return sqlite3_value_int64(s.value(c)); };
  auto opt_integer = [&](int c) -> std::optional<std::int64_t> {
    sqlite3_value* v = s.value(c);
    if (sqlite3_value_type(v) == SQLITE_NULL) return std::nullopt;
    return sqlite3_value_int64(v);
  };
  r.id.assign(text(0));
  const auto hash = text(1);
  r.hash = {};
  if (hash.size() == r.hash.size()) std::memcpy(r.hash.data(), hash.data(), hash.size());
  r.name.assign(text(2));
  r.owner.assign(text(3));
  split_csv(text(4), r.scopes);
  r.plan.assign(text(5));
  r.rate.reset();
  if (auto req = opt_integer(6))  // the period and burst only with it
    r.rate = Rate{static_cast<std::uint64_t>(*req), Millis(integer(7)),
                  static_cast<std::uint64_t>(integer(8))};
  split_csv(text(9), r.allowed_ips);
  r.enabled = integer(10) != 0;
  r.expires_at = opt_integer(11);
  r.revoked_at = opt_integer(12);
  r.change_seq = integer(13);
  r.foreign_format = integer(14) != 0;
  r.credits.reset();
  if (auto remaining = opt_integer(15)) {  // the refill only with a balance
    Credits c;
    c.remaining = *remaining;
    if (auto amount = opt_integer(17))
      c.refill = CreditRefill{*amount, Millis(opt_integer(18).value_or(0))};
    c.refilled_at = opt_integer(19).value_or(0);
    r.credits = c;
  }
  r.credits_version = integer(16);
  r.credits_key.assign(text(20));
  r.rotated_at = opt_integer(21);
}

void bind_key(Statement& s, const KeyRecord& r) {
  s.bind(1, r.id).bind(2, r.prefix).bind(3, r.last4).bind(4, r.hash).bind(5, r.name);
  s.bind(6, r.owner).bind(7, join_csv(r.scopes)).bind(8, r.plan);
  std::optional<std::int64_t> req, period, burst;
  if (r.rate) {
    req = static_cast<std::int64_t>(r.rate->requests);
    period = r.rate->period.count();
    burst = static_cast<std::int64_t>(r.rate->burst);
  }
  s.bind(9, req).bind(10, period).bind(11, burst);
  s.bind(12, join_csv(r.allowed_ips)).bind(13, nlohmann::json(r.metadata).dump());
  s.bind(14, std::int64_t{r.enabled}).bind(15, r.created_at).bind(16, r.expires_at);
  s.bind(17, r.revoked_at).bind(18, r.last_used_at);
  s.bind(19, r.last_used_ip).bind(20, r.rotated_from).bind(21, r.created_by);
  s.bind(22, r.change_seq);
}

// The start-up load: SQLite steps and decodes rows on a second thread while
// the caller's thread applies them (to the index) a batch at a time, through
// two buffers. Each side takes about half of the time, so a machine with two
// cores loads 10M keys in about half the time. The connection is used by the
// reader alone until it is joined; `f` runs on the caller's thread only.
void read_on_second_thread(Statement& s, const std::function<void(std::span<const KeyRecord>)>& f) {
  constexpr size_t kBatchRows = 512;
  struct Batch {
    std::vector<KeyRecord> rows = std::vector<KeyRecord>(kBatchRows);  // reused, capacity kept
    size_t size = 0;
    bool full = false, last = false;  // under mu
  };
  std::array<Batch, 2> batches;
  std::mutex mu;
  std::condition_variable_any cv;
  std::exception_ptr failed;  // under mu
  // Declared last: destroyed (stopped and joined) first, also when `f` throws.
  std::jthread reader([&](std::stop_token stop) {
    try {
      for (size_t b = 0;; b ^= 1) {
        Batch& batch = batches[b];
        {
          std::unique_lock lock(mu);
          if (!cv.wait(lock, stop, [&] { return !batch.full; })) return;
        }
        batch.size = 0;
        while (batch.size < kBatchRows && s.step()) read_changed(s, batch.rows[batch.size++]);
        const bool last = batch.size < kBatchRows;
        {
          std::lock_guard lock(mu);
          batch.full = true;
          batch.last = last;
        }
        cv.notify_all();
        if (last) return;
      }
    } catch (...) {
      {
        std::lock_guard lock(mu);
        failed = std::current_exception();
      }
      cv.notify_all();
    }
  });
  for (size_t b = 0;; b ^= 1) {
    Batch& batch = batches[b];
    {
      std::unique_lock lock(mu);
      cv.wait(lock, [&] { return batch.full || failed; });
      if (!batch.full) break;  // the reader failed
    }
    f(std::span<const KeyRecord>(batch.rows.data(), batch.size));
    const bool last = batch.last;
    {
      std::lock_guard lock(mu);
      batch.full = false;
    }
    cv.notify_all();
    if (last) break;
  }
  reader.join();
  if (failed) std::rethrow_exception(failed);
}

}  // namespace

SqliteStore::SqliteStore(const std::string& path) : path_(path) {
  auto parent = std::filesystem::path(path).parent_path();
  std::error_code ec;
  if (!parent.empty()) std::filesystem::create_directories(parent, ec);
  if (sqlite3_open_v2(path.c_str(), &db_,
                      SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
                      nullptr) != SQLITE_OK) {
    std::string msg = db_ ? sqlite3_errmsg(db_) : "out of memory";
    sqlite3_close(db_);
    throw StoreError("cannot open store " + path + ": " + msg);
  }
  sqlite3_busy_timeout(db_, 5000);
  // WAL: readers never block the writer; synchronous=FULL: a committed key survives a crash.
  for (const char* pragma :
       {"PRAGMA journal_mode=WAL", "PRAGMA synchronous=FULL", "PRAGMA foreign_keys=ON"}) {
    Statement s(*this, pragma);
    s.run();
  }
}

SqliteStore::~SqliteStore() {
  sqlite3_close_v2(db_);
}

void SqliteStore::transaction(const std::function<void()>& f) {
  Statement(*this, "BEGIN IMMEDIATE").run();
  try {
    f();
  } catch (...) {
    sqlite3_exec(db_, "ROLLBACK", nullptr, nullptr, nullptr);
    throw;
  }
  Statement(*this, "COMMIT").run();
}

std::vector<std::string> SqliteStore::migrate() {
  std::vector<std::string> applied;
  transaction([&] {
    Statement(*this,
              "CREATE TABLE IF NOT EXISTS schema_migrations (name TEXT PRIMARY KEY, "
              "applied_at INTEGER NOT NULL)")
        .run();
    for (const auto& m : embedded_migrations(Dialect::sqlite)) {
      Statement check(*this, "SELECT 1 FROM schema_migrations WHERE name = ?");
      if (check.bind(1, m.name).step()) continue;
      char* err = nullptr;
      if (sqlite3_exec(db_, m.sql.c_str(), nullptr, nullptr, &err) != SQLITE_OK) {
        std::string msg = err ? err : "unknown error";
        sqlite3_free(err);
        throw StoreError("migration " + m.name + " failed: " + msg);
      }
      Statement(*this, "INSERT INTO schema_migrations (name, applied_at) VALUES (?, ?)")
          .bind(1, m.name)
          .bind(2, now_millis())
          .run();
      applied.push_back(m.name);
    }
  });
  return applied;
}

bool SqliteStore::has_pending_migrations() {
  Statement t(*this, "SELECT 1 FROM sqlite_master WHERE type='table' AND name='schema_migrations'");
  if (!t.step()) return true;
  for (const auto& m : embedded_migrations(Dialect::sqlite)) {
    Statement check(*this, "SELECT 1 FROM schema_migrations WHERE name = ?");
    if (!check.bind(1, m.name).step()) return true;
  }
  return false;
}

std::int64_t SqliteStore::bump_seq() {
  Statement(*this, "UPDATE store_state SET change_seq = change_seq + 1 WHERE id = 1").run();
  return change_seq();
}

std::int64_t SqliteStore::change_seq() {
  Statement s(*this, "SELECT change_seq FROM store_state WHERE id = 1");
  return s.step() ? s.integer(0) : 0;
}

void SqliteStore::insert_key(KeyRecord& r) {
  r.change_seq = bump_seq();
  Statement s(
      *this,
      (std::string("INSERT INTO api_keys (") + kKeyColumns +
       ", created_seq) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?22)")
          .c_str());
  bind_key(s, r);
  s.bind(23, std::int64_t{r.foreign_format});  // set once: a key's format never changes
  bind_lifecycle(s, r, 24);
  s.run();
}

void SqliteStore::update_key(KeyRecord& r) {
  const std::int64_t read_at = r.change_seq;
  r.change_seq = bump_seq();
  Statement s(*this,
              "UPDATE api_keys SET prefix=?2, last4=?3, hash=?4, name=?5, owner=?6, scopes=?7, "
              "plan=?8, rate_requests=?9, rate_period_ms=?10, rate_burst=?11, allowed_ips=?12, "
              "metadata=?13, enabled=?14, created_at=?15, expires_at=?16, revoked_at=?17, "
              "rotated_from=?20, created_by=?21, change_seq=?22, "
              // The balance and its refill grid are written only with a new
              // credits_version: otherwise the stored ones are newer (spending).
              "credits_remaining = CASE WHEN credits_version = ?25 THEN credits_remaining "
              "ELSE ?24 END, refilled_at = CASE WHEN credits_version = ?25 THEN refilled_at "
              "ELSE ?28 END, credits_version=?25, refill_amount=?26, refill_interval_ms=?27, "
              "credits_key=?29, rotated_at=?30 WHERE id=?1 AND change_seq=?23");
  bind_key(s, r);  // ?18 and ?19 (last_used_*) are bound but not written
  s.bind(23, read_at);
  bind_lifecycle(s, r, 24);
  s.run();
  if (sqlite3_changes(db_) != 1)
    throw StoreConflict("store: key " + r.id + " changed concurrently");
}

void SqliteStore::add_audit(const AuditEvent& e) {
  Statement(*this,
            "INSERT INTO audit_events (at, action, key_id, actor, details) VALUES (?,?,?,?,?)")
      .bind(1, e.at)
      .bind(2, e.action)
      .bind(3, e.key_id)
      .bind(4, e.actor)
      .bind(5, e.details_json)
      .run();
}

std::optional<KeyRecord> SqliteStore::get_key(const std::string& id) {
  Statement s(*this,
              (std::string("SELECT ") + kKeyColumns + " FROM api_keys WHERE id = ?").c_str());
  if (!s.bind(1, id).step()) return std::nullopt;
  return read_key(s);
}

std::vector<KeyRecord> SqliteStore::keys_with_prefix(const std::string& display_prefix) {
  Statement s(*this,
              (std::string("SELECT ") + kKeyColumns + " FROM api_keys WHERE prefix = ?").c_str());
  s.bind(1, display_prefix);
  std::vector<KeyRecord> out;
  while (s.step()) out.push_back(read_key(s));
  return out;
}

std::vector<KeyRecord> SqliteStore::list_keys(const KeyListQuery& q, UnixMillis now,
                                              std::int64_t* total) {
  std::string where = " WHERE (?1 IS NULL OR owner = ?1)";
  if (q.status == "active")
    where +=
        " AND (revoked_at IS NULL OR revoked_at > ?2) AND (expires_at IS NULL OR expires_at > ?2)";
  else if (q.status == "revoked")
    where += " AND revoked_at IS NOT NULL AND revoked_at <= ?2";
  else if (q.status == "expired")
    where +=
        " AND (revoked_at IS NULL OR revoked_at > ?2) AND expires_at IS NOT NULL AND "
        "expires_at <= ?2";
  else
    where += " AND ?2 = ?2";
  if (total) {
    Statement c(*this, ("SELECT COUNT(*) FROM api_keys" + where).c_str());
    c.bind(1, q.owner).bind(2, now);
    *total = c.step() ? c.integer(0) : 0;
  }
  std::string sql = std::string("SELECT ") + kKeyColumns + " FROM api_keys" + where +
                    " ORDER BY created_at, created_seq";
  if (q.page_size > 0) sql += " LIMIT ?3 OFFSET ?4";
  Statement s(*this, sql.c_str());
  s.bind(1, q.owner).bind(2, now);
  if (q.page_size > 0) s.bind(3, q.page_size).bind(4, (q.page - 1) * q.page_size);
  std::vector<KeyRecord> out;
  while (s.step()) out.push_back(read_key(s));
  return out;
}

std::vector<AuditEvent> SqliteStore::list_audit(const AuditQuery& q, std::int64_t* total) {
  constexpr const char* where =
      " WHERE (?1 IS NULL OR key_id = ?1) AND (?2 IS NULL OR action = ?2)"
      " AND (?3 IS NULL OR at >= ?3)"
      " AND (?4 IS NULL OR key_id IN (SELECT id FROM api_keys WHERE owner = ?4))";
  auto bind_filters = [&](Statement& st) {
    st.bind(1, q.key_id).bind(2, q.action).bind(3, q.since).bind(4, q.owner);
  };
  if (total) {
    Statement c(*this, (std::string("SELECT COUNT(*) FROM audit_events") + where).c_str());
    bind_filters(c);
    *total = c.step() ? c.integer(0) : 0;
  }
  std::string sql = std::string("SELECT id, at, action, key_id, actor, details FROM audit_events") +
                    where + " ORDER BY id DESC";
  if (q.page_size > 0) sql += " LIMIT ?5 OFFSET ?6";
  Statement s(*this, sql.c_str());
  bind_filters(s);
  if (q.page_size > 0) s.bind(5, q.page_size).bind(6, (q.page - 1) * q.page_size);
  std::vector<AuditEvent> out;
  while (s.step())
    out.push_back({s.integer(0), s.integer(1), s.text(2), s.text(3), s.text(4), s.text(5)});
  return out;
}

void SqliteStore::for_each_changed(std::int64_t seq,
                                   const std::function<void(const KeyRecord&)>& f) {
  for_each_changed_batch(seq, [&](std::span<const KeyRecord> rows) {
    for (const KeyRecord& r : rows) f(r);
  });
}

void SqliteStore::for_each_changed_batch(std::int64_t seq,
                                         const std::function<void(std::span<const KeyRecord>)>& f) {
  // Every key (seq 0, the start-up load) in the table's own order: each key
  // is there once, so the order does not matter, and a plain scan reads
  // 10M rows in about half the time of a walk along the change_seq index.
  Statement s(*this, (std::string("SELECT ") + kChangedColumns + " FROM api_keys" +
                      (seq > 0 ? " WHERE change_seq > ? ORDER BY change_seq" : ""))
                         .c_str());
  if (seq == 0) return read_on_second_thread(s, f);
  s.bind(1, seq);
  KeyRecord r;
  while (s.step()) {
    read_changed(s, r);
    f(std::span(&r, 1));
  }
}

std::int64_t SqliteStore::data_version() {
  Statement s(*this, "PRAGMA data_version");
  return s.step() ? s.integer(0) : 0;
}

void SqliteStore::record_usage(const std::vector<UsageEvent>& events) {
  if (events.empty()) return;
  transaction([&] {
    Statement s(*this,
                "UPDATE api_keys SET last_used_at = ?, last_used_ip = ? WHERE id = ? AND "
                "(last_used_at IS NULL OR last_used_at < ?)");
    for (const auto& e : events) {
      s.bind(1, e.at).bind(2, e.ip).bind(3, e.key_id).bind(4, e.at);
      s.run();
      s.reset();
    }
  });
}

std::vector<std::optional<std::int64_t>> SqliteStore::apply_credit_deltas(
    const std::vector<CreditDelta>& deltas) {
  // A refill is applied once: another process may have written the same one.
  Statement s(*this,
              "UPDATE api_keys SET credits_remaining = MAX(0, CASE WHEN ?6 AND "
              "COALESCE(refilled_at, 0) < ?7 THEN MAX(credits_remaining - ?3, ?5) "
              "ELSE credits_remaining - ?3 END - ?4), refilled_at = CASE WHEN ?6 AND "
              "COALESCE(refilled_at, 0) < ?7 THEN ?7 ELSE refilled_at END "
              "WHERE id = ?1 AND credits_version = ?2 AND credits_remaining IS NOT NULL "
              "RETURNING credits_remaining");
  std::vector<std::optional<std::int64_t>> out;
  for (const auto& d : deltas) {
    s.bind(1, d.key_id).bind(2, d.version).bind(3, d.spent_before_refill).bind(4, d.spent);
    s.bind(5, d.refill_amount).bind(6, std::int64_t{d.refilled_at.has_value()});
    s.bind(7, d.refilled_at.value_or(0));
    std::optional<std::int64_t> stored;
    if (s.step()) stored = s.integer(0);
    s.run();  // to the end: RETURNING rows are written as they are stepped
    out.push_back(stored);
    s.reset();
  }
  return out;
}

void SqliteStore::add_usage_counts(const std::vector<UsageCounts>& counts) {
  Statement s(*this,
              "INSERT INTO key_usage (key_id, hour, ok, rate_limited, denied, upstream_error) "
              "VALUES (?,?,?,?,?,?) ON CONFLICT (key_id, hour) DO UPDATE SET "
              "ok = ok + excluded.ok, rate_limited = rate_limited + excluded.rate_limited, "
              "denied = denied + excluded.denied, "
              "upstream_error = upstream_error + excluded.upstream_error");
  for (const auto& c : counts) {
    s.bind(1, c.key_id).bind(2, c.hour);
    for (int i = 0; i < 4; ++i) s.bind(3 + i, c.counts[static_cast<size_t>(i)]);
    s.run();
    s.reset();
  }
}

std::vector<UsageCounts> SqliteStore::usage_counts(const std::string& key_id, UnixMillis from,
                                                   UnixMillis to) {
  Statement s(*this,
              "SELECT hour, ok, rate_limited, denied, upstream_error FROM key_usage "
              "WHERE key_id = ? AND hour >= ? AND hour < ? ORDER BY hour");
  s.bind(1, key_id).bind(2, from).bind(3, to);
  std::vector<UsageCounts> out;
  while (s.step()) {
    UsageCounts c{key_id, s.integer(0), {}};
    for (int i = 0; i < 4; ++i) c.counts[static_cast<size_t>(i)] = s.integer(1 + i);
    out.push_back(std::move(c));
  }
  return out;
}

std::int64_t SqliteStore::prune_usage(UnixMillis before) {
  Statement(*this, "DELETE FROM key_usage WHERE hour < ?").bind(1, before).run();
  return sqlite3_changes(db_);
}

namespace {

// Polls PRAGMA data_version (it moves when another connection commits) and
// reads the change sequence only then.
class SqliteFeed final : public ChangeFeed {
 public:
  explicit SqliteFeed(SqliteStore& store) : store_(store) {}
  int open() override { return -1; }
  void close() override { data_version_ = -1; }
  std::int64_t consume() override { return latest_; }
  std::int64_t latest() override {
    std::int64_t dv = store_.data_version();
    if (dv != data_version_) {
      latest_ = store_.change_seq();
      data_version_ = dv;
    }
    return latest_;
  }
  std::chrono::milliseconds poll_interval() const override {
    return std::chrono::milliseconds(200);
  }

 private:
  SqliteStore& store_;
  std::int64_t data_version_ = -1;
  std::int64_t latest_ = 0;
};

}  // namespace

std::unique_ptr<ChangeFeed> SqliteStore::change_feed() {
  return std::make_unique<SqliteFeed>(*this);
}

}  // namespace keygate
