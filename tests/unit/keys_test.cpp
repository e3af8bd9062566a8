#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <regex>
#include <unordered_set>

#include "keygate/keys/cidr.hpp"
#include "keygate/keys/key_format.hpp"
#include "keygate/keys/key_hasher.hpp"
#include "keygate/keys/key_index.hpp"
#include "keygate/keys/key_service.hpp"
#include "keygate/keys/postgres_store.hpp"
#include "keygate/keys/sqlite_store.hpp"

using namespace keygate;

namespace {
KeysConfig keys_cfg(std::string prefix = "kg", std::optional<std::string> env = "live",
                    int dpl = 12) {
  KeysConfig k;
  k.prefix = std::move(prefix);
  k.environment = std::move(env);
  k.display_prefix_length = dpl;
  return k;
}

constexpr std::string_view kAlphabet =
    "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

struct TempDir {
  std::filesystem::path path;
  TempDir() {
    path = std::filesystem::temp_directory_path() /
           ("kg-unit-" + std::to_string(::getpid()) + "-" + random_base62(8));
    std::filesystem::create_directories(path);
  }
  ~TempDir() { std::filesystem::remove_all(path); }
  std::string db() const { return (path / "keys.db").string(); }
};
}  // namespace

TEST(KeyFormat, DefaultShapeMatchesSpecRegex) {
  KeyFormat f(keys_cfg());
  std::regex re("^kg_live_[0-9A-Za-z]{38}$");
  for (int i = 0; i < 1000; ++i) {
    auto k = f.generate();
    ASSERT_TRUE(std::regex_match(k, re)) << k;
    ASSERT_TRUE(f.well_formed(k)) << k;
  }
  EXPECT_EQ(f.display_prefix("kg_live_3fJ9abcdefg"), "kg_live_3fJ9");
}

TEST(KeyFormat, PrefixesWithAndWithoutEnvironment) {
  EXPECT_TRUE(std::regex_match(KeyFormat(keys_cfg("fs", "test", 14)).generate(),
                               std::regex("^fs_test_[0-9A-Za-z]{38}$")));
  KeyFormat sk(keys_cfg("sk", std::nullopt, 11));
  auto k = sk.generate();
  EXPECT_TRUE(std::regex_match(k, std::regex("^sk_[0-9A-Za-z]{38}$"))) << k;
  EXPECT_EQ(sk.display_prefix(k).size(), 11u);
  EXPECT_FALSE(KeyFormat(keys_cfg()).well_formed(k));  // wrong prefix
}

TEST(KeyFormat, HundredThousandKeysAreUnique) {
  KeyFormat f(keys_cfg());
  std::unordered_set<std::string> seen;
  for (int i = 0; i < 100'000; ++i) ASSERT_TRUE(seen.insert(f.generate()).second);
  std::unordered_set<std::string> ids;
  for (int i = 0; i < 100'000; ++i) {
    auto id = generate_key_id();
    ASSERT_TRUE(std::regex_match(id, std::regex("^key_[0-9A-Za-z]{20}$")));
    ASSERT_TRUE(ids.insert(id).second);
  }
}

TEST(KeyFormat, ChecksumCatchesEverySingleCharacterChange) {
  KeyFormat f(keys_cfg());
  for (int sample = 0; sample < 20; ++sample) {
    std::string key = f.generate();
    for (size_t pos = f.head().size(); pos < key.size(); ++pos) {
      for (char c : kAlphabet) {
        if (c == key[pos]) continue;
        std::string typo = key;
        typo[pos] = c;
        ASSERT_FALSE(f.well_formed(typo)) << "undetected change at " << pos << ": " << typo;
      }
    }
  }
}

TEST(KeyFormat, RejectsGarbageWithoutHashing) {
  KeyFormat f(keys_cfg());
  std::string good = f.generate();
  for (std::string bad : {std::string(""), std::string("kg_live_"), good + "x", good.substr(1),
                          std::string("kg_live_") + std::string(38, '!'), std::string(46, 'a')})
    EXPECT_FALSE(f.well_formed(bad)) << bad;
  std::string swapped = good;
  std::swap(swapped[10], swapped[11]);
  if (swapped != good) {
    EXPECT_FALSE(f.well_formed(swapped));
  }
}

TEST(KeyFormat, WellFormedIsTheShapeAndTheChecksum) {
  KeyFormat f(keys_cfg());
  std::string good = f.generate();
  EXPECT_TRUE(f.well_shaped(good));
  EXPECT_TRUE(f.checksum_matches(good));
  std::string typo = good;
  typo[12] = typo[12] == 'a' ? 'b' : 'a';
  EXPECT_TRUE(f.well_shaped(typo));  // the shape passes; only the checksum sees the typo
  EXPECT_FALSE(f.checksum_matches(typo));
  EXPECT_FALSE(f.well_formed(typo));
  for (std::string bad : {std::string(""), good + "x", good.substr(1), std::string(46, 'a'),
                          std::string("kg_live_") + std::string(38, '!')})
    EXPECT_FALSE(f.well_shaped(bad)) << bad;
  EXPECT_FALSE(f.checksum_matches("abc"));  // shorter than a checksum: no match, no overrun
}

TEST(Base62, IsUnbiased) {
  // 620k symbols: each of 62 expects 10k. Chi-square with 61 dof; 120 is far
  // beyond the 99.99th percentile (~107), so a biased generator (e.g. b % 62
  // over all 256 byte values, which favours the first 8 symbols by 25%) fails.
  std::array<int, 128> counts{};
  std::string s = random_base62(620'000);
  for (char c : s) ++counts[static_cast<unsigned char>(c)];
  double chi = 0;
  for (char c : kAlphabet) {
    double d = counts[static_cast<unsigned char>(c)] - 10'000.0;
    chi += d * d / 10'000.0;
  }
  EXPECT_LT(chi, 120.0);
  EXPECT_TRUE(is_base62(s));
}

TEST(KeyHasher, Sha256KnownVector) {
  EXPECT_EQ(to_hex(KeyHasher().hash("abc")),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

TEST(KeyHasher, HmacWithPepperKnownVector) {
  // RFC 4231 test case 2.
  KeyHasher h(std::string("Jefe"));
  EXPECT_EQ(to_hex(h.hash("what do ya want for nothing?")),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
  // Re-use of the per-thread context gives the same answer, and differs from plain SHA-256.
  EXPECT_EQ(h.hash("x"), h.hash("x"));
  EXPECT_NE(h.hash("x"), KeyHasher().hash("x"));
  EXPECT_NE(KeyHasher(std::string("pepper-one-0000000")).hash("x"),
            KeyHasher(std::string("pepper-two-0000000")).hash("x"));
}

TEST(Cidr, MatchesV4V6AndMapped) {
  auto net = parse_cidr("10.1.0.0/16");
  ASSERT_TRUE(net);
  std::vector<Cidr> nets{*net, *parse_cidr("2001:db8::/32"), *parse_cidr("192.168.1.7")};
  EXPECT_TRUE(any_contains(nets, "10.1.200.3"));
  EXPECT_FALSE(any_contains(nets, "10.2.0.1"));
  EXPECT_TRUE(any_contains(nets, "2001:db8:1::5"));
  EXPECT_TRUE(any_contains(nets, "192.168.1.7"));
  EXPECT_FALSE(any_contains(nets, "192.168.1.8"));
  EXPECT_TRUE(any_contains(nets, "::ffff:10.1.2.3"));
  EXPECT_FALSE(any_contains(nets, "not-an-ip"));
  for (const char* bad : {"10.0.0.0/33", "10.0.0/8", "x", "10.0.0.0/", "::1/129"})
    EXPECT_FALSE(parse_cidr(bad).has_value()) << bad;
}

TEST(Times, Rfc3339RoundTrip) {
  auto t = parse_time("2027-01-31T12:30:05Z");
  ASSERT_TRUE(t);
  EXPECT_EQ(format_time(*t), "2027-01-31T12:30:05.000Z");
  EXPECT_EQ(*parse_time("2027-01-31T14:30:05+02:00"), *t);
  EXPECT_EQ(*parse_time("2027-01-31T12:30:05.250Z"), *t + 250);
  EXPECT_FALSE(parse_time("2027-01-31"));
  EXPECT_FALSE(parse_time("2027-13-01T00:00:00Z"));
}

TEST(KeyIndex, UpsertAndVisit) {
  KeyIndex idx;
  KeyRecord r;
  r.id = "key_AAAAAAAAAAAAAAAAAAAA";
  r.hash = KeyHasher().hash("secret");
  r.name = "n";
  r.owner = "acme";
  r.scopes = {"read", "write"};
  r.plan = "pro";
  idx.upsert(r);
  EXPECT_EQ(idx.size(), 1u);
  std::optional<AuthKey> got;
  ASSERT_TRUE(idx.visit(r.hash, [&](const IndexedKey& k) { got.emplace(k); }));
  EXPECT_EQ(got->id(), r.id);
  EXPECT_EQ(got->owner(), "acme");
  EXPECT_EQ(got->plan(), "pro");
  EXPECT_TRUE(got->has_scope("write"));
  EXPECT_FALSE(got->has_scope("wri"));
  EXPECT_FALSE(idx.visit(KeyHasher().hash("other"), [](const IndexedKey&) {}));
  r.revoked_at = 5;
  idx.upsert(r);
  EXPECT_EQ(idx.size(), 1u);
  idx.visit(r.hash, [&](const IndexedKey& k) { got.emplace(k); });
  EXPECT_EQ(got->revoked_at(), 5);
  EXPECT_EQ(idx.count_active(10), 0u);
}

TEST(KeyIndex, UsageReportsAreThrottledPerKey) {
  KeyIndex idx;
  KeyRecord r;
  r.id = "key_BBBBBBBBBBBBBBBBBBBB";
  r.hash = KeyHasher().hash("s");
  idx.upsert(r);
  int claims = 0;
  for (UnixMillis t = 10'000; t < 20'000; t += 100)
    idx.visit(r.hash, [&](const IndexedKey& k) { claims += k.claim_usage_report(t, 5000); });
  EXPECT_EQ(claims, 2);  // at 10s and 15s
}

class StoreTest : public ::testing::Test {
 protected:
  TempDir dir;
  Config cfg;
  std::unique_ptr<KeyStore> store = std::make_unique<SqliteStore>(dir.db());
  void SetUp() override { store->migrate(); }
};

TEST_F(StoreTest, MigrationsAreRecordedAndIdempotent) {
  EXPECT_FALSE(store->has_pending_migrations());
  EXPECT_TRUE(store->migrate().empty());
  SqliteStore second(dir.db());
  EXPECT_TRUE(second.migrate().empty());
}

TEST_F(StoreTest, CreateListResolveRevoke) {
  KeyService svc(*store, cfg);
  std::vector<KeyRecord> changed;
  svc.on_change([&](const KeyRecord& r) { changed.push_back(r); });
  auto a = svc.create({.name = "a", .owner = "acme", .scopes = {"read"}}, "cli");
  ASSERT_TRUE(a) << a.error().message;
  EXPECT_EQ(a->record.hash, KeyHasher().hash(a->key));
  EXPECT_EQ(a->record.prefix, a->key.substr(0, 12));
  EXPECT_EQ(a->record.last4, a->key.substr(a->key.size() - 4));
  ASSERT_EQ(changed.size(), 1u);

  auto by_prefix = svc.resolve(a->record.prefix);
  ASSERT_TRUE(by_prefix);
  EXPECT_EQ(by_prefix->id, a->record.id);
  EXPECT_EQ(svc.resolve("kg_live_none").error().status, 404);

  ASSERT_TRUE(svc.revoke(a->record.id, "cli"));
  std::int64_t total = -1;
  EXPECT_TRUE(store->list_keys({.status = "active"}, now_millis() + 1, &total).empty());
  EXPECT_EQ(total, 0);
  EXPECT_EQ(store->list_keys({.status = "revoked"}, now_millis() + 1, nullptr).size(), 1u);
  std::int64_t audits = 0;
  auto events = store->list_audit({.page = 1, .page_size = 10}, &audits);
  EXPECT_EQ(audits, 2);
  EXPECT_EQ(events[0].action, "revoke");
  EXPECT_EQ(events[1].action, "create");
}

TEST_F(StoreTest, AmbiguousPrefixIsAConflict) {
  KeyRecord r1, r2;
  for (auto* r : {&r1, &r2}) {
    r->id = generate_key_id();
    r->prefix = "kg_live_same";
    r->last4 = "abcd";
    r->hash = KeyHasher().hash(r->id);
    r->name = "x";
    r->created_at = now_millis();
    store->transaction([&] { store->insert_key(*r); });
  }
  KeyService svc(*store, cfg);
  auto res = svc.resolve("kg_live_same");
  ASSERT_FALSE(res);
  EXPECT_EQ(res.error().status, 409);
}

// Keys created in one millisecond list in the order they were created (ids are
// random, so ordering ties by id shuffled a page between two keys).
TEST_F(StoreTest, KeysCreatedInOneMillisecondListInCreationOrder) {
  const UnixMillis at = now_millis();
  std::vector<std::string> created;
  for (const char* id : {"key_e", "key_d", "key_c", "key_b", "key_a"}) {
    KeyRecord r;
    r.id = id;
    r.prefix = std::string("kg_live_") + id;
    r.last4 = "abcd";
    r.hash = KeyHasher().hash(r.id);
    r.name = id;
    r.created_at = at;
    store->transaction([&] { store->insert_key(r); });
    created.push_back(id);
  }
  // An update between the pages does not move a key.
  auto second = store->get_key("key_d");
  ASSERT_TRUE(second);
  second->name = "renamed";
  store->transaction([&] { store->update_key(*second); });
  std::vector<std::string> listed;
  for (int page = 1; page <= 3; ++page)
    for (const auto& r : store->list_keys({.page = page, .page_size = 2}, at + 1, nullptr))
      listed.push_back(r.id);
  EXPECT_EQ(listed, created);
}

TEST_F(StoreTest, RotateKeepsSettingsAndSetsGrace) {
  KeyService svc(*store, cfg);
  auto a = svc.create({.name = "a",
                       .owner = "o",
                       .scopes = {"s1", "s2"},
                       .rate = Rate{5, std::chrono::seconds(1), 2},
                       .allowed_ips = {"10.0.0.0/8"},
                       .metadata = {{"team", "x"}}},
                      "cli");
  ASSERT_TRUE(a);
  auto r = svc.rotate(a->record.id, std::chrono::hours(1), "admin");
  ASSERT_TRUE(r);
  EXPECT_NE(r->key, a->key);
  EXPECT_EQ(r->record.rotated_from, a->record.id);
  EXPECT_EQ(r->record.scopes, a->record.scopes);
  EXPECT_EQ(r->record.rate, a->record.rate);
  EXPECT_EQ(r->record.allowed_ips, a->record.allowed_ips);
  EXPECT_EQ(r->record.metadata, a->record.metadata);
  auto old = store->get_key(a->record.id);
  ASSERT_TRUE(old->expires_at);
  EXPECT_NEAR(static_cast<double>(*old->expires_at - now_millis()), 3'600'000.0, 5'000.0);
  EXPECT_FALSE(old->revoked_at);
  auto r0 = svc.rotate(r->record.id, std::chrono::milliseconds(0), "cli");
  ASSERT_TRUE(r0);
  EXPECT_TRUE(store->get_key(r->record.id)->revoked_at);
}

TEST_F(StoreTest, ValidationNamesTheField) {
  KeyService svc(*store, cfg);
  auto check = [&](KeySpec s, const std::string& field) {
    auto r = svc.create(s, "cli");
    ASSERT_FALSE(r) << field;
    EXPECT_EQ(r.error().status, 400);
    EXPECT_EQ(r.error().details["field"], field);
  };
  check({.name = ""}, "name");
  check({.name = "a", .owner = "bad owner!"}, "owner");
  check({.name = "a", .scopes = {"ok", "not ok"}}, "scopes");
  check({.name = "a", .plan = "nope"}, "plan");
  check({.name = "a", .expires_at = 1000}, "expires_at");
  check({.name = "a", .allowed_ips = {"300.1.1.1"}}, "allowed_ips");
}

TEST_F(StoreTest, ChangesSinceAndUsage) {
  KeyService svc(*store, cfg);
  auto a = svc.create({.name = "a"}, "cli");
  auto seq = store->change_seq();
  auto b = svc.create({.name = "b"}, "cli");
  std::vector<std::string> seen;
  store->for_each_changed(seq, [&](const KeyRecord& r) { seen.push_back(r.id); });
  EXPECT_EQ(seen, std::vector<std::string>{b->record.id});
  store->record_usage({{a->record.id, 12345, "10.0.0.9"}});
  auto got = store->get_key(a->record.id);
  EXPECT_EQ(got->last_used_at, 12345);
  EXPECT_EQ(got->last_used_ip, "10.0.0.9");
}

TEST_F(StoreTest, LastUsedOnlyMovesForward) {
  KeyService svc(*store, cfg);
  auto a = svc.create({.name = "a"}, "cli");
  ASSERT_TRUE(a);
  store->record_usage({{a->record.id, 1000, "10.0.0.1"}});
  store->record_usage({{a->record.id, 2000, "10.0.0.2"}});  // later: wins
  EXPECT_EQ(store->get_key(a->record.id)->last_used_at, 2000);
  EXPECT_EQ(store->get_key(a->record.id)->last_used_ip, "10.0.0.2");
  store->record_usage({{a->record.id, 1500, "10.0.0.3"}});  // a late batch: ignored
  EXPECT_EQ(store->get_key(a->record.id)->last_used_at, 2000);
  EXPECT_EQ(store->get_key(a->record.id)->last_used_ip, "10.0.0.2");
}

TEST_F(StoreTest, PlaintextKeyNeverReachesTheFile) {
  KeyService svc(*store, cfg);
  auto a = svc.create({.name = "a"}, "cli");
  ASSERT_TRUE(a);
  auto read = [&](const char* suffix) {
    std::ifstream in(dir.db() + suffix, std::ios::binary);
    return std::string((std::istreambuf_iterator<char>(in)), {});
  };
  auto check = [&](const std::string& bytes, const std::string& what) {
    EXPECT_EQ(bytes.find(a->key), std::string::npos) << what;
    EXPECT_EQ(bytes.find(a->key.substr(12, 20)), std::string::npos) << what;
  };
  // While the store is open the write sits in the WAL (closing checkpoints
  // and removes it): read it now, and make sure there is something to read.
  std::string wal = read("-wal");
  ASSERT_GT(wal.size(), 0u) << "no WAL: the store is not in WAL mode or was checkpointed";
  EXPECT_NE(wal.find(a->record.id), std::string::npos) << "the WAL does not hold the new row";
  check(wal, "WAL while open");
  check(read(""), "database while open");
  store.reset();
  check(read(""), "database after close");
}

TEST_F(StoreTest, StoresTheHmacWhenPeppered) {
  cfg.keys.pepper = "pepper-0123456789";
  KeyService peppered(*store, cfg);
  auto a = peppered.create({.name = "a"}, "cli");
  ASSERT_TRUE(a);
  auto stored = store->get_key(a->record.id);
  ASSERT_TRUE(stored);
  EXPECT_EQ(stored->hash, KeyHasher(cfg.keys.pepper).hash(a->key));
  EXPECT_NE(stored->hash, KeyHasher().hash(a->key));
}

TEST_F(StoreTest, KeyReadsCountEveryStatementReadingKeyRows) {
  KeyService svc(*store, cfg);
  auto a = svc.create({.name = "a"}, "cli");
  ASSERT_TRUE(a);
  auto before = store->key_reads();
  store->get_key(a->record.id);
  store->keys_with_prefix(a->record.prefix);
  store->for_each_changed(0, [](const KeyRecord&) {});
  EXPECT_EQ(store->key_reads() - before, 3);
  before = store->key_reads();
  store->change_seq();
  store->record_usage({{a->record.id, 1, "10.0.0.1"}});
  EXPECT_EQ(store->key_reads(), before);  // polls and writes are not key reads
}

TEST(PostgresStore, DescribeNeverShowsThePassword) {
  EXPECT_EQ(pg::describe("postgresql://kg:s3cret@db:5432/keygate"),
            "postgresql://kg@db:5432/keygate");
  EXPECT_EQ(pg::describe("host=db port=6432 dbname=k user=u password=s3cret"),
            "postgresql://u@db:6432/k");
  EXPECT_EQ(pg::describe("postgresql://db/k?bogus=1"), "postgresql (invalid connection string)");
  PostgresStore store("postgresql://kg:s3cret@db/keygate");  // connects on first use only
  EXPECT_TRUE(store.remote());
  EXPECT_EQ(store.describe().find("s3cret"), std::string::npos);
}

TEST_F(StoreTest, FeedAnnouncesOtherConnectionsCommits) {
  auto feed = store->change_feed();
  EXPECT_EQ(feed->open(), -1);  // nothing to watch: polled
  EXPECT_EQ(feed->latest(), 0);
  KeyService svc(*store, cfg);
  ASSERT_TRUE(svc.create({.name = "own"}, "cli"));
  // Its own connection's commits do not move data_version; the writer applies those itself.
  EXPECT_EQ(feed->latest(), 0);
  SqliteStore other(dir.db());
  KeyService other_svc(other, cfg);
  ASSERT_TRUE(other_svc.create({.name = "other"}, "cli"));
  EXPECT_EQ(feed->latest(), 2);
}

TEST_F(StoreTest, StaleUpdateIsAConflictNotALostWrite) {
  KeyService svc(*store, cfg);
  auto a = svc.create({.name = "a"}, "cli");
  ASSERT_TRUE(a);
  KeyRecord stale = *store->get_key(a->record.id);
  ASSERT_TRUE(svc.revoke(a->record.id, "admin"));  // another writer, after our read
  stale.name = "renamed";
  EXPECT_THROW(store->transaction([&] { store->update_key(stale); }), StoreConflict);
  EXPECT_TRUE(store->get_key(a->record.id)->revoked_at);  // the revocation stands
  // KeyService reads again before it writes, so its own updates go through.
  ASSERT_TRUE(svc.revoke(a->record.id, "admin"));
  auto b = svc.create({.name = "b"}, "cli");
  auto upd = svc.update(b->record.id, KeyPatch{.name = std::string("b2")}, "admin");
  ASSERT_TRUE(upd);
  EXPECT_EQ(store->get_key(b->record.id)->name, "b2");
}
