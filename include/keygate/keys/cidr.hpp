#pragma once
// IP allow-lists: "10.0.0.0/8", "2001:db8::/32" or a single address.
#include <expected>
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
bool any_contains(const std::vector<Cidr>& nets, std::string_view ip);

}  // namespace keygate
