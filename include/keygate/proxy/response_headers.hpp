#pragma once
// The headers the gateway puts on responses, in one place: on every response
// (proxied ones, where they replace the upstream's fields of the same names,
// and local replies) and on local replies only. Written through HeaderSink, so
// the same code fills Beast fields (tests, tools) or the session's flat heads.
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "keygate/proxy/context.hpp"
#include "keygate/proxy/runtime.hpp"

namespace keygate {

struct Verdict;

class HeaderSink {
 public:
  // Sets `name` (replacing an earlier field of that name) to `value`.
  virtual void set(std::string_view name, std::string_view value) = 0;

 protected:
  ~HeaderSink() = default;
};

// Beast fields as a sink.
class FieldsSink final : public HeaderSink {
 public:
  explicit FieldsSink(Fields& f) : f_(f) {}
  void set(std::string_view name, std::string_view value) override { f_.set(name, value); }

 private:
  Fields& f_;
};

// Fields collected flat, in order, for a head written by hand: reused across
// requests (no allocation once warm). Kept as the head's lines already, so
// they go into the head with one copy.
class HeaderList final : public HeaderSink {
 public:
  void set(std::string_view name, std::string_view value) override;
  void clear() {
    text_.clear();
    fields_.clear();
    replaced_ = false;
  }
  // Whether `name` is among them (ASCII case-insensitive).
  bool has(std::string_view name) const;
  // "name: value\r\n" for each.
  void append_to(std::string& out) const;

 private:
  struct Span {
    std::uint32_t at, name_len, line_len;  // the line "name: value\r\n" at text_[at]
  };
  std::string_view name(const Span& s) const { return {text_.data() + s.at, s.name_len}; }
  std::string text_;
  std::vector<Span> fields_;
  bool replaced_ = false;  // a set() replaced a field: text_ holds a line no longer listed
};

// Every response to a request: X-Request-Id, and for key-authenticated ones
// the rate-limit headers and the key's lifecycle headers (X-Credits-Remaining,
// Deprecation, Sunset).
void add_response_headers(HeaderSink& out, const Context& ctx, const Runtime& rt,
                          std::int64_t now_epoch_seconds);
// A local reply's head: its content type and challenge, then add_response_headers.
void add_local_reply_headers(HeaderSink& out, const Verdict& v, const Context& ctx,
                             const Runtime& rt, std::int64_t now_epoch_seconds);

}  // namespace keygate
