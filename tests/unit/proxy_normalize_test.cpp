// normalize_target (SPEC §7): every trick from issue 11 and the properties the
// fuzz target checks (idempotent; no dot-segment, `//`, `%2F`, `%00` in the
// output; an upstream that decodes and resolves the output again stays under
// the prefix keygate judged it by).
#include <gtest/gtest.h>

#include <cctype>

#include "keygate/config/loader.hpp"
#include "keygate/proxy/normalize.hpp"
#include "keygate/proxy/stages.hpp"

using namespace keygate;

namespace {

const NormalizeOptions kStrict{};
const NormalizeOptions kEncodedSlashes{true};

std::string norm(std::string_view t, const NormalizeOptions& o = kStrict) {
  auto r = normalize_target(t, o);
  return r ? r->target : "ERR:" + r.error().reason;
}

// What an upstream that decodes every escape once and then resolves the path
// (nginx, most frameworks) makes of a target; "!" for a path it would refuse.
std::string upstream_view(std::string_view target) {
  std::string path(target.substr(0, target.find('?')));
  std::string decoded;
  for (size_t i = 0; i < path.size(); ++i) {
    if (path[i] == '%' && i + 2 < path.size() && std::isxdigit(path[i + 1]) &&
        std::isxdigit(path[i + 2])) {
      decoded += static_cast<char>(std::stoi(path.substr(i + 1, 2), nullptr, 16));
      i += 2;
    } else {
      decoded += path[i];
    }
  }
  std::vector<std::string> segs;
  size_t pos = 1;
  bool trailing = false;
  while (pos <= decoded.size()) {
    size_t next = decoded.find('/', pos);
    std::string seg =
        decoded.substr(pos, next == std::string::npos ? std::string::npos : next - pos);
    trailing = false;
    if (seg.empty() || seg == ".") {
      trailing = true;
    } else if (seg == "..") {
      if (segs.empty()) return "!";
      segs.pop_back();
      trailing = true;
    } else {
      segs.push_back(seg);
    }
    if (next == std::string::npos) break;
    pos = next + 1;
  }
  std::string out;
  for (const auto& s : segs) out += "/" + s;
  if (out.empty() || trailing) out += "/";
  return out;
}

// Every input of the table below, for the property tests.
const std::vector<std::string>& corpus() {
  static const std::vector<std::string> all = {
      "/",
      "/docs",
      "/docs/",
      "/docs/../v1/secret",
      "/docs/%2e%2e/v1/secret",
      "/docs/%2E%2e/v1/secret",
      "/docs/.%2e/v1/secret",
      "/docs/%2e./v1/secret",
      "/docs/%2e%2e%2fv1/secret",
      "/docs/..%2Fv1/secret",
      "/docs/..%5cv1/secret",
      "/docs/..\\v1/secret",
      "/docs/%252e%252e/v1/secret",
      "/docs/%c0%ae%c0%ae/v1/secret",
      "/docs/..;/v1/secret",
      "/docs;/../v1/secret",
      "/docs/;x/../v1",
      "/v1//admin/x",
      "//v1/admin/x",
      "/v1/%61dmin/x",
      "/v1/adm%69n/x",
      "/v1/admin/./x",
      "/./v1/admin",
      "/v1/./admin/x",
      "/v1/admin/%2e/x",
      "/v1/admin;x/y",
      "/v1/items;color=red",
      "/a/b/../../..",
      "/..",
      "/a/..",
      "/a/.",
      "/a/./",
      "/a//",
      "///",
      "/%7Euser/%41%42c",
      "/a%3Bb/%3f",
      "/a%00b",
      "/a%zz",
      "/a%2",
      "/docs#/../v1/secret",
      "/caf\xc3\xa9/\"x\"|[y]",
      "/search?q=/../..&x=%2F",
      "/p?",
      "http://h/v1/admin/x",
      "HTTP://h:8080//v1/../v1/admin/x?y=1",
      "https://h",
      "https://h?x=1",
      "http://u:p@h/x",
      "ftp://h/x",
      "*",
      "h:443",
      "",
      "/group%2Fproject/issues",
      "/group%2fproject/..%2F..%2Fadmin",
      "/a/%2F/../b",
  };
  return all;
}

}  // namespace

TEST(Normalize, PathTricks) {
  // Dot-segments (raw and encoded, any case) are resolved before routing.
  EXPECT_EQ(norm("/docs/../v1/secret"), "/v1/secret");
  EXPECT_EQ(norm("/docs/%2e%2e/v1/secret"), "/v1/secret");
  EXPECT_EQ(norm("/docs/%2E%2e/v1/secret"), "/v1/secret");
  EXPECT_EQ(norm("/docs/.%2e/v1/secret"), "/v1/secret");
  EXPECT_EQ(norm("/docs/%2E%2e/"), "/");
  EXPECT_EQ(norm("/v1/admin/./x"), "/v1/admin/x");
  EXPECT_EQ(norm("/./v1/admin"), "/v1/admin");
  EXPECT_EQ(norm("/v1/admin/%2e/x"), "/v1/admin/x");
  EXPECT_EQ(norm("/a/."), "/a/");
  EXPECT_EQ(norm("/a/.."), "/");
  // Repeated slashes merge; unreserved escapes decode.
  EXPECT_EQ(norm("/v1//admin/x"), "/v1/admin/x");
  EXPECT_EQ(norm("//v1/admin/x"), "/v1/admin/x");
  EXPECT_EQ(norm("///"), "/");
  EXPECT_EQ(norm("/a//"), "/a/");
  EXPECT_EQ(norm("/v1/%61dmin/x"), "/v1/admin/x");
  EXPECT_EQ(norm("/%7Euser/%41%42c"), "/~user/ABc");
  // Other escapes stay, once, with upper-case hex: double encoding is one level.
  EXPECT_EQ(norm("/docs/%252e%252e/v1/secret"), "/docs/%252e%252e/v1/secret");
  EXPECT_EQ(norm("/a%3bb/%3f"), "/a%3Bb/%3F");
  EXPECT_EQ(norm("/docs/%c0%ae%c0%ae/v1"), "/docs/%C0%AE%C0%AE/v1");
  // Raw bytes outside RFC 3986 are encoded, not refused (as Envoy does).
  EXPECT_EQ(norm("/caf\xc3\xa9/\"x\"|[y]"), "/caf%C3%A9/%22x%22%7C%5By%5D");
  // `;` parameters are ordinary characters, unless the segment reads as a dot
  // or empty segment to a servlet container.
  EXPECT_EQ(norm("/v1/items;color=red"), "/v1/items;color=red");
  EXPECT_EQ(norm("/docs;/../v1/secret"), "/v1/secret");
  EXPECT_EQ(norm("/docs/..;/v1/secret"), "ERR:bad_path");
  EXPECT_EQ(norm("/docs/.;x/v1"), "ERR:bad_path");
  EXPECT_EQ(norm("/docs/;x/../v1"), "ERR:bad_path");
}

TEST(Normalize, Refusals) {
  for (const char* t : {"/docs/%2e%2e%2fv1/secret",
                        "/docs/..%2Fv1/secret",
                        "/docs/..%5cv1/secret",
                        "/group%2Fproject",
                        "/a%00b",
                        "/a%2F",
                        "/docs/..\\v1/secret",
                        "/a\\b",
                        "/docs#/../v1/secret",
                        "/a#",
                        "/..",
                        "/a/b/../../..",
                        "/docs/../../v1",
                        "/%2e%2e/x",
                        "/a%zz",
                        "/a%2",
                        "/a%",
                        "*",
                        "h:443",
                        "",
                        "?x",
                        "ftp://h/x",
                        "http://u:p@h/x",
                        "http:/x",
                        "mailto:a@b",
                        "http://h/a#f"}) {
    auto r = normalize_target(t, kStrict);
    ASSERT_FALSE(r) << t << " -> " << r->target;
    EXPECT_EQ(r.error().status, 400) << t;
    EXPECT_EQ(r.error().code, "VALIDATION_ERROR") << t;
    EXPECT_EQ(r.error().reason, "bad_path") << t;
    EXPECT_FALSE(r.error().message.empty());
  }
}

TEST(Normalize, AbsoluteFormIsReducedToItsPath) {
  auto r = normalize_target("http://h/v1/admin/x", kStrict);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->target, "/v1/admin/x");
  EXPECT_EQ(r->path(), "/v1/admin/x");
  EXPECT_EQ(r->authority, "h");
  r = normalize_target("HTTP://h:8080//v1/../v1/admin/x?y=1", kStrict);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->target, "/v1/admin/x?y=1");
  EXPECT_EQ(r->authority, "h:8080");
  EXPECT_EQ(norm("https://h"), "/");
  EXPECT_EQ(norm("https://h?x=1"), "/?x=1");
  EXPECT_EQ(normalize_target("/x", kStrict)->authority, "");
}

TEST(Normalize, QueryIsKeptByteForByte) {
  auto r = normalize_target("/a/../b?q=/../..&x=%2F&y=%2e%2e#", kStrict);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->target, "/b?q=/../..&x=%2F&y=%2e%2e#");
  EXPECT_EQ(r->path(), "/b");
  EXPECT_EQ(norm("/p?"), "/p?");
  EXPECT_EQ(norm("/p?a[b]=c|d"), "/p?a[b]=c|d");
}

TEST(Normalize, EncodedSlashesAllowedStayOpaque) {
  EXPECT_EQ(norm("/group%2Fproject/issues", kEncodedSlashes), "/group%2Fproject/issues");
  EXPECT_EQ(norm("/group%2fproject/%5c", kEncodedSlashes), "/group%2Fproject/%5C");
  EXPECT_EQ(norm("/a/%2F/../b", kEncodedSlashes), "/a/b");
  // Never decoded, so never a separator here, and never a way to climb at an
  // upstream that does decode them.
  EXPECT_EQ(norm("/docs/..%2Fv1/secret", kEncodedSlashes), "ERR:bad_path");
  EXPECT_EQ(norm("/group%2fproject/..%2F..%2Fadmin", kEncodedSlashes), "ERR:bad_path");
  EXPECT_EQ(norm("/a%2F.%2Fb", kEncodedSlashes), "ERR:bad_path");
  EXPECT_EQ(norm("/a%00", kEncodedSlashes), "ERR:bad_path");
}

TEST(Normalize, Properties) {
  for (const auto* options : {&kStrict, &kEncodedSlashes}) {
    for (const auto& t : corpus()) {
      auto r = normalize_target(t, *options);
      if (!r) continue;
      const std::string& out = r->target;
      std::string path(r->path());
      SCOPED_TRACE(t + " -> " + out);
      // Idempotent.
      auto again = normalize_target(out, *options);
      ASSERT_TRUE(again);
      EXPECT_EQ(again->target, out);
      // No dot-segment, no `//`, no %00; %2F/%5C only when allowed.
      EXPECT_TRUE(path.starts_with('/'));
      EXPECT_EQ(path.find("//"), std::string::npos);
      EXPECT_EQ(path.find("/./"), std::string::npos);
      EXPECT_EQ(path.find("/../"), std::string::npos);
      EXPECT_FALSE(path.ends_with("/.") || path.ends_with("/.."));
      EXPECT_EQ(path.find("%00"), std::string::npos);
      EXPECT_EQ(path.find('\\'), std::string::npos);
      EXPECT_EQ(path.find('#'), std::string::npos);
      if (!options->allow_encoded_slashes) {
        EXPECT_EQ(path.find("%2F"), std::string::npos);
        EXPECT_EQ(path.find("%5C"), std::string::npos);
      }
      // Never leaves the prefix it was judged under: an upstream that decodes
      // once and resolves again lands under every prefix the output is under.
      if (!options->allow_encoded_slashes) {
        std::string seen = upstream_view(out);
        for (std::string_view prefix : {"/docs", "/docs/", "/v1/", "/v1/admin/", "/"}) {
          if (path.starts_with(prefix)) {
            EXPECT_TRUE(seen.starts_with(prefix)) << seen;
          }
        }
      }
      // The query is exactly what followed the first '?'.
      auto q = t.find('?');
      EXPECT_EQ(out.substr(r->path_size), q == std::string::npos ? "" : t.substr(q));
    }
  }
}

TEST(Normalize, LenientReadingDropsParametersAndReadsEncodedSlashes) {
  EXPECT_EQ(lenient_reading("/v1/admin;x/y"), "/v1/admin/y");
  EXPECT_EQ(lenient_reading("/v1%2Fadmin/x"), "/v1/admin/x");
  EXPECT_EQ(lenient_reading("/a;b/"), "/a/");
  EXPECT_EQ(lenient_reading("/a%2F%2Fb"), "/a/b");
  EXPECT_EQ(lenient_reading("/"), "/");
}

TEST(Routes, MethodsCaseInsensitiveHeadFollowsGetPathsCaseSensitive) {
  auto c = load_config_text(R"(
routes:
  - {path_prefix: /v1/admin/, methods: [POST], require_scopes: [admin]}
  - {path_prefix: /v1/reports/, methods: [GET], require_scopes: [reports]}
  - {path_prefix: /docs, auth: none}
)",
                            "t.yaml");
  ASSERT_TRUE(c);
  EXPECT_NE(match_route(c->routes, "post", "/v1/admin/x"), nullptr);
  EXPECT_NE(match_route(c->routes, "PoSt", "/v1/admin/x"), nullptr);
  EXPECT_EQ(match_route(c->routes, "GET", "/v1/admin/x"), nullptr);
  EXPECT_NE(match_route(c->routes, "HEAD", "/v1/reports/1"), nullptr);
  EXPECT_NE(match_route(c->routes, "head", "/v1/reports/1"), nullptr);
  // A method in an exact-size heap buffer, as Beast stores an unknown one:
  // under ASan this fails if the comparison reads past it.
  const std::vector<char> lower{'p', 'o', 's', 't'};
  EXPECT_NE(match_route(c->routes, std::string_view(lower.data(), lower.size()), "/v1/admin/x"),
            nullptr);
  EXPECT_EQ(match_route(c->routes, "POST", "/V1/admin/x"), nullptr);  // paths: case-sensitive
  EXPECT_EQ(match_route(c->routes, "POST", "/Docs"), nullptr);
}

TEST(Routes, APathThatReadsAsAnotherRouteIsRefused) {
  auto c = load_config_text(R"(
routes:
  - {path_prefix: /v1/admin/, methods: [POST], require_scopes: [admin]}
  - {path_prefix: /docs, auth: none}
)",
                            "t.yaml");
  ASSERT_TRUE(c);
  auto pick = [&](std::string_view method, std::string_view path) {
    auto r = select_route(c->routes, method, path);
    return r ? std::string(*r ? (*r)->path_prefix : "none") : "ERR:" + r.error().reason;
  };
  EXPECT_EQ(pick("POST", "/v1/admin;x/y"), "ERR:bad_path");  // Tomcat: /v1/admin/y
  EXPECT_EQ(pick("POST", "/v1%2Fadmin/x"), "ERR:bad_path");  // decoding upstreams
  EXPECT_EQ(pick("POST", "/v1/admin/x;y"), "/v1/admin/");    // same route either way
  EXPECT_EQ(pick("GET", "/v1/items;color=red"), "none");     // matrix parameters pass
  EXPECT_EQ(pick("GET", "/docs;jsessionid=1/x"), "/docs");   // both readings public
  EXPECT_EQ(pick("POST", "/v1/admin/x"), "/v1/admin/");
}

TEST(Routes, AMethodOverrideThatRoutesElsewhereIsRefused) {
  auto c = load_config_text(R"(
routes:
  - {path_prefix: /v1/admin/, methods: [POST], require_scopes: [admin]}
  - {path_prefix: /v1/items, methods: [GET], auth: none}
  - {path_prefix: /docs, auth: none}
)",
                            "t.yaml");
  ASSERT_TRUE(c);
  auto check = [&](std::string_view method, std::string_view path, const char* name,
                   const char* value) {
    RequestFields f;
    if (name) f.insert(name, value);
    auto e = check_method_override(c->routes, match_route(c->routes, method, path), path, f);
    return e ? e->status * 1000 + (e->reason == "method_override") : 0;
  };
  // Each header name, any case of the method, white space: the POST rule is not dodged.
  EXPECT_EQ(check("GET", "/v1/admin/x", "X-HTTP-Method-Override", "POST"), 400001);
  EXPECT_EQ(check("GET", "/v1/admin/x", "x-http-method", "post"), 400001);
  EXPECT_EQ(check("GET", "/v1/admin/x", "X-Method-Override", " Post\t"), 400001);
  // Nor is a rule that only a public GET route stood in front of.
  EXPECT_EQ(check("GET", "/v1/items/1", "X-HTTP-Method-Override", "DELETE"), 400001);
  // Same route either way, no header, or paths whose routes ignore the method: passes.
  EXPECT_EQ(check("POST", "/v1/admin/x", "X-HTTP-Method-Override", "post"), 0);
  EXPECT_EQ(check("HEAD", "/v1/items/1", "X-HTTP-Method-Override", "GET"), 0);
  EXPECT_EQ(check("GET", "/v1/admin/x", nullptr, nullptr), 0);
  EXPECT_EQ(check("GET", "/docs/a", "X-HTTP-Method-Override", "DELETE"), 0);
  // Two override headers: each is judged.
  RequestFields two;
  two.insert("X-HTTP-Method-Override", "POST");
  two.insert("X-HTTP-Method-Override", "GET");
  EXPECT_TRUE(check_method_override(c->routes, match_route(c->routes, "POST", "/v1/admin/x"),
                                    "/v1/admin/x", two));
  // No route lists methods: overrides cannot change a decision, nothing to refuse.
  auto plain = load_config_text("routes:\n  - {path_prefix: /docs, auth: none}\n", "t.yaml");
  ASSERT_TRUE(plain);
  RequestFields f;
  f.insert("X-HTTP-Method-Override", "DELETE");
  EXPECT_FALSE(check_method_override(plain->routes, nullptr, "/v1/x", f));
}

// Paths already in normal form skip the walk; the absolute form of the same
// target always takes it, so the two must agree on every target (built from
// the characters that decide between the two: dots, slashes, ';', '%', '\').
TEST(Normalize, ThePathsThatSkipTheWalkComeOutAsTheWalkMakesThem) {
  const std::string_view alphabet = "a.Z9/-_~;%2F?\\";
  std::uint64_t state = 0x9e3779b97f4a7c15ull;  // a fixed sequence: the test always sees the same
  auto next = [&state] {
    state ^= state << 13;
    state ^= state >> 7;
    state ^= state << 17;
    return state;
  };
  int skipped = 0;
  for (int n = 0; n < 20000; ++n) {
    std::string t = "/";
    const std::size_t len = next() % 12;
    for (std::size_t i = 0; i < len; ++i) t += alphabet[next() % alphabet.size()];
    for (const auto& o : {kStrict, kEncodedSlashes}) {
      const std::string origin = norm(t, o), absolute = norm("http://h" + t, o);
      ASSERT_EQ(origin, absolute) << t;
    }
    const std::string_view path = std::string_view(t).substr(0, t.find('?'));
    if (path.find_first_of(";%\\") == std::string_view::npos && path.find("//") == path.npos)
      ++skipped;
  }
  EXPECT_GT(skipped, 1000);  // the fast path was exercised, not only the walk
  EXPECT_EQ(norm("/"), "/");
  EXPECT_EQ(norm("/v1/orders.json?x=1"), "/v1/orders.json?x=1");
  EXPECT_EQ(norm("/a/"), "/a/");
  EXPECT_EQ(norm("/a/./b/../c"), "/a/c");
  EXPECT_EQ(norm("/a/..."), "/a/...");
}
