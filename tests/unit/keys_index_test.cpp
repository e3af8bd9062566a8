// The compact key index (src/keys/key_index.cpp): lookups through growth and
// hash collisions, interning of what keys share, reuse of what they let go,
// text rewritten in place or compacted, and copies that outlive the index's
// own storage. Keys are placed in one shard on purpose (the shard is chosen by
// the hash's last byte) to cross its chunk and table boundaries.
#include <fmt/format.h>
#include <gtest/gtest.h>

#include <atomic>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include "keygate/keys/key_index.hpp"

using namespace keygate;

namespace {

// A hash in shard `shard`, distinct for each n; `home` fixes the bytes that
// choose the table position and tag, so that keys with the same `home` probe
// the same entries.
KeyHash hash_of(std::uint32_t n, std::uint8_t shard = 5, std::optional<std::uint64_t> home = {}) {
  KeyHash h{};
  const std::uint64_t mixed = home.value_or(n * 0x9E3779B97F4A7C15ull);
  for (int i = 0; i < 8; ++i) h[i] = static_cast<std::uint8_t>(mixed >> (8 * i));
  h[8] = home ? 0x42 : static_cast<std::uint8_t>(n >> 3);
  for (int i = 0; i < 4; ++i) h[12 + i] = static_cast<std::uint8_t>(n >> (8 * i));
  h[31] = shard;
  return h;
}

KeyRecord key(std::uint32_t n, KeyHash h) {
  KeyRecord r;
  r.id = "key_" + std::to_string(10'000'000'000'000'000'000ull + n).substr(0, 20);
  r.hash = h;
  r.name = "name-" + std::to_string(n);
  r.owner = "owner-" + std::to_string(n % 7);
  return r;
}

std::optional<AuthKey> lookup(const KeyIndex& idx, const KeyHash& h) {
  std::optional<AuthKey> got;
  idx.visit(h, [&](const IndexedKey& k) { got.emplace(k); });
  return got;
}

}  // namespace

TEST(KeyIndexLayout, FindsEveryKeyAcrossChunkAndTableGrowth) {
  KeyIndex idx;
  constexpr std::uint32_t kKeys = 70'000;  // > 2 chunks of 32768 slots in one shard
  for (std::uint32_t n = 0; n < kKeys; ++n) idx.upsert(key(n, hash_of(n)));
  EXPECT_EQ(idx.size(), kKeys);
  for (std::uint32_t n = 0; n < kKeys; n += 997) {
    auto got = lookup(idx, hash_of(n));
    ASSERT_TRUE(got) << n;
    EXPECT_EQ(got->id(), key(n, {}).id);
    EXPECT_EQ(got->name(), "name-" + std::to_string(n));
    EXPECT_EQ(got->owner(), "owner-" + std::to_string(n % 7));
  }
  EXPECT_FALSE(lookup(idx, hash_of(kKeys)));
  EXPECT_FALSE(lookup(idx, hash_of(3, 6)));  // same bytes, another shard
  const auto f = idx.footprint();
  EXPECT_EQ(f.keys, kKeys);
  EXPECT_LE(f.table, kKeys * 8 * 8 / 3);  // at least 3/8 full after doubling
  EXPECT_GE(f.table, kKeys * 8 * 4 / 3);  // at most 3/4 full
}

TEST(KeyIndexLayout, KeysProbingTheSameEntriesAreToldApartByTheWholeHash) {
  KeyIndex idx;
  for (std::uint32_t n = 0; n < 200; ++n) idx.upsert(key(n, hash_of(n, 9, 0xABCDEF)));
  for (std::uint32_t n = 0; n < 200; ++n) {
    auto got = lookup(idx, hash_of(n, 9, 0xABCDEF));
    ASSERT_TRUE(got) << n;
    EXPECT_EQ(got->name(), "name-" + std::to_string(n));
  }
  EXPECT_FALSE(lookup(idx, hash_of(200, 9, 0xABCDEF)));
}

TEST(KeyIndexLayout, AnUpdateReplacesTheKeyInPlace) {
  KeyIndex idx;
  KeyRecord r = key(1, hash_of(1));
  idx.upsert(r);
  r.name = "renamed";
  r.scopes = {"read"};
  r.enabled = false;
  idx.upsert(r);
  EXPECT_EQ(idx.size(), 1u);
  auto got = lookup(idx, r.hash);
  ASSERT_TRUE(got);
  EXPECT_EQ(got->name(), "renamed");
  EXPECT_EQ(got->owner(), "owner-1");
  EXPECT_TRUE(got->has_scope("read"));
  EXPECT_FALSE(got->enabled());
}

TEST(KeyIndexLayout, LongTextKeepsItsLength) {
  KeyIndex idx;
  KeyRecord r = key(1, hash_of(1));
  r.name = std::string(300, 'n');  // lengths of 255 and more take five bytes
  r.owner = std::string(255, 'o');
  idx.upsert(r);
  auto got = lookup(idx, r.hash);
  ASSERT_TRUE(got);
  EXPECT_EQ(got->name(), r.name);
  EXPECT_EQ(got->owner(), r.owner);
  EXPECT_EQ(got->id(), r.id);
}

TEST(KeyIndexInterning, KeysSharingPlanScopesAndRateShareOneProfile) {
  KeyIndex idx;
  for (std::uint32_t n = 0; n < 1000; ++n) {
    KeyRecord r = key(n, hash_of(n));
    r.plan = "pro";
    r.scopes = {"read", "write"};
    r.allowed_ips = {"10.0.0.0/8"};
    r.rate = Rate{100, Millis(60'000), 0};
    idx.upsert(r);
  }
  EXPECT_EQ(idx.footprint().profiles, 1u);
  KeyRecord other = key(5, hash_of(5));  // one key moves to another plan
  other.plan = "team";
  idx.upsert(other);
  EXPECT_EQ(idx.footprint().profiles, 2u);
  auto got = lookup(idx, hash_of(6));
  ASSERT_TRUE(got);
  EXPECT_EQ(got->plan(), "pro");
  EXPECT_EQ(got->scopes_csv(), "read,write");
  ASSERT_EQ(got->allowed_nets().size(), 1u);
  EXPECT_TRUE(any_contains(got->allowed_nets(), "10.1.2.3"));
  EXPECT_FALSE(any_contains(got->allowed_nets(), "11.1.2.3"));
  ASSERT_TRUE(got->rate());
  EXPECT_EQ(got->rate()->requests, 100u);
  auto moved = lookup(idx, hash_of(5));
  ASSERT_TRUE(moved);
  EXPECT_EQ(moved->plan(), "team");
  EXPECT_EQ(moved->scopes_csv(), "");
  EXPECT_TRUE(moved->allowed_nets().empty());
  EXPECT_FALSE(moved->rate());
}

TEST(KeyIndexInterning, AProfileNoKeyHoldsIsFreedAndItsPlaceReused) {
  KeyIndex idx;
  KeyRecord r = key(1, hash_of(1));
  idx.upsert(r);
  r.plan = "plan-0";
  idx.upsert(r);
  const size_t bytes_after_one = idx.footprint().profile_bytes;
  for (int i = 1; i < 2000; ++i) {  // each plan is held by the one key, then let go
    r.plan = "plan-" + std::to_string(i);
    idx.upsert(r);
  }
  const auto f = idx.footprint();
  EXPECT_EQ(f.profiles, 1u);
  EXPECT_LT(f.profile_bytes, bytes_after_one + 4096) << "freed profiles are not reused";
  EXPECT_EQ(lookup(idx, r.hash)->plan(), "plan-1999");
}

TEST(KeyIndexTimes, OnlyKeysWithTimesHoldThemAndFreedOnesAreReused) {
  KeyIndex idx;
  for (std::uint32_t n = 0; n < 100; ++n) idx.upsert(key(n, hash_of(n)));
  EXPECT_EQ(idx.footprint().times, 0u);
  for (std::uint32_t n = 0; n < 50; ++n) {
    KeyRecord r = key(n, hash_of(n));
    r.expires_at = 1000 + n;
    idx.upsert(r);
  }
  EXPECT_GE(idx.footprint().times, 50 * sizeof(KeyTimes));
  for (std::uint32_t n = 0; n < 50; ++n) idx.upsert(key(n, hash_of(n)));  // times removed
  for (std::uint32_t n = 50; n < 100; ++n) {  // fifty other keys take their places
    KeyRecord r = key(n, hash_of(n));
    r.revoked_at = 2000;
    r.rotated_at = 1500;
    idx.upsert(r);
  }
  // 100 keys had times, never more than 50 at once: 50 places (and a free list).
  EXPECT_LT(idx.footprint().times, 100 * sizeof(KeyTimes));
  auto expired = lookup(idx, hash_of(3));
  EXPECT_EQ(expired->expires_at(), 0);
  auto revoked = lookup(idx, hash_of(60));
  EXPECT_EQ(revoked->revoked_at(), 2000);
  EXPECT_EQ(revoked->rotated_at(), 1500);
  EXPECT_EQ(revoked->expires_at(), 0);
  EXPECT_EQ(idx.count_active(1999), 100u);
  EXPECT_EQ(idx.count_active(2000), 50u);
}

TEST(KeyIndexText, ShorterTextIsRewrittenInPlaceAndGarbageIsCompacted) {
  KeyIndex idx;
  KeyRecord r = key(1, hash_of(1));
  r.name = std::string(100, 'a');
  idx.upsert(r);
  const size_t text = idx.footprint().text;
  r.name = "short";
  idx.upsert(r);
  EXPECT_EQ(idx.footprint().text, text);  // rewritten in place
  EXPECT_GT(idx.footprint().text_garbage, 0u);
  for (int i = 0; i < 20'000; ++i) {  // each rename longer than the last: appended
    r.name = "renamed-" + std::to_string(i) + std::string(static_cast<size_t>(i % 50), 'x');
    idx.upsert(r);
  }
  const auto f = idx.footprint();
  EXPECT_LT(f.text, 256 * 1024u) << "old text is never reclaimed";
  EXPECT_EQ(lookup(idx, r.hash)->name(), r.name);
  EXPECT_EQ(lookup(idx, r.hash)->id(), r.id);
}

TEST(KeyIndexText, CompactionKeepsEveryKeysText) {
  KeyIndex idx;
  for (std::uint32_t n = 0; n < 500; ++n) idx.upsert(key(n, hash_of(n)));
  KeyRecord r = key(7, hash_of(7));
  for (int i = 0; i < 5000; ++i) {  // enough garbage for several compactions
    r.name = std::string(static_cast<size_t>(50 + i % 100), 'z') + std::to_string(i);
    idx.upsert(r);
  }
  for (std::uint32_t n = 0; n < 500; ++n) {
    auto got = lookup(idx, hash_of(n));
    ASSERT_TRUE(got) << n;
    EXPECT_EQ(got->name(), n == 7 ? r.name : "name-" + std::to_string(n));
    EXPECT_EQ(got->owner(), "owner-" + std::to_string(n % 7));
  }
}

TEST(KeyIndexCopies, AnAuthKeyOutlivesChangesToTheIndex) {
  KeyIndex idx;
  KeyRecord r = key(1, hash_of(1));
  r.plan = "pro";
  r.scopes = {"read"};
  idx.upsert(r);
  auto before = lookup(idx, r.hash);
  ASSERT_TRUE(before);
  r.name = std::string(200, 'x');  // moves the text
  r.plan = "team";                 // frees the profile the copy came from
  r.scopes = {"write"};
  idx.upsert(r);
  for (int i = 0; i < 100; ++i) idx.upsert(key(100 + i, hash_of(100 + i)));  // reuse memory
  EXPECT_EQ(before->name(), "name-1");
  EXPECT_EQ(before->plan(), "pro");
  EXPECT_TRUE(before->has_scope("read"));
  EXPECT_EQ(lookup(idx, r.hash)->plan(), "team");
}

TEST(KeyIndexMeters, AKeyWithoutCreditsGetsItsMeterOnItsFirstRequest) {
  KeyIndex idx;
  for (std::uint32_t n = 0; n < 100; ++n) idx.upsert(key(n, hash_of(n)));
  EXPECT_EQ(idx.meters().size(), 0u);  // none for keys without credits until asked
  KeyMeter* first = nullptr;
  KeyMeter* again = nullptr;
  idx.visit(hash_of(3), [&](const IndexedKey& k) { first = &idx.meter(k); });
  idx.visit(hash_of(3), [&](const IndexedKey& k) { again = &idx.meter(k); });
  ASSERT_NE(first, nullptr);
  EXPECT_EQ(first, again);
  EXPECT_EQ(first->key_id(), key(3, {}).id);
  EXPECT_EQ(idx.meters().size(), 1u);
}

TEST(KeyIndexMeters, CreditsReachTheMeterWithTheRecordAndLeaveWithIt) {
  KeyIndex idx;
  KeyRecord r = key(1, hash_of(1));
  r.credits = Credits{5, std::nullopt, 0};
  r.credits_version = 1;
  idx.upsert(r);
  KeyMeter* m = nullptr;
  idx.visit(r.hash, [&](const IndexedKey& k) { m = &idx.meter(k); });
  ASSERT_NE(m, nullptr);
  ASSERT_NE(m->account(), nullptr);
  EXPECT_TRUE(m->account()->enabled());
  EXPECT_EQ(m->account()->peek(1, 0).remaining, 5);
  r.credits.reset();  // an operator removed them: the record's meter hears of it
  r.credits_version = 2;
  idx.upsert(r);
  EXPECT_FALSE(m->account()->enabled());
}

TEST(KeyIndexThreads, ReadersSeeWholeKeysWhileTheWriterChangesThem) {
  KeyIndex idx;
  constexpr std::uint32_t kKeys = 64;
  for (std::uint32_t n = 0; n < kKeys; ++n) idx.upsert(key(n, hash_of(n)));
  std::atomic<bool> done{false};
  std::atomic<int> torn{0};
  auto reader = [&] {
    for (std::uint32_t i = 0; !done; ++i) {
      const std::uint32_t n = i % kKeys;
      idx.visit(hash_of(n), [&](const IndexedKey& k) {
        AuthKey copy(k);
        // The writer keeps name and plan of a key in step: "v<v>-<n>" and "p<v>".
        const std::string_view name = copy.name();
        const std::string_view plan = copy.plan();
        if (name.starts_with("name-")) return;  // not rewritten yet
        const auto dash = name.find('-');
        if (dash == std::string_view::npos || name.substr(dash + 1) != std::to_string(n) ||
            plan != "p" + std::string(name.substr(1, dash - 1)))
          ++torn;
      });
    }
  };
  std::thread r1(reader), r2(reader);
  for (int v = 0; v < 3000; ++v) {
    for (std::uint32_t n = 0; n < kKeys; n += 3) {
      KeyRecord r = key(n, hash_of(n));
      // (fmt: g++ 12 warns falsely on "literal" + std::string here)
      r.name = fmt::format("v{}-{}", v, n);
      r.owner = std::string(static_cast<size_t>(v % 40), 'o');  // text moves, is compacted
      r.plan = fmt::format("p{}", v);                           // profiles freed and reused
      idx.upsert(r);
    }
    const auto grown = kKeys + static_cast<std::uint32_t>(v);  // the table grows
    idx.upsert(key(grown, hash_of(grown)));
  }
  done = true;
  r1.join();
  r2.join();
  EXPECT_EQ(torn.load(), 0);
}

// apply(span), the start-up load's batches: rows grouped by shard, keys across
// every shard and a table's growth all found, a key's later row wins over its
// earlier one in the same batch, and the highest change applied is remembered.
TEST(KeyIndexBatch, ABatchIndexesEveryRowAndKeepsAKeysRowsInOrder) {
  KeyIndex idx;
  std::vector<KeyRecord> rows;
  constexpr std::uint32_t kKeys = 3000;  // ~47 a shard: past a shard table's first growths
  for (std::uint32_t n = 0; n < kKeys; ++n) {
    rows.push_back(key(n, hash_of(n, static_cast<std::uint8_t>(n % 64))));
    rows.back().change_seq = n + 1;
  }
  KeyRecord renamed = rows[7];  // the same key again, later in the batch
  renamed.name = "renamed";
  renamed.change_seq = 1;
  rows.push_back(renamed);
  idx.apply(std::span<const KeyRecord>(rows.data(), 1000));
  idx.apply(std::span<const KeyRecord>(rows).subspan(1000));
  EXPECT_EQ(idx.size(), kKeys);
  EXPECT_EQ(idx.applied_seq.load(), std::int64_t{kKeys});  // the highest, not the last
  for (std::uint32_t n = 0; n < kKeys; ++n) {
    auto got = lookup(idx, rows[n].hash);
    ASSERT_TRUE(got) << n;
    EXPECT_EQ(got->name(), n == 7 ? "renamed" : rows[n].name) << n;
  }
  EXPECT_FALSE(lookup(idx, hash_of(kKeys, 3)));
  idx.apply(std::span<const KeyRecord>());  // an empty batch changes nothing
  EXPECT_EQ(idx.size(), kKeys);
}
