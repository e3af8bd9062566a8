#pragma once
// The one place that turns an Error into a response body: the SPEC envelope, or
// the configured error style of the API being fronted (SPEC §3 "Error style").
#include <chrono>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "keygate/config/config.hpp"
#include "keygate/core/error.hpp"

namespace keygate {

class ErrorRenderer;

// One I/O thread's memory of rendered bodies, so that a refusal costs a splice,
// not a JSON build: a body that depends on nothing but the request id (no
// retry time, no details besides the reason) is rendered once with a marker
// for the id and kept as the pieces around it. Also lends body strings, so
// replies reuse their capacity. Not thread-safe: one per thread; clear() it
// when the config generation changes.
class RenderCache {
 public:
  std::string take();
  void give(std::string body);
  void clear() { entries_.clear(); }

 private:
  friend class ErrorRenderer;
  struct Entry {
    const ErrorRenderer* renderer;
    int status;
    std::string code, reason, message;
    std::vector<std::string> pieces;  // the body = pieces joined by the request id
  };
  static constexpr std::size_t kMaxEntries = 64;
  static constexpr std::size_t kMaxSpare = 16;
  std::vector<Entry> entries_;
  std::vector<std::string> spare_;
};

class ErrorRenderer {
 public:
  ErrorRenderer() = default;
  explicit ErrorRenderer(std::optional<ErrorStyle> style) : style_(std::move(style)) {}

  // Body for a proxy reply, in the configured style. `now` is used for {retry_at}.
  std::string render(const Error& e, std::string_view request_id,
                     std::chrono::system_clock::time_point now) const;
  // The same, written into `out` (replaced), through `cache` when given.
  void render_into(std::string& out, const Error& e, std::string_view request_id,
                   std::chrono::system_clock::time_point now, RenderCache* cache) const;
  // The SPEC envelope, always (admin API and unstyled proxy replies).
  static std::string envelope(const Error& e, std::string_view request_id);

 private:
  std::optional<ErrorStyle> style_;
};

}  // namespace keygate
