#include <gtest/gtest.h>

#include "keygate/core/placeholders.hpp"
#include "keygate/proxy/error_renderer.hpp"
#include "keygate/proxy/forward_headers.hpp"
#include "pipeline_world.hpp"

using namespace keygate;
using nlohmann::json;
namespace http = boost::beast::http;

namespace {

using test_support::reason_of;
Config config(const std::string& yaml) {
  return test_support::config_from(yaml);
}

struct World : test_support::PipelineWorld {
  using PipelineWorld::PipelineWorld;
  Verdict run(RequestFields f, std::string target = "/v1/x", std::string method = "GET",
              std::string ip = "127.0.0.1", Context* out = nullptr) {
    Context local;
    Context& ctx = out ? *out : local;
    ctx.request_id = "rid-1";
    ctx.peer_ip = ip;
    return decide(method, target, f, ctx);
  }
  Verdict with_key(const std::string& key, std::string target = "/v1/x", Context* out = nullptr,
                   std::string ip = "127.0.0.1") {
    RequestFields f;
    f.set(http::field::authorization, "Bearer " + key);
    return run(f, target, "GET", ip, out);
  }
};

}  // namespace

TEST(ErrorRenderer, SpecEnvelope) {
  Error e = errors::auth("invalid", "Invalid or revoked API key");
  auto j = json::parse(ErrorRenderer::envelope(e, "rid-9"));
  EXPECT_EQ(j, json::parse(R"({"success":false,"error":{"code":"AUTH_ERROR",
    "message":"Invalid or revoked API key","details":{"reason":"invalid"},"request_id":"rid-9"}})"));
  auto rl = json::parse(ErrorRenderer::envelope(errors::rate_limited(7), "r"));
  EXPECT_EQ(rl["error"]["details"]["retry_after_seconds"], 7);
  EXPECT_EQ(rl["error"]["details"]["reason"], "rate_limit");
  EXPECT_EQ(json::parse(ErrorRenderer::envelope(errors::internal(), "r"))["error"]["details"],
            json::object());
}

TEST(ErrorRenderer, StyleTypedAndTextualPlaceholders) {
  Config c = config(R"(
errors:
  template: {"error": {"code": "{code}", "message": "{message}", "status": "{status}", "d": "{details}", "t": "s={status} r={reason}"}}
  codes: {AUTH_ERROR: unauthorized, RATE_LIMIT_ERROR: rate_limit_exceeded}
  messages: {invalid: "Invalid API key.", rate_limit: "Rate limit exceeded. Try again after {retry_at}"}
)");
  ErrorRenderer r(c.errors);
  auto now = std::chrono::system_clock::time_point(
      std::chrono::seconds(1774972800));  // 2026-03-31T16:00:00Z
  auto j = json::parse(r.render(errors::auth("invalid", "x"), "rid", now));
  EXPECT_EQ(j["error"]["code"], "unauthorized");
  EXPECT_EQ(j["error"]["message"], "Invalid API key.");
  EXPECT_EQ(j["error"]["status"], 401);  // typed: a number
  EXPECT_TRUE(j["error"]["d"].is_object());
  EXPECT_EQ(j["error"]["t"], "s=401 r=invalid");
  auto rl = json::parse(r.render(errors::rate_limited(60), "rid", now));
  EXPECT_EQ(rl["error"]["code"], "rate_limit_exceeded");
  EXPECT_EQ(rl["error"]["message"], "Rate limit exceeded. Try again after 2026-03-31T16:01:00Z");
  // An unmapped code and reason keep the defaults.
  auto f = json::parse(r.render(errors::forbidden("ip", "No."), "rid", now));
  EXPECT_EQ(f["error"]["code"], "FORBIDDEN");
  EXPECT_EQ(f["error"]["message"], "No.");
}

TEST(ErrorRenderer, PerReasonTemplatesAndEnvelopeWithMappedCodes) {
  Config c = config(R"(
errors:
  template: {"detail": "{message}"}
  templates:
    missing: {"detail": [{"type": "missing", "loc": ["header", "X-API-Key"], "msg": "Field required", "input": null}]}
  messages: {invalid: "User not found."}
)");
  ErrorRenderer r(c.errors);
  auto now = std::chrono::system_clock::now();
  EXPECT_EQ(json::parse(r.render(errors::auth("invalid", "x"), "r", now)),
            json::parse(R"({"detail":"User not found."})"));
  auto m = json::parse(r.render(errors::auth("missing", "x"), "r", now));
  EXPECT_TRUE(m["detail"][0]["input"].is_null());
  Config only_codes = config("errors: {codes: {AUTH_ERROR: nope}}");
  auto e =
      json::parse(ErrorRenderer(only_codes.errors).render(errors::auth("invalid", "m"), "r", now));
  EXPECT_EQ(e["success"], false);
  EXPECT_EQ(e["error"]["code"], "nope");
  EXPECT_EQ(e["error"]["request_id"], "r");
}

TEST(ErrorRenderer, ResetPlaceholdersAndTemplateKeyOrder) {
  Config c = config(R"(
errors:
  template: {"success": false, "error": {"message": "{message}", "reset": "{reset}", "code": "{code}"}}
  messages: {rate_limit: "Try again after {reset_at}"}
)");
  Error e = errors::rate_limited(1);
  e.reset_after = 3600;
  auto now = std::chrono::system_clock::time_point(std::chrono::seconds(1774972800));
  // Keys keep the order written in the config (the fronted API's documented order).
  EXPECT_EQ(ErrorRenderer(c.errors).render(e, "r", now),
            R"({"success":false,"error":{"message":"Try again after 2026-03-31T17:00:00Z",)"
            R"("reset":3600,"code":"RATE_LIMIT_ERROR"}})");
}

TEST(ErrorRenderer, UnknownPlaceholderDetection) {
  EXPECT_FALSE(placeholders::first_unknown("a {code} b {retry_at}"));
  EXPECT_EQ(*placeholders::first_unknown("{code} {nope}"), "nope");
}

TEST(ForwardHeaders, RequestIdRules) {
  EXPECT_EQ(choose_request_id("abc-123"), "abc-123");
  EXPECT_EQ(choose_request_id(std::string(128, 'a')), std::string(128, 'a'));
  EXPECT_EQ(choose_request_id(std::string(129, 'a')).size(), 32u);
  EXPECT_NE(choose_request_id("has space"), "has space");
  EXPECT_NE(choose_request_id(""), "");
  EXPECT_NE(new_request_id(), new_request_id());
}

TEST(ForwardHeaders, RewritesForUpstream) {
  World w;
  RequestFields f;
  f.set(http::field::host, "api.example");
  f.set(http::field::authorization, "Bearer secret");
  f.set("X-Api-Key", "secret");
  f.set(http::field::connection, "keep-alive, X-Hop");
  f.set("X-Hop", "1");
  f.set(http::field::keep_alive, "timeout=5");
  f.set(http::field::transfer_encoding, "chunked");
  f.set("x-keygate-owner", "spoofed");
  f.set("X-KEYGATE-Anything", "spoofed");
  f.set("X-Forwarded-For", "10.0.0.1");
  f.set("X-Other", "kept");
  Context ctx;
  ctx.request_id = "rid";
  ctx.client_ip = "192.0.2.7";
  ctx.credential = Credential{"secret", w.rt.config.auth.sources[0]};
  KeyRecord r;
  r.id = "key_1";
  r.name = "ci";
  r.owner = "acme";
  r.scopes = {"a", "b"};
  ctx.key = AuthKey(r);
  ctx.plan = "default";
  auto target = rewrite_request(f, "/p?q=1", ctx, w.rt, {});
  EXPECT_EQ(target, "/p?q=1");
  EXPECT_EQ(f.count(http::field::authorization), 0u);
  EXPECT_EQ(f.count("X-Api-Key"), 0u);
  EXPECT_EQ(f.count(http::field::connection), 0u);
  EXPECT_EQ(f.count("X-Hop"), 0u);
  EXPECT_EQ(f.count(http::field::keep_alive), 0u);
  EXPECT_EQ(f[http::field::transfer_encoding], "chunked");  // framing stays
  EXPECT_EQ(f["X-Keygate-Owner"], "acme");
  EXPECT_EQ(f.count("X-Keygate-Anything"), 0u);
  EXPECT_EQ(f["X-Keygate-Key-Id"], "key_1");
  EXPECT_EQ(f["X-Keygate-Key-Name"], "ci");
  EXPECT_EQ(f["X-Keygate-Scopes"], "a,b");
  EXPECT_EQ(f["X-Keygate-Plan"], "default");
  EXPECT_EQ(f["X-Forwarded-For"], "10.0.0.1, 192.0.2.7");
  EXPECT_EQ(f["X-Forwarded-Proto"], "http");
  EXPECT_EQ(f["X-Forwarded-Host"], "api.example");
  EXPECT_EQ(f["X-Request-Id"], "rid");
  EXPECT_EQ(f["X-Other"], "kept");
}

TEST(ForwardHeaders, UnauthenticatedRouteStillStripsSpoofedIdentity) {
  World w;
  RequestFields f;
  f.set("X-Keygate-Key-Id", "key_forged");
  f.set(http::field::authorization, "Basic dXNlcjpwYXNz");  // the API's own auth passes
  Context ctx;
  ctx.client_ip = "127.0.0.1";
  rewrite_request(f, "/", ctx, w.rt, {});
  EXPECT_EQ(f.count("X-Keygate-Key-Id"), 0u);
  EXPECT_EQ(f[http::field::authorization], "Basic dXNlcjpwYXNz");
  EXPECT_EQ(f[http::field::host], "127.0.0.1:9000");  // none sent: the upstream's
}

TEST(ForwardHeaders, QueryCredentialRemovedAndForwardCredentialKeepsIt) {
  World w("auth: {sources: [{query: api_key}]}");
  RequestFields f;
  Context ctx;
  ctx.credential = Credential{"k", w.rt.config.auth.sources[0]};
  EXPECT_EQ(rewrite_request(f, "/a?x=1&api_key=k&y=2", ctx, w.rt, {}), "/a?x=1&y=2");
  World keep("auth: {forward_credential: true}");
  RequestFields g;
  g.set("X-Api-Key", "k");
  Context c2;
  c2.credential = Credential{"k", keep.rt.config.auth.sources[1]};
  rewrite_request(g, "/", c2, keep.rt, {});
  EXPECT_EQ(g["X-Api-Key"], "k");
}

TEST(Routes, FirstMatchWins) {
  Config c = config(R"(
routes:
  - {path_prefix: /docs, auth: none}
  - {path_prefix: /v1/admin/, methods: [POST], require_scopes: [admin]}
  - {path_prefix: /v1/, require_scopes: [read]}
)");
  EXPECT_TRUE(match_route(c.routes, "GET", "/docs/x")->auth_none);
  EXPECT_EQ(match_route(c.routes, "POST", "/v1/admin/u")->require_scopes[0], "admin");
  EXPECT_EQ(match_route(c.routes, "GET", "/v1/admin/u")->require_scopes[0], "read");
  EXPECT_EQ(match_route(c.routes, "GET", "/other"), nullptr);
}

TEST(Credentials, SourcesConflictsAndMalformed) {
  Config c;
  auto extract = [&](RequestFields f, std::string target = "/") {
    Context ctx;
    RequestView v{"GET", target, f};
    auto err = extract_credential(v, c.auth, ctx);
    return std::make_pair(err, ctx.credential);
  };
  RequestFields f;
  f.set(http::field::authorization, "bEaReR   abc  ");
  EXPECT_EQ(extract(f).second->value, "abc");
  RequestFields h;
  h.set("x-api-key", "abc");
  EXPECT_EQ(extract(h).second->source.kind, AuthSource::Kind::header);
  RequestFields same = f;
  same.set("X-Api-Key", "abc");
  EXPECT_FALSE(extract(same).first);
  RequestFields conflict = f;
  conflict.set("X-Api-Key", "other");
  EXPECT_EQ(extract(conflict).first->reason, "conflict");
  RequestFields empty;
  empty.set(http::field::authorization, "Bearer");
  EXPECT_EQ(extract(empty).first->reason, "malformed");
  RequestFields basic;
  basic.set(http::field::authorization, "Basic Zm9v");  // not ours: no credential
  EXPECT_FALSE(extract(basic).second);
  EXPECT_EQ(
      missing_key_message(c.auth),
      "Missing API key. Pass it as 'Authorization: Bearer <key>' or in the X-Api-Key header.");
}

// One Context, request after request (as on a connection), the client's
// address changing between them (as X-Forwarded-For may): the parsed address
// it keeps follows each request's client.
TEST(Authenticate, AllowedNetworksFollowTheClientOfEachRequest) {
  World w;
  auto key = w.add([](KeyRecord& r) { r.allowed_ips = {"10.0.0.0/8"}; });
  Context reused;
  for (const char* ip : {"10.9.9.9", "127.0.0.1", "10.1.1.1", "not-an-ip", "10.1.1.1"}) {
    reused.clear();
    const bool allowed = std::string_view(ip).starts_with("10.");
    auto v = w.with_key(key, "/v1/x", &reused, ip);
    EXPECT_EQ(v.forward, allowed) << ip;
    EXPECT_EQ(v.status, allowed ? 200 : 403) << ip;
    if (!allowed) {
      EXPECT_EQ(reason_of(v), "ip") << ip;
    }
  }
}

TEST(Authenticate, EveryReason) {
  World w(R"(
plans:
  default: {rate: {requests: 2, period: 1m}}
  free: {allow: false, message: "API access requires the Pro plan."}
routes:
  - {path_prefix: /admin, require_scopes: [admin, read]}
)");
  auto ok = w.add();
  EXPECT_TRUE(w.with_key(ok).forward);
  // Each refusal: not forwarded, the status of its SPEC row, and its reason.
  auto refused = [](const Verdict& v, int status, const std::string& reason) {
    EXPECT_FALSE(v.forward) << reason;
    EXPECT_EQ(v.status, status) << reason;
    EXPECT_EQ(reason_of(v), reason);
    EXPECT_EQ(v.www_authenticate, status == 401) << reason;
  };
  refused(w.run(RequestFields{}), 401, "missing");
  refused(w.with_key("kg_live_short"), 401, "malformed");
  std::string typo = ok;
  typo[10] = typo[10] == 'a' ? 'b' : 'a';
  refused(w.with_key(typo), 401, "malformed");
  refused(w.with_key(w.rt.key_format.generate()), 401, "invalid");
  refused(w.with_key(w.add([](KeyRecord& r) { r.revoked_at = 1; })), 401, "revoked");
  refused(w.with_key(w.add([](KeyRecord& r) { r.enabled = false; })), 401, "disabled");
  refused(w.with_key(w.add([](KeyRecord& r) { r.expires_at = 1; })), 401, "expired");
  // A revocation or expiry in the future is not one yet.
  UnixMillis later = now_millis() + 3'600'000;
  EXPECT_TRUE(w.with_key(w.add([&](KeyRecord& r) { r.revoked_at = later; })).forward);
  EXPECT_TRUE(w.with_key(w.add([&](KeyRecord& r) { r.expires_at = later; })).forward);
  auto ip_key = w.add([](KeyRecord& r) { r.allowed_ips = {"10.0.0.0/8"}; });
  refused(w.with_key(ip_key), 403, "ip");
  EXPECT_TRUE(w.with_key(ip_key, "/v1/x", nullptr, "10.9.9.9").forward);
  auto scope = w.with_key(ok, "/admin/x");
  EXPECT_EQ(scope.status, 403);
  auto sj = json::parse(scope.body);
  EXPECT_EQ(sj["error"]["details"]["reason"], "scope");
  EXPECT_EQ(sj["error"]["details"]["required_scopes"], json::parse(R"(["admin","read"])"));
  auto plan = w.with_key(w.add([](KeyRecord& r) { r.plan = "free"; }));
  EXPECT_EQ(plan.status, 403);
  EXPECT_EQ(json::parse(plan.body)["error"]["message"], "API access requires the Pro plan.");
  RequestFields conflict;
  conflict.set(http::field::authorization, "Bearer " + ok);
  conflict.set("X-Api-Key", w.add());
  refused(w.run(conflict), 401, "conflict");
  // every 401 asks for Bearer credentials
  EXPECT_TRUE(w.run(RequestFields{}).www_authenticate);
  // rate limit: 2 per minute, the first call above used one
  Context ctx;
  EXPECT_TRUE(w.with_key(ok, "/v1/x", &ctx).forward);
  EXPECT_EQ(ctx.rate->remaining, 0u);
  auto limited = w.with_key(ok);
  EXPECT_EQ(limited.status, 429);
  EXPECT_EQ(json::parse(limited.body)["error"]["details"]["retry_after_seconds"], 30);
}

TEST(Authenticate, ForeignFormatKeysAreLookedUpByHashOnlyOnceImported) {
  World w;
  const std::string foreign = "sk_live_4eC39HqLyjWDarjtT1zdp7dc";  // not a keygate key
  const std::string garbage = "not-a-key-at-all-0123456789";
  // No foreign key indexed: anything off-format is rejected before hashing.
  EXPECT_EQ(reason_of(w.with_key(foreign)), "malformed");
  EXPECT_FALSE(w.index.has_foreign_keys());
  KeyRecord r;
  r.id = generate_key_id();
  r.hash = w.rt.hasher.hash(foreign);
  r.name = "imported";
  r.foreign_format = true;
  w.index.upsert(r);
  EXPECT_TRUE(w.index.has_foreign_keys());
  Context ctx;
  EXPECT_TRUE(w.with_key(foreign, "/v1/x", &ctx).forward);
  EXPECT_EQ(ctx.key->id(), r.id);
  EXPECT_EQ(reason_of(w.with_key(garbage)), "invalid");  // hashed, looked up, unknown
  r.revoked_at = 1;
  w.index.upsert(r);  // an update is not a second foreign key
  EXPECT_EQ(reason_of(w.with_key(foreign)), "revoked");
  EXPECT_TRUE(w.with_key(w.add()).forward);  // keygate keys keep working alongside
}

TEST(Pipeline, HealthEndpointsAndDraining) {
  World w;
  auto live = w.run(RequestFields{}, "/live");
  EXPECT_EQ(live.status, 200);
  EXPECT_EQ(json::parse(live.body), json::parse(R"({"success":true,"data":{"status":"ok"}})"));
  w.state.draining = true;
  EXPECT_EQ(w.run(RequestFields{}, "/ready").status, 503);
  EXPECT_EQ(w.run(RequestFields{}, "/live?x=1").status, 200);
  w.state.draining = false;
  w.state.store_ok = false;
  EXPECT_EQ(reason_of(w.run(RequestFields{}, "/health")), "unavailable");
}

TEST(RateLimitHeaders, XRateLimitIetfAndRetryAfter) {
  Context ctx;
  ctx.plan = "default";
  Decision d;
  d.allowed = false;
  d.limit = 60;
  d.remaining = 0;
  d.reset_ns = 59'500'000'000;
  d.retry_ns = 500'000'000;
  d.window_ns = 60'000'000'000;
  ctx.rate = d;
  RateLimitConfig cfg;
  Fields f;
  add_rate_limit_headers(cfg, ctx, f, 1'000'000);
  EXPECT_EQ(f["X-RateLimit-Limit"], "60");
  EXPECT_EQ(f["X-RateLimit-Remaining"], "0");
  EXPECT_EQ(f["X-RateLimit-Reset"], "1000060");  // rounded up
  EXPECT_EQ(f["Retry-After"], "1");
  EXPECT_EQ(f.count("RateLimit"), 0u);
  cfg.headers = RateLimitConfig::Headers::ietf;
  Fields g;
  add_rate_limit_headers(cfg, ctx, g, 1'000'000);
  EXPECT_EQ(g["RateLimit-Policy"], "\"default\";q=60;w=60");
  EXPECT_EQ(g["RateLimit"], "\"default\";r=0;t=60");
  EXPECT_EQ(g.count("X-RateLimit-Limit"), 0u);
  cfg.headers = RateLimitConfig::Headers::both;
  cfg.reset = RateLimitConfig::Reset::delta;
  Fields b;
  add_rate_limit_headers(cfg, ctx, b, 1'000'000);
  EXPECT_EQ(b["X-RateLimit-Reset"], "60");
  EXPECT_EQ(b.count("RateLimit"), 1u);
  cfg.headers = RateLimitConfig::Headers::none;
  Fields n;
  add_rate_limit_headers(cfg, ctx, n, 1'000'000);
  EXPECT_EQ(n.count("X-RateLimit-Limit"), 0u);
  EXPECT_EQ(n["Retry-After"], "1");  // a 429 always says when to retry
}
