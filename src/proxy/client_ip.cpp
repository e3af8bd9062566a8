#include "keygate/proxy/client_ip.hpp"

#include <optional>

namespace keygate {

namespace ip = boost::asio::ip;

namespace {

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

bool is_port(std::string_view p) {
  if (p.empty() || p.size() > 5) return false;
  for (char c : p)
    if (c < '0' || c > '9') return false;
  return true;
}

// One X-Forwarded-For entry as an address: `a.b.c.d`, `a.b.c.d:port`, an IPv6
// address, or `[v6]` with an optional `:port`. Anything else is not an address.
std::optional<ip::address> entry_address(std::string_view e) {
  std::string_view host = e;
  if (e.starts_with('[')) {
    auto close = e.find(']');
    if (close == std::string_view::npos) return std::nullopt;
    host = e.substr(1, close - 1);
    std::string_view rest = e.substr(close + 1);
    if (!rest.empty() && !(rest.starts_with(':') && is_port(rest.substr(1)))) return std::nullopt;
  } else if (auto colon = e.find(':');
             colon != std::string_view::npos && e.find(':', colon + 1) == std::string_view::npos) {
    host = e.substr(0, colon);  // one colon: IPv4 with a port (IPv6 has at least two)
    if (!is_port(e.substr(colon + 1))) return std::nullopt;
  }
  if (host.empty() || host.size() > 64) return std::nullopt;
  boost::system::error_code ec;
  ip::address a = ip::make_address(std::string(host), ec);
  if (ec) return std::nullopt;
  if (a.is_v6() && a.to_v6().is_v4_mapped()) a = ip::make_address_v4(ip::v4_mapped, a.to_v6());
  return a;
}

bool trusted(const ip::address& a, const std::vector<Cidr>& nets) {
  for (const auto& n : nets)
    if (n.contains(a)) return true;
  return false;
}

}  // namespace

std::string resolve_client_ip(std::string_view peer, const boost::beast::http::fields& fields,
                              const std::vector<Cidr>& trusted_proxies) {
  if (trusted_proxies.empty()) return std::string(peer);
  auto peer_addr = entry_address(peer);
  if (!peer_addr || !trusted(*peer_addr, trusted_proxies)) return std::string(peer);

  // The entries, left to right over every field (RFC 9110 §5.3: repeated
  // fields are one list), then walked from the right.
  std::vector<std::string_view> entries;
  auto [it, end] = fields.equal_range("X-Forwarded-For");
  for (; it != end; ++it) {
    std::string_view v = it->value();
    for (;;) {
      auto comma = v.find(',');
      std::string_view e = trim(v.substr(0, comma));
      if (!e.empty()) entries.push_back(e);
      if (comma == std::string_view::npos) break;
      v.remove_prefix(comma + 1);
    }
  }
  ip::address client = *peer_addr;  // the last hop believed so far
  for (auto e = entries.rbegin(); e != entries.rend(); ++e) {
    auto a = entry_address(*e);
    if (!a) break;  // not an address: the client behind the last trusted hop is unknown
    client = *a;
    if (!trusted(*a, trusted_proxies)) break;
  }
  return client.to_string();
}

}  // namespace keygate
