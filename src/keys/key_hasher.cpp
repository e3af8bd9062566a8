#include "keygate/keys/key_hasher.hpp"

// SHA256_Init/Update/Final are deprecated in OpenSSL 3 in favour of EVP, but
// they are the only SHA-256 of OpenSSL 3.0 that does not allocate: EVP_DigestInit
// frees and re-creates the provider's context on every call (one malloc per
// request on the valid-key path). They are the same implementation underneath.
#define OPENSSL_SUPPRESS_DEPRECATED
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/sha.h>

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
    SHA256_CTX ctx;
    if (SHA256_Init(&ctx) != 1 || SHA256_Update(&ctx, data, key.size()) != 1 ||
        SHA256_Final(out.data(), &ctx) != 1)
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
