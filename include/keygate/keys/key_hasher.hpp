#pragma once
// SHA-256 of the whole key, or HMAC-SHA-256 with keys.pepper. Only this
// digest is ever stored; the plaintext key is never written anywhere.
#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace keygate {

using KeyHash = std::array<std::uint8_t, 32>;

struct KeyHashHasher {
  size_t operator()(const KeyHash& h) const noexcept {
    size_t v;
    static_assert(sizeof v <= sizeof h);
    __builtin_memcpy(&v, h.data(), sizeof v);  // already uniformly distributed
    return v;
  }
};

class KeyHasher {
 public:
  explicit KeyHasher(std::optional<std::string> pepper = std::nullopt)
      : pepper_(std::move(pepper)) {}
  KeyHash hash(std::string_view key) const;

 private:
  std::optional<std::string> pepper_;
};

std::string to_hex(const KeyHash& h);

}  // namespace keygate
