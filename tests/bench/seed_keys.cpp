// bench_seed DB N: writes N keys into a keygate store (for the start-up time and
// RSS measurement with 1M and 10M keys). Keys are real (format, hash) but their
// secrets are discarded; each has its own name and one of 1000 owners.
//
// 10M keys must seed in minutes, not hours: the store's migrations create the
// schema, then one transaction runs one prepared INSERT with SQLite's
// durability off (a bench file: a crash only means seeding again) and a large
// page cache, so the primary key's index (random ids) stays in memory.
// api_keys' declared indexes are dropped first and rebuilt after the rows are
// in (one sort each instead of N random B-tree inserts), from their own SQL as
// the migrations wrote it.
#include <sqlite3.h>

#include <cstdio>
#include <cstdlib>
#include <stdexcept>
#include <string>
#include <vector>

#include "keygate/keys/key_format.hpp"
#include "keygate/keys/sqlite_store.hpp"

using namespace keygate;

namespace {

void exec(sqlite3* db, const std::string& sql) {
  char* err = nullptr;
  if (sqlite3_exec(db, sql.c_str(), nullptr, nullptr, &err) != SQLITE_OK) {
    std::string msg = err ? err : "?";
    sqlite3_free(err);
    throw std::runtime_error(sql + ": " + msg);
  }
}

void check(sqlite3* db, int rc, const char* what) {
  if (rc != SQLITE_OK && rc != SQLITE_DONE && rc != SQLITE_ROW)
    throw std::runtime_error(std::string(what) + ": " + sqlite3_errmsg(db));
}

// The CREATE INDEX statements of api_keys' declared indexes (not the primary key's).
std::vector<std::string> secondary_indexes(sqlite3* db) {
  std::vector<std::string> out;
  sqlite3_stmt* s = nullptr;
  check(db,
        sqlite3_prepare_v2(db,
                           "SELECT sql FROM sqlite_master WHERE type = 'index' AND "
                           "tbl_name = 'api_keys' AND sql IS NOT NULL",
                           -1, &s, nullptr),
        "prepare");
  while (sqlite3_step(s) == SQLITE_ROW)
    out.emplace_back(reinterpret_cast<const char*>(sqlite3_column_text(s, 0)));
  sqlite3_finalize(s);
  return out;
}

std::int64_t change_seq(sqlite3* db) {
  sqlite3_stmt* s = nullptr;
  check(db, sqlite3_prepare_v2(db, "SELECT change_seq FROM store_state", -1, &s, nullptr),
        "prepare");
  std::int64_t seq = sqlite3_step(s) == SQLITE_ROW ? sqlite3_column_int64(s, 0) : 0;
  sqlite3_finalize(s);
  return seq;
}

std::string index_name(const std::string& create_sql) {
  // "CREATE [UNIQUE] INDEX name ON ..."
  auto start = create_sql.find("INDEX ") + 6;
  return create_sql.substr(start, create_sql.find(' ', start) - start);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 3) {
    std::fprintf(stderr, "usage: bench_seed DB COUNT\n");
    return 2;
  }
  const long n = std::atol(argv[2]);
  SqliteStore(argv[1]).migrate();

  sqlite3* db = nullptr;
  if (sqlite3_open(argv[1], &db) != SQLITE_OK) {
    std::fprintf(stderr, "cannot open %s\n", argv[1]);
    return 1;
  }
  try {
    exec(db, "PRAGMA synchronous = OFF");
    exec(db, "PRAGMA journal_mode = DELETE");  // no WAL copy of every page (serve sets WAL)
    exec(db, "PRAGMA cache_size = -2000000");  // KiB: 2 GB, enough for 10M keys' indexes
    const auto indexes = secondary_indexes(db);
    exec(db, "BEGIN IMMEDIATE");
    const std::int64_t seq = change_seq(db);  // keys already there keep theirs
    for (const auto& sql : indexes) exec(db, "DROP INDEX " + index_name(sql));

    sqlite3_stmt* ins = nullptr;
    check(db,
          sqlite3_prepare_v2(db,
                             "INSERT INTO api_keys (id, prefix, last4, hash, name, owner, "
                             "created_at, created_by, change_seq) VALUES (?,?,?,?,?,?,?,'bench',?)",
                             -1, &ins, nullptr),
          "prepare insert");
    KeyFormat format{KeysConfig{}};
    KeyHasher hasher;
    const UnixMillis now = now_millis();
    std::string name, owner;
    for (long i = 0; i < n; ++i) {
      const std::string key = format.generate();
      const std::string id = generate_key_id();
      const std::string prefix = format.display_prefix(key);
      const KeyHash hash = hasher.hash(key);
      name = "bench-" + std::to_string(i);
      owner = "owner-" + std::to_string(i % 1000);
      sqlite3_bind_text(ins, 1, id.data(), static_cast<int>(id.size()), SQLITE_STATIC);
      sqlite3_bind_text(ins, 2, prefix.data(), static_cast<int>(prefix.size()), SQLITE_STATIC);
      sqlite3_bind_text(ins, 3, key.data() + key.size() - 4, 4, SQLITE_STATIC);
      sqlite3_bind_blob(ins, 4, hash.data(), static_cast<int>(hash.size()), SQLITE_STATIC);
      sqlite3_bind_text(ins, 5, name.data(), static_cast<int>(name.size()), SQLITE_STATIC);
      sqlite3_bind_text(ins, 6, owner.data(), static_cast<int>(owner.size()), SQLITE_STATIC);
      sqlite3_bind_int64(ins, 7, now);
      sqlite3_bind_int64(ins, 8, seq + i + 1);  // each insert is a change, as in insert_key
      check(db, sqlite3_step(ins), "insert");
      sqlite3_reset(ins);
    }
    sqlite3_finalize(ins);
    exec(db, "UPDATE store_state SET change_seq = " + std::to_string(seq + n) + " WHERE id = 1");
    for (const auto& sql : indexes) exec(db, sql);
    exec(db, "COMMIT");
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_seed: %s\n", e.what());
    sqlite3_close(db);
    return 1;
  }
  sqlite3_close(db);
  std::printf("seeded %ld keys into %s\n", n, argv[1]);
  return 0;
}
