// Error-template rendering (SPEC §3 "Error style") with a fuzzed style and fuzzed
// Error values. Input: a config text (its `errors:` section is the style; when
// the text does not load, it is read as one JSON template, so templates the
// loader would refuse are rendered too), then optionally a line "#error" and the
// Error, one field a line:
//   status, code, reason, message, details (JSON), retry_after, reset_after, now
// The rendered body must be JSON, whatever the style and the values; the
// envelope keeps its shape.
#include <charconv>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "fuzz_check.hpp"
#include "keygate/config/loader.hpp"
#include "keygate/proxy/error_renderer.hpp"

using namespace keygate;
using fuzz::check;

namespace {

constexpr std::string_view kErrorMarker = "\n#error\n";

std::vector<std::string_view> lines(std::string_view s) {
  std::vector<std::string_view> out;
  while (!s.empty()) {
    auto nl = s.find('\n');
    out.push_back(s.substr(0, nl));
    if (nl == std::string_view::npos) break;
    s.remove_prefix(nl + 1);
  }
  return out;
}

std::optional<std::int64_t> integer(std::string_view s) {
  std::int64_t v = 0;
  auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc{} || ptr != s.data() + s.size()) return std::nullopt;
  return v;
}

// The Error as the gateway builds one: retry/reset times come from a bucket whose
// window is at most 3650 days (SPEC rate bounds), so they are clamped to that.
Error error_from(std::string_view spec) {
  Error e = errors::auth("invalid", "Invalid API key.");
  auto f = lines(spec);
  auto field = [&](size_t i) { return i < f.size() ? f[i] : std::string_view{}; };
  constexpr std::int64_t kMaxSeconds = 3650LL * 86'400;
  auto seconds = [&](std::string_view s) -> std::optional<std::int64_t> {
    auto v = integer(s);
    if (!v) return std::nullopt;
    return std::clamp<std::int64_t>(*v, 0, kMaxSeconds);
  };
  if (auto status = integer(field(0))) e.status = static_cast<int>(*status % 1000);
  if (f.size() > 1) e.code = std::string(field(1));
  if (f.size() > 2) e.reason = std::string(field(2));
  if (f.size() > 3) e.message = std::string(field(3));
  auto details = nlohmann::json::parse(field(4), nullptr, false);
  if (!details.is_discarded()) e.details = details;
  e.retry_after = seconds(field(5));
  e.reset_after = seconds(field(6));
  return e;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  const auto marker = input.find(kErrorMarker);
  const std::string style_text(input.substr(0, marker));
  const Error e =
      error_from(marker == std::string_view::npos ? std::string_view{}
                                                  : input.substr(marker + kErrorMarker.size()));

  std::optional<ErrorStyle> style;
  if (auto config = load_config_text(style_text, "fuzz.yaml")) {
    style = config->errors;
  } else {
    auto body = nlohmann::ordered_json::parse(style_text, nullptr, false);
    if (!body.is_discarded()) style = ErrorStyle{body, {{e.reason, body}}, {{e.code, "X"}}, {}};
  }
  const auto now = std::chrono::system_clock::time_point{} + std::chrono::hours(500'000);
  const std::string rendered = ErrorRenderer(style).render(e, "req_fuzz", now);
  check(nlohmann::json::accept(rendered), "a rendered error is JSON", rendered);

  const std::string envelope = ErrorRenderer::envelope(e, "req_fuzz");
  auto j = nlohmann::json::parse(envelope, nullptr, false);
  check(!j.is_discarded(), "the envelope is JSON", envelope);
  check(j["success"] == false && j["error"]["request_id"] == "req_fuzz" &&
            j["error"]["details"].is_object(),
        "the envelope keeps its shape", envelope);
  return 0;
}
