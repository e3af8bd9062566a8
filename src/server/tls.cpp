#include "server/tls.hpp"

#include <openssl/ssl.h>

#include <ctime>
#include <stdexcept>

namespace keygate {

namespace ssl = boost::asio::ssl;

namespace {
// TLS 1.2 suites with forward secrecy and AEAD only; TLS 1.3 uses OpenSSL's defaults.
constexpr const char* kTls12Ciphers =
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:"
    "ECDHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305";

void harden(ssl::context& ctx) {
  ctx.set_options(ssl::context::default_workarounds | ssl::context::no_sslv2 |
                  ssl::context::no_sslv3 | ssl::context::no_tlsv1 | ssl::context::no_tlsv1_1 |
                  ssl::context::single_dh_use);
  SSL_CTX_set_min_proto_version(ctx.native_handle(), TLS1_2_VERSION);
  if (SSL_CTX_set_cipher_list(ctx.native_handle(), kTls12Ciphers) != 1)
    throw std::runtime_error("TLS: cipher list rejected");
}
}  // namespace

std::shared_ptr<ssl::context> make_server_tls(const TlsConfig& cfg) {
  auto ctx = std::make_shared<ssl::context>(ssl::context::tls_server);
  harden(*ctx);
  SSL_CTX_set_options(ctx->native_handle(), SSL_OP_CIPHER_SERVER_PREFERENCE);
  boost::system::error_code ec;
  ctx->use_certificate_chain_file(*cfg.cert, ec);
  if (ec)
    throw std::runtime_error("TLS: cannot use certificate " + *cfg.cert + ": " + ec.message());
  ctx->use_private_key_file(*cfg.key, ssl::context::pem, ec);
  if (ec) throw std::runtime_error("TLS: cannot use key " + *cfg.key + ": " + ec.message());
  if (SSL_CTX_check_private_key(ctx->native_handle()) != 1)
    throw std::runtime_error("TLS: the key does not match the certificate");
  return ctx;
}

std::shared_ptr<ssl::context> make_upstream_tls(const UpstreamConfig& cfg) {
  auto ctx = std::make_shared<ssl::context>(ssl::context::tls_client);
  harden(*ctx);
  boost::system::error_code ec;
  if (cfg.ca_file)
    ctx->load_verify_file(*cfg.ca_file, ec);
  else
    ctx->set_default_verify_paths(ec);
  if (ec) throw std::runtime_error("TLS: cannot load CA certificates: " + ec.message());
  ctx->set_verify_mode(cfg.tls_verify ? ssl::verify_peer : ssl::verify_none);
  return ctx;
}

std::int64_t certificate_expiry(ssl::context& ctx) {
  X509* cert = SSL_CTX_get0_certificate(ctx.native_handle());
  std::tm t{};
  if (!cert || ASN1_TIME_to_tm(X509_get0_notAfter(cert), &t) != 1) return 0;
  return static_cast<std::int64_t>(timegm(&t));
}

}  // namespace keygate
