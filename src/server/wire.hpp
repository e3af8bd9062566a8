#pragma once
// HTTP/1.1 heads written flat into a reused string, and body framing (chunked
// or raw) around relay chunks. Beast's serializer walks a buffer view per
// header field on every write, and a head edited through basic_fields costs a
// node and a tree insert per field; here a head is one contiguous string and a
// write is one gather of at most five buffers.
#include <algorithm>
#include <array>
#include <charconv>
#include <cstdio>
#include <span>
#include <string>
#include <string_view>

#include "keygate/core/append.hpp"
#include "keygate/proxy/context.hpp"
#include "keygate/proxy/flat_fields.hpp"
#include "keygate/proxy/forward_headers.hpp"
#include "keygate/proxy/response_headers.hpp"
#include "server/asio.hpp"

namespace keygate::wire {

inline void append_number(std::string& out, std::uint64_t v) {
  char buf[24];
  auto end = std::to_chars(buf, buf + sizeof buf, v).ptr;
  out.append(buf, static_cast<size_t>(end - buf));
}

inline void status_line(std::string& out, unsigned version, unsigned status,
                        std::string_view reason = {}) {
  char code[24];
  auto end = std::to_chars(code, code + sizeof code, status).ptr;
  if (reason.empty()) reason = net::http::obsolete_reason(static_cast<net::http::status>(status));
  append_parts(out, {version == 10 ? std::string_view("HTTP/1.0 ") : std::string_view("HTTP/1.1 "),
                     std::string_view(code, static_cast<size_t>(end - code)), " ", reason, "\r\n"});
}

inline void field(std::string& out, std::string_view name, std::string_view value) {
  append_parts(out, {name, ": ", value, "\r\n"});
}

inline void number_field(std::string& out, std::string_view name, std::uint64_t value) {
  char buf[24];
  auto end = std::to_chars(buf, buf + sizeof buf, value).ptr;
  field(out, name, std::string_view(buf, static_cast<size_t>(end - buf)));
}

// Connection as Beast's keep_alive() leaves it on a head without one.
inline void connection(std::string& out, unsigned version, bool keep_alive) {
  if (version >= 11 && !keep_alive) field(out, "Connection", "close");
  if (version < 11 && keep_alive) field(out, "Connection", "keep-alive");
}

// `h` is the upstream's status line (its fields are in `fields`).
// The upstream's 101 to a WebSocket upgrade: every field as it is (Upgrade and
// Connection included), those `edits` sets replaced.
inline void upgrade_head(std::string& out, const net::http::response_header<Fields>& h,
                         const FlatFields& fields, const HeaderList& edits) {
  status_line(out, h.version(), h.result_int(), h.reason());
  for (const auto& f : fields)
    if (!edits.has(f.name_string())) field(out, f.name_string(), f.value());
  edits.append_to(out);
  out += "\r\n";
}

// The upstream's response head as the client gets it: hop-by-hop fields and
// those `edits` sets are dropped, then `edits` follow, then the framing the
// relay adds (chunked when the upstream delimits the body by closing) and
// Connection for the client's connection.
inline void response_head(std::string& out, const net::http::response_header<Fields>& h,
                          const FlatFields& fields, unsigned version, const HeaderList& edits,
                          bool rechunk, bool keep_alive) {
  status_line(out, version, h.result_int(), h.reason());
  const HopByHop hop(fields);
  std::string_view coding;  // a Transfer-Encoding that gets ", chunked" appended
  for (const auto& f : fields) {
    if (hop(f) || edits.has(f.name_string())) continue;
    if (rechunk && f.name() == net::http::field::transfer_encoding) {
      if (coding.empty()) coding = f.value();
      continue;
    }
    field(out, f.name_string(), f.value());
  }
  edits.append_to(out);
  if (rechunk)
    append_parts(out, {"Transfer-Encoding: ", coding, coding.empty() ? "" : ", ", "chunked\r\n"});
  connection(out, version, keep_alive);
  out.push_back('\r');
  out.push_back('\n');
}

// One write's worth of buffers: [head][chunk-size line][data][CRLF][last-chunk].
class Frame {
 public:
  void head(std::string_view h) { add(h.data(), h.size()); }
  void data(const char* p, size_t n, bool chunked) {
    if (n == 0) return;
    if (chunked) {
      int len = std::snprintf(size_line_, sizeof size_line_, "%zx\r\n", n);
      add(size_line_, static_cast<size_t>(len));
    }
    add(p, n);
    if (chunked) add("\r\n", 2);
  }
  void last_chunk() { add("0\r\n\r\n", 5); }
  // Drops the first `n` bytes (what a write took).
  void consume(std::size_t n) {
    std::size_t i = 0;
    while (i < count_ && n >= bufs_[i].size()) n -= bufs_[i++].size();
    std::copy(bufs_.begin() + static_cast<std::ptrdiff_t>(i),
              bufs_.begin() + static_cast<std::ptrdiff_t>(count_), bufs_.begin());
    count_ -= i;
    if (count_ > 0) bufs_[0] += n;
  }
  std::span<const net::asio::const_buffer> buffers() const { return {bufs_.data(), count_}; }
  bool empty() const { return count_ == 0; }

 private:
  void add(const char* p, size_t n) { bufs_[count_++] = net::asio::const_buffer(p, n); }
  std::array<net::asio::const_buffer, 5> bufs_{};
  size_t count_ = 0;
  char size_line_[24];
};

}  // namespace keygate::wire
