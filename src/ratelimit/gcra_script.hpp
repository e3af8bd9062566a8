#pragma once
// The shared bucket: TokenBucket's GCRA (token_bucket.cpp) as a Redis Lua
// script on Redis' clock (TIME), so every replica reads one clock.
//   KEYS[1] the bucket; ARGV[1] interval_ns (time to refill one token),
//   ARGV[2] capacity, ARGV[3] the tokens to take (a route's cost; all or none), "0" only looks.
// Returns {allowed, remaining, reset_ns, retry_ns}, the fields of Decision.
// The value is "<tat_ns> <interval_ns> <capacity>": the Unix time in ns at
// which the bucket is full again and the shape it was written with (a changed
// rate keeps the tokens held, like TokenBucket::reshape). The key expires when
// the bucket is full, so Redis memory follows active keys only.
#include <string_view>

namespace keygate::redis {

std::string_view gcra_script();
std::string_view gcra_script_sha1();  // hex, as SCRIPT LOAD answers

}  // namespace keygate::redis
