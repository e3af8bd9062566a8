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

Fields with_host() {
  Fields f;
  f.set(http::field::host, "api.example");
  return f;
}

std::optional<std::string> framing_reason(const Fields& f, unsigned version = 11) {
  auto e = check_framing(f, version);
  if (!e) return std::nullopt;
  EXPECT_EQ(e->status, 400);
  EXPECT_EQ(e->code, "VALIDATION_ERROR");
  return e->reason;
}

}  // namespace

TEST(Framing, TransferEncodingMustBeExactlyChunked) {
  for (const char* ok : {"chunked", "Chunked", " chunked "}) {
    Fields f = with_host();
    f.set(http::field::transfer_encoding, ok);
    EXPECT_FALSE(framing_reason(f)) << ok;
  }
  for (const char* bad : {"chunked, gzip", "gzip, chunked", "identity", "xchunked", "gzip",
                          "chunked,", "", "chunked;q=1"}) {
    Fields f = with_host();
    f.set(http::field::transfer_encoding, bad);
    EXPECT_EQ(framing_reason(f), "bad_request") << bad;
  }
  Fields twice = with_host();
  twice.insert(http::field::transfer_encoding, "chunked");
  twice.insert(http::field::transfer_encoding, "chunked");
  EXPECT_TRUE(framing_reason(twice));
  Fields old;  // HTTP/1.0 has no chunked framing (RFC 9112 §6.1)
  old.set(http::field::transfer_encoding, "chunked");
  EXPECT_TRUE(framing_reason(old, 10));
  EXPECT_FALSE(framing_reason(Fields{}, 10));  // and needs no Host
}

TEST(Framing, ExactlyOneHostOnHttp11) {
  EXPECT_TRUE(framing_reason(Fields{}));
  EXPECT_FALSE(framing_reason(with_host()));
  Fields two = with_host();
  two.insert(http::field::host, "evil.example");
  EXPECT_TRUE(framing_reason(two));
}

TEST(Credentials, RepeatedHeadersAreReadAndDifferentKeysConflict) {
  Config c = config("auth: {sources: [bearer, {header: X-Api-Key}, {query: api_key}]}");
  auto extract = [&](const Fields& f, std::string target = "/") {
    Context ctx;
    RequestView v{"GET", target, f};
    auto err = extract_credential(v, c.auth, ctx);
    return std::make_pair(err ? err->reason : std::string(),
                          ctx.credential ? std::string(ctx.credential->value) : std::string());
  };
  Fields two_keys;
  two_keys.insert("X-Api-Key", "key-one");
  two_keys.insert("X-Api-Key", "key-two");
  EXPECT_EQ(extract(two_keys).first, "conflict");
  Fields same_twice;
  same_twice.insert("X-Api-Key", "key-one");
  same_twice.insert("x-api-key", "key-one");
  EXPECT_EQ(extract(same_twice), std::make_pair(std::string(), std::string("key-one")));
  Fields basic_then_bearer;  // the second Authorization is read too
  basic_then_bearer.insert(http::field::authorization, "Basic dXNlcjpwYXNz");
  basic_then_bearer.insert(http::field::authorization, "Bearer key-one");
  EXPECT_EQ(extract(basic_then_bearer).second, "key-one");
  Fields two_bearers;
  two_bearers.insert(http::field::authorization, "Bearer key-one");
  two_bearers.insert(http::field::authorization, "bearer key-two");
  EXPECT_EQ(extract(two_bearers).first, "conflict");
  EXPECT_EQ(extract(Fields{}, "/?api_key=key-one&api_key=key-two").first, "conflict");
  EXPECT_EQ(extract(Fields{}, "/?api_key=key-one&x=1&api_key=key-one").second, "key-one");
  Fields empty_second;
  empty_second.insert("X-Api-Key", "key-one");
  empty_second.insert("X-Api-Key", " ");
  EXPECT_EQ(extract(empty_second).first, "malformed");
}

namespace {

struct Forward {
  explicit Forward(const std::string& yaml = "") : rt(config(yaml)) {}
  Runtime rt;
  // The fields as the upstream gets them.
  Fields run(Fields f, const Context& ctx, std::string* target = nullptr,
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
  Fields f = with_host();
  f.set("X_Keygate_Owner", "root");
  f.set("X_Custom", "1");
  f.set("X-Custom", "2");
  Fields out = strict.run(f, anonymous());
  EXPECT_EQ(out.count("X_Keygate_Owner"), 0u);
  EXPECT_EQ(out.count("X_Custom"), 0u);
  EXPECT_EQ(out["X-Custom"], "2");

  Forward lenient("limits: {allow_underscores_in_headers: true}");
  out = lenient.run(f, anonymous());
  EXPECT_EQ(out.count("X_Keygate_Owner"), 0u);  // identity, once '_' reads as '-'
  EXPECT_EQ(out["X_Custom"], "1");
  Fields g = with_host();
  g.set("x_keygate-KEY_ID", "key_forged");
  EXPECT_EQ(lenient.run(g, anonymous()).count("x_keygate-KEY_ID"), 0u);
}

TEST(ForwardHeaders, KeysNeverReachTheUpstreamOtherCredentialsDo) {
  Forward fw("auth: {sources: [bearer, {header: X-Api-Key}, {header: X-Token}]}");
  const std::string key = fw.rt.key_format.generate();
  const std::string other = fw.rt.key_format.generate();
  // auth: none: keys go, whatever header they sit in, repeated or not.
  Fields f = with_host();
  f.insert(http::field::authorization, "Basic dXNlcjpwYXNz");
  f.insert(http::field::authorization, "Bearer " + key);
  f.insert("X-Api-Key", "not-a-key");
  f.insert("X-Api-Key", key);
  f.insert("X-Token", " " + other + " ");
  f.insert("X-Unrelated", key);  // not a credential header: the API's business
  Fields out = fw.run(f, anonymous());
  auto [a, a_end] = out.equal_range(http::field::authorization);
  ASSERT_NE(a, a_end);
  EXPECT_EQ(a->value(), "Basic dXNlcjpwYXNz");
  EXPECT_EQ(std::next(a), a_end);
  auto [k, k_end] = out.equal_range("X-Api-Key");
  ASSERT_NE(k, k_end);
  EXPECT_EQ(k->value(), "not-a-key");
  EXPECT_EQ(std::next(k), k_end);
  EXPECT_EQ(out.count("X-Token"), 0u);
  EXPECT_EQ(out["X-Unrelated"], key);

  // With underscores allowed, X_Api_Key reads as X-Api-Key: its key goes too.
  Forward lenient("limits: {allow_underscores_in_headers: true}");
  Fields u = with_host();
  u.set("X_Api_Key", key);
  u.set("X_Trace", "t");
  Fields uo = lenient.run(u, anonymous());
  EXPECT_EQ(uo.count("X_Api_Key"), 0u);
  EXPECT_EQ(uo["X_Trace"], "t");

  // A key route: the used key goes, a second Authorization holding it goes,
  // Basic stays.
  Context ctx = anonymous();
  ctx.credential = Credential{key, fw.rt.config.auth.sources[1]};
  Fields used = with_host();
  used.insert("X-Api-Key", key);
  used.insert(http::field::authorization, "Basic Zm9vOmJhcg==");
  used.insert(http::field::authorization, "Bearer " + key);
  Fields uout = fw.run(used, ctx);
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
  Fields f = with_host();
  f.insert("X-Api-Key", key);
  f.insert(http::field::authorization, "Token " + other);
  Fields out = fw.run(f, ctx);
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
  Fields f;
  f.set(http::field::host, "other.example");
  Fields out = fw.run(f, ctx);
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
    Fields f = with_host();
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
  Fields f = with_host();
  f.insert(http::field::connection, "close");
  f.insert("X-Between", "1");  // Connection fields need not be adjacent
  f.insert(http::field::connection, "X-Secret-Hop");
  f.insert("X-Secret-Hop", "s");
  Fields out = fw.run(f, anonymous());
  EXPECT_EQ(out.count("X-Secret-Hop"), 0u);
  EXPECT_EQ(out["X-Between"], "1");
  EXPECT_EQ(out.count(http::field::connection), 0u);
}

TEST(ForwardHeaders, ManyConnectionNamesAreAllHonouredButNeverTheFraming) {
  Forward fw;
  Fields f = with_host();
  std::string listed = "content-length, transfer-encoding";
  for (int i = 0; i < 40; ++i) listed += ", X-Hop-" + std::to_string(i);
  f.insert(http::field::connection, listed);
  for (int i = 0; i < 40; ++i) f.insert("X-Hop-" + std::to_string(i), "v");
  f.insert(http::field::content_length, "5");
  f.insert("X-Kept", "k");
  Fields out = fw.run(f, anonymous());
  for (int i = 0; i < 40; ++i) EXPECT_EQ(out.count("X-Hop-" + std::to_string(i)), 0u) << i;
  EXPECT_EQ(out[http::field::content_length], "5");  // the body's extent goes with it
  EXPECT_EQ(out["X-Kept"], "k");
}

// The upstream's response fields are kept flat (FlatFields); their hop-by-hop
// fields are the ones Beast's fields would give for the same head, past the
// 16 Connection names HopByHop keeps too.
TEST(ForwardHeaders, FlatResponseFieldsDropTheSameHopByHopFields) {
  Fields beast_fields;
  FlatFields flat;
  auto add = [&](std::string_view name, std::string_view value) {
    const http::field f = http::string_to_field(name);
    beast_fields.insert(f, name, value);
    flat.add(f, name, value);
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
  ASSERT_EQ(static_cast<std::ptrdiff_t>(flat.size()),
            std::distance(beast_fields.begin(), beast_fields.end()));

  const HopByHop beast_hop(beast_fields);
  const ResponseHopByHop flat_hop(flat);
  std::vector<std::string> kept_beast, kept_flat;
  for (const auto& f : beast_fields)
    if (!beast_hop(f))
      kept_beast.push_back(std::string(f.name_string()) + ": " + std::string(f.value()));
  for (const auto& f : flat)
    if (!flat_hop(f))
      kept_flat.push_back(std::string(f.name_string()) + ": " + std::string(f.value()));
  const std::vector<std::string> expected = {"Date: x", "Set-Cookie: a=1", "Set-Cookie: b=2",
                                             "Content-Length: 2", "X-Kept: k"};
  EXPECT_EQ(kept_flat, expected);
  EXPECT_EQ(kept_beast, expected);

  flat.clear();
  EXPECT_EQ(flat.size(), 0u);
  EXPECT_TRUE(flat.begin() == flat.end());
}
