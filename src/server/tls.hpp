#pragma once
// TLS contexts: the listener's (certificate, TLS 1.2+, modern ciphers) and the
// upstream client's (CA bundle or system CAs, peer verification).
#include <cstdint>
#include <memory>
#include <string>

#include <boost/asio/ssl/context.hpp>

#include "keygate/config/config.hpp"

namespace keygate {

// Throws std::exception with a readable message on unreadable or bad files.
std::shared_ptr<boost::asio::ssl::context> make_server_tls(const TlsConfig& cfg);
std::shared_ptr<boost::asio::ssl::context> make_upstream_tls(const UpstreamConfig& cfg);
// notAfter of the context's own (leaf) certificate as Unix seconds; 0 when it has none.
std::int64_t certificate_expiry(boost::asio::ssl::context& ctx);

}  // namespace keygate
