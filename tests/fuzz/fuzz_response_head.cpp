// An upstream's response head, as it arrives, through what the gateway does
// before the client sees it: the flat-fields parser (keygate/proxy/flat_parser.hpp)
// and wire::response_head (hop-by-hop fields dropped, the gateway's fields
// spliced in, framing and Connection for the client's connection). The first
// byte picks the client's version, keep-alive and re-chunking; the rest is the
// upstream's bytes. Properties: nothing crashes; the head the client gets
// parses; every field the upstream sent that is not hop-by-hop, not one the
// gateway sets and not re-framed reaches the client with its value; no field
// a Connection field names, no fixed hop-by-hop field and no Connection but
// the gateway's own does; X-Request-Id is the gateway's, once.
#include <boost/asio/buffer.hpp>
#include <boost/beast/http/empty_body.hpp>
#include <boost/beast/http/parser.hpp>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "fuzz_check.hpp"
#include "keygate/core/ascii.hpp"
#include "keygate/proxy/flat_fields.hpp"
#include "keygate/proxy/response_headers.hpp"
#include "keygate/proxy/flat_parser.hpp"
#include "server/wire.hpp"

using namespace keygate;
using fuzz::check;
namespace http = boost::beast::http;

namespace {

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = ascii_lower(c);
  return out;
}

// RFC 9110 §7.6.1 read on its own: the names every Connection field lists.
std::vector<std::string> connection_names(const FlatFields& fields) {
  std::vector<std::string> names;
  for (const auto& f : fields) {
    if (!ascii_iequals(f.name_string(), "Connection")) continue;
    std::string_view v = f.value();
    while (true) {
      auto comma = v.find(',');
      if (auto tok = trim_ows(v.substr(0, comma)); !tok.empty()) names.push_back(lower(tok));
      if (comma == std::string_view::npos) break;
      v.remove_prefix(comma + 1);
    }
  }
  return names;
}

bool fixed_hop_by_hop(const std::string& name) {
  for (std::string_view h : {"connection", "keep-alive", "proxy-connection", "te", "trailer",
                             "upgrade", "proxy-authorization", "proxy-authenticate"})
    if (name == h) return true;
  return false;
}

void check_one(std::uint8_t flags, std::string_view raw) {
  const unsigned version = (flags & 1) ? 10 : 11;
  const bool keep = flags & 2;

  FlatFields fields;
  ResponseParser parser(fields, ArenaAllocator<char>{});
  parser.header_limit(64 * 1024);
  parser.eager(false);
  boost::beast::error_code ec;
  parser.put(boost::asio::buffer(raw.data(), raw.size()), ec);
  if ((ec && ec != http::error::need_more) || !parser.is_header_done()) return;
  if (parser.get().result_int() < 100) return;  // the session answers 502 (no status)
  // As the session decides it: a body delimited by the upstream's close goes
  // to an HTTP/1.1 client chunked.
  const bool rechunk =
      (flags & 4) && version == 11 && !parser.chunked() && !parser.content_length();

  HeaderList edits;
  edits.set("X-Request-Id", "fuzz-request-id");
  edits.set("X-RateLimit-Limit", "10");
  std::string head;
  wire::response_head(head, parser.get(), fields, version, edits, rechunk, keep);

  http::response_parser<http::empty_body> client;
  client.header_limit(1 << 20);
  client.eager(false);
  client.skip(true);  // the head alone: whatever its framing says of a body
  boost::beast::error_code cec;
  client.put(boost::asio::buffer(head.data(), head.size()), cec);
  check(!cec && client.is_header_done(), "the client parses the head it gets",
        cec.message() + "\n" + head);

  std::vector<std::pair<std::string, std::string>> got;
  for (const auto& f : client.get())
    got.emplace_back(lower(f.name_string()), std::string(f.value()));

  const auto named = connection_names(fields);
  auto is_named = [&](const std::string& n) {
    return n != "content-length" && n != "transfer-encoding" && n != "close" && n != "keep-alive" &&
           std::find(named.begin(), named.end(), n) != named.end();
  };
  auto gateway_sets = [](const std::string& n) {
    return n == "x-request-id" || n == "x-ratelimit-limit";
  };

  // What the upstream sent and the client must see, value for value.
  std::vector<std::pair<std::string, std::string>> want;
  for (const auto& f : fields) {
    const std::string n = lower(f.name_string());
    if (fixed_hop_by_hop(n) || is_named(n) || gateway_sets(n)) continue;
    if (rechunk && n == "transfer-encoding") continue;
    want.emplace_back(n, std::string(f.value()));
  }
  auto left = got;
  for (const auto& w : want) {
    auto it = std::find(left.begin(), left.end(), w);
    check(it != left.end(), "an end-to-end field reaches the client",
          w.first + ": " + w.second + "\n" + head);
    left.erase(it);
  }

  int request_ids = 0, connections = 0, codings = 0;
  for (const auto& [n, v] : got) {
    if (n == "x-request-id") {
      ++request_ids;
      check(v == "fuzz-request-id", "X-Request-Id is the gateway's", head);
    }
    if (n == "connection") {
      ++connections;
      check(v == (version == 10 ? "keep-alive" : "close"), "Connection is the gateway's", head);
    } else {
      check(!fixed_hop_by_hop(n), "no hop-by-hop field reaches the client", n + "\n" + head);
    }
    check(!is_named(n) || gateway_sets(n) || n == "connection",  // (the gateway's: above)
          "no field named in Connection reaches the client", n + "\n" + head);
    if (n == "transfer-encoding") ++codings;
  }
  check(request_ids == 1, "one X-Request-Id", head);
  check(connections == ((version == 10) == keep ? 1 : 0), "Connection as the client's is", head);
  if (rechunk) check(codings == 1, "re-chunked: one Transfer-Encoding", head);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  check_one(data[0], std::string_view(reinterpret_cast<const char*>(data) + 1, size - 1));
  return 0;
}
