// SPEC §9 deployment modes (forward auth, shadow, self-service) and the §10
// client-IP rule, through the pipeline without a network.
#include <gtest/gtest.h>

#include "keygate/observe/metrics.hpp"
#include "keygate/proxy/client_ip.hpp"
#include "pipeline_world.hpp"

using namespace keygate;
using nlohmann::json;
namespace http = boost::beast::http;

namespace {

using test_support::reason_of;
Config config(const std::string& yaml) {
  return test_support::config_from(yaml);
}

std::vector<Cidr> nets(std::initializer_list<const char*> texts) {
  std::vector<Cidr> out;
  for (auto t : texts) out.push_back(*parse_cidr(t));
  return out;
}

RequestFields xff(std::initializer_list<const char*> values) {
  RequestFields f;
  for (auto v : values) f.insert("X-Forwarded-For", v);
  return f;
}

struct World : test_support::PipelineWorld {
  using PipelineWorld::PipelineWorld;
  Verdict run(RequestFields f, Context& ctx, std::string target = "/v1/x",
              std::string method = "GET", std::string peer = "127.0.0.1") {
    ctx = Context{};
    ctx.request_id = "rid-1";
    ctx.peer_ip = peer;
    return decide(method, target, f, ctx);
  }
  Verdict run(RequestFields f, std::string target = "/v1/x", std::string method = "GET") {
    Context ctx;
    return run(std::move(f), ctx, std::move(target), std::move(method));
  }
};

RequestFields with_key(const std::string& key) {
  RequestFields f;
  f.set("X-Api-Key", key);
  return f;
}

}  // namespace

// ---- client IP (SPEC §10) ---------------------------------------------------------

TEST(ClientIp, PeerUnlessTrusted) {
  auto trusted = nets({"10.0.0.0/8"});
  EXPECT_EQ(resolve_client_ip("192.0.2.1", xff({"203.0.113.7"}), {}), "192.0.2.1");
  // An untrusted peer's X-Forwarded-For is ignored, whatever it says.
  EXPECT_EQ(resolve_client_ip("192.0.2.1", xff({"203.0.113.7"}), trusted), "192.0.2.1");
  EXPECT_EQ(resolve_client_ip("10.0.0.1", xff({"203.0.113.7"}), trusted), "203.0.113.7");
  EXPECT_EQ(resolve_client_ip("10.0.0.1", RequestFields{}, trusted), "10.0.0.1");
  EXPECT_EQ(resolve_client_ip("10.0.0.1", xff({""}), trusted), "10.0.0.1");
}

TEST(ClientIp, RightMostUntrustedEntryWinsOverSpoofedOnes) {
  auto trusted = nets({"10.0.0.0/8", "192.168.0.0/16"});
  // The client wrote "1.1.1.1, 10.0.0.9" itself; the trusted hop appended what it saw.
  EXPECT_EQ(resolve_client_ip("10.0.0.1", xff({"1.1.1.1, 10.0.0.9, 198.51.100.4"}), trusted),
            "198.51.100.4");
  // Trusted hops to the right are skipped; the first untrusted one is the client.
  EXPECT_EQ(
      resolve_client_ip("10.0.0.1", xff({"1.1.1.1, 198.51.100.4, 192.168.1.1, 10.2.3.4"}), trusted),
      "198.51.100.4");
  // Several fields are one list, in order: a client's own header comes first.
  EXPECT_EQ(resolve_client_ip("10.0.0.1", xff({"1.1.1.1", "198.51.100.4"}), trusted),
            "198.51.100.4");
  EXPECT_EQ(resolve_client_ip("10.0.0.1", xff({"1.1.1.1, 2.2.2.2", "10.0.0.5"}), trusted),
            "2.2.2.2");
  // However many entries a client adds on the left, they are never read.
  std::string many;
  for (int i = 0; i < 200; ++i) many += "10.0.0." + std::to_string(i % 250) + ", ";
  many += "198.51.100.4";
  EXPECT_EQ(resolve_client_ip("10.0.0.1", xff({many.c_str()}), trusted), "198.51.100.4");
}

TEST(ClientIp, AllTrustedChainGivesTheLeftMostHop) {
  auto trusted = nets({"10.0.0.0/8"});
  EXPECT_EQ(resolve_client_ip("10.0.0.1", xff({"10.1.1.1, 10.2.2.2"}), trusted), "10.1.1.1");
}

TEST(ClientIp, GarbageStopsAtTheLastTrustedHop) {
  auto trusted = nets({"10.0.0.0/8"});
  for (const char* bad : {"unknown", "not an ip", "1.2.3.4.5", "999.1.1.1", "[::1", "1.2.3.4:x",
                          "example.com", "_hidden", "1.2.3.4/8", "1.2.3.4:", "1.2.3.4:99999",
                          "1.2.3.4:0", "user@1.2.3.4", "[v1.x]:80"}) {
    std::string list = std::string("203.0.113.7, ") + bad + ", 10.9.9.9";
    EXPECT_EQ(resolve_client_ip("10.0.0.1", xff({list.c_str()}), trusted), "10.9.9.9") << bad;
    EXPECT_EQ(resolve_client_ip("10.0.0.1", xff({bad}), trusted), "10.0.0.1") << bad;
  }
  // Empty entries (", ,") are skipped, not taken for garbage.
  EXPECT_EQ(resolve_client_ip("10.0.0.1", xff({"203.0.113.7, , "}), trusted), "203.0.113.7");
}

TEST(ClientIp, Ipv6PortsBracketsAndV4Mapped) {
  auto trusted = nets({"10.0.0.0/8", "fd00::/8"});
  EXPECT_EQ(resolve_client_ip("fd00::1", xff({"2001:db8::7"}), trusted), "2001:db8::7");
  EXPECT_EQ(resolve_client_ip("fd00::1", xff({"[2001:DB8::7]:443"}), trusted), "2001:db8::7");
  EXPECT_EQ(resolve_client_ip("fd00::1", xff({"[2001:db8::7]"}), trusted), "2001:db8::7");
  EXPECT_EQ(resolve_client_ip("10.0.0.1", xff({"203.0.113.7:5678"}), trusted), "203.0.113.7");
  // v4-mapped entries are IPv4, for trust and for the answer.
  EXPECT_EQ(resolve_client_ip("10.0.0.1", xff({"::ffff:203.0.113.7"}), trusted), "203.0.113.7");
  EXPECT_EQ(resolve_client_ip("10.0.0.1", xff({"203.0.113.7, ::ffff:10.1.1.1"}), trusted),
            "203.0.113.7");
  // A v4-mapped peer inside a trusted IPv4 range is trusted.
  EXPECT_EQ(resolve_client_ip("::ffff:10.0.0.1", xff({"203.0.113.7"}), trusted), "203.0.113.7");
  // Trusted ranges do not cross families.
  EXPECT_EQ(resolve_client_ip("fd00::1", xff({"203.0.113.7, fd00::2"}), nets({"fd00::/8"})),
            "203.0.113.7");
}

TEST(ClientIp, AllowListsSeeTheResolvedIp) {
  World w(R"(
trusted_proxies: [127.0.0.1/32]
)");
  auto key = w.add([](KeyRecord& r) { r.allowed_ips = {"203.0.113.0/24"}; });
  RequestFields f = with_key(key);
  Context ctx;
  EXPECT_EQ(reason_of(w.run(f, ctx)), "ip");  // no X-Forwarded-For: the peer
  f.set("X-Forwarded-For", "203.0.113.7");
  EXPECT_TRUE(w.run(f, ctx).forward);
  EXPECT_EQ(ctx.client_ip, "203.0.113.7");
  // The same header from an untrusted peer is ignored.
  EXPECT_EQ(reason_of(w.run(f, ctx, "/v1/x", "GET", "127.0.0.2")), "ip");
  EXPECT_EQ(ctx.client_ip, "127.0.0.2");
  // A spoofed entry left of what the trusted hop appended is ignored.
  f.set("X-Forwarded-For", "203.0.113.7, 198.51.100.1");
  EXPECT_EQ(reason_of(w.run(f, ctx)), "ip");
}

// One context serves every request of a keep-alive connection: the client IP a
// trusted hop named for one request must not become the "peer" of the next.
TEST(ClientIp, NextRequestOnTheConnectionIsJudgedFromThePeerAgain) {
  World w("trusted_proxies: [127.0.0.1/32]\n");
  auto key = w.add([](KeyRecord& r) { r.allowed_ips = {"203.0.113.0/24"}; });
  Context ctx;
  ctx.peer_ip = "127.0.0.1";
  ctx.clear();  // as the session does before each request
  RequestFields first = with_key(key);
  first.set("X-Forwarded-For", "203.0.113.7");
  EXPECT_TRUE(w.pipeline.decide(RequestView{"GET", "/v1/x", first}, ctx).forward);
  EXPECT_EQ(ctx.client_ip, "203.0.113.7");

  ctx.clear();
  RequestFields second = with_key(key);  // no X-Forwarded-For: the peer itself
  EXPECT_EQ(reason_of(w.pipeline.decide(RequestView{"GET", "/v1/x", second}, ctx)), "ip");
  EXPECT_EQ(ctx.client_ip, "127.0.0.1");
}

TEST(ClientIp, ConfigNamesBadRanges) {
  auto bad = load_config_text("trusted_proxies: [10.0.0.0/8, 10.0.0.0/33, nope]\n", "t.yaml");
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().messages.size(), 2u) << bad.error().joined();
  EXPECT_NE(bad.error().joined().find("t.yaml:1:"), std::string::npos);
  Runtime rt(config("trusted_proxies: [10.0.0.0/8, '::1']\n"));
  EXPECT_EQ(rt.trusted_proxies.size(), 2u);
}

// ---- forward auth (SPEC §9) -------------------------------------------------------

TEST(ForwardAuth, OriginalRequestFromHeadersOrOwnTarget) {
  ForwardAuthConfig fa{"/_auth"};
  NormalizeOptions opts;
  auto own = [&](std::string t) { return *normalize_target(t, opts); };
  EXPECT_TRUE(at_forward_auth(fa, "/_auth"));
  EXPECT_TRUE(at_forward_auth(fa, "/_auth/v1/x"));
  EXPECT_FALSE(at_forward_auth(fa, "/_authx"));
  EXPECT_FALSE(at_forward_auth(ForwardAuthConfig{}, "/_auth"));

  RequestFields f;
  f.set("X-Forwarded-Method", "DELETE");
  f.set("X-Forwarded-Uri", "/v1//a/../b?q=1");
  auto o = original_request({"GET", "/_auth", f}, own("/_auth"), fa, opts);
  ASSERT_TRUE(o);
  EXPECT_EQ(o->method, "DELETE");
  EXPECT_EQ(o->target.target, "/v1/b?q=1");  // normalised as a proxied request

  RequestFields nginx;
  nginx.set("X-Original-Method", "POST");
  nginx.set("X-Original-URI", "/v2/y");
  o = original_request({"GET", "/_auth", nginx}, own("/_auth"), fa, opts);
  EXPECT_EQ(o->method, "POST");
  EXPECT_EQ(o->target.path(), "/v2/y");

  // Envoy ext_authz: method as sent, original path appended to path_prefix.
  o = original_request({"PATCH", "/_auth/v1/k?x=2", RequestFields{}}, own("/_auth/v1/k?x=2"), fa,
                       opts);
  EXPECT_EQ(o->method, "PATCH");
  EXPECT_EQ(o->target.target, "/v1/k?x=2");
  o = original_request({"GET", "/_auth", RequestFields{}}, own("/_auth"), fa, opts);
  EXPECT_EQ(o->target.target, "/_auth");  // nothing described: the check itself
}

TEST(ForwardAuth, DisagreeingOrBadHeadersAre400) {
  ForwardAuthConfig fa{"/_auth"};
  NormalizeOptions opts;
  auto own = *normalize_target("/_auth", opts);
  // A client-sent X-Forwarded-Uri beside the X-Original-URI nginx sets.
  RequestFields spoof;
  spoof.set("X-Forwarded-Uri", "/public");
  spoof.set("X-Original-URI", "/admin/x");
  auto e = original_request({"GET", "/_auth", spoof}, own, fa, opts);
  ASSERT_FALSE(e);
  EXPECT_EQ(e.error().status, 400);
  RequestFields twice;
  twice.insert("X-Forwarded-Uri", "/public");
  twice.insert("X-Forwarded-Uri", "/admin/x");
  EXPECT_FALSE(original_request({"GET", "/_auth", twice}, own, fa, opts));
  RequestFields same;  // the same value twice is no disagreement
  same.insert("X-Forwarded-Uri", "/a");
  same.insert("X-Original-URI", "/a");
  EXPECT_TRUE(original_request({"GET", "/_auth", same}, own, fa, opts));
  RequestFields methods;
  methods.set("X-Forwarded-Method", "GET");
  methods.set("X-Original-Method", "DELETE");
  EXPECT_FALSE(original_request({"GET", "/_auth", methods}, own, fa, opts));
  RequestFields bad_method;
  bad_method.set("X-Forwarded-Method", "GET /x");
  EXPECT_FALSE(original_request({"GET", "/_auth", bad_method}, own, fa, opts));
  RequestFields climb;
  climb.set("X-Forwarded-Uri", "/../../etc");
  auto c = original_request({"GET", "/_auth", climb}, own, fa, opts);
  ASSERT_FALSE(c);
  EXPECT_EQ(c.error().reason, "bad_path");
}

TEST(ForwardAuth, JudgesTheOriginalRequestAndNeverForwards) {
  World w(R"(
forward_auth: {path: /_keygate/auth}
plans: {default: {rate: {requests: 2, period: 1h}}}
routes:
  - {path_prefix: /public, auth: none}
  - {path_prefix: /admin, require_scopes: [admin]}
)");
  auto key = w.add();
  auto check = [&](const std::string& key_value, const std::string& uri, Context& ctx) {
    RequestFields f;
    if (!key_value.empty()) f.set("X-Api-Key", key_value);
    f.set("X-Forwarded-Method", "GET");
    f.set("X-Forwarded-Uri", uri);
    return w.run(f, ctx, "/_keygate/auth");
  };
  Context ctx;
  Verdict ok = check(key, "/v1/x", ctx);
  EXPECT_FALSE(ok.forward);
  EXPECT_EQ(ok.status, 200);
  EXPECT_TRUE(ok.body.empty());
  EXPECT_EQ(ctx.mode, Context::Mode::forward_auth);
  EXPECT_EQ(ok.headers["X-Keygate-Key-Id"], ctx.key->id());
  EXPECT_EQ(ok.headers["X-Keygate-Owner"], "acme");
  EXPECT_EQ(ok.headers["X-Keygate-Scopes"], "read");
  EXPECT_EQ(ok.headers["X-Keygate-Plan"], "default");
  EXPECT_EQ(ctx.rate->remaining, 1u);  // the check took the request's token

  Verdict missing = check("", "/v1/x", ctx);
  EXPECT_EQ(missing.status, 401);
  EXPECT_TRUE(missing.www_authenticate);
  EXPECT_EQ(missing.headers.begin(), missing.headers.end());
  Verdict scope = check(key, "/admin/users", ctx);  // the original path's route decides
  EXPECT_EQ(scope.status, 403);
  EXPECT_EQ(reason_of(scope), "scope");
  Verdict open = check("", "/public/docs", ctx);
  EXPECT_EQ(open.status, 200);
  EXPECT_FALSE(open.forward);
  EXPECT_EQ(check(key, "/v1/x", ctx).status, 200);
  Verdict limited = check(key, "/v1/x", ctx);
  EXPECT_EQ(limited.status, 429);
  EXPECT_EQ(reason_of(limited), "rate_limit");
  EXPECT_EQ(check(key, "/../x", ctx).status, 400);
  // Other paths are proxied as before.
  Context p;
  EXPECT_TRUE(w.run(with_key(w.add()), p, "/v1/x").forward);
  EXPECT_EQ(p.mode, Context::Mode::proxy);
}

// Caddy's forward_auth and Traefik ask with GET whatever the client sent: the
// route is chosen by X-Forwarded-Method, not by the check's own method.
TEST(ForwardAuth, TheForwardedMethodChoosesTheRoute) {
  World w(R"(
forward_auth: {path: /_keygate/auth}
routes:
  - {path_prefix: /orders, methods: [POST], require_scopes: [write]}
)");
  auto key = w.add();  // scopes: read
  auto check = [&](const std::string& original_method) {
    RequestFields f;
    f.set("X-Api-Key", key);
    f.set("X-Forwarded-Method", original_method);
    f.set("X-Forwarded-Uri", "/orders/1");
    Context ctx;
    return w.run(f, ctx, "/_keygate/auth", "GET");
  };
  Verdict post = check("POST");
  EXPECT_EQ(post.status, 403);
  EXPECT_EQ(reason_of(post), "scope");
  EXPECT_EQ(check("GET").status, 200);  // no route for GET: the default admits the key
}

// ---- shadow mode (SPEC §9) --------------------------------------------------------

TEST(Shadow, WouldBe429sAreExactAndEveryRequestIsForwarded) {
  World w(R"(
shadow: true
plans: {default: {rate: {requests: 3, period: 1h}}}
)");
  auto key = w.add();
  int forwarded = 0, shadowed = 0;
  for (int i = 0; i < 10; ++i) {
    Context ctx;
    Verdict v = w.run(with_key(key), ctx);
    forwarded += v.forward;
    if (!ctx.shadow_reason.empty()) {
      ++shadowed;
      EXPECT_EQ(ctx.shadow_reason, "rate_limit");
      EXPECT_TRUE(ctx.key);  // an authenticated key keeps its identity
      EXPECT_EQ(ctx.reason, "");
      Fields headers;
      add_rate_limit_headers(w.rt.config.rate_limit, ctx, headers, 0);
      EXPECT_EQ(headers["X-RateLimit-Remaining"], "0");
      EXPECT_EQ(headers.count("Retry-After"), 0u);  // not refused: nothing to retry
    }
  }
  EXPECT_EQ(forwarded, 10);
  EXPECT_EQ(shadowed, 7);
}

TEST(Shadow, EveryRefusalReasonIsForwardedWithoutIdentityForUnknownKeys) {
  World w(R"(
shadow: true
routes:
  - {path_prefix: /admin, require_scopes: [admin]}
)");
  auto key = w.add();
  Context ctx;
  EXPECT_TRUE(w.run(RequestFields{}, ctx).forward);
  EXPECT_EQ(ctx.shadow_reason, "missing");
  EXPECT_FALSE(ctx.key);
  EXPECT_TRUE(w.run(with_key(w.rt.key_format.generate()), ctx).forward);
  EXPECT_EQ(ctx.shadow_reason, "invalid");
  EXPECT_FALSE(ctx.key);
  EXPECT_TRUE(w.run(with_key(w.add([](KeyRecord& r) { r.revoked_at = 1; })), ctx).forward);
  EXPECT_EQ(ctx.shadow_reason, "revoked");
  EXPECT_FALSE(ctx.key);
  // 403: forwarded with the key's identity; like enforcing, it takes no token.
  EXPECT_TRUE(w.run(with_key(key), ctx, "/admin/x").forward);
  EXPECT_EQ(ctx.shadow_reason, "scope");
  EXPECT_TRUE(ctx.key);
  ASSERT_TRUE(ctx.rate);
  EXPECT_EQ(ctx.rate->remaining, 60u);
  // Hygiene refusals are never shadowed.
  EXPECT_EQ(w.run(with_key(key), ctx, "/../x").status, 400);
  EXPECT_EQ(ctx.shadow_reason, "");
  // An admitted request carries no shadow reason.
  EXPECT_TRUE(w.run(with_key(key), ctx).forward);
  EXPECT_EQ(ctx.shadow_reason, "");
}

TEST(Shadow, PerRouteOverridesTheGlobalSetting) {
  World w(R"(
routes:
  - {path_prefix: /new, shadow: true}
  - {path_prefix: /strict, shadow: false}
)");
  Context ctx;
  EXPECT_TRUE(w.run(RequestFields{}, ctx, "/new/x").forward);
  EXPECT_EQ(ctx.shadow_reason, "missing");
  EXPECT_EQ(w.run(RequestFields{}, ctx, "/old").status, 401);
  World global(R"(
shadow: true
routes:
  - {path_prefix: /strict, shadow: false}
)");
  EXPECT_EQ(global.run(RequestFields{}, ctx, "/strict/x").status, 401);
  EXPECT_TRUE(global.run(RequestFields{}, ctx, "/other").forward);
}

TEST(Shadow, ForwardAuthChecksPassWithTheReasonKept) {
  World w(R"(
shadow: true
forward_auth: {path: /_auth}
)");
  RequestFields f;
  f.set("X-Forwarded-Uri", "/v1/x");
  Context ctx;
  Verdict v = w.run(f, ctx, "/_auth");
  EXPECT_EQ(v.status, 200);
  EXPECT_FALSE(v.forward);
  EXPECT_EQ(ctx.shadow_reason, "missing");
  EXPECT_EQ(v.headers.count("X-Keygate-Key-Id"), 0u);
}

// A would-be credits 429 is forwarded like a would-be rate-limit 429, and
// spends nothing (enforcing would have spent nothing): no credits, no token.
TEST(Shadow, WouldBeCreditRefusalsAreForwardedAndSpendNothing) {
  World w(R"(
shadow: true
plans: {default: {rate: {requests: 10, period: 1h}}}
routes:
  - {path_prefix: /search, cost: 2}
)");
  auto key = w.add([](KeyRecord& r) {
    r.credits = Credits{3, std::nullopt, 0};
    r.credits_version = 1;
  });
  Context ctx;
  ASSERT_TRUE(w.run(with_key(key), ctx, "/search").forward);
  EXPECT_EQ(ctx.shadow_reason, "");
  EXPECT_EQ(ctx.credits->remaining, 1);
  EXPECT_EQ(ctx.rate->remaining, 8u);
  ASSERT_TRUE(w.run(with_key(key), ctx, "/search").forward);  // costs 2, 1 left
  EXPECT_EQ(ctx.shadow_reason, "credits");
  EXPECT_EQ(ctx.reason, "");
  EXPECT_EQ(ctx.credits->remaining, 1);
  EXPECT_EQ(ctx.rate->remaining, 8u);
  Fields headers;
  add_key_lifecycle_headers(ctx, headers);
  EXPECT_EQ(headers["X-Credits-Remaining"], "1");
  EXPECT_EQ(headers.count("Retry-After"), 0u);
  ASSERT_TRUE(w.run(with_key(key), ctx, "/v1/x").forward);  // costs 1: the last credit
  EXPECT_EQ(ctx.shadow_reason, "");
  EXPECT_EQ(ctx.credits->remaining, 0);
  EXPECT_EQ(ctx.rate->remaining, 7u);
}

TEST(Shadow, WouldBeRateLimitRefusalsSpendNoCredits) {
  World w(R"(
shadow: true
plans: {default: {rate: {requests: 2, period: 1h}}}
)");
  auto key = w.add([](KeyRecord& r) {
    r.credits = Credits{10, std::nullopt, 0};
    r.credits_version = 1;
  });
  Context ctx;
  for (int i = 0; i < 2; ++i) ASSERT_TRUE(w.run(with_key(key), ctx).forward);
  EXPECT_EQ(ctx.credits->remaining, 8);
  ASSERT_TRUE(w.run(with_key(key), ctx).forward);
  EXPECT_EQ(ctx.shadow_reason, "rate_limit");
  Context next;
  w.run(with_key(key), next);
  EXPECT_EQ(next.shadow_reason, "rate_limit");
  EXPECT_EQ(w.index.meters().meter(next.key->id()).account()->peek(1, now_millis()).remaining, 8);
}

// Forward auth spends credits and answers the credits 429 like the rate-limit one.
TEST(ForwardAuth, SpendsCreditsAndAnswersTheCredits429) {
  World w(R"(
forward_auth: {path: /_auth}
)");
  auto key = w.add([](KeyRecord& r) {
    r.credits = Credits{1, std::nullopt, 0};
    r.credits_version = 1;
  });
  RequestFields f = with_key(key);
  f.set("X-Forwarded-Uri", "/v1/x");
  Context ctx;
  Verdict v = w.run(f, ctx, "/_auth");
  EXPECT_EQ(v.status, 200);
  EXPECT_FALSE(v.forward);
  EXPECT_EQ(ctx.credits->remaining, 0);
  v = w.run(f, ctx, "/_auth");
  EXPECT_EQ(v.status, 429);
  EXPECT_FALSE(v.forward);
  EXPECT_EQ(reason_of(v), "credits");
  EXPECT_EQ(v.headers.count("X-Keygate-Key-Id"), 0u);
}

TEST(Shadow, CountedByReason) {
  Metrics m;
  m.count_shadow_denied("rate_limit");
  m.count_shadow_denied("rate_limit");
  m.count_shadow_denied("missing");
  std::string text = m.render({});
  EXPECT_NE(text.find("# TYPE keygate_shadow_denied_total counter"), std::string::npos);
  EXPECT_NE(text.find("keygate_shadow_denied_total{reason=\"rate_limit\"} 2\n"), std::string::npos);
  EXPECT_NE(text.find("keygate_shadow_denied_total{reason=\"missing\"} 1\n"), std::string::npos);
}

// ---- self-service keys (SPEC §9) --------------------------------------------------

TEST(SelfService, KeyRoutesMapOntoTheAdminApi) {
  SelfServiceConfig ss{"/api/keys"};
  NormalizeOptions opts;
  auto map = [&](std::string t) { return self_service_target(ss, *normalize_target(t, opts)); };
  EXPECT_TRUE(under_self_service(ss, "/api/keys"));
  EXPECT_TRUE(under_self_service(ss, "/api/keys/k1"));
  EXPECT_FALSE(under_self_service(ss, "/api/keysx"));
  EXPECT_EQ(*map("/api/keys?page=2&pageSize=5"), "/v1/api-keys?page=2&pageSize=5");
  EXPECT_EQ(*map("/api/keys/key_abc"), "/v1/api-keys/key_abc");
  EXPECT_EQ(*map("/api/keys/key_abc/rotate"), "/v1/api-keys/key_abc/rotate");
  for (auto other : {"/api/keys/", "/api/keys/a/b", "/api/keys/a/rotate/x", "/api/keys/a/usage"})
    EXPECT_EQ(map(other).error().status, 404) << other;
}

TEST(SelfService, AuthenticatedAndRateLimitedLikeAnyRequestNeverShadowed) {
  World w(R"(
shadow: true
admin: {key_scope: "keys:admin"}
self_service: {path_prefix: /v1/api-keys}
plans: {default: {rate: {requests: 1, period: 1h}}}
routes:
  - {path_prefix: /v1/, auth: none}
)");
  auto key = w.add([](KeyRecord& r) { r.scopes = {"keys:admin"}; });
  Context ctx;
  Verdict v = w.run(with_key(key), ctx, "/v1/api-keys", "POST");
  EXPECT_TRUE(v.self_service);
  EXPECT_FALSE(v.forward);
  EXPECT_EQ(ctx.admin_target, "/v1/api-keys");
  EXPECT_EQ(w.run(with_key(key), ctx, "/v1/api-keys").status, 429);  // the token is spent
  EXPECT_EQ(w.run(RequestFields{}, ctx, "/v1/api-keys").status,
            401);  // shadow and auth: none aside
  EXPECT_EQ(w.run(with_key(key), ctx, "/v1/api-keys/a/b").status, 404);
  EXPECT_TRUE(w.run(RequestFields{}, ctx, "/v1/other").forward);
}

TEST(SelfService, ConfigNeedsTheAdminKeyScope) {
  auto bad = load_config_text("self_service: {path_prefix: /v1/api-keys}\n", "t.yaml");
  ASSERT_FALSE(bad);
  EXPECT_NE(bad.error().joined().find("admin.key_scope"), std::string::npos);
  EXPECT_FALSE(
      load_config_text("self_service: {path_prefix: v1/keys/}\nadmin: {key_scope: k}\n", "t.yaml"));
  EXPECT_FALSE(load_config_text("forward_auth: {path: /health}\n", "t.yaml"));
  EXPECT_FALSE(load_config_text("shadow: maybe\n", "t.yaml"));
  auto ok = config(R"(
forward_auth: {path: /_keygate/auth}
shadow: true
admin: {key_scope: "keys:admin"}
self_service: {path_prefix: /v1/api-keys}
routes:
  - {path_prefix: /a, shadow: false}
  - {path_prefix: /b}
)");
  EXPECT_EQ(*ok.forward_auth.path, "/_keygate/auth");
  EXPECT_TRUE(ok.shadow);
  EXPECT_EQ(*ok.self_service.path_prefix, "/v1/api-keys");
  EXPECT_EQ(ok.routes[0].shadow, false);
  EXPECT_FALSE(ok.routes[1].shadow.has_value());
}
