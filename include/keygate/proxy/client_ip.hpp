#pragma once
// The client IP (SPEC §10): what allow-lists, logs, last-used, the
// X-Forwarded-For sent upstream and forward auth see. A pure function of the
// socket peer, the request's X-Forwarded-For fields and trusted_proxies.
//
// The peer, unless it is a trusted proxy. Then X-Forwarded-For (every field,
// in order, read as one comma-separated list) is walked from the right: each
// entry was appended by the hop to its right, so an entry is believed only
// while every hop to its right is trusted. The answer is the right-most entry
// that is not itself trusted. Entries further left were written by the client
// and are never looked at, however many there are.
//   - all entries trusted: the left-most one (the request started inside the
//     trusted network; nginx's real_ip_recursive does the same);
//   - an entry that is not an address ("unknown", garbage, a hostname): the
//     walk stops and the last trusted hop reached is the answer (the client
//     behind it cannot be known; nginx declines the same way);
//   - no X-Forwarded-For: the peer.
// Entries may carry a port (`1.2.3.4:80`, `[2001:db8::1]:80`) or brackets;
// IPv4-mapped IPv6 (`::ffff:1.2.3.4`) is read as IPv4. The result is the
// canonical text of the address (allow-lists and logs compare it as such).
#include <string>
#include <string_view>
#include <vector>

#include "keygate/keys/cidr.hpp"
#include "keygate/proxy/flat_fields.hpp"

namespace keygate {

std::string resolve_client_ip(std::string_view peer, const FlatFields& fields,
                              const std::vector<Cidr>& trusted_proxies);

}  // namespace keygate
