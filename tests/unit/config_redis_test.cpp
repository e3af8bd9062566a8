// rate_limit.backend and rate_limit.redis (SPEC §8).
#include <gtest/gtest.h>

#include "config_errors.hpp"
#include "keygate/config/loader.hpp"
#include "keygate/config/values.hpp"

using namespace keygate;
using namespace std::chrono_literals;

namespace {

using keygate::test_support::errors_of;

}  // namespace

TEST(RedisConfig, DefaultsToTheLocalBackend) {
  auto c = load_config_text("", "t.yaml");
  ASSERT_TRUE(c.has_value());
  EXPECT_EQ(c->rate_limit.backend, RateLimitConfig::Backend::local);
  EXPECT_EQ(c->rate_limit.redis.host, "127.0.0.1");
  EXPECT_EQ(c->rate_limit.redis.port, 6379);
  EXPECT_EQ(c->rate_limit.redis.db, 0);
  EXPECT_EQ(c->rate_limit.redis.timeout, 50ms);
  EXPECT_EQ(c->rate_limit.redis.on_error, RedisConfig::OnError::local);
}

TEST(RedisConfig, ReadsEveryKey) {
  ::setenv("KG_TEST_REDIS_PASSWORD", "s3cr%25t", 1);  // percent-encoded, as in any URL
  auto c = load_config_text(R"(
rate_limit:
  backend: redis
  redis:
    url: "redis://:${KG_TEST_REDIS_PASSWORD}@10.1.2.3:6380/4"
    timeout: 20ms
    on_error: closed
)",
                            "t.yaml");
  ASSERT_TRUE(c.has_value()) << c.error().joined();
  const RedisConfig& r = c->rate_limit.redis;
  EXPECT_EQ(c->rate_limit.backend, RateLimitConfig::Backend::redis);
  EXPECT_EQ(r.host, "10.1.2.3");
  EXPECT_EQ(r.port, 6380);
  EXPECT_EQ(r.password, "s3cr%t");
  EXPECT_EQ(r.username, "");
  EXPECT_EQ(r.db, 4);
  EXPECT_EQ(r.timeout, 20ms);
  EXPECT_EQ(r.on_error, RedisConfig::OnError::closed);
  EXPECT_EQ(r.redacted(), "redis://:***@10.1.2.3:6380/4");
}

TEST(RedisConfig, UrlForms) {
  RedisConfig r;
  ASSERT_TRUE(parse_redis_url("redis://cache", r));
  EXPECT_EQ(r.host, "cache");
  EXPECT_EQ(r.port, 6379);
  EXPECT_EQ(r.db, 0);
  EXPECT_EQ(r.password, "");
  ASSERT_TRUE(parse_redis_url("redis://app:p%40ss@[::1]:7000/15", r));
  EXPECT_EQ(r.host, "::1");
  EXPECT_EQ(r.port, 7000);
  EXPECT_EQ(r.username, "app");
  EXPECT_EQ(r.password, "p@ss");  // percent-decoded
  EXPECT_EQ(r.db, 15);
  EXPECT_EQ(r.redacted(), "redis://app:***@[::1]:7000/15");
  ASSERT_TRUE(parse_redis_url("redis://h:1/", r));
  EXPECT_EQ(r.db, 0);
}

TEST(RedisConfig, RejectsBadUrlsWithoutEchoingThem) {
  RedisConfig r;
  for (const char* bad :
       {"rediss://:secret@h:6379/0", "http://:secret@h/0", "redis://:secret@h/x",
        "redis://:secret@h:0/0", "redis://:secret@h/0?x=1", "redis:///0", "not a url secret",
        "redis://:secret@h/-1", "redis://:secret@h:99999/0", "redis://:sec%ret@h/0"}) {
    auto res = parse_redis_url(bad, r);
    ASSERT_FALSE(res) << bad;
    EXPECT_EQ(res.error().find("secret"), std::string::npos) << res.error();
  }
}

TEST(RedisConfig, ErrorsNameTheLine) {
  auto errs = errors_of(R"(
rate_limit:
  backend: memcached
  redis:
    url: "redis://:pw@h:99999/0"
    timeout: 0ms
    on_error: maybe
    pool: 3
)");
  ASSERT_EQ(errs.size(), 5u) << ::testing::PrintToString(errs);
  EXPECT_NE(errs[0].find("t.yaml:3: rate_limit.backend must be one of local, redis"),
            std::string::npos)
      << errs[0];
  std::string all;
  for (auto& e : errs) all += e + "\n";
  EXPECT_NE(all.find("t.yaml:8: unknown key 'pool' in rate_limit.redis"), std::string::npos) << all;
  EXPECT_NE(all.find("t.yaml:5: rate_limit.redis.url: invalid redis url"), std::string::npos)
      << all;
  EXPECT_NE(all.find("t.yaml:6: rate_limit.redis.timeout must be at least 1ms"), std::string::npos)
      << all;
  EXPECT_NE(all.find("t.yaml:7: rate_limit.redis.on_error must be one of local, open, closed"),
            std::string::npos)
      << all;
  EXPECT_EQ(all.find(":pw@"), std::string::npos) << all;
}

TEST(RedisConfig, TheShippedConfigDocumentsTheLocalDefault) {
  auto c = load_config_file(KEYGATE_SOURCE_DIR "/config/keygate.yaml");
  ASSERT_TRUE(c.has_value()) << c.error().joined();
  EXPECT_EQ(c->rate_limit.backend, RateLimitConfig::Backend::local);
  EXPECT_EQ(c->rate_limit.redis.url, "redis://127.0.0.1:6379/0");
  EXPECT_EQ(c->rate_limit.redis.timeout, 50ms);
}
