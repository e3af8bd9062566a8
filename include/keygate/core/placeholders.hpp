#pragma once
// The {name} placeholders an error template or message may use (SPEC §3
// "Error style"): known to the config validator and to the renderer.
#include <array>
#include <optional>
#include <string>
#include <string_view>

namespace keygate::placeholders {

inline constexpr std::array<std::string_view, 10> kNames = {
    "code",    "message",     "status",   "reason", "request_id",
    "details", "retry_after", "retry_at", "reset",  "reset_at"};

// The first unknown {name} in `text`, if any.
std::optional<std::string> first_unknown(std::string_view text);
// "{code}, {message}, …" for error messages.
std::string list();

}  // namespace keygate::placeholders
