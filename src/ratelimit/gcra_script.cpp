#include "ratelimit/gcra_script.hpp"

#include <openssl/sha.h>

#include <array>
#include <string>

namespace keygate::redis {

namespace {

// Lua numbers are doubles, exact below 2^53: a Unix time in ns is not, so the
// TAT is kept as whole microseconds plus a three-digit ns remainder, and all
// arithmetic is done in ns relative to now (bounded by the window).
constexpr std::string_view kScript = R"lua(
local t = redis.call('TIME')
local now_us = tonumber(t[1]) * 1000000 + tonumber(t[2])

local function gcra(take)
  local interval = tonumber(ARGV[1])
  if interval == 0 then return {1, 0, 0, 0} end
  local capacity = tonumber(ARGV[2])
  local window = interval * capacity
  local used = 0
  local v = redis.call('GET', KEYS[1])
  if v then
    local tat_us, tat_ns, old_interval, old_capacity =
      string.match(v, '^(%d+)(%d%d%d) (%d+) (%d+)$')
    if tat_us then
      used = (tonumber(tat_us) - now_us) * 1000 + tonumber(tat_ns)
      if used < 0 then used = 0 end
      if old_interval ~= ARGV[1] or old_capacity ~= ARGV[2] then
        local oi = tonumber(old_interval)
        local ow = oi * tonumber(old_capacity)
        local tokens = (ow - math.min(used, ow)) / oi
        if tokens > capacity then tokens = capacity end
        used = math.floor((capacity - tokens) * interval)
      end
    end
  end
  local left = math.floor((window - math.min(used, window)) / interval)
  if take == '0' then
    return {1, left, used, 0}
  end
  local nxt = used + interval * tonumber(take)
  if nxt > window then
    return {0, left, used, nxt - window}
  end
  redis.call('SET', KEYS[1],
    string.format('%d%03d %s %s', now_us + math.floor(nxt / 1000), nxt % 1000, ARGV[1], ARGV[2]),
    'PX', string.format('%d', math.ceil(nxt / 1000000)))
  return {1, math.floor((window - nxt) / interval), nxt, 0}
end

if #ARGV < 9 then
  local r = gcra(ARGV[3])
  r[5] = -1
  return r
end

local cost = tonumber(ARGV[4])
local version = tonumber(ARGV[6])
local every = tonumber(ARGV[9])
local c = redis.call('HMGET', KEYS[2], 'b', 'v', 'a')
local balance, at
if c[1] and c[2] and c[3] and tonumber(c[2]) >= version then
  balance, version, at = tonumber(c[1]), tonumber(c[2]), tonumber(c[3])
else
  balance, at = tonumber(ARGV[5]), tonumber(ARGV[7])
end
local now_ms = math.floor(now_us / 1000)
local next_refill = 0
if every > 0 then
  if now_ms >= at + every then
    at = at + math.floor((now_ms - at) / every) * every
    balance = math.max(balance, tonumber(ARGV[8]))
  end
  next_refill = at + every
end
local can_pay = balance >= cost
local r
if can_pay then r = gcra(ARGV[3]) else r = gcra('0') end
if can_pay and r[1] == 1 then balance = balance - cost end
redis.call('HSET', KEYS[2], 'b', string.format('%d', balance), 'v', string.format('%d', version),
  'a', string.format('%d', at))
redis.call('PEXPIRE', KEYS[2], 604800000)
r[5] = can_pay and 1 or 0
r[6] = balance
r[7] = next_refill
return r
)lua";

std::string sha1_hex(std::string_view text) {
  std::array<unsigned char, SHA_DIGEST_LENGTH> digest{};
  SHA1(reinterpret_cast<const unsigned char*>(text.data()), text.size(), digest.data());
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  for (unsigned char b : digest) {
    out += kHex[b >> 4];
    out += kHex[b & 15];
  }
  return out;
}

}  // namespace

std::string_view gcra_script() {
  return kScript;
}

std::string_view gcra_script_sha1() {
  static const std::string sha = sha1_hex(kScript);  // immutable once built
  return sha;
}

}  // namespace keygate::redis
