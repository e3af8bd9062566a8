// The config loader on arbitrary text (SPEC §5, §7 "Reload never kills"): it
// must never crash, hang or throw; every problem is a "FILE:LINE: message", none
// of them the loader's catch-all; and what it accepts is a config the gateway can
// run: every rate within the bounds the token bucket enforces exactly, and a
// Runtime (error renderer, key format, hasher) builds from it.
#include <cstddef>
#include <cstdint>
#include <string>

#include "fuzz_check.hpp"
#include "keygate/config/loader.hpp"
#include "keygate/config/values.hpp"
#include "keygate/proxy/runtime.hpp"
#include "keygate/ratelimit/token_bucket.hpp"

using namespace keygate;
using fuzz::check;

namespace {

void check_rate(const Rate& r, const std::string& where) {
  check(!rate_problem(r).has_value(), "an accepted rate is within the bounds", where);
  BucketShape shape = BucketShape::of(r);
  check(shape.capacity == r.capacity(), "the bucket holds what the headers report", where);
  check(shape.window_ns == static_cast<std::int64_t>(shape.capacity) * shape.interval_ns,
        "the bucket's window is not clamped", where);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  auto config = load_config_text(text, "fuzz.yaml");
  if (!config) {
    check(!config.error().messages.empty(), "a failed load reports a problem");
    for (const auto& m : config.error().messages) {
      check(m.starts_with("fuzz.yaml:"), "every problem names the file", m);
      // "fuzz.yaml:LINE: " then the message (which may quote the input, so only its start counts).
      const auto message = m.find(": ");
      check(message == std::string::npos ||
                !m.substr(message + 2).starts_with(kUnexpectedConfigError),
            "no yaml-cpp call throws where the loader does not expect it", m);
    }
    return 0;
  }
  check(config->plans.contains(config->rate_limit.default_plan), "the default plan exists");
  for (const auto& [name, plan] : config->plans)
    if (plan.rate) check_rate(*plan.rate, "plans." + name);
  Runtime runtime(*config);
  Error e = errors::auth("missing", runtime.missing_message);
  auto body = runtime.renderer.render(e, "req_fuzz", std::chrono::system_clock::time_point{});
  check(nlohmann::json::accept(body), "the configured error style renders JSON", body);
  return 0;
}
