#pragma once
// Shared by the proxy unit tests: the pipeline over a runtime built from a
// YAML text, a key index, a manual clock and a local limiter — no network.
#include <functional>
#include <string>
#include <string_view>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "keygate/config/loader.hpp"
#include "keygate/proxy/pipeline.hpp"
#include "keygate/proxy/stages.hpp"

namespace keygate::test_support {

// The config of `yaml`; a test failure (and the defaults) if it does not load.
inline Config config_from(const std::string& yaml) {
  auto c = load_config_text(yaml, "t.yaml");
  EXPECT_TRUE(c) << (c ? "" : c.error().joined());
  return c ? *c : Config{};
}

struct PipelineWorld {
  explicit PipelineWorld(const std::string& yaml = "")
      : rt(config_from(yaml)),
        limiter(clock),
        limits(limiter),
        pipeline(rt, index, limits, nullptr, state) {}
  Runtime rt;
  KeyIndex index;
  ManualClock clock;
  RateLimiter limiter;
  LocalBackend limits;
  GatewayState state;
  Pipeline pipeline;

  // A new key in the index ("test key" of acme, scope read, unless `edit`
  // says otherwise); returns the key's text.
  std::string add(const std::function<void(KeyRecord&)>& edit = {}) {
    std::string key = rt.key_format.generate();
    KeyRecord r;
    r.id = generate_key_id();
    r.hash = rt.hasher.hash(key);
    r.name = "test key";
    r.owner = "acme";
    r.scopes = {"read"};
    if (edit) edit(r);
    index.upsert(r);
    return key;
  }

  Verdict decide(std::string_view method, std::string_view target, const RequestFields& fields,
                 Context& ctx) {
    RequestView v{method, target, fields};
    return pipeline.decide(v, ctx);
  }
};

// The envelope's details.reason of a local answer.
inline std::string reason_of(const Verdict& v) {
  return nlohmann::json::parse(v.body)["error"]["details"]["reason"];
}

}  // namespace keygate::test_support
