// metrics.listen (SPEC §10): null or empty is off; else host:port, checked.
#include <gtest/gtest.h>

#include <cstdlib>

#include "keygate/config/loader.hpp"

using namespace keygate;

TEST(MetricsConfig, ListenIsOffByDefaultNullOrEmpty) {
  for (const char* yaml :
       {"listen: 127.0.0.1:8080\n", "metrics: null\n", "metrics: {listen: null}\n",
        "metrics: {listen: \"\"}\n", "metrics: {listen: \"${KG_UNSET_METRICS:-}\"}\n"}) {
    auto c = load_config_text(yaml, "t.yaml");
    ASSERT_TRUE(c) << yaml << c.error().joined();
    EXPECT_FALSE(c->metrics.listen) << yaml;
  }
}

TEST(MetricsConfig, ListenTakesHostPort) {
  ::setenv("KG_TEST_METRICS_LISTEN", "0.0.0.0:9090", 1);
  auto c = load_config_text("metrics: {listen: \"${KG_TEST_METRICS_LISTEN}\"}\n", "t.yaml");
  ASSERT_TRUE(c) << c.error().joined();
  ASSERT_TRUE(c->metrics.listen);
  EXPECT_EQ(c->metrics.listen->str(), "0.0.0.0:9090");
}

TEST(MetricsConfig, BadValuesNameTheLine) {
  for (const char* yaml :
       {"metrics:\n  listen: nowhere\n", "metrics:\n  listen: [a]\n", "metrics:\n  port: 9090\n"}) {
    auto c = load_config_text(yaml, "t.yaml");
    ASSERT_FALSE(c) << yaml;
    ASSERT_EQ(c.error().messages.size(), 1u) << c.error().joined();
    EXPECT_EQ(c.error().messages[0].rfind("t.yaml:2: ", 0), 0u) << c.error().messages[0];
  }
}
