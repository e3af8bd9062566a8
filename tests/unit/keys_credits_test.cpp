// Credits and usage metering (SPEC §11) as pure logic: every time is passed in
// by hand (the meters read no clock), so refills are driven without sleeping.
// The last tests write the meters' batches through a real SqliteStore: the
// stored balance must equal the one the serving process holds in memory.
#include <gtest/gtest.h>

#include <filesystem>
#include <thread>

#include "keygate/keys/key_format.hpp"
#include "keygate/keys/key_hasher.hpp"
#include "keygate/keys/key_index.hpp"
#include "keygate/keys/key_meter.hpp"
#include "keygate/keys/key_service.hpp"
#include "keygate/keys/sqlite_store.hpp"
#include "keygate/keys/usage_report.hpp"

using namespace keygate;
using namespace std::chrono_literals;

namespace {
constexpr UnixMillis kT0 = 1'800'000'000'000;  // a fixed wall time (2027)
constexpr UnixMillis kHour = 3'600'000;
constexpr UnixMillis kDay = 24 * kHour;

Credits credits(std::int64_t remaining, std::optional<CreditRefill> refill = std::nullopt,
                UnixMillis refilled_at = kT0) {
  return Credits{remaining, refill, refilled_at};
}
CreditRefill refill(std::int64_t amount, Millis interval) {
  return CreditRefill{amount, interval};
}

struct TempDir {
  std::filesystem::path path =
      std::filesystem::temp_directory_path() /
      ("kg-credits-" + std::to_string(::getpid()) + "-" + random_base62(8));
  TempDir() { std::filesystem::create_directories(path); }
  ~TempDir() { std::filesystem::remove_all(path); }
  std::string db() const { return (path / "keys.db").string(); }
};
}  // namespace

TEST(Credits, RefillGridStartsWhereTheRefillWasSet) {
  const Credits c = credits(3, refill(100, 30 * 24h), kT0);
  EXPECT_EQ(c.last_refill(kT0), kT0);
  EXPECT_EQ(c.next_refill(kT0), kT0 + 30 * kDay);
  EXPECT_EQ(c.last_refill(kT0 + 30 * kDay - 1), kT0);
  EXPECT_EQ(c.last_refill(kT0 + 30 * kDay), kT0 + 30 * kDay);
  EXPECT_EQ(c.last_refill(kT0 + 75 * kDay), kT0 + 60 * kDay);  // missed ones count once
  EXPECT_EQ(c.next_refill(kT0 + 75 * kDay), kT0 + 90 * kDay);
  // A refill that is due but not applied yet counts in what is shown.
  EXPECT_EQ(c.remaining_at(kT0 + 1), 3);
  EXPECT_EQ(c.remaining_at(kT0 + 30 * kDay), 100);
  // Without a refill: no grid.
  EXPECT_EQ(credits(5).next_refill(kT0), 0);
  EXPECT_EQ(credits(5).remaining_at(kT0 + 365 * kDay), 5);
}

TEST(Credits, RefillTopsUpToTheAmountAndKeepsAHigherBalance) {
  EXPECT_EQ(credits(250, refill(100, 1h)).remaining_at(kT0 + kHour), 250);
  EXPECT_EQ(credits(0, refill(100, 1h)).remaining_at(kT0 + kHour), 100);
}

TEST(CreditAccount, SpendsToZeroThenRefusesWithoutGoingNegative) {
  CreditAccount a;
  EXPECT_FALSE(a.enabled());
  a.adopt(credits(5), 1);
  ASSERT_TRUE(a.enabled());
  EXPECT_EQ(a.spend(2, kT0).remaining, 3);
  EXPECT_EQ(a.spend(3, kT0).remaining, 0);
  auto refused = a.spend(1, kT0);
  EXPECT_FALSE(refused.allowed);
  EXPECT_EQ(refused.remaining, 0);
  EXPECT_EQ(refused.next_refill, 0);  // no refill: never
}

TEST(CreditAccount, ACostLargerThanTheBalanceTakesNothing) {
  CreditAccount a;
  a.adopt(credits(4), 1);
  auto refused = a.spend(5, kT0);
  EXPECT_FALSE(refused.allowed);
  EXPECT_EQ(refused.remaining, 4);
  EXPECT_TRUE(a.spend(4, kT0).allowed);
}

TEST(CreditAccount, RefillsOnTheGridDrivenByHand) {
  CreditAccount a;
  a.adopt(credits(2, refill(3, 1h), kT0), 1);
  EXPECT_TRUE(a.spend(1, kT0 + 1).allowed);
  EXPECT_TRUE(a.spend(1, kT0 + 2).allowed);
  auto out = a.spend(1, kT0 + kHour - 1);  // one ms before the refill
  EXPECT_FALSE(out.allowed);
  EXPECT_EQ(out.next_refill, kT0 + kHour);
  // At the grid point the balance is topped up to the amount (3), once.
  EXPECT_EQ(a.peek(1, kT0 + kHour).remaining, 3);
  for (int i = 0; i < 3; ++i) EXPECT_TRUE(a.spend(1, kT0 + kHour + i).allowed) << i;
  EXPECT_FALSE(a.spend(1, kT0 + 2 * kHour - 1).allowed);
  // Three intervals later: one top-up, not three; the next refill is on the grid.
  auto later = a.spend(1, kT0 + 4 * kHour + 5);
  EXPECT_TRUE(later.allowed);
  EXPECT_EQ(later.remaining, 2);
  EXPECT_EQ(later.next_refill, kT0 + 5 * kHour);
}

TEST(CreditAccount, SpendingIsExactAcrossThreads) {
  CreditAccount a;
  a.adopt(credits(10'000), 1);
  std::atomic<std::int64_t> allowed{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t)
    threads.emplace_back([&] {
      for (int i = 0; i < 5'000; ++i)
        if (a.spend(1, kT0).allowed) allowed.fetch_add(1);
    });
  for (auto& t : threads) t.join();
  EXPECT_EQ(allowed.load(), 10'000);  // 20,000 tries, exactly the balance admitted
  EXPECT_EQ(a.peek(1, kT0).remaining, 0);
}

TEST(CreditAccount, AnOperatorsNewVersionReplacesTheBalanceTheSameVersionKeepsIt) {
  CreditAccount a;
  a.adopt(credits(10), 1);
  a.spend(4, kT0);
  a.adopt(credits(10), 1);  // the row re-read (e.g. a rename): memory is newer
  EXPECT_EQ(a.peek(1, kT0).remaining, 6);
  a.adopt(credits(50), 2);  // an operator set 50
  EXPECT_EQ(a.peek(1, kT0).remaining, 50);
  a.adopt(std::nullopt, 3);  // credits removed: the key is no longer metered
  EXPECT_FALSE(a.enabled());
}

TEST(CreditAccount, FlushCarriesTheSpendingOnceAndAFailedWriteGoesWithTheNext) {
  CreditAccount a;
  a.adopt(credits(10), 1);
  EXPECT_FALSE(a.take_flush("k"));  // nothing spent
  a.spend(3, kT0);
  auto f = a.take_flush("k");
  ASSERT_TRUE(f);
  EXPECT_EQ(f->delta.spent, 3);
  EXPECT_EQ(f->delta.version, 1);
  EXPECT_EQ(f->snapshot, 7);
  EXPECT_FALSE(a.take_flush("k"));  // taken: not twice
  a.restore(*f);                    // the store refused it
  a.spend(2, kT0);
  auto g = a.take_flush("k");
  ASSERT_TRUE(g);
  EXPECT_EQ(g->delta.spent, 5);  // both batches
  EXPECT_EQ(g->snapshot, 5);
}

TEST(UsageMeter, CountsByHourAndOutcomeAndDrainsOnce) {
  UsageMeter m;
  for (int i = 0; i < 3; ++i) m.count(UsageOutcome::ok, kT0);
  m.count(UsageOutcome::rate_limited, kT0 + 1);
  m.count(UsageOutcome::denied, kT0 + kHour);  // the next hour: the other slot
  std::vector<UsageCounts> out;
  m.drain("k", out);
  ASSERT_EQ(out.size(), 2u);
  std::sort(out.begin(), out.end(), [](auto& x, auto& y) { return x.hour < y.hour; });
  EXPECT_EQ(out[0].hour, kT0 / kHour * kHour);
  EXPECT_EQ(out[0].counts, (std::array<std::int64_t, 4>{3, 1, 0, 0}));
  EXPECT_EQ(out[1].hour, (kT0 + kHour) / kHour * kHour);
  EXPECT_EQ(out[1].counts, (std::array<std::int64_t, 4>{0, 0, 1, 0}));
  out.clear();
  m.drain("k", out);
  EXPECT_TRUE(out.empty());
}

TEST(MeterBoard, ARotatedKeySpendsItsReplacementsCredits) {
  MeterBoard board;
  KeyRecord fresh;
  fresh.id = "key_new";
  fresh.credits = credits(5);
  fresh.credits_version = 1;
  KeyRecord old;
  old.id = "key_old";
  old.credits_version = 2;
  old.credits_key = "key_new";
  board.apply(fresh);
  KeyMeter* m = board.apply(old);
  ASSERT_NE(m, nullptr);
  KeyMeter* payer = m->payer();
  ASSERT_NE(payer, nullptr);
  EXPECT_EQ(payer->key_id(), "key_new");
  EXPECT_EQ(payer->spend(2, kT0).remaining, 3);
  EXPECT_EQ(board.meter("key_new").account()->peek(1, kT0).remaining, 3);  // one balance
  // A key without credits has no payer.
  EXPECT_EQ(board.meter("key_plain").payer(), nullptr);
}

// The store's formula (apply_credit_deltas) applied to each batch must land on
// the balance the process holds, through spending, refills and flushes.
TEST(MeterBoard, StoredBalanceFollowsTheProcessThroughRefillsAndFlushes) {
  TempDir dir;
  SqliteStore store(dir.db());
  store.migrate();
  KeyRecord r;
  r.id = generate_key_id();
  r.prefix = "kg_live_cred";
  r.last4 = "abcd";
  r.hash = KeyHasher().hash(r.id);
  r.name = "metered";
  r.created_at = kT0;
  r.credits = credits(4, refill(6, 1h), kT0);
  r.credits_version = 1;
  store.transaction([&] { store.insert_key(r); });

  MeterBoard board;
  KeyMeter* m = board.apply(r);
  ASSERT_NE(m, nullptr);
  auto flush = [&] {
    auto batch = board.collect();
    std::vector<CreditDelta> deltas;
    for (auto& f : batch.credits) deltas.push_back(f.delta);
    std::vector<std::optional<std::int64_t>> stored;
    store.transaction([&] { stored = store.apply_credit_deltas(deltas); });
    for (size_t i = 0; i < stored.size(); ++i)
      if (stored[i]) board.resync(batch.credits[i], *stored[i]);
    return store.get_key(r.id)->credits->remaining;
  };
  auto in_memory = [&](UnixMillis t) { return m->account()->peek(1, t).remaining; };

  m->spend(3, kT0 + 1);
  EXPECT_EQ(flush(), 1);
  m->spend(1, kT0 + 2);
  m->spend(2, kT0 + kHour + 1);  // refill to 6 first, then 2 spent: 4
  m->spend(1, kT0 + kHour + 2);
  EXPECT_EQ(in_memory(kT0 + kHour + 3), 3);
  EXPECT_EQ(flush(), 3);
  // Two refills in one batch.
  m->spend(3, kT0 + 2 * kHour);
  m->spend(5, kT0 + 3 * kHour);
  EXPECT_EQ(flush(), 1);
  EXPECT_EQ(in_memory(kT0 + 3 * kHour), 1);
  EXPECT_EQ(store.get_key(r.id)->credits->refilled_at, kT0 + 3 * kHour);
}

TEST(MeterBoard, AnOperatorsBalanceWinsOverSpendingNotYetWritten) {
  TempDir dir;
  SqliteStore store(dir.db());
  store.migrate();
  Config cfg;
  KeyService svc(store, cfg);
  auto k = svc.create({.name = "m", .credits = credits(10)}, "cli");
  ASSERT_TRUE(k) << k.error().message;
  MeterBoard board;
  KeyMeter* m = board.apply(k->record);
  m->spend(4, kT0);
  auto batch = board.collect();  // in flight while the operator sets 100
  KeyPatch p;
  p.credits = std::optional<CreditsPatch>(CreditsPatch{100, std::nullopt});
  auto updated = svc.update(k->record.id, p, "admin");
  ASSERT_TRUE(updated) << updated.error().message;
  EXPECT_EQ(updated->credits->remaining, 100);
  std::vector<CreditDelta> deltas;
  for (auto& f : batch.credits) deltas.push_back(f.delta);
  std::vector<std::optional<std::int64_t>> stored;
  store.transaction([&] { stored = store.apply_credit_deltas(deltas); });
  ASSERT_EQ(stored.size(), 1u);
  EXPECT_FALSE(stored[0]);  // skipped: written under the old version
  EXPECT_EQ(store.get_key(k->record.id)->credits->remaining, 100);
  board.apply(*updated);
  EXPECT_EQ(m->account()->peek(1, kT0).remaining, 100);
}

TEST(UsageReport, EveryPeriodListedWithTotalsAndRetentionPrunes) {
  TempDir dir;
  SqliteStore store(dir.db());
  store.migrate();
  const UnixMillis h0 = kT0 / kDay * kDay;  // a UTC midnight
  store.transaction([&] {
    store.add_usage_counts({{"key_a", h0, {2, 1, 0, 0}},
                            {"key_a", h0 + 2 * kHour, {1, 0, 1, 1}},
                            {"key_b", h0, {9, 9, 9, 9}}});
    store.add_usage_counts({{"key_a", h0, {1, 0, 0, 0}}});  // adds up
  });
  UsageQuery q;
  q.from = h0;
  q.to = h0 + 3 * kHour;
  auto j = usage_report(store, "key_a", q, h0 + 3 * kHour);
  ASSERT_TRUE(j) << j.error().message;
  ASSERT_EQ((*j)["periods"].size(), 3u);
  EXPECT_EQ((*j)["periods"][0]["ok"], 3);
  EXPECT_EQ((*j)["periods"][0]["rate_limited"], 1);
  EXPECT_EQ((*j)["periods"][1]["total"], 0);
  EXPECT_EQ((*j)["periods"][2]["upstream_error"], 1);
  EXPECT_EQ((*j)["totals"]["total"], 7);
  q.granularity = "day";
  q.to = h0 + kDay;
  auto d = usage_report(store, "key_a", q, h0 + kDay);
  ASSERT_TRUE(d);
  ASSERT_EQ((*d)["periods"].size(), 1u);
  EXPECT_EQ((*d)["periods"][0]["total"], 7);
  q.granularity = "week";
  EXPECT_EQ(usage_report(store, "key_a", q, h0).error().status, 400);

  EXPECT_EQ(store.prune_usage(h0 + kHour), 2);  // both keys' first hour
  EXPECT_EQ(store.usage_counts("key_a", h0, h0 + kDay).size(), 1u);
}
