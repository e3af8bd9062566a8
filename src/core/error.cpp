#include "keygate/core/error.hpp"

namespace keygate::errors {

Error bad_request(MessageText message) {
  return Error{400, "VALIDATION_ERROR", "", std::move(message), nlohmann::json::object(), {}};
}
// The request path's refusals: no allocation for a literal message (null details).
Error auth(std::string_view reason, MessageText message) {
  return Error{401, "AUTH_ERROR", std::string(reason), std::move(message), nlohmann::json(), {}};
}
Error forbidden(std::string_view reason, MessageText message) {
  return Error{403, "FORBIDDEN", std::string(reason), std::move(message), nlohmann::json(), {}};
}
Error not_found(MessageText message) {
  return Error{404, "NOT_FOUND", "", std::move(message), nlohmann::json::object(), {}};
}
Error payload_too_large(std::uint64_t limit) {
  return Error{413,
               "PAYLOAD_TOO_LARGE",
               "body_too_large",
               "Request body exceeds the limit of " + std::to_string(limit) + " bytes.",
               nlohmann::json{{"limit_bytes", limit}},
               {}};
}
Error headers_too_large(std::uint64_t limit) {
  return Error{431,
               "HEADERS_TOO_LARGE",
               "headers_too_large",
               "Request headers exceed the limit of " + std::to_string(limit) + " bytes.",
               nlohmann::json{{"limit_bytes", limit}},
               {}};
}
Error rate_limited(std::int64_t retry_after_seconds) {
  return Error{429,
               "RATE_LIMIT_ERROR",
               "rate_limit",
               "Rate limit exceeded. Retry in " + std::to_string(retry_after_seconds) + " seconds.",
               nlohmann::json{{"retry_after_seconds", retry_after_seconds}},
               retry_after_seconds};
}
Error credits_exhausted(std::int64_t cost, std::int64_t remaining,
                        std::optional<std::int64_t> refill_in_seconds) {
  std::string message = "This API key has no credits left for this request (it costs " +
                        std::to_string(cost) + ", " + std::to_string(remaining) + " left).";
  nlohmann::json details{{"cost", cost}, {"credits_remaining", remaining}};
  if (refill_in_seconds) {
    message += " Credits refill in " + std::to_string(*refill_in_seconds) + " seconds.";
    details["retry_after_seconds"] = *refill_in_seconds;
  } else {
    message += " Ask for more credits.";
  }
  return Error{429,
               "RATE_LIMIT_ERROR",
               "credits",
               std::move(message),
               std::move(details),
               refill_in_seconds};
}
Error upstream_error(MessageText message) {
  return Error{502, "UPSTREAM_ERROR", "upstream", std::move(message), nlohmann::json::object(), {}};
}
Error upstream_timeout() {
  return Error{504,
               "UPSTREAM_TIMEOUT",
               "upstream_timeout",
               "The upstream service did not answer in time.",
               nlohmann::json::object(),
               {}};
}
Error unavailable(std::string_view reason, MessageText message) {
  return Error{
      503, "UNAVAILABLE", std::string(reason), std::move(message), nlohmann::json::object(), {}};
}
Error internal() {
  return Error{500, "INTERNAL_ERROR", "", "Internal error.", nlohmann::json::object(), {}};
}

}  // namespace keygate::errors
