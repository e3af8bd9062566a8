// keys import: the line format (key_import_from_json) and KeyService::import.
#include <gtest/gtest.h>

#include <filesystem>

#include "keygate/keys/key_format.hpp"
#include "keygate/keys/key_hasher.hpp"
#include "keygate/keys/key_index.hpp"
#include "keygate/keys/key_json.hpp"
#include "keygate/keys/key_service.hpp"
#include "keygate/keys/key_store.hpp"
#include "keygate/keys/sqlite_store.hpp"

using namespace keygate;
using nlohmann::json;

namespace {

constexpr UnixMillis kNow = 1'800'000'000'000;

std::expected<KeyImport, Error> line(const std::string& text) {
  return key_import_from_json(json::parse(text), kNow);
}

std::string field_of(const std::expected<KeyImport, Error>& r) {
  return r ? "(ok)" : r.error().details.value("field", "(none)");
}

class ImportTest : public ::testing::Test {
 protected:
  std::filesystem::path dir = std::filesystem::temp_directory_path() /
                              ("kg-import-" + std::to_string(::getpid()) + "-" + random_base62(8));
  Config cfg;
  std::unique_ptr<KeyStore> store;
  void SetUp() override {
    std::filesystem::create_directories(dir);
    store = std::make_unique<SqliteStore>((dir / "k.db").string());
    store->migrate();
  }
  void TearDown() override {
    store.reset();
    std::filesystem::remove_all(dir);
  }
  KeyImport plaintext(std::string key, std::string name = "imported") {
    KeyImport k;
    k.spec.name = std::move(name);
    k.key = std::move(key);
    return k;
  }
};

}  // namespace

TEST(ImportLine, AcceptsCreateFieldsAndExportedKeyObjects) {
  auto a = line(R"({"name":"ci","key":"fs_live_abcdefghijklmnop","owner":"alice",
                    "scopes":["read"],"rate":"600/1m","metadata":{"team":"core"},
                    "allowed_ips":["10.0.0.0/8"],"expires_in":"30d","enabled":false})");
  ASSERT_TRUE(a) << a.error().message;
  EXPECT_EQ(a->key, "fs_live_abcdefghijklmnop");
  EXPECT_EQ(a->spec.owner, "alice");
  EXPECT_EQ(a->spec.rate, (Rate{600, std::chrono::minutes(1), 600}));
  EXPECT_EQ(a->spec.expires_at, kNow + 30LL * 86'400'000);
  EXPECT_FALSE(a->enabled);
  // An exported line (expires_at: null) may get an expires_in.
  auto c = line(R"({"name":"x","key":"abcdefghijklmnopqrst","expires_at":null,"expires_in":"1h"})");
  ASSERT_TRUE(c) << c.error().message;
  EXPECT_EQ(c->spec.expires_at, kNow + 3'600'000);
  EXPECT_EQ(field_of(line(R"({"name":"x","key":"abcdefghijklmnopqrst",
                             "expires_at":"2030-01-01T00:00:00Z","expires_in":"1h"})")),
            "expires_at");
  // An exported key object with sha256 added: its history is ignored.
  auto b = line(R"({"id":"key_x","prefix":"stv_a1b2c3","last4":"o5p6","name":"w","owner":null,
                    "scopes":[],"plan":null,"rate":{"requests":5,"period":"1s"},"allowed_ips":[],
                    "metadata":{},"enabled":true,"status":"active",
                    "created_at":"2026-01-02T03:04:05Z","expires_at":null,"revoked_at":null,
                    "last_used_at":null,"last_used_ip":null,"rotated_from":null,"created_by":"cli",
                    "sha256":"9F86D081884C7D659A2FEAA0C55AD015A3BF4F1B2B0B822CD15D6C15B0F00A08"})");
  ASSERT_TRUE(b) << b.error().message;
  EXPECT_EQ(to_hex(*b->sha256), "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08");
  EXPECT_EQ(b->prefix, "stv_a1b2c3");
  EXPECT_EQ(b->last4, "o5p6");
  EXPECT_TRUE(b->created_at);
}

TEST(ImportLine, EveryProblemNamesItsField) {
  EXPECT_EQ(field_of(line(R"({"key":"abcdefghijklmnopqrst"})")), "name");
  EXPECT_EQ(field_of(line(R"({"name":"x"})")), "key");
  EXPECT_EQ(field_of(line(R"({"name":"x","key":"a","sha256":"b"})")), "key");
  EXPECT_EQ(field_of(line(R"({"name":"x","sha256":"abc"})")), "sha256");
  EXPECT_EQ(field_of(line(R"({"name":"x","key":"abcdefghijklmnopqrst","scope":"a"})")), "scope");
  EXPECT_EQ(field_of(line(R"({"name":"x","key":"abcdefghijklmnopqrst","rate":"5/q"})")), "rate");
  EXPECT_EQ(field_of(line(R"({"name":"x","key":"abcdefghijklmnopqrst","enabled":"yes"})")),
            "enabled");
  EXPECT_EQ(
      field_of(
          line(R"({"name":"x","key":"abcdefghijklmnopqrst","revoked_at":"2026-01-01T00:00:00Z"})")),
      "revoked_at");
  EXPECT_FALSE(key_import_from_json(json::array(), kNow));
}

TEST_F(ImportTest, ForeignAndKeygateFormatsDisplayAndHash) {
  KeyService svc(*store, cfg);
  KeyFormat fmt(cfg.keys);
  std::string native = fmt.generate();
  std::string foreign = "sk_abc12345" + std::string(24, 'Z');
  auto out = svc.import({plaintext(native), plaintext(foreign)}, "cli");
  ASSERT_TRUE(out);
  ASSERT_EQ(out->size(), 2u);
  const KeyRecord& n = (*out)[0];
  const KeyRecord& f = (*out)[1];
  EXPECT_FALSE(n.foreign_format);
  EXPECT_EQ(n.prefix, native.substr(0, 12));
  EXPECT_TRUE(f.foreign_format);
  EXPECT_EQ(f.prefix, foreign.substr(0, 12));
  EXPECT_EQ(f.last4, "ZZZZ");
  EXPECT_EQ(f.hash, KeyHasher().hash(foreign));
  auto stored = store->get_key(f.id);
  ASSERT_TRUE(stored);
  EXPECT_TRUE(stored->foreign_format);  // survives the store (migration 0002)
  EXPECT_FALSE(store->get_key(n.id)->foreign_format);
  EXPECT_EQ(store->list_audit({.page = 1, .page_size = 10}, nullptr)[0].action, "import");
  // A short foreign key never has more than len - 16 characters on display.
  auto shortk = svc.import({plaintext("0123456789abcdefghij")}, "cli");
  ASSERT_TRUE(shortk);
  EXPECT_EQ((*shortk)[0].prefix, "0123");
  EXPECT_EQ((*shortk)[0].last4, "ghij");
  // Rotating an imported key issues a keygate key.
  auto rotated = svc.rotate(f.id, Millis(0), "cli");
  ASSERT_TRUE(rotated);
  EXPECT_FALSE(rotated->record.foreign_format);
  EXPECT_TRUE(fmt.well_formed(rotated->key));
}

TEST_F(ImportTest, AllOrNothingWithEveryProblemReported) {
  KeyService svc(*store, cfg);
  auto first = svc.import({plaintext("existing-key-0123456789")}, "cli");
  ASSERT_TRUE(first);
  KeyImport unknown_plan = plaintext("another-key-0123456789");
  unknown_plan.spec.plan = "nope";
  auto out = svc.import({plaintext("fresh-key-0123456789abc"), plaintext("too-short"),
                         plaintext("existing-key-0123456789"), unknown_plan,
                         plaintext("fresh-key-0123456789abc"), plaintext("has space 0123456789")},
                        "cli");
  ASSERT_FALSE(out);
  std::vector<size_t> items;
  for (const auto& p : out.error()) items.push_back(p.item);
  EXPECT_EQ(items, (std::vector<size_t>{1, 2, 3, 4, 5}));  // 4: a duplicate of item 0
  EXPECT_EQ(store->list_keys({.status = "all"}, now_millis(), nullptr).size(), 1u);
}

TEST_F(ImportTest, Sha256ImportsAreForeignAndRefusedWithAPepper) {
  KeyService svc(*store, cfg);
  KeyImport k;
  k.spec.name = "by hash";
  k.sha256 = KeyHasher().hash("stv_a1b2c3d4e5f6g7h8i9j0k1l2m3n4o5p6");
  k.prefix = "stv_a1b2c3";
  auto out = svc.import({k}, "cli");
  ASSERT_TRUE(out);
  EXPECT_TRUE((*out)[0].foreign_format);
  EXPECT_EQ((*out)[0].prefix, "stv_a1b2c3");
  EXPECT_EQ((*out)[0].last4, "");

  Config peppered;
  peppered.keys.pepper = "pepper";
  KeyService psvc(*store, peppered);
  k.sha256 = KeyHasher().hash("another-key-0123456789");
  auto refused = psvc.import({k}, "cli");
  ASSERT_FALSE(refused);
  EXPECT_NE(refused.error()[0].error.message.view().find("keys.pepper"), std::string::npos);
  auto plain = psvc.import({plaintext("another-key-0123456789")}, "cli");
  ASSERT_TRUE(plain);
  EXPECT_EQ((*plain)[0].hash, KeyHasher("pepper").hash("another-key-0123456789"));
}

TEST(KeyIndexForeign, CountsEachForeignKeyOnce) {
  KeyIndex idx;
  KeyRecord r;
  r.id = "key_a";
  r.hash = KeyHasher().hash("a");
  idx.upsert(r);
  EXPECT_FALSE(idx.has_foreign_keys());
  r.id = "key_b";
  r.hash = KeyHasher().hash("b");
  r.foreign_format = true;
  idx.upsert(r);
  idx.upsert(r);
  EXPECT_TRUE(idx.has_foreign_keys());
}
