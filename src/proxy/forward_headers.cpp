#include "keygate/proxy/forward_headers.hpp"

#include <openssl/rand.h>

#include <random>
#include <vector>

#include "keygate/core/ascii.hpp"

namespace keygate {

namespace http = boost::beast::http;

std::string new_request_id() {
  // Ids need to be unique, not secret: a per-thread generator seeded from the CSPRNG.
  thread_local std::mt19937_64 gen = [] {
    std::uint64_t seed = 0;
    if (RAND_bytes(reinterpret_cast<unsigned char*>(&seed), sizeof seed) != 1)
      seed = std::random_device{}();
    return std::mt19937_64(seed);
  }();
  static constexpr char kHex[] = "0123456789abcdef";
  std::string id(32, '0');
  for (int half = 0; half < 2; ++half) {
    std::uint64_t v = gen();
    for (int i = 0; i < 16; ++i) id[static_cast<size_t>(half * 16 + i)] = kHex[(v >> (i * 4)) & 15];
  }
  return id;
}

std::string choose_request_id(std::string_view v) {
  if (v.empty() || v.size() > 128) return new_request_id();
  for (char c : v)
    if (c < 0x21 || c > 0x7e) return new_request_id();
  return std::string(v);
}

void remove_hop_by_hop(Fields& f) {
  std::vector<std::string> named;
  for (auto it = f.find(http::field::connection);
       it != f.end() && it->name() == http::field::connection; ++it) {
    std::string_view v = it->value();
    while (!v.empty()) {
      auto comma = v.find(',');
      std::string_view tok = v.substr(0, comma);
      while (!tok.empty() && tok.front() == ' ') tok.remove_prefix(1);
      while (!tok.empty() && tok.back() == ' ') tok.remove_suffix(1);
      if (!tok.empty() && !ascii_iequals(tok, "close") && !ascii_iequals(tok, "keep-alive") &&
          !ascii_iequals(tok, "transfer-encoding") && !ascii_iequals(tok, "content-length"))
        named.emplace_back(tok);
      if (comma == std::string_view::npos) break;
      v.remove_prefix(comma + 1);
    }
  }
  for (const auto& n : named) f.erase(n);
  for (auto field :
       {http::field::connection, http::field::keep_alive, http::field::proxy_connection,
        http::field::te, http::field::trailer, http::field::upgrade,
        http::field::proxy_authorization, http::field::proxy_authenticate})
    f.erase(field);
}

namespace {

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

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
  value = trim(value);
  auto space = value.find(' ');
  return space == std::string_view::npos ? value : trim(value.substr(space + 1));
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

// One pass over the client's fields: names with '_' (unless allowed), anything
// that reads as an identity header (also with '_' for '-'), and keys in
// credential headers.
void strip_request_fields(Fields& f, const Context& ctx, const Runtime& rt) {
  const Config& c = rt.config;
  const std::string& prefix = c.identity_header_prefix;
  for (auto it = f.begin(); it != f.end();) {
    std::string_view name = it->name_string();
    bool drop;
    if (name.find('_') != std::string_view::npos && !c.limits.allow_underscores_in_headers)
      drop = true;  // nginx's underscores_in_headers off
    else if (name.size() >= prefix.size() && same_name(name.substr(0, prefix.size()), prefix))
      drop = true;
    else
      drop = credential_header(name, c.auth) &&
             strip_credential(credential_token(it->value()), ctx, rt);
    it = drop ? f.erase(it) : std::next(it);
  }
}

bool has_query_source(const AuthConfig& auth) {
  for (const auto& src : auth.sources)
    if (src.kind == AuthSource::Kind::query) return true;
  return false;
}

}  // namespace

std::string rewrite_request(Fields& f, std::string_view target, const Context& ctx,
                            const Runtime& rt, const ForwardInfo& info) {
  const Config& c = rt.config;
  std::string upgrade;
  if (info.websocket) upgrade = std::string(f[http::field::upgrade]);
  remove_hop_by_hop(f);
  if (info.websocket) {
    f.set(http::field::connection, "Upgrade");
    f.set(http::field::upgrade, upgrade);
  }

  strip_request_fields(f, ctx, rt);
  std::string out_target =
      has_query_source(c.auth) ? strip_query_credentials(target, ctx, rt) : std::string(target);

  const std::string& prefix = c.identity_header_prefix;
  if (ctx.key) {
    f.set(prefix + "Key-Id", ctx.key->id());
    f.set(prefix + "Key-Name", ctx.key->name());
    f.set(prefix + "Owner", ctx.key->owner());
    f.set(prefix + "Scopes", ctx.key->scopes_csv());
    f.set(prefix + "Plan", ctx.plan);
  }

  std::string xff(f["X-Forwarded-For"]);
  f.set("X-Forwarded-For", xff.empty() ? ctx.client_ip : xff + ", " + ctx.client_ip);
  f.set("X-Forwarded-Proto", info.client_tls ? "https" : "http");
  // An absolute-form target names the host; its Host header is ignored (RFC 9112 §3.2.2).
  if (!ctx.target.authority.empty()) f.set(http::field::host, ctx.target.authority);
  if (auto host = f.find(http::field::host); host != f.end())
    f.set("X-Forwarded-Host", host->value());
  else
    f.set(http::field::host, c.upstream.host_header);
  f.set("X-Request-Id", ctx.request_id);
  return out_target;
}

}  // namespace keygate
