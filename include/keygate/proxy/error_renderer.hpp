#pragma once
// The one place that turns an Error into a response body: the SPEC envelope, or
// the configured error style of the API being fronted (SPEC §3 "Error style").
#include <chrono>
#include <optional>
#include <string>
#include <string_view>

#include "keygate/config/config.hpp"
#include "keygate/core/error.hpp"

namespace keygate {

class ErrorRenderer {
 public:
  ErrorRenderer() = default;
  explicit ErrorRenderer(std::optional<ErrorStyle> style) : style_(std::move(style)) {}

  // Body for a proxy reply, in the configured style. `now` is used for {retry_at}.
  std::string render(const Error& e, std::string_view request_id,
                     std::chrono::system_clock::time_point now) const;
  // The SPEC envelope, always (admin API and unstyled proxy replies).
  static std::string envelope(const Error& e, std::string_view request_id);

 private:
  std::optional<ErrorStyle> style_;
};

}  // namespace keygate
