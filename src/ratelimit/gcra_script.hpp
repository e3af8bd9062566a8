#pragma once
// The shared bucket: TokenBucket's GCRA (token_bucket.cpp) as a Redis Lua
// script on Redis' clock (TIME), so every replica reads one clock.
//   KEYS[1] the bucket; ARGV[1] interval_ns (time to refill one token; "0": no
//   bucket, unlimited), ARGV[2] capacity, ARGV[3] the tokens to take (a route's
//   cost; all or none), "0" only looks.
// Returns {allowed, remaining, reset_ns, retry_ns, ...}, the fields of Decision.
//
// With credits (SPEC §11), in the same step: KEYS[2] the key's balance, a hash
// {b: balance, v: credits_version, a: last refill on the grid, Unix ms};
// ARGV[4] cost, ARGV[5..9] the caller's balance, version, last refill, refill
// amount and interval (ms, "0": none), which seed the hash when it is missing
// or older (an operator's new balance). Credits first: a balance that cannot
// pay only looks at the bucket; tokens refused spend no credits.
// Returns, after the four: credits {1 could pay | 0 could not | -1 not asked},
// the balance after the step, the next refill (Unix ms, 0: none). The hash
// expires after a week idle: the store's balance seeds it again.
// The value is "<tat_ns> <interval_ns> <capacity>": the Unix time in ns at
// which the bucket is full again and the shape it was written with (a changed
// rate keeps the tokens held, like TokenBucket::reshape). The key expires when
// the bucket is full, so Redis memory follows active keys only.
#include <string_view>

namespace keygate::redis {

std::string_view gcra_script();
std::string_view gcra_script_sha1();  // hex, as SCRIPT LOAD answers

}  // namespace keygate::redis
