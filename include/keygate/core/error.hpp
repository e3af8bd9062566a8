#pragma once
// A local reply as a value: every stage that refuses a request returns one,
// and ErrorRenderer turns it into the body. One reason per error.
#include <cstdint>
#include <optional>
#include <ostream>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

namespace keygate {

// An error message: a string literal, kept by reference (the request path
// refuses requests without allocating), or an owned string (messages built at
// run time).
class MessageText {
 public:
  MessageText() = default;
  template <std::size_t N>
  MessageText(const char (&literal)[N]) : view_(literal, N - 1) {}  // NOLINT: implicit by design
  MessageText(std::string s) : owned_(std::move(s)), view_(owned_) {}
  MessageText(std::string_view s) : MessageText(std::string(s)) {}
  // Text that outlives every error made from it (config, constants): kept by reference.
  static MessageText lasting(std::string_view s) {
    MessageText m;
    m.view_ = s;
    return m;
  }
  MessageText(const MessageText& o) { *this = o; }
  MessageText& operator=(const MessageText& o) {
    if (this == &o) return *this;
    owned_ = o.owned_;
    view_ = o.is_owned() ? std::string_view(owned_) : o.view_;
    return *this;
  }
  MessageText(MessageText&& o) noexcept { *this = std::move(o); }
  MessageText& operator=(MessageText&& o) noexcept {
    if (this == &o) return *this;
    const bool owned = o.is_owned();
    owned_ = std::move(o.owned_);
    view_ = owned ? std::string_view(owned_) : o.view_;
    o.owned_.clear();
    o.view_ = {};
    return *this;
  }

  std::string_view view() const { return view_; }
  operator std::string_view() const { return view_; }          // NOLINT
  operator std::string() const { return std::string(view_); }  // NOLINT
  bool empty() const { return view_.empty(); }
  std::size_t size() const { return view_.size(); }
  friend bool operator==(const MessageText& a, std::string_view b) { return a.view_ == b; }
  friend std::ostream& operator<<(std::ostream& os, const MessageText& m) { return os << m.view_; }

 private:
  bool is_owned() const { return !owned_.empty() && view_.data() == owned_.data(); }
  std::string owned_;
  std::string_view view_;
};

struct Error {
  int status = 500;
  std::string code = "INTERNAL_ERROR";  // SPEC code, mapped by the error style
  std::string reason;                   // details.reason; empty: none
  MessageText message;                  // default message; the style may replace it
  // Extra fields besides reason. Null (no allocation) on the request path's
  // refusals; the renderer reads null as an empty object.
  nlohmann::json details = nlohmann::json::object();
  std::optional<std::int64_t> retry_after;  // seconds, for 429
  std::optional<std::int64_t> reset_after;  // seconds until the bucket is full (429)
};

namespace errors {
Error bad_request(MessageText message);
Error auth(std::string_view reason, MessageText message);
Error forbidden(std::string_view reason, MessageText message);
Error not_found(MessageText message);
Error payload_too_large(std::uint64_t limit);
Error headers_too_large(std::uint64_t limit);
Error rate_limited(std::int64_t retry_after_seconds);
// 429 reason "credits": the key's credits cannot pay for the request.
Error credits_exhausted(std::int64_t cost, std::int64_t remaining,
                        std::optional<std::int64_t> refill_in_seconds);
Error upstream_error(MessageText message);
Error upstream_timeout();
Error unavailable(std::string_view reason, MessageText message);
Error internal();
}  // namespace errors

}  // namespace keygate
