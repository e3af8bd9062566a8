#pragma once
// IP allow-lists: "10.0.0.0/8", "2001:db8::/32" or a single address.
#include <expected>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <boost/asio/ip/address.hpp>

namespace keygate {

struct Cidr {
  boost::asio::ip::address network;
  unsigned prefix = 0;
  bool contains(const boost::asio::ip::address& a) const;
};

std::expected<Cidr, std::string> parse_cidr(std::string_view text);
// An IPv4 or IPv6 address as written (no port, no brackets); nullopt otherwise.
std::optional<boost::asio::ip::address> parse_address(std::string_view text);
bool any_contains(const std::vector<Cidr>& nets, const boost::asio::ip::address& a);
bool any_contains(const std::vector<Cidr>& nets, std::string_view ip);  // false if not an address

}  // namespace keygate
