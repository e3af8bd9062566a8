// routes[].cost and usage.retention (SPEC §11).
#include <gtest/gtest.h>

#include "config_errors.hpp"
#include "keygate/config/loader.hpp"

using namespace keygate;
using namespace std::chrono_literals;

namespace {
using keygate::test_support::errors_of;
}  // namespace

TEST(RouteCost, DefaultsToOneAndIsRead) {
  auto c = load_config_text(
      "routes:\n  - {path_prefix: /search, cost: 5}\n  - {path_prefix: /cheap}\n", "t.yaml");
  ASSERT_TRUE(c) << c.error().joined();
  EXPECT_EQ(c->routes[0].cost, 5u);
  EXPECT_EQ(c->routes[1].cost, 1u);
  EXPECT_EQ(c->usage.retention, Millis(90LL * 24 * 3600 * 1000));
}

TEST(RouteCost, BadCostsNameTheLine) {
  auto errs = errors_of("routes:\n  - {path_prefix: /a, cost: 0}\n");
  ASSERT_EQ(errs.size(), 1u);
  EXPECT_EQ(errs[0].rfind("t.yaml:2: ", 0), 0u) << errs[0];
  errs = errors_of("routes:\n  - {path_prefix: /a, auth: none, cost: 2}\n");
  ASSERT_EQ(errs.size(), 1u);
  EXPECT_NE(errs[0].find("no key to charge"), std::string::npos) << errs[0];
  // More than a plan's bucket holds could never be admitted.
  errs = errors_of(
      "plans:\n  default: {rate: {requests: 3, period: 1m}}\n"
      "routes:\n  - {path_prefix: /a, cost: 4}\n");
  ASSERT_EQ(errs.size(), 1u);
  EXPECT_NE(errs[0].find("exceeds the burst of plan 'default'"), std::string::npos) << errs[0];
}

TEST(UsageRetention, IsADurationOfAtLeastAnHour) {
  auto c = load_config_text("usage: {retention: 7d}\n", "t.yaml");
  ASSERT_TRUE(c) << c.error().joined();
  EXPECT_EQ(c->usage.retention, Millis(7LL * 24 * 3600 * 1000));
  EXPECT_EQ(errors_of("usage: {retention: 10m}\n").size(), 1u);
  EXPECT_EQ(errors_of("usage: {keep: 7d}\n").size(), 1u);
}
