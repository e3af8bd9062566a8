// The index's start-up load from SQLite (SqliteStore::for_each_changed): the
// narrow row it reads carries every field the index and meters use, the full
// load (sequence 0) reads rows on a second thread in batches and hands each
// row over once, and a failure on either side ends it without a hang.
#include <gtest/gtest.h>

#include <filesystem>
#include <set>
#include <span>
#include <stdexcept>

#include "keygate/keys/key_format.hpp"
#include "keygate/keys/key_index.hpp"
#include "keygate/keys/sqlite_store.hpp"

using namespace keygate;

namespace {

struct TempStore {
  std::filesystem::path dir = std::filesystem::temp_directory_path() /
                              ("kg-load-" + std::to_string(::getpid()) + "-" + random_base62(8));
  std::unique_ptr<SqliteStore> store;
  TempStore() {
    std::filesystem::create_directories(dir);
    store = std::make_unique<SqliteStore>((dir / "k.db").string());
    store->migrate();
  }
  ~TempStore() {
    store.reset();
    std::filesystem::remove_all(dir);
  }
};

KeyRecord plain_key(int n) {
  KeyRecord r;
  r.id = generate_key_id();
  r.prefix = "kg_live_abcd";
  r.last4 = "wxyz";
  r.hash = KeyHasher().hash("secret-" + std::to_string(n));
  r.name = "key " + std::to_string(n);
  r.owner = "acme";
  r.created_at = 1000;
  return r;
}

// Every field the index and the meters read, set to something other than its default.
KeyRecord full_key() {
  KeyRecord r = plain_key(-1);
  r.scopes = {"read", "write"};
  r.plan = "pro";
  r.rate = Rate{600, Millis(60'000), 100};
  r.allowed_ips = {"10.0.0.0/8", "192.168.1.1"};
  r.enabled = false;
  r.expires_at = 5000;
  r.revoked_at = 6000;
  r.foreign_format = true;
  r.credits = Credits{42, CreditRefill{100, Millis(3'600'000)}, 2000};
  r.credits_version = 3;
  r.credits_key = "key_payer";
  r.rotated_at = 4000;
  return r;
}

void expect_index_fields(const KeyRecord& got, const KeyRecord& want) {
  EXPECT_EQ(got.id, want.id);
  EXPECT_EQ(got.hash, want.hash);
  EXPECT_EQ(got.name, want.name);
  EXPECT_EQ(got.owner, want.owner);
  EXPECT_EQ(got.scopes, want.scopes);
  EXPECT_EQ(got.plan, want.plan);
  EXPECT_EQ(got.rate, want.rate);
  EXPECT_EQ(got.allowed_ips, want.allowed_ips);
  EXPECT_EQ(got.enabled, want.enabled);
  EXPECT_EQ(got.expires_at, want.expires_at);
  EXPECT_EQ(got.revoked_at, want.revoked_at);
  EXPECT_EQ(got.foreign_format, want.foreign_format);
  EXPECT_EQ(got.credits, want.credits);
  EXPECT_EQ(got.credits_version, want.credits_version);
  EXPECT_EQ(got.credits_key, want.credits_key);
  EXPECT_EQ(got.rotated_at, want.rotated_at);
  EXPECT_EQ(got.change_seq, want.change_seq);
}

}  // namespace

TEST(KeyIndexLoad, EveryFieldTheIndexUsesIsRead) {
  TempStore t;
  KeyRecord plain = plain_key(1);
  KeyRecord full = full_key();
  t.store->insert_key(plain);
  t.store->insert_key(full);
  for (std::int64_t seq : {std::int64_t{0}, plain.change_seq}) {  // full load, catch-up
    std::vector<KeyRecord> seen;
    t.store->for_each_changed(seq, [&](const KeyRecord& r) { seen.push_back(r); });
    ASSERT_EQ(seen.size(), seq == 0 ? 2u : 1u) << seq;
    for (const auto& r : seen) expect_index_fields(r, r.id == full.id ? full : plain);
  }
}

TEST(KeyIndexLoad, AFullLoadHandsOverEveryRowOnceAcrossBatches) {
  TempStore t;
  std::set<std::string> ids;
  t.store->transaction([&] {
    for (int n = 0; n < 1500; ++n) {  // three batches of 512, the last one short
      KeyRecord r = plain_key(n);
      t.store->insert_key(r);
      ids.insert(r.id);
    }
  });
  KeyIndex index;
  std::multiset<std::string> seen;
  t.store->for_each_changed(0, [&](const KeyRecord& r) {
    seen.insert(r.id);
    index.apply(r);
  });
  EXPECT_EQ(seen.size(), ids.size());
  EXPECT_EQ(std::set<std::string>(seen.begin(), seen.end()), ids);
  EXPECT_EQ(index.size(), 1500u);
  EXPECT_EQ(index.applied_seq.load(), t.store->change_seq());
  std::string found;
  index.visit(KeyHasher().hash("secret-1234"),
              [&](const IndexedKey& k) { found = std::string(k.name()); });
  EXPECT_EQ(found, "key 1234");
}

TEST(KeyIndexLoad, TheFullLoadHandsOverItsReadAheadBatchesAndCatchUpRows) {
  TempStore t;
  t.store->transaction([&] {
    for (int n = 0; n < 1500; ++n) {
      KeyRecord r = plain_key(n);
      t.store->insert_key(r);
    }
  });
  std::vector<size_t> sizes;
  t.store->for_each_changed_batch(
      0, [&](std::span<const KeyRecord> rows) { sizes.push_back(rows.size()); });
  EXPECT_EQ(sizes, (std::vector<size_t>{512, 512, 476}));
  KeyIndex index;
  t.store->for_each_changed_batch(0, [&](std::span<const KeyRecord> rows) { index.apply(rows); });
  EXPECT_EQ(index.size(), 1500u);
  EXPECT_EQ(index.applied_seq.load(), t.store->change_seq());
  KeyRecord later = plain_key(9000);
  t.store->insert_key(later);
  size_t rows_after = 0;
  t.store->for_each_changed_batch(index.applied_seq, [&](std::span<const KeyRecord> rows) {
    index.apply(rows);
    rows_after += rows.size();
  });
  EXPECT_EQ(rows_after, 1u);
  EXPECT_EQ(index.size(), 1501u);
  EXPECT_EQ(index.applied_seq.load(), later.change_seq);
}

TEST(KeyIndexLoad, AFailingCallbackEndsTheLoadAndTheStoreStaysUsable) {
  TempStore t;
  t.store->transaction([&] {
    for (int n = 0; n < 2000; ++n) {
      KeyRecord r = plain_key(n);
      t.store->insert_key(r);
    }
  });
  int calls = 0;
  EXPECT_THROW(t.store->for_each_changed(0,
                                         [&](const KeyRecord&) {
                                           if (++calls == 600) throw std::runtime_error("full");
                                         }),
               std::runtime_error);
  EXPECT_EQ(calls, 600);
  size_t rows = 0;  // the connection is free again: the reader stopped
  t.store->for_each_changed(0, [&](const KeyRecord&) { ++rows; });
  EXPECT_EQ(rows, 2000u);
  KeyRecord extra = plain_key(5000);
  t.store->insert_key(extra);
  EXPECT_TRUE(t.store->get_key(extra.id));
}
