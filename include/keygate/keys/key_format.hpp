#pragma once
// Key shape: <prefix>_<env>_<32 random base62><6 base62 CRC32 of everything before>.
// The checksum lets the gateway reject typos and garbage without hashing or a lookup.
#include <optional>
#include <string>
#include <string_view>

#include "keygate/config/config.hpp"

namespace keygate {

inline constexpr size_t kRandomChars = 32;
inline constexpr size_t kChecksumChars = 6;
inline constexpr size_t kKeyIdChars = 20;

class KeyFormat {
 public:
  explicit KeyFormat(const KeysConfig& cfg);

  std::string generate() const;                  // OpenSSL CSPRNG, unbiased base62
  bool well_formed(std::string_view key) const;  // shape + charset + checksum
  // The two halves of well_formed: the gateway checks the shape before the
  // lookup and the checksum only after a miss (a key found by its hash is
  // well formed; the checksum only tells a typo from an unknown key).
  bool well_shaped(std::string_view key) const;  // length, head, base62 body
  bool checksum_matches(std::string_view key) const;
  std::string display_prefix(std::string_view key) const;
  const std::string& head() const { return head_; }  // "kg_live_"
  size_t length() const { return head_.size() + kRandomChars + kChecksumChars; }
  size_t display_prefix_length() const { return display_len_; }

 private:
  std::string head_;
  size_t display_len_;
};

std::string random_base62(size_t n);                 // rejection sampling over RAND_bytes
std::string generate_key_id();                       // "key_" + 20 base62
std::string checksum_base62(std::string_view text);  // CRC32 as 6 base62 chars
bool is_base62(std::string_view s);

}  // namespace keygate
