#include "keygate/proxy/client_ip.hpp"

#include <boost/url/parse.hpp>
#include <charconv>
#include <optional>

#include "keygate/core/ascii.hpp"

namespace keygate {

namespace ip = boost::asio::ip;

namespace {

// 1..65535 (Boost.URL takes any digits as a port).
bool valid_port(std::string_view digits) {
  unsigned port = 0;
  auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), port);
  return ec == std::errc{} && end == digits.data() + digits.size() && port >= 1 && port <= 65535;
}

// One X-Forwarded-For entry as an address: a bare IPv4 or IPv6 address, or
// an authority without user info (`a.b.c.d:port`, `[v6]`, `[v6]:port`).
// Anything else (names, `unknown`, ranges) is not an address.
std::optional<ip::address> entry_address(std::string_view e) {
  boost::system::error_code ec;
  ip::address a = ip::make_address(std::string(e), ec);
  if (ec) {
    auto authority = boost::urls::parse_authority(e);
    if (!authority || authority->has_userinfo()) return std::nullopt;
    if (authority->has_port() && !valid_port(authority->port())) return std::nullopt;
    switch (authority->host_type()) {
      case boost::urls::host_type::ipv4:
        a = ip::address_v4(authority->host_ipv4_address().to_uint());
        break;
      case boost::urls::host_type::ipv6:
        a = ip::address_v6(authority->host_ipv6_address().to_bytes());
        break;
      default:
        return std::nullopt;
    }
  }
  if (a.is_v6() && a.to_v6().is_v4_mapped()) a = ip::make_address_v4(ip::v4_mapped, a.to_v6());
  return a;
}

bool trusted(const ip::address& a, const std::vector<Cidr>& nets) {
  for (const auto& n : nets)
    if (n.contains(a)) return true;
  return false;
}

}  // namespace

std::string resolve_client_ip(std::string_view peer, const FlatFields& fields,
                              const std::vector<Cidr>& trusted_proxies) {
  if (trusted_proxies.empty()) return std::string(peer);
  auto peer_addr = entry_address(peer);
  if (!peer_addr || !trusted(*peer_addr, trusted_proxies)) return std::string(peer);

  // The entries, left to right over every field (RFC 9110 §5.3: repeated
  // fields are one list), then walked from the right.
  std::vector<std::string_view> entries;
  for (const auto& field : fields) {
    if (!ascii_iequals(field.name_string(), "X-Forwarded-For")) continue;
    std::string_view v = field.value();
    for (;;) {
      auto comma = v.find(',');
      std::string_view e = trim_ows(v.substr(0, comma));
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
