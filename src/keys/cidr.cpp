#include "keygate/keys/cidr.hpp"

#include <boost/asio/ip/network_v4.hpp>
#include <boost/asio/ip/network_v6.hpp>

namespace keygate {

namespace ip = boost::asio::ip;

std::expected<Cidr, std::string> parse_cidr(std::string_view text) {
  boost::system::error_code ec;
  std::string s(text);
  auto slash = s.find('/');
  auto addr = ip::make_address(s.substr(0, slash), ec);
  if (ec) return std::unexpected("invalid IP range '" + s + "'");
  unsigned max = addr.is_v4() ? 32 : 128;
  unsigned prefix = max;
  if (slash != std::string::npos) {
    try {
      size_t used = 0;
      int p = std::stoi(s.substr(slash + 1), &used);
      if (used != s.size() - slash - 1 || p < 0 || static_cast<unsigned>(p) > max)
        return std::unexpected("invalid prefix length in '" + s + "'");
      prefix = static_cast<unsigned>(p);
    } catch (const std::exception&) {
      return std::unexpected("invalid prefix length in '" + s + "'");
    }
  }
  Cidr c{addr, prefix};
  if (addr.is_v4())
    c.network = ip::make_network_v4(addr.to_v4(), prefix).canonical().address();
  else
    c.network = ip::make_network_v6(addr.to_v6(), prefix).canonical().address();
  return c;
}

bool Cidr::contains(const ip::address& a) const {
  ip::address probe = a;
  if (a.is_v6() && a.to_v6().is_v4_mapped() && network.is_v4())
    probe = ip::make_address_v4(ip::v4_mapped, a.to_v6());
  if (probe.is_v4() != network.is_v4()) return false;
  if (probe.is_v4())
    return ip::make_network_v4(probe.to_v4(), prefix).canonical().address() == network;
  return ip::make_network_v6(probe.to_v6(), prefix).canonical().address() == network;
}

std::optional<ip::address> parse_address(std::string_view text) {
  boost::system::error_code ec;
  auto a = ip::make_address(std::string(text), ec);
  if (ec) return std::nullopt;
  return a;
}

bool any_contains(const std::vector<Cidr>& nets, const ip::address& a) {
  for (const auto& n : nets)
    if (n.contains(a)) return true;
  return false;
}

bool any_contains(const std::vector<Cidr>& nets, std::string_view ip_text) {
  auto a = parse_address(ip_text);
  return a && any_contains(nets, *a);
}

}  // namespace keygate
