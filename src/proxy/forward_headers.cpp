#include "keygate/proxy/forward_headers.hpp"

#include <openssl/rand.h>

#include <array>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <stdexcept>

#include "keygate/core/append.hpp"
#include "keygate/core/ascii.hpp"
#include "keygate/proxy/flat_parser.hpp"

namespace keygate {

namespace http = boost::beast::http;

void new_request_id(std::string& out) {
  // Ids need to be unique, not secret: a per-thread generator seeded from the CSPRNG.
  thread_local std::mt19937_64 gen = [] {
    std::uint64_t seed = 0;
    if (RAND_bytes(reinterpret_cast<unsigned char*>(&seed), sizeof seed) != 1)
      seed = std::random_device{}();
    return std::mt19937_64(seed);
  }();
  // Each byte as its two hex digits, low nibble first (as the ids always read),
  // from a 256-entry table: half the steps of a digit at a time.
  static constexpr auto kPairs = [] {
    constexpr char hex[] = "0123456789abcdef";
    std::array<std::array<char, 2>, 256> t{};
    for (size_t b = 0; b < 256; ++b) t[b] = {hex[b & 15], hex[b >> 4]};
    return t;
  }();
  out.resize(32);
  char* p = out.data();
  for (int half = 0; half < 2; ++half) {
    std::uint64_t v = gen();
    for (int i = 0; i < 8; ++i, v >>= 8, p += 2) std::memcpy(p, kPairs[v & 255].data(), 2);
  }
}

std::string new_request_id() {
  std::string id;
  new_request_id(id);
  return id;
}

void choose_request_id(std::string_view v, std::string& out) {
  if (v.empty() || v.size() > 128) return new_request_id(out);
  for (char c : v)
    if (c < 0x21 || c > 0x7e) return new_request_id(out);
  out.assign(v);
}

std::string choose_request_id(std::string_view v) {
  std::string id;
  choose_request_id(v, id);
  return id;
}

namespace {

bool fixed_hop_by_hop(http::field f) {
  switch (f) {
    case http::field::connection:
    case http::field::keep_alive:
    case http::field::proxy_connection:
    case http::field::te:
    case http::field::trailer:
    case http::field::upgrade:
    case http::field::proxy_authorization:
    case http::field::proxy_authenticate:
      return true;
    default:
      return false;
  }
}

}  // namespace

namespace {

// Calls `fn` with each name the head's Connection fields list, until it
// returns true. Every Connection field counts, wherever it sits in the head.
// close and keep-alive are options, not names; framing fields are never
// dropped this way (whoever writes the head decides the framing).
template <class Fn>
bool any_connection_name(const FlatFields& f, Fn&& fn) {
  for (const auto& field : f) {
    if (field.name() != http::field::connection) continue;
    std::string_view v = field.value();
    while (!v.empty()) {
      auto comma = v.find(',');
      std::string_view tok = trim_ows(v.substr(0, comma));
      if (!tok.empty() && !ascii_iequals(tok, "close") && !ascii_iequals(tok, "keep-alive") &&
          !ascii_iequals(tok, "transfer-encoding") && !ascii_iequals(tok, "content-length") &&
          fn(tok))
        return true;
      if (comma == std::string_view::npos) break;
      v.remove_prefix(comma + 1);
    }
  }
  return false;
}

}  // namespace

bool too_many_connection_options(const FlatFields& f) {
  std::size_t options = 0;
  for (const auto& field : f)
    if (field.name() == http::field::connection) options += connection_options(field.value());
  return options > kMaxConnectionOptions;
}

HopByHop::HopByHop(const FlatFields& f) : fields_(&f) {
  any_connection_name(f, [this](std::string_view tok) {
    if (count_ < kMaxNamed) named_[count_] = tok;
    ++count_;
    return false;
  });
}

bool HopByHop::operator()(const FlatFields::value_type& field) const {
  if (fixed_hop_by_hop(field.name())) return true;
  if (count_ == 0) return false;
  std::string_view name = field.name_string();
  if (count_ > kMaxNamed)  // more names than kept: read them again
    return any_connection_name(*fields_,
                               [name](std::string_view tok) { return ascii_iequals(tok, name); });
  for (std::size_t i = 0; i < count_; ++i)
    if (ascii_iequals(named_[i], name)) return true;
  return false;
}

namespace {

// Header names compared as CGI/WSGI/PHP see them: case-insensitive, '_' read as '-'.
bool same_name(std::string_view sent, std::string_view name) {
  if (sent.size() != name.size()) return false;
  for (size_t i = 0; i < sent.size(); ++i) {
    auto fold = [](char c) { return c == '_' ? '-' : ascii_lower(c); };
    if (fold(sent[i]) != fold(name[i])) return false;
  }
  return true;
}

bool credential_header(std::string_view name, const AuthConfig& auth) {
  if (same_name(name, "Authorization") || same_name(name, "X-Api-Key")) return true;
  for (const auto& src : auth.sources)
    if (src.kind == AuthSource::Kind::header && same_name(name, src.name)) return true;
  return false;
}

// The credential in a header value: `<key>` or `<scheme> <key>` (Bearer, Token …).
std::string_view credential_token(std::string_view value) {
  value = trim_ows(value);
  auto space = value.find(' ');
  return space == std::string_view::npos ? value : trim_ows(value.substr(space + 1));
}

// Keys never reach the upstream (SPEC §7): a credential that is a keygate key
// (format and checksum) or the one this request used is removed, on every
// route; only the used one survives forward_credential. Basic and other
// schemes pass.
bool strip_credential(std::string_view token, const Context& ctx, const Runtime& rt) {
  const bool used = ctx.credential && token == ctx.credential->value;
  if (used) return !rt.config.auth.forward_credential;
  return rt.key_format.well_formed(token);
}

std::string strip_query_credentials(std::string_view target, const Context& ctx,
                                    const Runtime& rt) {
  auto q = target.find('?');
  if (q == std::string_view::npos) return std::string(target);
  auto is_source = [&](std::string_view name) {
    for (const auto& src : rt.config.auth.sources)
      if (src.kind == AuthSource::Kind::query && src.name == name) return true;
    return false;
  };
  std::string out(target.substr(0, q));
  std::string_view query = target.substr(q + 1);
  std::string kept;
  bool removed = false;
  while (!query.empty()) {
    auto amp = query.find('&');
    auto pair = query.substr(0, amp);
    auto eq = pair.find('=');
    if (eq != std::string_view::npos && is_source(pair.substr(0, eq)) &&
        strip_credential(pair.substr(eq + 1), ctx, rt)) {
      removed = true;
    } else {
      if (!kept.empty()) kept += '&';
      kept += pair;
    }
    if (amp == std::string_view::npos) break;
    query.remove_prefix(amp + 1);
  }
  if (!removed) return std::string(target);  // untouched, byte for byte
  if (!kept.empty()) out += "?" + kept;
  return out;
}

bool has_query_source(const AuthConfig& auth) {
  for (const auto& src : auth.sources)
    if (src.kind == AuthSource::Kind::query) return true;
  return false;
}

// The identity headers (SPEC §3) of an authenticated request, as
// emit(prefix, name, value): forwarded upstream, or answered to a forward-auth check.
template <class Emit>
void identity_fields(const Context& ctx, std::string_view prefix, Emit&& emit) {
  if (!ctx.key) return;
  emit(prefix, "Key-Id", ctx.key->id());
  emit(prefix, "Key-Name", ctx.key->name());
  emit(prefix, "Owner", ctx.key->owner());
  emit(prefix, "Scopes", ctx.key->scopes_csv());
  emit(prefix, "Plan", ctx.plan);
}

// A field of the client's that does not go upstream as sent: names with '_'
// (unless allowed), anything that reads as an identity header (also with '_'
// for '-'), and keys in credential headers.
bool stripped(const RequestFields::value_type& field, const Context& ctx, const Runtime& rt) {
  const Config& c = rt.config;
  const std::string& prefix = c.identity_header_prefix;
  std::string_view name = field.name_string();
  if (name.find('_') != std::string_view::npos && !c.limits.allow_underscores_in_headers)
    return true;  // nginx's underscores_in_headers off
  if (name.size() >= prefix.size() && same_name(name.substr(0, prefix.size()), prefix)) return true;
  return credential_header(name, c.auth) &&
         strip_credential(credential_token(field.value()), ctx, rt);
}

// Every field that goes upstream, in order, as "name: value\r\n" lines
// appended to `out`, each in one growth of it. The client's fields come first,
// less the dropped ones and those the gateway sets; the gateway's follow, in
// the order Beast's set() would leave them.
void append_forwarded_fields(std::string& out, const RequestFields& f, const Context& ctx,
                             const Runtime& rt, const ForwardInfo& info) {
  const Config& c = rt.config;
  const HopByHop hop(f);
  const bool authority = !ctx.target.authority.empty();
  // The first Host and the first X-Forwarded-For (the others are replaced with
  // it), found in one pass over the fields, in arrival order.
  std::optional<std::string_view> host;
  std::string_view xff;
  bool xff_seen = false;
  for (const auto& field : f) {
    if (field.name() == http::field::host) {
      if (!host) host = field.value();
    } else if (!xff_seen && field.name() == http::field::unknown &&
               ascii_iequals(field.name_string(), "X-Forwarded-For")) {
      xff = field.value();
      xff_seen = true;
    }
  }
  const bool has_host = authority || host;
  for (const auto& field : f) {
    if (hop(field) || stripped(field, ctx, rt)) continue;
    const std::string_view name = field.name_string();
    if (ascii_iequals(name, "X-Forwarded-For") || ascii_iequals(name, "X-Forwarded-Proto") ||
        ascii_iequals(name, "X-Request-Id") ||
        (has_host && ascii_iequals(name, "X-Forwarded-Host")) ||
        (authority && field.name() == http::field::host))
      continue;  // set below
    append_parts(out, {name, ": ", field.value(), "\r\n"});
  }
  if (info.websocket)
    append_parts(out, {"Connection: Upgrade\r\nUpgrade: ", f[http::field::upgrade], "\r\n"});
  identity_fields(ctx, c.identity_header_prefix,
                  [&out](std::string_view prefix, std::string_view name, std::string_view value) {
                    append_parts(out, {prefix, name, ": ", value, "\r\n"});
                  });
  if (xff.empty())
    append_parts(out, {"X-Forwarded-For: ", ctx.client_ip, "\r\n"});
  else
    append_parts(out, {"X-Forwarded-For: ", xff, ", ", ctx.client_ip, "\r\n"});
  out += info.client_tls ? std::string_view("X-Forwarded-Proto: https\r\n")
                         : std::string_view("X-Forwarded-Proto: http\r\n");
  if (authority) {
    append_parts(out, {"Host: ", ctx.target.authority,
                       "\r\nX-Forwarded-Host: ", ctx.target.authority, "\r\n"});
  } else if (host) {
    append_parts(out, {"X-Forwarded-Host: ", *host, "\r\n"});
  } else {
    append_parts(out, {"Host: ", c.upstream.host_header, "\r\n"});
  }
  append_parts(out, {"X-Request-Id: ", ctx.request_id, "\r\n"});
}

}  // namespace

void write_request_head(std::string& out, std::string_view method, std::string_view target,
                        const RequestFields& f, const Context& ctx, const Runtime& rt,
                        const ForwardInfo& info) {
  out += method;
  out += ' ';
  if (has_query_source(rt.config.auth))
    out += strip_query_credentials(target, ctx, rt);
  else
    out += target;
  out += " HTTP/1.1\r\n";
  append_forwarded_fields(out, f, ctx, rt, info);
  out += "\r\n";
}

void set_identity_headers(Fields& f, const Context& ctx, const Config& config) {
  identity_fields(ctx, config.identity_header_prefix,
                  [&f](std::string_view prefix, std::string_view name, std::string_view value) {
                    std::string full(prefix);
                    full += name;
                    f.set(full, value);
                  });
}

std::string rewrite_request(RequestFields& f, std::string_view target, const Context& ctx,
                            const Runtime& rt, const ForwardInfo& info) {
  // The very bytes the proxy sends, read back: tests of this see the wire.
  std::string head;
  write_request_head(head, "GET", target, f, ctx, rt, info);
  RequestFields out;  // in the order they were written, as the session's parser records them
  RequestParser parser(out, ArenaAllocator<char>{});
  parser.eager(false);
  // Its own bytes: a long target comes back percent-encoded, past Beast's default 8 KiB.
  parser.header_limit(std::numeric_limits<std::uint32_t>::max());
  boost::system::error_code ec;
  parser.put(boost::asio::buffer(head), ec);
  if (ec || !parser.is_header_done())
    throw std::logic_error("the forwarded head does not parse: " + ec.message());
  std::string sent_target(parser.get().target());
  f = std::move(out);
  return sent_target;
}

}  // namespace keygate
