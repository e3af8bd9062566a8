// Request hygiene (SPEC §7) without a network: framing, repeated credentials,
// header stripping before forwarding, and the pipeline routing the normalised
// path.
#include <gtest/gtest.h>

#include "keygate/proxy/forward_headers.hpp"
#include "pipeline_world.hpp"

using namespace keygate;
using nlohmann::json;
namespace http = boost::beast::http;

namespace {

Config config(const std::string& yaml) {
  return test_support::config_from(yaml);
}

RequestFields with_host() {
  RequestFields f;
  f.set(http::field::host, "api.example");
  return f;
}

std::optional<std::string> framing_reason(const RequestFields& f, unsigned version = 11) {
  auto e = check_framing(f, version);
  if (!e) return std::nullopt;
  EXPECT_EQ(e->status, 400);
  EXPECT_EQ(e->code, "VALIDATION_ERROR");
  return e->reason;
}

}  // namespace

TEST(Framing, TransferEncodingMustBeExactlyChunked) {
  for (const char* ok : {"chunked", "Chunked", " chunked "}) {
    RequestFields f = with_host();
    f.set(http::field::transfer_encoding, ok);
    EXPECT_FALSE(framing_reason(f)) << ok;
  }
  for (const char* bad : {"chunked, gzip", "gzip, chunked", "identity", "xchunked", "gzip",
                          "chunked,", "", "chunked;q=1"}) {
    RequestFields f = with_host();
    f.set(http::field::transfer_encoding, bad);
    EXPECT_EQ(framing_reason(f), "bad_request") << bad;
  }
  RequestFields twice = with_host();
  twice.insert(http::field::transfer_encoding, "chunked");
  twice.insert(http::field::transfer_encoding, "chunked");
  EXPECT_TRUE(framing_reason(twice));
  RequestFields old;  // HTTP/1.0 has no chunked framing (RFC 9112 §6.1)
  old.set(http::field::transfer_encoding, "chunked");
  EXPECT_TRUE(framing_reason(old, 10));
  EXPECT_FALSE(framing_reason(RequestFields{}, 10));  // and needs no Host
}

// Each option of a Connection field is looked up for every field going
// upstream: more than 16 (close and keep-alive counted, empty ones too) is a 400.
TEST(Framing, AtMostSixteenConnectionOptions) {
  std::string sixteen = "keep-alive";
  for (int i = 1; i < 16; ++i) sixteen += ", X-" + std::to_string(i);
  RequestFields f = with_host();
  f.insert(http::field::connection, sixteen);
  EXPECT_FALSE(framing_reason(f));
  f.insert(http::field::connection, "close");  // the 17th, in a second field
  EXPECT_EQ(framing_reason(f), "bad_request");
  RequestFields commas = with_host();
  commas.insert("connection", std::string(16, ','));  // 17 empty options
  EXPECT_EQ(framing_reason(commas), "bad_request");
  RequestFields many = with_host();
  std::string names = "x";
  for (int i = 1; i < 3000; ++i) names += ",x";
  many.insert(http::field::connection, names);
  EXPECT_EQ(framing_reason(many), "bad_request");
}

TEST(Framing, ExactlyOneHostOnHttp11) {
  EXPECT_TRUE(framing_reason(RequestFields{}));
  EXPECT_FALSE(framing_reason(with_host()));
  RequestFields two = with_host();
  two.insert(http::field::host, "evil.example");
  EXPECT_TRUE(framing_reason(two));
}

TEST(Credentials, RepeatedHeadersAreReadAndDifferentKeysConflict) {
  Config c = config("auth: {sources: [bearer, {header: X-Api-Key}, {query: api_key}]}");
  auto extract = [&](const RequestFields& f, std::string target = "/") {
    Context ctx;
    RequestView v{"GET", target, f};
    auto err = extract_credential(v, c.auth, ctx);
    return std::make_pair(err ? err->reason : std::string(),
                          ctx.credential ? std::string(ctx.credential->value) : std::string());
  };
  RequestFields two_keys;
  two_keys.insert("X-Api-Key", "key-one");
  two_keys.insert("X-Api-Key", "key-two");
  EXPECT_EQ(extract(two_keys).first, "conflict");
  RequestFields same_twice;
  same_twice.insert("X-Api-Key", "key-one");
  same_twice.insert("x-api-key", "key-one");
  EXPECT_EQ(extract(same_twice), std::make_pair(std::string(), std::string("key-one")));
  RequestFields basic_then_bearer;  // the second Authorization is read too
  basic_then_bearer.insert(http::field::authorization, "Basic dXNlcjpwYXNz");
  basic_then_bearer.insert(http::field::authorization, "Bearer key-one");
  EXPECT_EQ(extract(basic_then_bearer).second, "key-one");
  RequestFields two_bearers;
  two_bearers.insert(http::field::authorization, "Bearer key-one");
  two_bearers.insert(http::field::authorization, "bearer key-two");
  EXPECT_EQ(extract(two_bearers).first, "conflict");
  EXPECT_EQ(extract(RequestFields{}, "/?api_key=key-one&api_key=key-two").first, "conflict");
  EXPECT_EQ(extract(RequestFields{}, "/?api_key=key-one&x=1&api_key=key-one").second, "key-one");
  RequestFields empty_second;
  empty_second.insert("X-Api-Key", "key-one");
  empty_second.insert("X-Api-Key", " ");
  EXPECT_EQ(extract(empty_second).first, "malformed");
}

namespace {

struct Forward {
  explicit Forward(const std::string& yaml = "") : rt(config(yaml)) {}
  Runtime rt;
  // The fields as the upstream gets them.
  RequestFields run(RequestFields f, const Context& ctx, std::string* target = nullptr,
                    std::string_view sent_target = "/") {
    auto t = rewrite_request(f, sent_target, ctx, rt, {});
    if (target) *target = t;
    return f;
  }
};

Context anonymous() {  // an `auth: none` route: no credential, no key
  Context ctx;
  ctx.request_id = "rid";
  ctx.peer_ip = ctx.client_ip = "127.0.0.1";
  return ctx;
}

}  // namespace

TEST(ForwardHeaders, UnderscoreNamesAreDroppedAndNeverReadAsIdentity) {
  Forward strict;
  RequestFields f = with_host();
  f.set("X_Keygate_Owner", "root");
  f.set("X_Custom", "1");
  f.set("X-Custom", "2");
  RequestFields out = strict.run(f, anonymous());
  EXPECT_EQ(out.count("X_Keygate_Owner"), 0u);
  EXPECT_EQ(out.count("X_Custom"), 0u);
  EXPECT_EQ(out["X-Custom"], "2");

  Forward lenient("limits: {allow_underscores_in_headers: true}");
  out = lenient.run(f, anonymous());
  EXPECT_EQ(out.count("X_Keygate_Owner"), 0u);  // identity, once '_' reads as '-'
  EXPECT_EQ(out["X_Custom"], "1");
  RequestFields g = with_host();
  g.set("x_keygate-KEY_ID", "key_forged");
  EXPECT_EQ(lenient.run(g, anonymous()).count("x_keygate-KEY_ID"), 0u);
}

TEST(ForwardHeaders, KeysNeverReachTheUpstreamOtherCredentialsDo) {
  Forward fw("auth: {sources: [bearer, {header: X-Api-Key}, {header: X-Token}]}");
  const std::string key = fw.rt.key_format.generate();
  const std::string other = fw.rt.key_format.generate();
  // auth: none: keys go, whatever header they sit in, repeated or not.
  RequestFields f = with_host();
  f.insert(http::field::authorization, "Basic dXNlcjpwYXNz");
  f.insert(http::field::authorization, "Bearer " + key);
  f.insert("X-Api-Key", "not-a-key");
  f.insert("X-Api-Key", key);
  f.insert("X-Token", " " + other + " ");
  f.insert("X-Unrelated", key);  // not a credential header: the API's business
  RequestFields out = fw.run(f, anonymous());
  EXPECT_EQ(out.count(http::field::authorization), 1u);
  EXPECT_EQ(out[http::field::authorization], "Basic dXNlcjpwYXNz");
  EXPECT_EQ(out.count("X-Api-Key"), 1u);
  EXPECT_EQ(out["X-Api-Key"], "not-a-key");
  EXPECT_EQ(out.count("X-Token"), 0u);
  EXPECT_EQ(out["X-Unrelated"], key);

  // With underscores allowed, X_Api_Key reads as X-Api-Key: its key goes too.
  Forward lenient("limits: {allow_underscores_in_headers: true}");
  RequestFields u = with_host();
  u.set("X_Api_Key", key);
  u.set("X_Trace", "t");
  RequestFields uo = lenient.run(u, anonymous());
  EXPECT_EQ(uo.count("X_Api_Key"), 0u);
  EXPECT_EQ(uo["X_Trace"], "t");

  // A key route: the used key goes, a second Authorization holding it goes,
  // Basic stays.
  Context ctx = anonymous();
  ctx.credential = Credential{key, fw.rt.config.auth.sources[1]};
  RequestFields used = with_host();
  used.insert("X-Api-Key", key);
  used.insert(http::field::authorization, "Basic Zm9vOmJhcg==");
  used.insert(http::field::authorization, "Bearer " + key);
  RequestFields uout = fw.run(used, ctx);
  EXPECT_EQ(uout.count("X-Api-Key"), 0u);
  EXPECT_EQ(uout.count(http::field::authorization), 1u);
  EXPECT_EQ(uout[http::field::authorization], "Basic Zm9vOmJhcg==");
}

TEST(ForwardHeaders, ForwardCredentialKeepsOnlyTheUsedKey) {
  Forward fw("auth: {forward_credential: true}");
  const std::string key = fw.rt.key_format.generate();
  const std::string other = fw.rt.key_format.generate();
  Context ctx = anonymous();
  ctx.credential = Credential{key, fw.rt.config.auth.sources[1]};
  RequestFields f = with_host();
  f.insert("X-Api-Key", key);
  f.insert(http::field::authorization, "Token " + other);
  RequestFields out = fw.run(f, ctx);
  EXPECT_EQ(out["X-Api-Key"], key);
  EXPECT_EQ(out.count(http::field::authorization), 0u);
}

TEST(ForwardHeaders, QueryKeysRemovedOnEveryRouteOtherwiseByteForByte) {
  Forward fw("auth: {sources: [{query: api_key}]}");
  const std::string key = fw.rt.key_format.generate();
  std::string target;
  fw.run(with_host(), anonymous(), &target, "/docs?a=%2F&api_key=" + key + "&b");
  EXPECT_EQ(target, "/docs?a=%2F&b");
  fw.run(with_host(), anonymous(), &target, "/docs?api_key=mine&&b=%2e");
  EXPECT_EQ(target, "/docs?api_key=mine&&b=%2e");
}

TEST(ForwardHeaders, AbsoluteFormNamesTheHost) {
  Forward fw;
  Context ctx = anonymous();
  ctx.target = *normalize_target("http://api.example:8080/v1/x", {});
  RequestFields f;
  f.set(http::field::host, "other.example");
  RequestFields out = fw.run(f, ctx);
  EXPECT_EQ(out[http::field::host], "api.example:8080");
  EXPECT_EQ(out["X-Forwarded-Host"], "api.example:8080");
}

namespace {

struct World : test_support::PipelineWorld {
  using PipelineWorld::PipelineWorld;
  std::string add(std::vector<std::string> scopes) {
    return PipelineWorld::add([&](KeyRecord& r) { r.scopes = std::move(scopes); });
  }
  Verdict run(std::string method, std::string target, const std::string& key, Context& ctx) {
    RequestFields f = with_host();
    if (!key.empty()) f.set("X-Api-Key", key);
    ctx.request_id = "rid";
    ctx.peer_ip = "127.0.0.1";
    return decide(method, target, f, ctx);
  }
  std::string outcome(std::string method, std::string target, const std::string& key = "") {
    Context ctx;
    Verdict v = run(std::move(method), std::move(target), key, ctx);
    if (v.forward) return "forward " + ctx.target.target;
    if (v.status == 200) return "200 local";
    return std::to_string(v.status) + " " + test_support::reason_of(v);
  }
};

}  // namespace

TEST(Pipeline, RoutesAreJudgedOnTheNormalisedPathWhichIsForwarded) {
  World w(R"(
routes:
  - {path_prefix: /docs, auth: none}
  - {path_prefix: /v1/admin/, methods: [POST], require_scopes: [admin]}
)");
  const std::string reader = w.add({"read"});
  const std::string admin = w.add({"admin"});
  EXPECT_EQ(w.outcome("GET", "/docs/intro"), "forward /docs/intro");
  EXPECT_EQ(w.outcome("GET", "/docs/../v1/secret"), "401 missing");
  EXPECT_EQ(w.outcome("GET", "/docs/%2e%2e/v1/secret"), "401 missing");
  EXPECT_EQ(w.outcome("GET", "/docs/%2E%2e/"), "401 missing");
  EXPECT_EQ(w.outcome("GET", "/docs/..%2Fv1/secret"), "400 bad_path");
  EXPECT_EQ(w.outcome("GET", "/docs/../../v1/secret"), "400 bad_path");
  EXPECT_EQ(w.outcome("GET", "/docs/../v1/secret", reader), "forward /v1/secret");
  for (const char* trick : {"/v1//admin/x", "/v1/%61dmin/x", "http://h/v1/admin/x", "/v1/admin/./x",
                            "/./v1/admin/x", "//v1/admin/x"}) {
    EXPECT_EQ(w.outcome("POST", trick, reader), "403 scope") << trick;
    EXPECT_EQ(w.outcome("post", trick, reader), "403 scope") << trick;
  }
  EXPECT_EQ(w.outcome("POST", "/v1/admin;x/y", reader), "400 bad_path");
  EXPECT_EQ(w.outcome("POST", "/v1//admin/x?q=/../", admin), "forward /v1/admin/x?q=/../");
  // Health endpoints answer on the normalised path too.
  EXPECT_EQ(w.outcome("GET", "//health"), "200 local");
}

TEST(ForwardHeaders, EveryConnectionFieldNamesHopByHopFieldsWhereverItSits) {
  Forward fw;
  RequestFields f = with_host();
  f.insert(http::field::connection, "close");
  f.insert("X-Between", "1");  // Connection fields need not be adjacent
  f.insert(http::field::connection, "X-Secret-Hop");
  f.insert("X-Secret-Hop", "s");
  RequestFields out = fw.run(f, anonymous());
  EXPECT_EQ(out.count("X-Secret-Hop"), 0u);
  EXPECT_EQ(out["X-Between"], "1");
  EXPECT_EQ(out.count(http::field::connection), 0u);
}

TEST(ForwardHeaders, ManyConnectionNamesAreAllHonouredButNeverTheFraming) {
  Forward fw;
  RequestFields f = with_host();
  std::string listed = "content-length, transfer-encoding";
  for (int i = 0; i < 40; ++i) listed += ", X-Hop-" + std::to_string(i);
  f.insert(http::field::connection, listed);
  for (int i = 0; i < 40; ++i) f.insert("X-Hop-" + std::to_string(i), "v");
  f.insert(http::field::content_length, "5");
  f.insert("X-Kept", "k");
  RequestFields out = fw.run(f, anonymous());
  for (int i = 0; i < 40; ++i) EXPECT_EQ(out.count("X-Hop-" + std::to_string(i)), 0u) << i;
  EXPECT_EQ(out[http::field::content_length], "5");  // the body's extent goes with it
  EXPECT_EQ(out["X-Kept"], "k");
}

// Past the 16 Connection names HopByHop keeps, every listed name is still
// matched (the Connection fields are read again); a name listed in a later
// Connection field drops a field that came before it.
TEST(ForwardHeaders, HopByHopPastSixteenConnectionNames) {
  FlatFields flat;
  auto add = [&](std::string_view name, std::string_view value) {
    flat.add(http::string_to_field(name), name, value);
  };
  std::string listed = "keep-alive, Content-Length";
  for (int i = 0; i < 20; ++i) listed += ", X-Hop-" + std::to_string(i);
  add("Date", "x");
  add("Connection", "X-First");
  add("X-First", "1");
  add("Keep-Alive", "timeout=5");
  add("Set-Cookie", "a=1");
  add("Set-Cookie", "b=2");
  for (int i = 0; i < 20; ++i) add("x-hop-" + std::to_string(i), "v");
  add("Content-Length", "2");
  add("Connection", listed);
  add("Upgrade", "h2c");
  add("X-Kept", "k");
  ASSERT_EQ(flat.size(), 30u);

  const HopByHop hop(flat);
  std::vector<std::string> kept;
  for (const auto& f : flat)
    if (!hop(f)) kept.push_back(std::string(f.name_string()) + ": " + std::string(f.value()));
  const std::vector<std::string> expected = {"Date: x", "Set-Cookie: a=1", "Set-Cookie: b=2",
                                             "Content-Length: 2", "X-Kept: k"};
  EXPECT_EQ(kept, expected);

  flat.clear();
  EXPECT_EQ(flat.size(), 0u);
  EXPECT_TRUE(flat.begin() == flat.end());
}

// What the session's code asks of a request's flat fields: Beast's lookups
// (first value, case-insensitive names, by enum or by text), counts, arrival
// order kept across names (Beast would group same-name fields), erase of every
// field of a name, and a head reused after clear().
TEST(FlatFields, LooksUpLikeBeastAndKeepsArrivalOrder) {
  RequestFields f;
  f.insert("Host", "a.example");
  f.insert("X-Forwarded-For", "1.1.1.1");
  f.insert(http::field::accept, "*/*");
  f.insert("x-forwarded-for", "2.2.2.2");
  f.insert("X-Custom", "c");
  EXPECT_EQ(f.size(), 5u);
  EXPECT_EQ(f[http::field::host], "a.example");
  EXPECT_EQ(f["HOST"], "a.example");
  EXPECT_EQ(f["X-FORWARDED-FOR"], "1.1.1.1");  // the first of two
  EXPECT_EQ(f.count("x-forwarded-for"), 2u);
  EXPECT_EQ(f.count(http::field::accept), 1u);
  EXPECT_EQ(f["Accept"], "*/*");  // inserted by enum, found by text
  EXPECT_EQ(f["X-Missing"], "");
  EXPECT_EQ(f.count("X-Custo"), 0u);  // a prefix is not the name
  std::vector<std::string> order;
  for (const auto& field : f) order.emplace_back(field.name_string());
  EXPECT_EQ(order, (std::vector<std::string>{"Host", "X-Forwarded-For", "Accept", "x-forwarded-for",
                                             "X-Custom"}));

  f.erase("X-Forwarded-For");
  EXPECT_EQ(f.count("X-Forwarded-For"), 0u);
  EXPECT_EQ(f.size(), 3u);
  EXPECT_EQ(f["X-Custom"], "c");  // the text of the ones kept is intact
  f.erase(http::field::host);
  EXPECT_EQ(f["Host"], "");
  EXPECT_EQ(f.size(), 2u);

  f.clear();
  f.insert("Host", std::string(20000, 'h'));  // grows the buffer past what clear() keeps
  f.clear();
  EXPECT_EQ(f.size(), 0u);
  f.insert("Host", "b");
  EXPECT_EQ(f["host"], "b");
}
