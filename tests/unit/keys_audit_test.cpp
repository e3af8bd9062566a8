// The audit filters of GET /v1/audit-events and `keygate audit list`, on SQLite
// (PostgreSQL: the admin integration suite reruns with KEYGATE_TEST_STORE=postgres).
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>

#include "keygate/keys/key_service.hpp"
#include "keygate/keys/sqlite_store.hpp"

using namespace keygate;

namespace {
struct AuditDir {
  std::filesystem::path path =
      std::filesystem::temp_directory_path() / ("kg-audit-" + std::to_string(::getpid()));
  AuditDir() { std::filesystem::create_directories(path); }
  ~AuditDir() { std::filesystem::remove_all(path); }
};

class AuditFilters : public ::testing::Test {
 protected:
  AuditDir dir;
  Config cfg;
  SqliteStore store{(dir.path / "keys.db").string()};
  void SetUp() override { store.migrate(); }
  void add(UnixMillis at, const char* action, const char* key, const char* actor = "cli") {
    store.add_audit({0, at, action, key, actor, "{}"});
  }
  std::vector<std::string> ids(const AuditQuery& q, std::int64_t* total = nullptr) {
    std::vector<std::string> out;
    for (const auto& e : store.list_audit(q, total)) out.push_back(e.action + ":" + e.key_id);
    return out;
  }
};
}  // namespace

TEST_F(AuditFilters, ByKeyActionAndSinceWithPagination) {
  add(1000, "create", "key_a");
  add(2000, "create", "key_b");
  add(3000, "update", "key_a");
  add(4000, "revoke", "key_a");
  add(5000, "update", "key_b");
  std::int64_t total = 0;
  EXPECT_EQ(ids({}, &total).size(), 5u);
  EXPECT_EQ(total, 5);
  EXPECT_EQ(ids({.key_id = "key_a"}, &total),
            (std::vector<std::string>{"revoke:key_a", "update:key_a", "create:key_a"}));
  EXPECT_EQ(total, 3);
  EXPECT_EQ(ids({.action = "update"}), (std::vector<std::string>{"update:key_b", "update:key_a"}));
  EXPECT_EQ(ids({.since = 3000}, &total),
            (std::vector<std::string>{"update:key_b", "revoke:key_a", "update:key_a"}));
  EXPECT_EQ(total, 3);
  EXPECT_EQ(ids({.key_id = "key_a", .action = "update", .since = 3000}),
            (std::vector<std::string>{"update:key_a"}));
  EXPECT_TRUE(ids({.key_id = "key_a", .since = 4001}).empty());
  // pagination counts the filtered events
  EXPECT_EQ(ids({.key_id = "key_a", .page = 2, .page_size = 2}, &total),
            (std::vector<std::string>{"create:key_a"}));
  EXPECT_EQ(total, 3);
}

TEST_F(AuditFilters, OwnerLimitsToThatOwnersKeys) {
  KeyService svc(store, cfg);
  std::vector<AuditEvent> logged;
  svc.on_audit([&](const AuditEvent& e) { logged.push_back(e); });
  auto a = svc.create({.name = "a", .owner = "acme"}, "admin");
  auto b = svc.create({.name = "b", .owner = "umbrella"}, "admin");
  ASSERT_TRUE(a && b);
  ASSERT_TRUE(svc.revoke(b->record.id, "cli"));
  EXPECT_EQ(ids({.owner = "acme"}), (std::vector<std::string>{"create:" + a->record.id}));
  EXPECT_EQ(ids({.owner = "umbrella"}).size(), 2u);
  // every committed event reached the hook (the log stream), in order
  ASSERT_EQ(logged.size(), 3u);
  EXPECT_EQ(logged[0].action, "create");
  EXPECT_EQ(logged[2].action, "revoke");
  EXPECT_EQ(logged[2].actor, "cli");
  EXPECT_EQ(logged[2].key_id, b->record.id);
}
