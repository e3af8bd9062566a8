#include "keygate/ratelimit/bucket_table.hpp"

#include <mutex>

namespace keygate {

Decision BucketTable::take(std::string_view id, const Rate& rate, std::uint32_t n) {
  const BucketShape shape = BucketShape::of(rate);
  Shard& s = shards_[Hash{}(id) % kShards];
  std::int64_t now = clock_.now_ns();
  {
    std::shared_lock lock(s.mu);
    auto it = s.buckets.find(id);
    if (it != s.buckets.end() && it->second.shape() == shape) return it->second.take(now, n);
  }
  // First use, or the rate changed (reload, key update): exclusive, rare.
  std::unique_lock lock(s.mu);
  auto it = s.buckets.find(id);
  if (it == s.buckets.end())
    it = s.buckets.try_emplace(std::string(id), shape).first;
  else
    it->second.reshape(shape, now);
  return it->second.take(now, n);
}

Decision BucketTable::peek(std::string_view id, const Rate& rate) const {
  const BucketShape shape = BucketShape::of(rate);
  const Shard& s = shards_[Hash{}(id) % kShards];
  std::int64_t now = clock_.now_ns();
  Decision d;
  d.limit = shape.capacity;
  d.window_ns = shape.window_ns;
  d.remaining = shape.capacity;
  std::shared_lock lock(s.mu);
  auto it = s.buckets.find(id);
  if (it != s.buckets.end() && it->second.shape() == shape) {
    d.remaining = it->second.available(now);
    d.reset_ns = it->second.until_full(now);
  }
  return d;
}

size_t BucketTable::size() const {
  size_t n = 0;
  for (const auto& s : shards_) {
    std::shared_lock lock(s.mu);
    n += s.buckets.size();
  }
  return n;
}

size_t BucketTable::evict_idle(std::chrono::nanoseconds idle) {
  std::int64_t cutoff = clock_.now_ns() - idle.count();
  size_t removed = 0;
  for (auto& s : shards_) {
    std::unique_lock lock(s.mu);
    removed += std::erase_if(s.buckets, [&](const auto& kv) { return kv.second.full(cutoff); });
  }
  return removed;
}

}  // namespace keygate
