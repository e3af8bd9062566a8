#include "keygate/keys/key_hasher.hpp"

#include <openssl/core_names.h>
#include <openssl/evp.h>

#include <memory>
#include <stdexcept>

namespace keygate {

namespace {
struct MacCtxFree {
  void operator()(EVP_MAC_CTX* c) const { EVP_MAC_CTX_free(c); }
};
struct MacFree {
  void operator()(EVP_MAC* m) const { EVP_MAC_free(m); }
};
struct MdCtxFree {
  void operator()(EVP_MD_CTX* c) const { EVP_MD_CTX_free(c); }
};
struct MdFree {
  void operator()(EVP_MD* m) const { EVP_MD_free(m); }
};

// SHA-256 with the digest fetched once and one context per thread: the
// one-shot SHA256() of OpenSSL 3 fetches the algorithm and allocates a
// context on every call (three allocations and ~3k instructions per key).
EVP_MD_CTX* sha256_ctx() {
  static const std::unique_ptr<EVP_MD, MdFree> md(EVP_MD_fetch(nullptr, "SHA256", nullptr));
  thread_local std::unique_ptr<EVP_MD_CTX, MdCtxFree> ctx(EVP_MD_CTX_new());
  if (!md || !ctx || EVP_DigestInit_ex2(ctx.get(), md.get(), nullptr) != 1)
    throw std::runtime_error("SHA-256 unavailable");
  return ctx.get();
}

// One keyed HMAC context per thread and pepper: OpenSSL 3 fetches are costly,
// so the request path only re-inits an existing context.
EVP_MAC_CTX* hmac_ctx(const std::string& pepper) {
  thread_local std::string ctx_pepper;
  thread_local std::unique_ptr<EVP_MAC_CTX, MacCtxFree> ctx;
  if (!ctx || ctx_pepper != pepper) {
    std::unique_ptr<EVP_MAC, MacFree> mac(EVP_MAC_fetch(nullptr, "HMAC", nullptr));
    if (!mac) throw std::runtime_error("HMAC unavailable");
    ctx.reset(EVP_MAC_CTX_new(mac.get()));
    char digest[] = "SHA256";
    OSSL_PARAM params[] = {OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest, 0),
                           OSSL_PARAM_END};
    if (!ctx || EVP_MAC_init(ctx.get(), reinterpret_cast<const unsigned char*>(pepper.data()),
                             pepper.size(), params) != 1)
      throw std::runtime_error("HMAC init failed");
    ctx_pepper = pepper;
    return ctx.get();
  }
  if (EVP_MAC_init(ctx.get(), nullptr, 0, nullptr) != 1)
    throw std::runtime_error("HMAC re-init failed");
  return ctx.get();
}
}  // namespace

KeyHash KeyHasher::hash(std::string_view key) const {
  KeyHash out{};
  const auto* data = reinterpret_cast<const unsigned char*>(key.data());
  if (!pepper_) {
    EVP_MD_CTX* ctx = sha256_ctx();
    unsigned int len = 0;
    if (EVP_DigestUpdate(ctx, data, key.size()) != 1 ||
        EVP_DigestFinal_ex(ctx, out.data(), &len) != 1 || len != out.size())
      throw std::runtime_error("SHA-256 failed");
    return out;
  }
  EVP_MAC_CTX* ctx = hmac_ctx(*pepper_);
  size_t len = 0;
  if (EVP_MAC_update(ctx, data, key.size()) != 1 ||
      EVP_MAC_final(ctx, out.data(), &len, out.size()) != 1 || len != out.size())
    throw std::runtime_error("HMAC failed");
  return out;
}

std::string to_hex(const KeyHash& h) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  out.reserve(64);
  for (auto b : h) {
    out += kHex[b >> 4];
    out += kHex[b & 15];
  }
  return out;
}

}  // namespace keygate
