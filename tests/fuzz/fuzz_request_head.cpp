// A whole request head, as a client sends it, through what the gateway does
// before forwarding: the session's parser (Beast's, fields kept flat), the framing rules,
// normalize_target, route selection, the credential extractor and the upstream header rewrite (SPEC
// §7). Routes: POST/DELETE /v1/admin/ needs scope admin; /docs and /public/ are auth: none.
// Properties: nothing crashes; refusals are 400/401; a POST or DELETE (any case) whose normalised
// path is under /v1/admin/ always meets the admin rule; an auth: none route is chosen only for a
// path under its prefix, also as upstreams that drop ';params' or decode %2F read it; no credential
// header and no query credential reaching the upstream holds a keygate key, no header name with '_'
// and no spoofed identity header.
#include <boost/asio/buffer.hpp>

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "fuzz_check.hpp"
#include "keygate/config/loader.hpp"
#include "keygate/core/ascii.hpp"
#include "keygate/proxy/forward_headers.hpp"
#include "keygate/proxy/normalize.hpp"
#include "keygate/proxy/runtime.hpp"
#include "keygate/proxy/stages.hpp"
#include "keygate/proxy/flat_parser.hpp"

using namespace keygate;
using fuzz::check;
namespace http = boost::beast::http;
// Not boost::beast::iequals: Boost 1.81's reads one byte past both strings when
// they differ in case (this target found it on `post`; see core/ascii.hpp).
constexpr auto iequals = ascii_iequals;

namespace {

const Runtime& runtime(bool allow_encoded_slashes) {
  auto make = [](bool allow) {
    auto c = load_config_text(std::string(R"(
auth: {sources: [bearer, {header: X-Api-Key}, {query: api_key}]}
routes:
  - {path_prefix: /v1/admin/, methods: [POST, DELETE], require_scopes: [admin]}
  - {path_prefix: /docs, auth: none}
  - {path_prefix: /public/, auth: none}
limits: {allow_encoded_slashes: )") +
                                  (allow ? "true" : "false") + "}\n",
                              "fuzz.yaml");
    check(c.has_value(), "the fuzz config loads", c ? "" : c.error().joined());
    return Runtime(*c);
  };
  static const Runtime strict = make(false), lenient = make(true);
  return allow_encoded_slashes ? lenient : strict;
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

void check_forwarded(const RequestFields& f, const std::string& target, const Runtime& rt) {
  for (const auto& field : f) {
    std::string_view name = field.name_string();
    check(name.find('_') == std::string_view::npos, "no header name with '_' goes upstream",
          std::string(name));
    check(!(name.size() >= 10 && iequals(name.substr(0, 10), "X-Keygate-")),
          "no identity header from the client goes upstream", std::string(name));
    if (iequals(name, "Authorization") || iequals(name, "X-Api-Key")) {
      std::string_view v = trim(field.value());
      auto space = v.find(' ');
      std::string_view token = space == std::string_view::npos ? v : trim(v.substr(space + 1));
      check(!rt.key_format.well_formed(token), "no key in a credential header goes upstream",
            std::string(v));
    }
  }
  auto q = target.find('?');
  std::string_view query = q == std::string::npos ? "" : std::string_view(target).substr(q + 1);
  while (!query.empty()) {
    auto amp = query.find('&');
    auto pair = query.substr(0, amp);
    if (pair.starts_with("api_key="))
      check(!rt.key_format.well_formed(pair.substr(8)), "no key in the query goes upstream",
            target);
    if (amp == std::string_view::npos) break;
    query.remove_prefix(amp + 1);
  }
}

void check_one(std::string_view raw, bool allow_encoded_slashes) {
  const Runtime& rt = runtime(allow_encoded_slashes);
  RequestFields fields;
  RequestParser parser(fields, ArenaAllocator<char>{});
  parser.eager(false);  // the head alone, as the session reads it first
  parser.header_limit(16384);
  boost::beast::error_code ec;
  parser.put(boost::asio::buffer(raw.data(), raw.size()), ec);
  if (ec || !parser.is_header_done()) return;
  auto& req = parser.get();

  if (auto e = check_framing(fields, req.version())) {
    check(e->status == 400, "a framing error is a 400", e->message);
    return;
  }
  Context ctx;
  auto normalized = normalize_target(req.target(), NormalizeOptions{allow_encoded_slashes});
  if (!normalized) {
    check(normalized.error().status == 400, "a bad target is a 400", normalized.error().message);
    return;
  }
  ctx.target = *normalized;
  const std::string_view method = req.method_string(), path = ctx.target.path();
  auto route = select_route(rt.config.routes, method, path);
  if (!route) {
    check(route.error().status == 400, "an ambiguous path is a 400", route.error().message);
    return;
  }
  ctx.route = *route;
  const auto& routes = rt.config.routes;
  if ((iequals(method, "POST") || iequals(method, "DELETE")) && path.starts_with("/v1/admin/"))
    check(ctx.route == &routes[0], "the admin rule applies", std::string(path));
  if (ctx.route && ctx.route->auth_none) {
    check(path.starts_with(ctx.route->path_prefix), "auth: none only under its prefix",
          std::string(path));
    check(lenient_reading(path).starts_with(ctx.route->path_prefix),
          "auth: none only under its prefix, as lenient upstreams read it", std::string(path));
  }

  RequestView view{method, ctx.target.target, fields};
  if (auto e = extract_credential(view, rt.config.auth, ctx)) {
    check(e->status == 401, "a credential error is a 401", e->message);
    return;
  }
  // As forwarded (here as if authentication had passed, for the worst case).
  RequestFields upstream = fields;
  std::string target = rewrite_request(upstream, ctx.target.target, ctx, rt, ForwardInfo{});
  check_forwarded(upstream, target, rt);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view raw(reinterpret_cast<const char*>(data), size);
  check_one(raw, false);
  check_one(raw, true);
  return 0;
}
