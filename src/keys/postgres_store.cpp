#include "keygate/keys/postgres_store.hpp"

#include <libpq-fe.h>

#include <algorithm>
#include <charconv>
#include <cstring>
#include <deque>
#include <exception>
#include <map>
#include <nlohmann/json.hpp>
#include <string_view>

#include "keygate/keys/migrations.hpp"

namespace keygate {

namespace {

// A failed connect is retried at most this often by statements (the store
// worker's change feed has its own, growing back-off).
constexpr auto kReconnectAfter = std::chrono::milliseconds(500);
// One lock id for every keygate process: replicas starting together apply each
// migration once.
constexpr const char* kMigrationLock = "SELECT pg_advisory_xact_lock(7405390466152781614)";

// libpq's messages end in a newline and may span lines ("\n\tIs the server
// running…"); errors here are one line (the CLI prints `error: …`).
std::string trimmed(const char* message) {
  std::string s;
  for (const char* p = message ? message : ""; *p; ++p) {
    if (*p == '\n' || *p == '\t') {
      if (!s.empty() && s.back() != ' ') s += ' ';
    } else {
      s += *p;
    }
  }
  while (!s.empty() && s.back() == ' ') s.pop_back();
  return s;
}

struct ResultClear {
  void operator()(PGresult* r) const { PQclear(r); }
};
using Result = std::unique_ptr<PGresult, ResultClear>;

bool ok_status(ExecStatusType s) {
  return s == PGRES_COMMAND_OK || s == PGRES_TUPLES_OK;
}

}  // namespace

namespace pg {

void ConnCloser::operator()(pg_conn* c) const {
  PQfinish(c);
}

Conn connect(const std::string& conninfo) {
  // Defaults first: anything the connection string says overrides them
  // (expand_dbname). The timeouts bound every blocking call on the store
  // worker when the server vanishes without closing the connection.
  const char* const keys[] = {"connect_timeout",     "keepalives",       "keepalives_idle",
                              "keepalives_interval", "keepalives_count", "tcp_user_timeout",
                              "application_name",    "dbname",           nullptr};
  const char* const values[] = {"3",    "1", "10", "5", "3", "10000", "keygate", conninfo.c_str(),
                                nullptr};
  Conn c(PQconnectdbParams(keys, values, 1));
  if (!c) throw StoreError("store: out of memory connecting to PostgreSQL");
  if (PQstatus(c.get()) != CONNECTION_OK)
    throw StoreError("cannot connect to " + describe(conninfo) + ": " +
                     trimmed(PQerrorMessage(c.get())));
  // Server notices ("... already exists, skipping") would go to stderr.
  PQsetNoticeProcessor(
      c.get(), [](void*, const char*) {}, nullptr);
  return c;
}

std::string describe(const std::string& conninfo) {
  char* err = nullptr;
  PQconninfoOption* opts = PQconninfoParse(conninfo.c_str(), &err);
  if (!opts) {
    PQfreemem(err);
    return "postgresql (invalid connection string)";
  }
  std::map<std::string, std::string> v;
  for (auto* o = opts; o->keyword; ++o)
    if (o->val) v[o->keyword] = o->val;
  PQconninfoFree(opts);
  std::string out = "postgresql://";
  if (v.contains("user")) out += v["user"] + "@";
  out += v.contains("host") ? v["host"] : "localhost";
  if (v.contains("port")) out += ":" + v["port"];
  out += "/" + (v.contains("dbname") ? v["dbname"] : std::string());
  return out;
}

}  // namespace pg

// One statement: parameters in text format (hashes in binary), results in
// text. A statement outside a transaction that finds the connection gone
// (the server restarted) is sent once more on a fresh connection.
class PgQuery {
 public:
  PgQuery(PostgresStore& store, std::string sql) : store_(store), sql_(std::move(sql)) {
    store_.count_statement(sql_);
  }

  PgQuery& bind(const std::string& v) { return add(v, 0); }
  PgQuery& bind(const char* v) { return add(v, 0); }
  PgQuery& bind(std::int64_t v) { return add(std::to_string(v), 0); }
  PgQuery& bind(bool v) { return add(v ? "true" : "false", 0); }
  PgQuery& bind(const KeyHash& h) {
    return add(std::string(reinterpret_cast<const char*>(h.data()), h.size()), 1);
  }
  template <class T>
  PgQuery& bind(const std::optional<T>& v) {
    if (v) return bind(*v);
    values_.push_back(nullptr);
    lengths_.push_back(0);
    formats_.push_back(0);
    return *this;
  }

  PgQuery& run() {
    for (int attempt = 0;; ++attempt) {
      PGconn* c = store_.connection();
      result_.reset(PQexecParams(c, sql_.c_str(), static_cast<int>(values_.size()), nullptr,
                                 values_.data(), lengths_.data(), formats_.data(), 0));
      if (result_ && ok_status(PQresultStatus(result_.get()))) return *this;
      std::string msg = trimmed(result_ ? PQresultErrorMessage(result_.get()) : PQerrorMessage(c));
      if (retry_on_fresh_connection(c, attempt)) continue;
      throw StoreError("store: " + msg);
    }
  }

  // Rows one at a time (single-row mode): a full load of a million keys never
  // sits in memory as one result. `f` reads row 0.
  void stream(const std::function<void(const PgQuery&)>& f) {
    for (int attempt = 0;; ++attempt) {
      PGconn* c = store_.connection();
      if (!PQsendQueryParams(c, sql_.c_str(), static_cast<int>(values_.size()), nullptr,
                             values_.data(), lengths_.data(), formats_.data(), 0)) {
        std::string msg = trimmed(PQerrorMessage(c));
        if (retry_on_fresh_connection(c, attempt)) continue;
        throw StoreError("store: " + msg);
      }
      PQsetSingleRowMode(c);
      std::string error;
      std::exception_ptr failed;
      bool delivered = false;
      // Every result is read, even after an error, so the connection stays usable.
      while (PGresult* r = PQgetResult(c)) {
        result_.reset(r);
        ExecStatusType s = PQresultStatus(r);
        if (s == PGRES_SINGLE_TUPLE) {
          if (!failed && error.empty()) {
            delivered = true;
            try {
              f(*this);
            } catch (...) {
              failed = std::current_exception();
            }
          }
        } else if (s != PGRES_TUPLES_OK && error.empty()) {
          error = trimmed(PQresultErrorMessage(r));
        }
      }
      result_.reset();
      if (failed) std::rethrow_exception(failed);
      if (error.empty()) return;
      if (!delivered && retry_on_fresh_connection(c, attempt)) continue;
      if (PQstatus(c) == CONNECTION_BAD) store_.conn_.reset();
      throw StoreError("store: " + error);
    }
  }

  int rows() const { return result_ ? PQntuples(result_.get()) : 0; }
  PGresult* result() const { return result_.get(); }
  bool null(int row, int col) const { return PQgetisnull(result_.get(), row, col) != 0; }
  std::string text(int row, int col) const {
    return std::string(PQgetvalue(result_.get(), row, col),
                       static_cast<size_t>(PQgetlength(result_.get(), row, col)));
  }
  std::int64_t integer(int row, int col) const {
    std::int64_t v = 0;
    const char* p = PQgetvalue(result_.get(), row, col);
    std::from_chars(p, p + PQgetlength(result_.get(), row, col), v);
    return v;
  }
  std::optional<std::int64_t> opt_integer(int row, int col) const {
    if (null(row, col)) return std::nullopt;
    return integer(row, col);
  }
  bool boolean(int row, int col) const { return PQgetvalue(result_.get(), row, col)[0] == 't'; }
  KeyHash hash(int row, int col) const {
    KeyHash h{};
    size_t n = 0;
    unsigned char* raw = PQunescapeBytea(
        reinterpret_cast<const unsigned char*>(PQgetvalue(result_.get(), row, col)), &n);
    if (raw && n == h.size()) std::memcpy(h.data(), raw, h.size());
    PQfreemem(raw);
    return h;
  }

 private:
  PgQuery& add(std::string v, int format) {
    storage_.push_back(std::move(v));
    values_.push_back(storage_.back().data());
    lengths_.push_back(static_cast<int>(storage_.back().size()));
    formats_.push_back(format);
    return *this;
  }
  // The connection is gone: forget it, and say whether to try once more
  // (only outside a transaction, whose earlier statements died with it).
  bool retry_on_fresh_connection(PGconn* c, int attempt) {
    if (PQstatus(c) != CONNECTION_BAD) return false;
    store_.conn_.reset();
    return attempt == 0 && !store_.in_transaction_;
  }

  PostgresStore& store_;
  std::string sql_;
  std::deque<std::string> storage_;  // stable addresses for values_
  std::vector<const char*> values_;
  std::vector<int> lengths_, formats_;
  Result result_;
};

namespace {

constexpr const char* kKeyColumns =
    "id, prefix, last4, hash, name, owner, scopes, plan, rate_requests, rate_period_ms, "
    "rate_burst, allowed_ips, metadata, enabled, created_at, expires_at, revoked_at, "
    "last_used_at, last_used_ip, rotated_from, created_by, change_seq, foreign_format, "
    "credits_remaining, credits_version, refill_amount, refill_interval_ms, refilled_at, "
    "credits_key, rotated_at";

// Columns 23.. of kKeyColumns (credits and rotation).
void read_lifecycle(const PgQuery& q, int row, KeyRecord& r) {
  if (auto remaining = q.opt_integer(row, 23)) {
    Credits c;
    c.remaining = *remaining;
    if (auto amount = q.opt_integer(row, 25))
      c.refill = CreditRefill{*amount, Millis(q.opt_integer(row, 26).value_or(0))};
    c.refilled_at = q.opt_integer(row, 27).value_or(0);
    r.credits = c;
  }
  r.credits_version = q.integer(row, 24);
  r.credits_key = q.text(row, 28);
  r.rotated_at = q.opt_integer(row, 29);
}

// The same columns as the next seven parameters.
void bind_lifecycle(PgQuery& q, const KeyRecord& r) {
  std::optional<std::int64_t> remaining, amount, interval, refilled_at;
  if (r.credits) {
    remaining = r.credits->remaining;
    refilled_at = r.credits->refilled_at;
    if (r.credits->refill) {
      amount = r.credits->refill->amount;
      interval = r.credits->refill->interval.count();
    }
  }
  q.bind(remaining).bind(r.credits_version).bind(amount).bind(interval).bind(refilled_at);
  q.bind(r.credits_key.empty() ? std::nullopt : std::optional(r.credits_key)).bind(r.rotated_at);
}

KeyRecord read_key(const PgQuery& q, int row) {
  KeyRecord r;
  r.id = q.text(row, 0);
  r.prefix = q.text(row, 1);
  r.last4 = q.text(row, 2);
  r.hash = q.hash(row, 3);
  r.name = q.text(row, 4);
  r.owner = q.text(row, 5);
  r.scopes = split_csv(q.text(row, 6));
  r.plan = q.text(row, 7);
  if (auto req = q.opt_integer(row, 8)) {
    r.rate = Rate{static_cast<std::uint64_t>(*req), Millis(q.integer(row, 9)),
                  static_cast<std::uint64_t>(q.integer(row, 10))};
  }
  r.allowed_ips = split_csv(q.text(row, 11));
  auto meta = nlohmann::json::parse(q.text(row, 12), nullptr, false);
  if (meta.is_object())
    for (const auto& [k, v] : meta.items())
      if (v.is_string()) r.metadata[k] = v.get<std::string>();
  r.enabled = q.boolean(row, 13);
  r.created_at = q.integer(row, 14);
  r.expires_at = q.opt_integer(row, 15);
  r.revoked_at = q.opt_integer(row, 16);
  r.last_used_at = q.opt_integer(row, 17);
  r.last_used_ip = q.text(row, 18);
  r.rotated_from = q.text(row, 19);
  r.created_by = q.text(row, 20);
  r.change_seq = q.integer(row, 21);
  r.foreign_format = q.boolean(row, 22);
  read_lifecycle(q, row, r);
  return r;
}

// In kKeyColumns order; without last_used_* for updates, which therefore
// never roll back a newer last-used time another replica wrote.
void bind_key(PgQuery& q, const KeyRecord& r, bool with_usage) {
  std::optional<std::int64_t> req, period, burst;
  if (r.rate) {
    req = static_cast<std::int64_t>(r.rate->requests);
    period = r.rate->period.count();
    burst = static_cast<std::int64_t>(r.rate->burst);
  }
  q.bind(r.id).bind(r.prefix).bind(r.last4).bind(r.hash).bind(r.name).bind(r.owner);
  q.bind(join_csv(r.scopes)).bind(r.plan).bind(req).bind(period).bind(burst);
  q.bind(join_csv(r.allowed_ips)).bind(nlohmann::json(r.metadata).dump()).bind(r.enabled);
  q.bind(r.created_at).bind(r.expires_at).bind(r.revoked_at);
  if (with_usage) q.bind(r.last_used_at).bind(r.last_used_ip);
  q.bind(r.rotated_from).bind(r.created_by).bind(r.change_seq);
}

std::string select_keys(const std::string& rest) {
  return std::string("SELECT ") + kKeyColumns + " FROM api_keys " + rest;
}

}  // namespace

PostgresStore::PostgresStore(std::string conninfo) : conninfo_(std::move(conninfo)) {}

PostgresStore::~PostgresStore() = default;

PGconn* PostgresStore::connection() {
  if (conn_ && PQstatus(conn_.get()) == CONNECTION_OK) return conn_.get();
  conn_.reset();
  if (in_transaction_) throw StoreError("store: the connection to PostgreSQL was lost");
  auto now = std::chrono::steady_clock::now();
  if (now < next_attempt_) throw StoreError(last_error_);
  try {
    conn_ = pg::connect(conninfo_);
  } catch (const StoreError& e) {
    next_attempt_ = now + kReconnectAfter;
    last_error_ = e.what();
    throw;
  }
  return conn_.get();
}

void PostgresStore::transaction(const std::function<void()>& f) {
  PgQuery(*this, "BEGIN").run();
  in_transaction_ = true;
  try {
    f();
    PgQuery(*this, "COMMIT").run();
  } catch (...) {
    in_transaction_ = false;
    if (conn_ && PQstatus(conn_.get()) == CONNECTION_OK) {
      Result rollback(PQexec(conn_.get(), "ROLLBACK"));  // best effort: the error is rethrown
    }
    throw;
  }
  in_transaction_ = false;
}

std::vector<std::string> PostgresStore::migrate() {
  std::vector<std::string> applied;
  for (const auto& m : embedded_migrations(Dialect::postgres)) {
    // Each migration in its own transaction, under a lock every replica takes.
    transaction([&] {
      PgQuery(*this, kMigrationLock).run();
      PgQuery(*this,
              "CREATE TABLE IF NOT EXISTS schema_migrations (name TEXT PRIMARY KEY, "
              "applied_at BIGINT NOT NULL)")
          .run();
      if (PgQuery(*this, "SELECT 1 FROM schema_migrations WHERE name = $1")
              .bind(m.name)
              .run()
              .rows() > 0)
        return;
      Result r(PQexec(connection(), m.sql.c_str()));  // several statements: simple protocol
      if (!r || !ok_status(PQresultStatus(r.get())))
        throw StoreError("migration " + m.name + " failed: " +
                         trimmed(r ? PQresultErrorMessage(r.get()) : PQerrorMessage(conn_.get())));
      PgQuery(*this, "INSERT INTO schema_migrations (name, applied_at) VALUES ($1, $2)")
          .bind(m.name)
          .bind(now_millis())
          .run();
      applied.push_back(m.name);
    });
  }
  return applied;
}

bool PostgresStore::has_pending_migrations() {
  PgQuery t(*this, "SELECT to_regclass('schema_migrations') IS NOT NULL");
  if (!t.run().boolean(0, 0)) return true;
  for (const auto& m : embedded_migrations(Dialect::postgres))
    if (PgQuery(*this, "SELECT 1 FROM schema_migrations WHERE name = $1")
            .bind(m.name)
            .run()
            .rows() == 0)
      return true;
  return false;
}

// The row lock taken here is held until commit: concurrent writers queue on
// it and commit in sequence order. NOTIFY is delivered at commit, never for a
// rolled-back write.
std::int64_t PostgresStore::bump_seq() {
  PgQuery q(*this,
            "WITH s AS (UPDATE store_state SET change_seq = change_seq + 1 WHERE id = 1 "
            "RETURNING change_seq) "
            "SELECT change_seq, pg_notify('" +
                std::string(pg::kChangeChannel) + "', change_seq::text) FROM s");
  q.run();
  if (q.rows() != 1) throw StoreError("store: store_state is missing (run keygate migrate)");
  return q.integer(0, 0);
}

std::int64_t PostgresStore::change_seq() {
  PgQuery q(*this, "SELECT change_seq FROM store_state WHERE id = 1");
  return q.run().rows() ? q.integer(0, 0) : 0;
}

void PostgresStore::insert_key(KeyRecord& r) {
  r.change_seq = bump_seq();
  PgQuery q(
      *this,
      std::string("INSERT INTO api_keys (") + kKeyColumns +
          ", created_seq) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14,$15,$16,$17,$18,"
          "$19,$20,$21,$22,$23,$24,$25,$26,$27,$28,$29,$30,$22)");
  bind_key(q, r, true);
  q.bind(r.foreign_format);  // set once: a key's format never changes
  bind_lifecycle(q, r);
  q.run();
}

void PostgresStore::update_key(KeyRecord& r) {
  const std::int64_t read_at = r.change_seq;
  r.change_seq = bump_seq();
  PgQuery q(*this,
            "UPDATE api_keys SET prefix=$2, last4=$3, hash=$4, name=$5, owner=$6, scopes=$7, "
            "plan=$8, rate_requests=$9, rate_period_ms=$10, rate_burst=$11, allowed_ips=$12, "
            "metadata=$13, enabled=$14, created_at=$15, expires_at=$16, revoked_at=$17, "
            "rotated_from=$18, created_by=$19, change_seq=$20, "
            // The balance and its refill grid are written only with a new
            // credits_version: otherwise the stored ones are newer (spending).
            "credits_remaining = CASE WHEN credits_version = $23::bigint THEN credits_remaining "
            "ELSE $22::bigint END, refilled_at = CASE WHEN credits_version = $23::bigint THEN "
            "refilled_at ELSE $26::bigint END, credits_version=$23::bigint, "
            "refill_amount=$24::bigint, refill_interval_ms=$25::bigint, credits_key=$27::text, "
            "rotated_at=$28::bigint WHERE id=$1 AND change_seq=$21");
  bind_key(q, r, false);
  q.bind(read_at);
  bind_lifecycle(q, r);
  q.run();
  if (std::string_view(PQcmdTuples(q.result())) != "1")
    throw StoreConflict("store: key " + r.id + " changed concurrently");
}

void PostgresStore::add_audit(const AuditEvent& e) {
  PgQuery(*this,
          "INSERT INTO audit_events (at, action, key_id, actor, details) VALUES ($1,$2,$3,$4,$5)")
      .bind(e.at)
      .bind(e.action)
      .bind(e.key_id)
      .bind(e.actor)
      .bind(e.details_json)
      .run();
}

std::optional<KeyRecord> PostgresStore::get_key(const std::string& id) {
  PgQuery q(*this, select_keys("WHERE id = $1"));
  if (q.bind(id).run().rows() == 0) return std::nullopt;
  return read_key(q, 0);
}

std::vector<KeyRecord> PostgresStore::keys_with_prefix(const std::string& display_prefix) {
  PgQuery q(*this, select_keys("WHERE prefix = $1"));
  q.bind(display_prefix).run();
  std::vector<KeyRecord> out;
  for (int i = 0; i < q.rows(); ++i) out.push_back(read_key(q, i));
  return out;
}

std::vector<KeyRecord> PostgresStore::list_keys(const KeyListQuery& q, UnixMillis now,
                                                std::int64_t* total) {
  std::string where = "WHERE ($1::text IS NULL OR owner = $1::text)";
  if (q.status == "active")
    where +=
        " AND (revoked_at IS NULL OR revoked_at > $2::bigint)"
        " AND (expires_at IS NULL OR expires_at > $2::bigint)";
  else if (q.status == "revoked")
    where += " AND revoked_at IS NOT NULL AND revoked_at <= $2::bigint";
  else if (q.status == "expired")
    where +=
        " AND (revoked_at IS NULL OR revoked_at > $2::bigint) AND expires_at IS NOT NULL"
        " AND expires_at <= $2::bigint";
  else
    where += " AND $2::bigint IS NOT NULL";
  if (total) {
    PgQuery c(*this, "SELECT COUNT(*) FROM api_keys " + where);
    c.bind(q.owner).bind(now).run();
    *total = c.integer(0, 0);
  }
  std::string sql = select_keys(where + " ORDER BY created_at, created_seq");
  if (q.page_size > 0) sql += " LIMIT $3::bigint OFFSET $4::bigint";
  PgQuery s(*this, sql);
  s.bind(q.owner).bind(now);
  if (q.page_size > 0) s.bind(q.page_size).bind((q.page - 1) * q.page_size);
  s.run();
  std::vector<KeyRecord> out;
  for (int i = 0; i < s.rows(); ++i) out.push_back(read_key(s, i));
  return out;
}

std::vector<AuditEvent> PostgresStore::list_audit(const AuditQuery& q, std::int64_t* total) {
  const std::string where =
      " WHERE ($1::text IS NULL OR key_id = $1::text) AND ($2::text IS NULL OR action = $2::text)"
      " AND ($3::bigint IS NULL OR at >= $3::bigint)"
      " AND ($4::text IS NULL OR key_id IN (SELECT id FROM api_keys WHERE owner = $4::text))";
  if (total) {
    PgQuery c(*this, "SELECT COUNT(*) FROM audit_events" + where);
    *total = c.bind(q.key_id).bind(q.action).bind(q.since).bind(q.owner).run().integer(0, 0);
  }
  std::string sql = "SELECT id, at, action, key_id, actor, details FROM audit_events" + where +
                    " ORDER BY id DESC";
  if (q.page_size > 0) sql += " LIMIT $5::bigint OFFSET $6::bigint";
  PgQuery s(*this, sql);
  s.bind(q.key_id).bind(q.action).bind(q.since).bind(q.owner);
  if (q.page_size > 0) s.bind(q.page_size).bind((q.page - 1) * q.page_size);
  s.run();
  std::vector<AuditEvent> out;
  for (int i = 0; i < s.rows(); ++i)
    out.push_back(
        {s.integer(i, 0), s.integer(i, 1), s.text(i, 2), s.text(i, 3), s.text(i, 4), s.text(i, 5)});
  return out;
}

void PostgresStore::for_each_changed(std::int64_t seq,
                                     const std::function<void(const KeyRecord&)>& f) {
  // Every key (seq 0, the start-up load) unordered: each key is there once,
  // and 10M rows need no sort.
  PgQuery q(*this, select_keys(seq > 0 ? "WHERE change_seq > $1::bigint ORDER BY change_seq" : ""));
  if (seq > 0) q.bind(seq);
  q.stream([&](const PgQuery& row) { f(read_key(row, 0)); });
}

void PostgresStore::record_usage(const std::vector<UsageEvent>& events) {
  if (events.empty()) return;
  // One statement per batch; the newest event per key wins.
  std::map<std::string, const UsageEvent*> newest;
  for (const auto& e : events) {
    auto& slot = newest[e.key_id];
    if (!slot || slot->at < e.at) slot = &e;
  }
  nlohmann::json rows = nlohmann::json::array();
  for (const auto& [id, e] : newest) rows.push_back({{"id", id}, {"at", e->at}, {"ip", e->ip}});
  PgQuery(*this,
          "UPDATE api_keys k SET last_used_at = u.at, last_used_ip = u.ip "
          "FROM json_to_recordset($1::json) AS u(id text, at bigint, ip text) "
          "WHERE k.id = u.id AND (k.last_used_at IS NULL OR k.last_used_at < u.at)")
      .bind(rows.dump())
      .run();
}

std::vector<std::optional<std::int64_t>> PostgresStore::apply_credit_deltas(
    const std::vector<CreditDelta>& deltas) {
  std::vector<std::optional<std::int64_t>> out(deltas.size());
  if (deltas.empty()) return out;
  // One statement per batch (a key appears once in it). A refill is applied
  // once: another replica may have written the same one.
  nlohmann::json rows = nlohmann::json::array();
  for (const auto& d : deltas)
    rows.push_back({{"id", d.key_id},
                    {"version", d.version},
                    {"before", d.spent_before_refill},
                    {"spent", d.spent},
                    {"refilled", d.refilled_at.has_value()},
                    {"at", d.refilled_at.value_or(0)},
                    {"amount", d.refill_amount}});
  PgQuery q(*this,
            "UPDATE api_keys k SET credits_remaining = GREATEST(0, CASE WHEN u.refilled AND "
            "COALESCE(k.refilled_at, 0) < u.at THEN GREATEST(k.credits_remaining - u.before, "
            "u.amount) ELSE k.credits_remaining - u.before END - u.spent), "
            "refilled_at = CASE WHEN u.refilled AND COALESCE(k.refilled_at, 0) < u.at THEN u.at "
            "ELSE k.refilled_at END "
            "FROM json_to_recordset($1::json) AS u(id text, version bigint, before bigint, "
            "spent bigint, refilled boolean, at bigint, amount bigint) "
            "WHERE k.id = u.id AND k.credits_version = u.version AND "
            "k.credits_remaining IS NOT NULL RETURNING k.id, k.credits_remaining");
  q.bind(rows.dump()).run();
  std::map<std::string, std::int64_t> stored;
  for (int i = 0; i < q.rows(); ++i) stored[q.text(i, 0)] = q.integer(i, 1);
  for (size_t i = 0; i < deltas.size(); ++i)
    if (auto it = stored.find(deltas[i].key_id); it != stored.end()) out[i] = it->second;
  return out;
}

void PostgresStore::add_usage_counts(const std::vector<UsageCounts>& counts) {
  if (counts.empty()) return;
  nlohmann::json rows = nlohmann::json::array();
  for (const auto& c : counts)
    rows.push_back({{"key_id", c.key_id},
                    {"hour", c.hour},
                    {"ok", c.counts[0]},
                    {"rate_limited", c.counts[1]},
                    {"denied", c.counts[2]},
                    {"upstream_error", c.counts[3]}});
  PgQuery(*this,
          "INSERT INTO key_usage (key_id, hour, ok, rate_limited, denied, upstream_error) "
          "SELECT key_id, hour, ok, rate_limited, denied, upstream_error FROM "
          "json_to_recordset($1::json) AS u(key_id text, hour bigint, ok bigint, "
          "rate_limited bigint, denied bigint, upstream_error bigint) "
          "ON CONFLICT (key_id, hour) DO UPDATE SET ok = key_usage.ok + excluded.ok, "
          "rate_limited = key_usage.rate_limited + excluded.rate_limited, "
          "denied = key_usage.denied + excluded.denied, "
          "upstream_error = key_usage.upstream_error + excluded.upstream_error")
      .bind(rows.dump())
      .run();
}

std::vector<UsageCounts> PostgresStore::usage_counts(const std::string& key_id, UnixMillis from,
                                                     UnixMillis to) {
  PgQuery q(*this,
            "SELECT hour, ok, rate_limited, denied, upstream_error FROM key_usage "
            "WHERE key_id = $1 AND hour >= $2::bigint AND hour < $3::bigint ORDER BY hour");
  q.bind(key_id).bind(from).bind(to).run();
  std::vector<UsageCounts> out;
  for (int i = 0; i < q.rows(); ++i) {
    UsageCounts c{key_id, q.integer(i, 0), {}};
    for (int j = 0; j < 4; ++j) c.counts[static_cast<size_t>(j)] = q.integer(i, 1 + j);
    out.push_back(std::move(c));
  }
  return out;
}

std::int64_t PostgresStore::prune_usage(UnixMillis before) {
  PgQuery q(*this, "DELETE FROM key_usage WHERE hour < $1::bigint");
  q.bind(before).run();
  std::int64_t n = 0;
  const char* tuples = PQcmdTuples(q.result());
  std::from_chars(tuples, tuples + std::strlen(tuples), n);
  return n;
}

namespace {

// LISTEN on a connection of its own; the store worker watches its socket.
// The safety-net poll asks the store's own connection for the sequence.
class PostgresFeed final : public ChangeFeed {
 public:
  explicit PostgresFeed(PostgresStore& store) : store_(store) {}

  int open() override {
    if (listen_ && PQstatus(listen_.get()) == CONNECTION_OK) return PQsocket(listen_.get());
    listen_.reset();
    pg::Conn c = pg::connect(store_.conninfo());
    Result r(PQexec(c.get(), (std::string("LISTEN ") + pg::kChangeChannel).c_str()));
    if (!r || PQresultStatus(r.get()) != PGRES_COMMAND_OK)
      throw StoreError("store: LISTEN failed: " + trimmed(PQerrorMessage(c.get())));
    listen_ = std::move(c);
    return PQsocket(listen_.get());
  }

  void close() override { listen_.reset(); }

  std::int64_t consume() override {
    if (!listen_) throw StoreError("store: not listening");
    if (!PQconsumeInput(listen_.get()) || PQstatus(listen_.get()) != CONNECTION_OK)
      throw StoreError("store: the LISTEN connection broke: " +
                       trimmed(PQerrorMessage(listen_.get())));
    while (PGnotify* n = PQnotifies(listen_.get())) {
      std::int64_t seq = 0;
      const char* p = n->extra ? n->extra : "";
      std::from_chars(p, p + std::strlen(p), seq);
      announced_ = std::max(announced_, seq);
      PQfreemem(n);
    }
    return announced_;
  }

  std::int64_t latest() override { return store_.change_seq(); }

  std::chrono::milliseconds poll_interval() const override { return std::chrono::seconds(2); }

 private:
  PostgresStore& store_;
  pg::Conn listen_;
  std::int64_t announced_ = 0;
};

}  // namespace

std::unique_ptr<ChangeFeed> PostgresStore::change_feed() {
  return std::make_unique<PostgresFeed>(*this);
}

}  // namespace keygate
