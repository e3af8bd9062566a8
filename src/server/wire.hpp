#pragma once
// HTTP/1.1 heads serialized into one flat string, and body framing (chunked
// or raw) around relay chunks. Beast's serializer walks a buffer view per
// header field on every write; on the proxy's hot path one contiguous head
// plus at most four buffers per write is measurably cheaper.
#include <array>
#include <cstdio>
#include <span>
#include <string>

#include "server/asio.hpp"

namespace keygate::wire {

template <class Fields>
void append_fields(std::string& out, const Fields& f) {
  for (const auto& field : f) {
    out += field.name_string();
    out += ": ";
    out += field.value();
    out += "\r\n";
  }
  out += "\r\n";
}

inline std::string request_head(const net::http::request_header<>& h) {
  std::string out;
  out.reserve(512);
  out += h.method_string();
  out += ' ';
  out += h.target();
  out += h.version() == 10 ? " HTTP/1.0\r\n" : " HTTP/1.1\r\n";
  append_fields(out, h);
  return out;
}

inline std::string response_head(const net::http::response_header<>& h) {
  std::string out;
  out.reserve(512);
  out += h.version() == 10 ? "HTTP/1.0 " : "HTTP/1.1 ";
  out += std::to_string(h.result_int());
  out += ' ';
  auto reason = h.reason();
  out += reason.empty() ? net::http::obsolete_reason(h.result()) : reason;
  out += "\r\n";
  append_fields(out, h);
  return out;
}

// One write's worth of buffers: [head][chunk-size line][data][CRLF][last-chunk].
class Frame {
 public:
  void head(const std::string& h) { add(h.data(), h.size()); }
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
  std::span<const net::asio::const_buffer> buffers() const { return {bufs_.data(), count_}; }
  bool empty() const { return count_ == 0; }

 private:
  void add(const char* p, size_t n) { bufs_[count_++] = net::asio::const_buffer(p, n); }
  std::array<net::asio::const_buffer, 5> bufs_{};
  size_t count_ = 0;
  char size_line_[24];
};

}  // namespace keygate::wire
