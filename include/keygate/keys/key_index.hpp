#pragma once
// In-memory "hash -> key" lookup for the request path. Sharded so that readers
// on different I/O threads rarely meet, and writers (store refresh, admin API)
// block one shard only. Never touches the store.
#include <array>
#include <atomic>
#include <optional>
#include <shared_mutex>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "keygate/keys/cidr.hpp"
#include "keygate/keys/key_meter.hpp"
#include "keygate/keys/key_record.hpp"

namespace keygate {

// What authentication, rate limiting and identity headers need of a key,
// packed small: 1M keys must fit in a few hundred MB.
class AuthKey {
 public:
  AuthKey() = default;
  explicit AuthKey(const KeyRecord& r);
  AuthKey(const AuthKey& o) { *this = o; }
  AuthKey& operator=(const AuthKey& o);

  std::string_view id() const { return {id_.data(), id_len_}; }
  std::string_view name() const { return std::string_view(blob_).substr(0, name_len_); }
  std::string_view owner() const { return std::string_view(blob_).substr(name_len_, owner_len_); }
  std::string_view plan() const {
    return std::string_view(blob_).substr(name_len_ + owner_len_, plan_len_);
  }
  std::string_view scopes_csv() const {
    return std::string_view(blob_).substr(size_t{name_len_} + owner_len_ + plan_len_);
  }
  bool has_scope(std::string_view scope) const;
  const std::vector<Cidr>& allowed_nets() const { return nets_; }
  const std::optional<Rate>& rate() const { return rate_; }
  bool enabled() const { return enabled_; }
  UnixMillis expires_at() const { return expires_at_; }  // 0: never
  UnixMillis revoked_at() const { return revoked_at_; }  // 0: not revoked
  UnixMillis rotated_at() const { return rotated_at_; }  // 0: not rotated
  // Enabled, not revoked and not expired at `now`.
  bool active(UnixMillis now) const {
    return enabled_ && (revoked_at_ == 0 || revoked_at_ > now) &&
           (expires_at_ == 0 || expires_at_ > now);
  }

  // True at most once per `interval` per key: throttles last-used writes
  // without a lock (one CAS on the key's own word).
  bool claim_usage_report(UnixMillis now, UnixMillis interval) const;

 private:
  std::array<char, 24> id_{};
  std::uint8_t id_len_ = 0;
  bool enabled_ = true;
  std::uint16_t name_len_ = 0, owner_len_ = 0, plan_len_ = 0;
  std::string blob_;  // name + owner + plan + scopes (comma-separated)
  std::vector<Cidr> nets_;
  std::optional<Rate> rate_;
  UnixMillis expires_at_ = 0, revoked_at_ = 0, rotated_at_ = 0;
  mutable std::atomic<UnixMillis> last_usage_report_{0};
  mutable std::atomic<KeyMeter*> meter_{nullptr};  // KeyIndex::meter
  friend class KeyIndex;
};

class KeyIndex {
 public:
  // Calls f(const AuthKey&) under the shard's read lock; false if unknown.
  template <class F>
  bool visit(const KeyHash& h, F&& f) const {
    const Shard& s = shard(h);
    std::shared_lock lock(s.mu);
    auto it = s.map.find(h);
    if (it == s.map.end()) return false;
    f(it->second);
    return true;
  }
  void upsert(const KeyRecord& r);
  // A row read from the store in change order: upsert, and remember the
  // highest change applied so the catch-up reads only newer rows. (A row this
  // process just wrote is upsert()ed: its sequence may be ahead of a change
  // another writer committed before it that is not read yet.)
  void apply(const KeyRecord& r) {
    upsert(r);
    if (r.change_seq > applied_seq) applied_seq = r.change_seq;
  }
  size_t size() const;
  // True once any foreign-format (imported) key is indexed: only then is a
  // credential that fails the keygate format worth a hash and a lookup.
  bool has_foreign_keys() const { return foreign_keys_.load(std::memory_order_relaxed) > 0; }
  // Keys that are enabled, not revoked and not expired at `now`.
  size_t count_active(UnixMillis now) const;

  // The meter (credits, usage) of an indexed key, created on its first
  // request; remembered on the indexed record so later requests find it
  // without a lock. Meters are counters beside the index, not its contents,
  // hence reachable through a const index.
  KeyMeter& meter(const AuthKey& indexed) const;
  MeterBoard& meters() const { return meters_; }

  std::atomic<std::int64_t> applied_seq{0};  // highest store change applied

 private:
  struct Shard {
    mutable std::shared_mutex mu;
    std::unordered_map<KeyHash, AuthKey, KeyHashHasher> map;
  };
  static constexpr size_t kShards = 64;
  const Shard& shard(const KeyHash& h) const { return shards_[h[31] % kShards]; }
  Shard& shard(const KeyHash& h) { return shards_[h[31] % kShards]; }
  std::array<Shard, kShards> shards_;
  mutable MeterBoard meters_;
  std::atomic<size_t> foreign_keys_{0};  // a key's format never changes: counted on insert
};

}  // namespace keygate
