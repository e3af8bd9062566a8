#pragma once
// "No token until T", per I/O thread: once Redis said a bucket holds no token
// (a denial, or an admission that took the last one), further requests for it
// are denied here without a round trip until the time Redis named. The time
// is converted to the local monotonic clock from the moment the command was
// SENT: Redis read its clock after that, so the local deadline is never later
// than the real one and the cache denies only what Redis would deny (it can
// under-admit by clock drift at most, never over-admit).
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>

#include "keygate/ratelimit/token_bucket.hpp"

namespace keygate {

class DenyCache {
 public:
  // The local answer while `bucket` (of this shape) has no token; nullopt:
  // ask Redis. A look (consume = false) is answered as allowed, 0 remaining.
  std::optional<Decision> check(std::string_view bucket, const BucketShape& shape,
                                std::int64_t now_ns, bool consume = true);
  // Remembers Redis' decision for a command sent at `sent_ns` (local clock).
  void note(std::string_view bucket, const BucketShape& shape, const Decision& d,
            std::int64_t sent_ns);
  size_t size() const { return entries_.size(); }

 private:
  struct Entry {
    BucketShape shape;
    std::int64_t token_at = 0;  // local time of the next token
    std::int64_t full_at = 0;   // local time the bucket is full again
  };
  struct Hash {
    using is_transparent = void;
    size_t operator()(std::string_view s) const noexcept {
      return std::hash<std::string_view>{}(s);
    }
  };
  void sweep(std::int64_t now_ns);

  std::unordered_map<std::string, Entry, Hash, std::equal_to<>> entries_;
  size_t sweep_at_ = 1024;  // sweeps expired entries when the map grows past this
};

}  // namespace keygate
