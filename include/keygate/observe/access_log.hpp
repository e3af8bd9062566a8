#pragma once
// The access log's two halves (log.cpp joins them): AccessLineRenderer turns
// one request's record into its line, JSON or text, in a buffer it reuses;
// AccessLogWriter takes whole lines from the I/O threads and writes them out
// from a thread of its own, in batches. Neither allocates once warm, so a
// logged request costs a render and a copy under a mutex on its I/O thread.
#include <array>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <limits>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>

#include "keygate/core/time.hpp"

namespace keygate::log {

// One request as the access log records it (SPEC §6). Views into the request.
// `path` may be the whole target: the line keeps what precedes any '?'.
struct AccessRecord {
  std::string_view request_id, client_ip, method, path, reason, key_id, owner;
  int status = 0;
  std::uint64_t bytes_in = 0, bytes_out = 0;
  double duration_ms = 0;
  double upstream_ms = -1;         // < 0: not forwarded
  bool deprecated = false;         // the key is in a rotation's grace period (SPEC §11)
  std::string_view shadow_reason;  // shadow mode: why enforcing would have refused it
};

// Renders access lines, one thread's worth: strings are JSON-escaped by
// nlohmann's own serializer (invalid UTF-8 replaced by U+FFFD, as dump() with
// error_handler_t::replace does), and the time's date and seconds are
// formatted once per second. The JSON line is byte for byte what dumping the
// record as a nlohmann::json object gives (keys in its sorted order).
class AccessLineRenderer {
 public:
  AccessLineRenderer();
  ~AccessLineRenderer();
  AccessLineRenderer(const AccessLineRenderer&) = delete;
  AccessLineRenderer& operator=(const AccessLineRenderer&) = delete;

  // The line for `r` logged at `now`, ending in '\n'; valid until the next call.
  std::string_view render(const AccessRecord& r, UnixMillis now, bool json);
  // How many times the "YYYY-MM-DDTHH:MM:SS" part was formatted.
  std::uint64_t time_formats() const { return time_formats_; }

 private:
  struct Json;   // nlohmann's serializer, for what needs escaping
  class Cursor;  // writes the JSON line into line_'s buffer
  // "YYYY-MM-DDTHH:MM:SS.mmmZ" for `now`; valid until the next call.
  std::string_view time_text(UnixMillis now);

  static constexpr std::size_t kFractionLength = 5;  // ".mmmZ"
  std::string line_;
  std::unique_ptr<Json> json_;
  std::int64_t second_ = std::numeric_limits<std::int64_t>::min();
  std::array<char, 32> time_text_{};  // the second's text, then the fraction
  std::size_t seconds_length_ = 0;
  std::uint64_t time_formats_ = 0;
};

// Whole lines from any thread, written to `fd` by the writer's own thread in
// the order they were appended. append() copies the line into a pending
// buffer under a mutex held only for that copy. The writer sleeps while
// nothing is pending; the first line wakes it, and it lets lines gather for
// `gather` (or until the buffer is half full, a flush is asked for, or it is
// stopped) before it swaps the pending buffer for its own and writes it with
// the mutex released: under load one write() carries many lines, and an I/O
// thread wakes it at most once per `gather` (a wake-up and a write per line
// cost more than rendering the line). When the pending buffer is full (the
// disk slower than the traffic), append() waits for room rather than drop a
// line. Lines are never split or interleaved.
class AccessLogWriter {
 public:
  explicit AccessLogWriter(int fd, std::size_t capacity = 1 << 20,
                           std::chrono::milliseconds gather = std::chrono::milliseconds(20));
  ~AccessLogWriter();  // writes what is pending, then stops the thread
  AccessLogWriter(const AccessLogWriter&) = delete;
  AccessLogWriter& operator=(const AccessLogWriter&) = delete;

  void append(std::string_view line);
  // Returns once every line appended before the call has been written.
  void flush();
  // write() calls made so far (batches, not lines).
  std::uint64_t writes() const;

 private:
  void run();
  bool hurried() const;  // write now rather than gather more
  void write_all(std::string_view bytes);

  const int fd_;
  const std::size_t capacity_;
  const std::chrono::milliseconds gather_;
  mutable std::mutex mutex_;
  std::condition_variable wake_writer_, room_, written_;
  std::string pending_, writing_;
  std::uint64_t appended_ = 0, done_ = 0;  // bytes appended / written (or failed)
  std::uint64_t writes_ = 0;
  int flushing_ = 0, waiting_for_room_ = 0;
  bool idle_ = false, gathering_ = false, stop_ = false;
  bool reported_failure_ = false;  // writer thread only
  std::thread thread_;             // last: started once the rest is built
};

}  // namespace keygate::log
