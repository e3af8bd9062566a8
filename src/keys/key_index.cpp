#include "keygate/keys/key_index.hpp"

#include <algorithm>
#include <mutex>

namespace keygate {

AuthKey::AuthKey(const KeyRecord& r) {
  id_len_ = static_cast<std::uint8_t>(std::min(r.id.size(), id_.size()));
  std::copy_n(r.id.begin(), id_len_, id_.begin());
  enabled_ = r.enabled;
  name_len_ = static_cast<std::uint16_t>(r.name.size());
  owner_len_ = static_cast<std::uint16_t>(r.owner.size());
  plan_len_ = static_cast<std::uint16_t>(r.plan.size());
  blob_ = r.name + r.owner + r.plan + join_csv(r.scopes);
  blob_.shrink_to_fit();
  for (const auto& ip : r.allowed_ips)
    if (auto c = parse_cidr(ip)) nets_.push_back(*c);
  rate_ = r.rate;
  expires_at_ = r.expires_at.value_or(0);
  revoked_at_ = r.revoked_at.value_or(0);
  rotated_at_ = r.rotated_at.value_or(0);
}

AuthKey& AuthKey::operator=(const AuthKey& o) {
  id_ = o.id_;
  id_len_ = o.id_len_;
  enabled_ = o.enabled_;
  name_len_ = o.name_len_;
  owner_len_ = o.owner_len_;
  plan_len_ = o.plan_len_;
  blob_ = o.blob_;
  nets_ = o.nets_;
  rate_ = o.rate_;
  expires_at_ = o.expires_at_;
  revoked_at_ = o.revoked_at_;
  rotated_at_ = o.rotated_at_;
  meter_.store(o.meter_.load(std::memory_order_acquire), std::memory_order_release);
  last_usage_report_.store(o.last_usage_report_.load(std::memory_order_relaxed),
                           std::memory_order_relaxed);
  return *this;
}

bool AuthKey::has_scope(std::string_view scope) const {
  std::string_view rest = scopes_csv();
  while (!rest.empty()) {
    auto comma = rest.find(',');
    if (rest.substr(0, comma) == scope) return true;
    if (comma == std::string_view::npos) break;
    rest.remove_prefix(comma + 1);
  }
  return false;
}

bool AuthKey::claim_usage_report(UnixMillis now, UnixMillis interval) const {
  UnixMillis last = last_usage_report_.load(std::memory_order_relaxed);
  if (now - last < interval) return false;
  return last_usage_report_.compare_exchange_strong(last, now, std::memory_order_relaxed);
}

KeyMeter& KeyIndex::meter(const AuthKey& indexed) const {
  if (KeyMeter* m = indexed.meter_.load(std::memory_order_acquire)) return *m;
  KeyMeter& m = meters_.meter(indexed.id());
  indexed.meter_.store(&m, std::memory_order_release);
  return m;
}

void KeyIndex::upsert(const KeyRecord& r) {
  Shard& s = shard(r.hash);
  AuthKey k(r);
  // Credits changes reach the meter before the new record serves a request.
  k.meter_.store(meters_.apply(r), std::memory_order_relaxed);
  std::unique_lock lock(s.mu);
  auto [it, inserted] = s.map.try_emplace(r.hash, k);
  if (!inserted) it->second = k;
  if (inserted && r.foreign_format) foreign_keys_.fetch_add(1, std::memory_order_relaxed);
}

size_t KeyIndex::size() const {
  size_t n = 0;
  for (const auto& s : shards_) {
    std::shared_lock lock(s.mu);
    n += s.map.size();
  }
  return n;
}

size_t KeyIndex::count_active(UnixMillis now) const {
  size_t n = 0;
  for (const auto& s : shards_) {
    std::shared_lock lock(s.mu);
    for (const auto& [h, k] : s.map) {
      if (k.active(now)) ++n;
    }
  }
  return n;
}

}  // namespace keygate
