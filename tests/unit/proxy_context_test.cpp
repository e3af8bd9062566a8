// The proxy keeps one Context per client connection and clears it between
// requests (its strings keep their capacity): nothing of one request may reach
// the next one on that connection.
#include <gtest/gtest.h>

#include "keygate/core/time.hpp"
#include "keygate/proxy/response_headers.hpp"
#include "pipeline_world.hpp"

using namespace keygate;
namespace http = boost::beast::http;

namespace {

struct World : test_support::PipelineWorld {
  std::string add(const std::string& name, const std::function<void(KeyRecord&)>& edit = {}) {
    return PipelineWorld::add([&](KeyRecord& r) {
      r.name = name;
      r.scopes.clear();
      if (edit) edit(r);
    });
  }
  // One request on the connection whose context is `ctx`, as the session runs
  // it: cleared, decided, then the response headers the gateway adds.
  HeaderList request(Context& ctx, const std::string& key) {
    ctx.clear();
    ctx.request_id = "rid";
    RequestFields f;
    if (!key.empty()) f.set(http::field::authorization, "Bearer " + key);
    decide("GET", "/v1/x", f, ctx);
    HeaderList out;
    add_response_headers(out, ctx, rt, 0);
    return out;
  }
};

}  // namespace

TEST(ContextClear, EveryFieldButThePeerAddressGoesBackToItsDefault) {
  World w;
  KeyMeter& meter = w.index.meters().meter("key_x");
  Route route;
  Credential credential{"kg_live_x", AuthSource{AuthSource::Kind::header, "X-Api-Key"}};
  Context ctx;
  ctx.peer_ip = "192.0.2.7";
  ctx.client_ip = "198.51.100.4";  // what trusted_proxies made of X-Forwarded-For
  ctx.mode = Context::Mode::forward_auth;
  ctx.shadow_reason = "rate_limit";
  ctx.admin_target = "/v1/api-keys";
  ctx.request_id = "a-fairly-long-request-id-that-is-not-inline";
  ctx.target.target = "/v1/some/path/that/is/long/enough?q=1";
  ctx.target.path_size = 5;
  ctx.target.authority = "example.com:8443";
  ctx.route = &route;
  ctx.credential = credential;
  ctx.key.emplace();
  ctx.plan = "gold";
  ctx.policy.by_owner = true;
  ctx.rate = Decision{};
  ctx.reason = "rate_limit";
  ctx.usage_due = true;
  ctx.now = 1234;
  ctx.meter = &meter;
  ctx.payer = &meter;
  ctx.cost = 5;
  ctx.credits = CreditAccount::Answer{true, 7, 0};
  ctx.deprecated = true;
  const std::size_t id_capacity = ctx.request_id.capacity();

  ctx.clear();

  EXPECT_EQ(ctx.peer_ip, "192.0.2.7");
  EXPECT_EQ(ctx.client_ip, "192.0.2.7");  // the next request's X-Forwarded-For is judged anew
  EXPECT_EQ(ctx.mode, Context::Mode::proxy);
  EXPECT_TRUE(ctx.shadow_reason.empty());
  EXPECT_TRUE(ctx.admin_target.empty());
  EXPECT_TRUE(ctx.request_id.empty());
  EXPECT_GE(ctx.request_id.capacity(), id_capacity);  // kept: no allocation per request
  EXPECT_TRUE(ctx.target.target.empty());
  EXPECT_EQ(ctx.target.path_size, 0u);
  EXPECT_TRUE(ctx.target.authority.empty());
  EXPECT_EQ(ctx.route, nullptr);
  EXPECT_FALSE(ctx.credential);
  EXPECT_FALSE(ctx.key);
  EXPECT_TRUE(ctx.plan.empty());
  EXPECT_FALSE(ctx.policy.by_owner);
  EXPECT_FALSE(ctx.rate);
  EXPECT_TRUE(ctx.reason.empty());
  EXPECT_FALSE(ctx.usage_due);
  EXPECT_EQ(ctx.now, 0);
  EXPECT_EQ(ctx.meter, nullptr);
  EXPECT_EQ(ctx.payer, nullptr);
  EXPECT_EQ(ctx.cost, 1u);
  EXPECT_FALSE(ctx.credits);
  EXPECT_FALSE(ctx.deprecated);
}

TEST(ContextClear, NextRequestCarriesNothingOfTheLastKey) {
  World w;
  const UnixMillis now = now_millis();
  std::string rotated = w.add("rotated", [&](KeyRecord& r) {
    r.credits = Credits{10, std::nullopt, now};
    r.credits_version = 1;
    r.rotated_at = now - 60'000;
    r.expires_at = now + 3'600'000;
  });
  std::string plain = w.add("plain");

  Context ctx;
  ctx.peer_ip = "127.0.0.1";
  HeaderList first = w.request(ctx, rotated);
  ASSERT_TRUE(ctx.key);
  EXPECT_EQ(ctx.key->name(), "rotated");
  EXPECT_TRUE(first.has("X-Credits-Remaining"));
  EXPECT_TRUE(first.has("Deprecation"));
  EXPECT_TRUE(first.has("Sunset"));
  KeyMeter* rotated_meter = ctx.meter;
  ASSERT_NE(rotated_meter, nullptr);

  HeaderList second = w.request(ctx, plain);
  ASSERT_TRUE(ctx.key);
  EXPECT_EQ(ctx.key->name(), "plain");
  EXPECT_NE(ctx.meter, rotated_meter);
  EXPECT_FALSE(ctx.credits);
  EXPECT_FALSE(ctx.deprecated);
  EXPECT_FALSE(second.has("X-Credits-Remaining"));
  EXPECT_FALSE(second.has("Deprecation"));
  EXPECT_FALSE(second.has("Sunset"));
  EXPECT_TRUE(second.has("X-RateLimit-Remaining"));  // its own

  w.request(ctx, rotated);
  for (const std::string& key : {std::string("kg_live_") + std::string(38, '0'), std::string()}) {
    HeaderList refused = w.request(ctx, key);  // 401: an unknown key, then none
    EXPECT_FALSE(ctx.key);
    EXPECT_EQ(ctx.meter, nullptr);  // the refusal is not counted in the last key's usage
    EXPECT_FALSE(ctx.credits);
    EXPECT_FALSE(ctx.deprecated);
    EXPECT_FALSE(refused.has("X-Credits-Remaining"));
    EXPECT_FALSE(refused.has("Deprecation"));
    EXPECT_FALSE(refused.has("Sunset"));
    EXPECT_FALSE(refused.has("X-RateLimit-Remaining"));
  }
}

// The key is copied into the buffers of the connection's last key (no
// allocation per request): a short key after a long one is only itself, and
// a key without allowed networks after one with them is allowed from anywhere.
TEST(ContextClear, AKeyInTheLastKeysBuffersIsOnlyItself) {
  World w;
  std::string big =
      w.add("orders-service production, the one with the long name", [](KeyRecord& r) {
        r.owner = "acme-corporation-international";
        r.scopes = {"orders:read", "orders:write", "invoices:read"};
        r.allowed_ips = {"127.0.0.0/8", "10.0.0.0/8"};
      });
  std::string small = w.add("s", [](KeyRecord& r) { r.owner = "b"; });

  Context ctx;
  ctx.peer_ip = "127.0.0.1";
  w.request(ctx, big);
  ASSERT_TRUE(ctx.key);
  EXPECT_EQ(ctx.key->allowed_nets().size(), 2u);
  EXPECT_TRUE(ctx.key->has_scope("invoices:read"));

  w.request(ctx, small);
  ASSERT_TRUE(ctx.key);
  EXPECT_EQ(ctx.key->name(), "s");
  EXPECT_EQ(ctx.key->owner(), "b");
  EXPECT_EQ(ctx.key->scopes_csv(), "");
  EXPECT_FALSE(ctx.key->has_scope("orders:read"));
  EXPECT_TRUE(ctx.key->allowed_nets().empty());

  // Refused (unknown), then the big key again: nothing of either is left over.
  w.request(ctx, "kg_live_" + std::string(38, '0'));
  EXPECT_FALSE(ctx.key);
  w.request(ctx, big);
  ASSERT_TRUE(ctx.key);
  EXPECT_EQ(ctx.key->owner(), "acme-corporation-international");
  EXPECT_EQ(ctx.key->scopes_csv(), "orders:read,orders:write,invoices:read");
  EXPECT_EQ(ctx.key->allowed_nets().size(), 2u);
}

// The session reuses one HeaderList per connection: set() replaces a field of
// the same name (ASCII case-insensitive) and puts it last, in the lines it
// writes; clear() forgets a replacement too.
TEST(HeaderList, SetReplacesAndTheLinesFollowTheOrder) {
  HeaderList h;
  h.set("X-Request-Id", "a");
  h.set("Retry-After", "5");
  h.set("X-RateLimit-Limit", "10");
  std::string out = "HTTP/1.1 429 Too Many Requests\r\n";
  h.append_to(out);
  EXPECT_EQ(out,
            "HTTP/1.1 429 Too Many Requests\r\nX-Request-Id: a\r\nRetry-After: 5\r\n"
            "X-RateLimit-Limit: 10\r\n");

  h.set("retry-after", "7");  // a credits refusal's Retry-After wins
  out.clear();
  h.append_to(out);
  EXPECT_EQ(out, "X-Request-Id: a\r\nX-RateLimit-Limit: 10\r\nretry-after: 7\r\n");
  EXPECT_TRUE(h.has("RETRY-AFTER"));
  EXPECT_FALSE(h.has("Retry"));

  h.clear();
  h.set("Content-Type", "application/json");
  out.clear();
  h.append_to(out);
  EXPECT_EQ(out, "Content-Type: application/json\r\n");
  EXPECT_FALSE(h.has("X-Request-Id"));
}
