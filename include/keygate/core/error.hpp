#pragma once
// A local reply as a value: every stage that refuses a request returns one,
// and ErrorRenderer turns it into the body. One reason per error.
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

namespace keygate {

struct Error {
  int status = 500;
  std::string code = "INTERNAL_ERROR";                // SPEC code, mapped by the error style
  std::string reason;                                 // details.reason; empty: none
  std::string message;                                // default message; the style may replace it
  nlohmann::json details = nlohmann::json::object();  // extra fields besides reason
  std::optional<std::int64_t> retry_after;            // seconds, for 429
  std::optional<std::int64_t> reset_after;            // seconds until the bucket is full (429)
};

namespace errors {
Error bad_request(std::string message);
Error auth(std::string_view reason, std::string message);
Error forbidden(std::string_view reason, std::string message);
Error not_found(std::string message);
Error payload_too_large(std::uint64_t limit);
Error headers_too_large(std::uint64_t limit);
Error rate_limited(std::int64_t retry_after_seconds);
// 429 reason "credits": the key's credits cannot pay for the request.
Error credits_exhausted(std::int64_t cost, std::int64_t remaining,
                        std::optional<std::int64_t> refill_in_seconds);
Error upstream_error(std::string message);
Error upstream_timeout();
Error unavailable(std::string_view reason, std::string message);
Error internal();
}  // namespace errors

}  // namespace keygate
