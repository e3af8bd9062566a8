#include "keygate/ratelimit/deny_cache.hpp"

#include <algorithm>

namespace keygate {

std::optional<Decision> DenyCache::check(std::string_view bucket, const BucketShape& shape,
                                         std::int64_t now_ns, bool consume) {
  if (entries_.empty()) return std::nullopt;
  auto it = entries_.find(bucket);
  if (it == entries_.end()) return std::nullopt;
  const Entry& e = it->second;
  if (!(e.shape == shape) || now_ns >= e.token_at) {  // a token is due, or the rate changed
    entries_.erase(it);
    return std::nullopt;
  }
  Decision d;
  d.allowed = !consume;
  d.limit = shape.capacity;
  d.remaining = 0;
  d.reset_ns = e.full_at - now_ns;
  d.retry_ns = consume ? e.token_at - now_ns : 0;
  d.window_ns = shape.window_ns;
  return d;
}

void DenyCache::note(std::string_view bucket, const BucketShape& shape, const Decision& d,
                     std::int64_t sent_ns) {
  // Whether taken or refused, the next token comes once the bucket's debt
  // (reset) plus one interval fits in the window again.
  std::int64_t token_in = d.reset_ns + shape.interval_ns - shape.window_ns;
  if (token_in <= 0) {
    if (!entries_.empty()) {
      auto it = entries_.find(bucket);
      if (it != entries_.end()) entries_.erase(it);
    }
    return;
  }
  Entry e{shape, sent_ns + token_in, sent_ns + d.reset_ns};
  auto it = entries_.find(bucket);
  if (it != entries_.end()) {
    it->second = e;
    return;
  }
  if (entries_.size() >= sweep_at_) {
    sweep(sent_ns);
    sweep_at_ = std::max<size_t>(1024, entries_.size() * 2);
  }
  entries_.emplace(std::string(bucket), e);
}

void DenyCache::sweep(std::int64_t now_ns) {
  std::erase_if(entries_, [&](const auto& kv) { return kv.second.token_at <= now_ns; });
}

}  // namespace keygate
