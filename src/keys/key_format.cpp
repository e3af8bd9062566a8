#include "keygate/keys/key_format.hpp"

#include <openssl/rand.h>

#include <array>
#include <boost/crc.hpp>
#include <stdexcept>

namespace keygate {

namespace {
constexpr std::string_view kAlphabet =
    "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
// 248 = 4 * 62: bytes at or above it are rejected, so every symbol is equally likely.
constexpr unsigned kRejectFrom = 248;

constexpr std::array<bool, 256> base62_table() {
  std::array<bool, 256> t{};
  for (char c : kAlphabet) t[static_cast<unsigned char>(c)] = true;
  return t;
}
constexpr auto kIsBase62 = base62_table();
}  // namespace

bool is_base62(std::string_view s) {
  for (char c : s)
    if (!kIsBase62[static_cast<unsigned char>(c)]) return false;
  return true;
}

std::string random_base62(size_t n) {
  std::string out;
  out.reserve(n);
  unsigned char buf[64];
  while (out.size() < n) {
    if (RAND_bytes(buf, sizeof buf) != 1) throw std::runtime_error("RAND_bytes failed");
    for (unsigned char b : buf) {
      if (b >= kRejectFrom) continue;
      out += kAlphabet[b % 62];
      if (out.size() == n) break;
    }
  }
  return out;
}

std::string generate_key_id() {
  return "key_" + random_base62(kKeyIdChars);
}

std::string checksum_base62(std::string_view text) {
  boost::crc_32_type crc;
  crc.process_bytes(text.data(), text.size());
  std::uint64_t v = crc.checksum();
  std::string out(kChecksumChars, '0');
  for (size_t i = kChecksumChars; i-- > 0;) {  // 62^6 > 2^32: always fits
    out[i] = kAlphabet[v % 62];
    v /= 62;
  }
  return out;
}

KeyFormat::KeyFormat(const KeysConfig& cfg)
    : head_(cfg.prefix + "_" + (cfg.environment ? *cfg.environment + "_" : "")),
      display_len_(static_cast<size_t>(cfg.display_prefix_length)) {}

std::string KeyFormat::generate() const {
  std::string key = head_ + random_base62(kRandomChars);
  key += checksum_base62(key);
  return key;
}

bool KeyFormat::well_formed(std::string_view key) const {
  return well_shaped(key) && checksum_matches(key);
}

bool KeyFormat::well_shaped(std::string_view key) const {
  return key.size() == length() && key.starts_with(head_) && is_base62(key.substr(head_.size()));
}

bool KeyFormat::checksum_matches(std::string_view key) const {
  return key.size() > kChecksumChars &&
         checksum_base62(key.substr(0, key.size() - kChecksumChars)) ==
             key.substr(key.size() - kChecksumChars);
}

std::string KeyFormat::display_prefix(std::string_view key) const {
  return std::string(key.substr(0, std::min(display_len_, key.size())));
}

}  // namespace keygate
