#include "keygate/proxy/forward_headers.hpp"

#include <openssl/rand.h>

#include <boost/beast/core/string.hpp>
#include <random>
#include <vector>

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
      if (!tok.empty() && !boost::beast::iequals(tok, "close") &&
          !boost::beast::iequals(tok, "keep-alive") &&
          !boost::beast::iequals(tok, "transfer-encoding") &&
          !boost::beast::iequals(tok, "content-length"))
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

std::string remove_query_param(std::string_view target, std::string_view name) {
  auto q = target.find('?');
  if (q == std::string_view::npos) return std::string(target);
  std::string out(target.substr(0, q));
  std::string_view query = target.substr(q + 1);
  std::string kept;
  while (!query.empty()) {
    auto amp = query.find('&');
    auto pair = query.substr(0, amp);
    if (pair.substr(0, pair.find('=')) != name) {
      if (!kept.empty()) kept += '&';
      kept += pair;
    }
    if (amp == std::string_view::npos) break;
    query.remove_prefix(amp + 1);
  }
  if (!kept.empty()) out += "?" + kept;
  return out;
}

void erase_prefixed(Fields& f, std::string_view prefix) {
  std::vector<std::string> doomed;
  for (const auto& field : f) {
    std::string_view name = field.name_string();
    if (name.size() >= prefix.size() &&
        boost::beast::iequals(name.substr(0, prefix.size()), prefix))
      doomed.emplace_back(name);
  }
  for (const auto& n : doomed) f.erase(n);
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

  std::string out_target(target);
  if (ctx.credential && !c.auth.forward_credential) {
    // Every source that carried the key goes, so the upstream never sees it.
    for (const auto& src : c.auth.sources) {
      if (src.kind == AuthSource::Kind::bearer) {
        auto it = f.find(http::field::authorization);
        if (it != f.end() && it->value().find(ctx.credential->value) != std::string_view::npos)
          f.erase(http::field::authorization);
      } else if (src.kind == AuthSource::Kind::header) {
        f.erase(src.name);
      } else {
        out_target = remove_query_param(out_target, src.name);
      }
    }
  }

  const std::string& prefix = c.identity_header_prefix;
  erase_prefixed(f, prefix);
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
  if (auto host = f.find(http::field::host); host != f.end())
    f.set("X-Forwarded-Host", host->value());
  else
    f.set(http::field::host, c.upstream.host_header);
  f.set("X-Request-Id", ctx.request_id);
  return out_target;
}

}  // namespace keygate
