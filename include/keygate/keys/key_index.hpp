#pragma once
// In-memory "hash -> key" lookup for the request path, sized for 10M keys at
// about 125 bytes each (the SHA-256 alone is 32; src/keys/key_index.cpp has
// the layout). Sharded so that readers on different I/O threads rarely meet,
// and a writer (the store worker) blocks one shard only. Never touches the
// store.
//
// Threads: readers visit a key under its shard's shared lock and copy what
// they keep (AuthKey) before it is released; writers change a shard under its
// exclusive lock. Only an indexed key's two atomics (usage-report throttle,
// meter) are written under the shared lock.
#include <array>
#include <atomic>
#include <cstdint>
#include <memory>
#include <optional>
#include <shared_mutex>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "keygate/keys/cidr.hpp"
#include "keygate/keys/key_meter.hpp"
#include "keygate/keys/key_record.hpp"

namespace keygate {

// A key's lifecycle times, beside its slot only if it has any.
struct KeyTimes {
  UnixMillis expires_at = 0, revoked_at = 0, rotated_at = 0;  // 0: none
  bool any() const { return expires_at || revoked_at || rotated_at; }
  // Not revoked and not expired at `now`.
  bool active(UnixMillis now) const {
    return (revoked_at == 0 || revoked_at > now) && (expires_at == 0 || expires_at > now);
  }
};

// One indexed key as KeyIndex::visit shows it: views into the index, valid
// only during the visit. Copy what outlives it into an AuthKey.
class IndexedKey {
 public:
  std::string_view id() const { return id_; }
  std::string_view name() const { return name_; }
  std::string_view owner() const { return owner_; }
  std::string_view plan() const { return plan_; }
  std::string_view scopes_csv() const { return scopes_csv_; }
  const std::vector<Cidr>& allowed_nets() const { return *nets_; }
  const std::optional<Rate>& rate() const { return *rate_; }
  bool enabled() const { return enabled_; }
  const KeyTimes& times() const { return times_; }

  // True at most once per `interval` per key: throttles last-used writes
  // without a lock (one CAS on the indexed key's own word).
  bool claim_usage_report(UnixMillis now, UnixMillis interval) const;

 private:
  friend class KeyIndex;
  IndexedKey() = default;
  std::string_view id_, name_, owner_, plan_, scopes_csv_;
  const std::vector<Cidr>* nets_ = nullptr;
  const std::optional<Rate>* rate_ = nullptr;
  KeyTimes times_;
  bool enabled_ = true;
  std::atomic<UnixMillis>* last_usage_report_ = nullptr;
  std::atomic<KeyMeter*>* meter_ = nullptr;
};

// What authentication, rate limiting and identity headers need of a key, owned
// by the request that authenticated with it.
class AuthKey {
 public:
  AuthKey() = default;
  explicit AuthKey(const KeyRecord& r);
  explicit AuthKey(const IndexedKey& k) { assign(k); }
  // Becomes a copy of k, in the buffers it already has: a request's key
  // reuses the last one's (no allocation per request once they are big enough).
  void assign(const IndexedKey& k);

  std::string_view id() const { return {id_.data(), id_len_}; }
  std::string_view name() const { return std::string_view(blob_).substr(0, name_len_); }
  std::string_view owner() const { return std::string_view(blob_).substr(name_len_, owner_len_); }
  std::string_view plan() const {
    return std::string_view(blob_).substr(size_t{name_len_} + owner_len_, plan_len_);
  }
  std::string_view scopes_csv() const {
    return std::string_view(blob_).substr(size_t{name_len_} + owner_len_ + plan_len_);
  }
  bool has_scope(std::string_view scope) const;
  const std::vector<Cidr>& allowed_nets() const { return nets_; }
  const std::optional<Rate>& rate() const { return rate_; }
  bool enabled() const { return enabled_; }
  UnixMillis expires_at() const { return times_.expires_at; }  // 0: never
  UnixMillis revoked_at() const { return times_.revoked_at; }  // 0: not revoked
  UnixMillis rotated_at() const { return times_.rotated_at; }  // 0: not rotated
  // Enabled, not revoked and not expired at `now`.
  bool active(UnixMillis now) const { return enabled_ && times_.active(now); }

 private:
  void set_text(std::string_view id, std::string_view name, std::string_view owner,
                std::string_view plan, std::string_view scopes_csv);

  std::array<char, 24> id_{};
  std::uint8_t id_len_ = 0;
  bool enabled_ = true;
  std::uint16_t name_len_ = 0, owner_len_ = 0, plan_len_ = 0;
  std::string blob_;  // name + owner + plan + scopes (comma-separated)
  std::vector<Cidr> nets_;
  std::optional<Rate> rate_;
  KeyTimes times_;
};

class KeyIndex {
 public:
  KeyIndex();
  ~KeyIndex();
  KeyIndex(const KeyIndex&) = delete;
  KeyIndex& operator=(const KeyIndex&) = delete;

  // Calls f(const IndexedKey&) under the shard's read lock; false if unknown.
  template <class F>
  bool visit(const KeyHash& h, F&& f) const {
    std::shared_lock<std::shared_mutex> lock;
    std::optional<IndexedKey> k = find(h, lock);
    if (!k) return false;
    f(static_cast<const IndexedKey&>(*k));
    return true;
  }
  // Adds or replaces the key with r.hash (a key's hash never changes).
  void upsert(const KeyRecord& r);
  // A row read from the store in change order: upsert, and remember the
  // highest change applied so the catch-up reads only newer rows. (A row this
  // process just wrote is upsert()ed: its sequence may be ahead of a change
  // another writer committed before it that is not read yet.)
  void apply(const KeyRecord& r) {
    upsert(r);
    if (r.change_seq > applied_seq) applied_seq = r.change_seq;
  }
  // Rows read from the store, each key at most once, as apply(r) each but
  // grouped by shard: one lock per shard, and the next rows' table entries
  // are fetched while a row is applied (a table of millions is never in
  // cache: one at a time, every row waits for its own miss).
  void apply(std::span<const KeyRecord> rows);
  size_t size() const;
  // True once any foreign-format (imported) key is indexed: only then is a
  // credential that fails the keygate format worth a hash and a lookup.
  bool has_foreign_keys() const { return foreign_keys_.load(std::memory_order_relaxed) > 0; }
  // Keys that are enabled, not revoked and not expired at `now`.
  size_t count_active(UnixMillis now) const;

  // The meter (credits, usage) of an indexed key, created on its first
  // request; remembered on the indexed key so later requests find it without
  // a lock. Meters are counters beside the index, not its contents, hence
  // reachable through a const index.
  KeyMeter& meter(const IndexedKey& indexed) const;
  MeterBoard& meters() const { return meters_; }

  // Where the index's memory goes, in bytes (approximate for the profiles),
  // for the start-up benchmark and tests.
  struct Footprint {
    size_t keys = 0;
    size_t slots = 0;  // 64 bytes a key
    size_t table = 0;  // hash -> slot, 8 bytes an entry, at most 3/4 full
    size_t text = 0;   // ids, names, owners; text_garbage of it unreferenced
    size_t text_garbage = 0;
    size_t profiles = 0;  // interned (plan, scopes, allowed IPs, rate) tuples
    size_t profile_bytes = 0;
    size_t times = 0;  // expiry, revocation and rotation times, for the keys with any
    size_t total() const { return slots + table + text + profile_bytes + times; }
  };
  Footprint footprint() const;

  std::atomic<std::int64_t> applied_seq{0};  // highest store change applied

 private:
  struct Shard;
  std::optional<IndexedKey> find(const KeyHash& h, std::shared_lock<std::shared_mutex>& lock) const;
  static size_t shard_number(const KeyHash& h) { return h[31] % kShards; }
  Shard& shard(const KeyHash& h) const;
  void upsert(Shard& s, const KeyRecord& r);  // under s.mu

  static constexpr size_t kShards = 64;
  std::unique_ptr<Shard[]> shards_;
  mutable MeterBoard meters_;
  std::atomic<size_t> foreign_keys_{0};  // a key's format never changes: counted on insert
};

}  // namespace keygate
