#include "keygate/observe/access_log.hpp"

#include <fmt/format.h>
#include <poll.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <iterator>
#include <nlohmann/json.hpp>

namespace keygate::log {

using namespace std::string_view_literals;

// nlohmann's serializer, kept for the thread's lifetime (dump() would build a
// new one, and a new string, per call). Each value goes through its dump() as
// a reused json value (a string keeps its capacity), so the line's bytes are
// exactly what nlohmann writes. The serializer appends straight to the line.
struct AccessLineRenderer::Json {
  explicit Json(std::string& out)
      : serializer(
            std::make_shared<nlohmann::detail::output_string_adapter<char, std::string>>(out), ' ',
            nlohmann::json::error_handler_t::replace) {}
  nlohmann::detail::serializer<nlohmann::json> serializer;
  nlohmann::json text = "";     // the string being written
  nlohmann::json number = 0.0;  // the float being written
};

AccessLineRenderer::AccessLineRenderer() : json_(std::make_unique<Json>(line_)) {}
AccessLineRenderer::~AccessLineRenderer() = default;

std::string_view AccessLineRenderer::render(const AccessRecord& r, UnixMillis now, bool json) {
  line_.clear();
  auto out = std::back_inserter(line_);
  const std::string_view path = r.path.substr(0, r.path.find('?'));  // no query string
  if (!json) {
    auto dash = [](std::string_view s) { return s.empty() ? std::string_view("-") : s; };
    append_time(now);
    fmt::format_to(out, " {} {} {} {} {} {} {} {:.3f}ms", r.client_ip, r.method, path, r.status,
                   dash(r.reason), dash(r.key_id), r.request_id, r.duration_ms);
    if (r.deprecated) line_ += " deprecated";
    if (!r.shadow_reason.empty()) fmt::format_to(out, " shadow={}", r.shadow_reason);
    line_ += '\n';
    return line_;
  }
  // The keys in nlohmann::json's (std::map's) order, as the line always had
  // them. Plain appends (fmt::format_to into a std::string zero-fills what it
  // reserves and parses its format string: a third of the line's cost).
  line_ += R"({"bytes_in":)"sv;
  append_integer(r.bytes_in);
  line_ += R"(,"bytes_out":)"sv;
  append_integer(r.bytes_out);
  line_ += R"(,"client_ip":)"sv;
  append_string(r.client_ip);
  if (r.deprecated) line_ += R"(,"deprecated":true)"sv;
  line_ += R"(,"duration_ms":)"sv;
  append_number(std::round(r.duration_ms * 1000) / 1000);
  line_ += R"(,"key_id":)"sv;
  append_optional_string(r.key_id);
  line_ += R"(,"method":)"sv;
  append_string(r.method);
  line_ += R"(,"owner":)"sv;
  append_optional_string(r.owner);
  line_ += R"(,"path":)"sv;
  append_string(path);
  line_ += R"(,"reason":)"sv;
  append_optional_string(r.reason);
  line_ += R"(,"request_id":)"sv;
  append_string(r.request_id);
  line_ += R"(,"shadow_reason":)"sv;
  append_optional_string(r.shadow_reason);
  line_ += R"(,"status":)"sv;
  append_integer(static_cast<std::int64_t>(r.status));
  line_ += R"(,"time":")"sv;
  append_time(now);
  line_ += R"(","type":"access","upstream_ms":)"sv;
  if (r.upstream_ms < 0)
    line_ += "null"sv;
  else
    append_number(std::round(r.upstream_ms * 1000) / 1000);
  line_ += "}\n"sv;
  return line_;
}

// RFC 3339 UTC with milliseconds, as format_time() writes it.
void AccessLineRenderer::append_time(UnixMillis now) {
  using namespace std::chrono;
  const sys_time<milliseconds> t{milliseconds(now)};
  const sys_seconds second = floor<seconds>(t);
  if (second.time_since_epoch().count() != second_) {
    const sys_days day = floor<days>(second);
    const year_month_day ymd{day};
    const hh_mm_ss hms{second - day};
    const auto written =
        fmt::format_to_n(seconds_text_.data(), seconds_text_.size(),
                         "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}", static_cast<int>(ymd.year()),
                         static_cast<unsigned>(ymd.month()), static_cast<unsigned>(ymd.day()),
                         hms.hours().count(), hms.minutes().count(), hms.seconds().count());
    seconds_length_ = std::min(written.size, seconds_text_.size());
    second_ = second.time_since_epoch().count();
    ++time_formats_;
  }
  line_.append(seconds_text_.data(), seconds_length_);
  const auto ms = static_cast<unsigned>((t - second).count());
  const char fraction[] = {'.', static_cast<char>('0' + ms / 100),
                           static_cast<char>('0' + ms / 10 % 10), static_cast<char>('0' + ms % 10),
                           'Z'};
  line_.append(fraction, sizeof fraction);
}

// JSON escaping changes only '"', '\\' and control characters, and dump()
// with ensure_ascii off only replaces invalid UTF-8: a string with none of
// these bytes (and none at or above 0x80) is its own escaped form. Most fields
// are such strings (ids, addresses, methods), and copying them as they are
// halves the line's cost; anything else goes through nlohmann.
void AccessLineRenderer::append_string(std::string_view s) {
  const bool plain = std::all_of(s.begin(), s.end(), [](char c) {
    const auto u = static_cast<unsigned char>(c);
    return u >= 0x20 && u < 0x80 && c != '"' && c != '\\';
  });
  if (plain) {
    line_ += '"';
    line_ += s;
    line_ += '"';
    return;
  }
  json_->text.get_ref<nlohmann::json::string_t&>().assign(s);
  json_->serializer.dump(json_->text, false, false, 0);
}

void AccessLineRenderer::append_integer(std::int64_t v) {
  const fmt::format_int text(v);
  line_.append(text.data(), text.size());
}

void AccessLineRenderer::append_integer(std::uint64_t v) {
  const fmt::format_int text(v);
  line_.append(text.data(), text.size());
}

void AccessLineRenderer::append_optional_string(std::string_view s) {
  if (s.empty())
    line_ += "null"sv;
  else
    append_string(s);
}

void AccessLineRenderer::append_number(double v) {
  json_->number.get_ref<nlohmann::json::number_float_t&>() = v;
  json_->serializer.dump(json_->number, false, false, 0);
}

AccessLogWriter::AccessLogWriter(int fd, std::size_t capacity, std::chrono::milliseconds gather)
    : fd_(fd), capacity_(capacity), gather_(gather) {
  pending_.reserve(capacity_);
  writing_.reserve(capacity_);
  thread_ = std::thread([this] { run(); });
}

AccessLogWriter::~AccessLogWriter() {
  {
    std::lock_guard lock(mutex_);
    stop_ = true;
  }
  wake_writer_.notify_one();
  thread_.join();
}

void AccessLogWriter::append(std::string_view line) {
  std::unique_lock lock(mutex_);
  // Full: wait until the writer takes the pending lines (a line longer than
  // the whole buffer waits for an empty one and goes alone).
  if (pending_.size() + line.size() > capacity_ && !pending_.empty()) {
    ++waiting_for_room_;
    wake_writer_.notify_one();
    room_.wait(lock,
               [&] { return pending_.size() + line.size() <= capacity_ || pending_.empty(); });
    --waiting_for_room_;
  }
  pending_.append(line);
  appended_ += line.size();
  // Wake the writer for the first line, or when it should stop gathering;
  // any other line just waits in the buffer.
  const bool wake = (idle_ && pending_.size() == line.size()) || (gathering_ && hurried());
  lock.unlock();
  if (wake) wake_writer_.notify_one();
}

void AccessLogWriter::flush() {
  std::unique_lock lock(mutex_);
  const std::uint64_t target = appended_;
  ++flushing_;
  wake_writer_.notify_one();
  written_.wait(lock, [&] { return done_ >= target; });
  --flushing_;
}

std::uint64_t AccessLogWriter::writes() const {
  std::lock_guard lock(mutex_);
  return writes_;
}

bool AccessLogWriter::hurried() const {
  return stop_ || flushing_ > 0 || waiting_for_room_ > 0 || pending_.size() >= capacity_ / 2;
}

void AccessLogWriter::run() {
  std::unique_lock lock(mutex_);
  for (;;) {
    idle_ = true;
    wake_writer_.wait(lock, [&] { return !pending_.empty() || stop_; });
    idle_ = false;
    if (pending_.empty()) return;  // stopping, and everything is written
    gathering_ = true;
    wake_writer_.wait_for(lock, gather_, [&] { return hurried(); });
    gathering_ = false;
    pending_.swap(writing_);
    const std::uint64_t batch_end = appended_;
    lock.unlock();
    room_.notify_all();
    write_all(writing_);
    writing_.clear();
    lock.lock();
    done_ = batch_end;
    ++writes_;
    written_.notify_all();
  }
}

void AccessLogWriter::write_all(std::string_view bytes) {
  while (!bytes.empty()) {
    const ssize_t n = ::write(fd_, bytes.data(), bytes.size());
    if (n > 0) {
      bytes.remove_prefix(static_cast<std::size_t>(n));
    } else if (n < 0 && errno == EINTR) {
      continue;
    } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      pollfd p{fd_, POLLOUT, 0};  // a non-blocking stdout: wait for the reader
      ::poll(&p, 1, 1000);
    } else {
      // Closed or failing (EPIPE, ENOSPC): the batch is lost, as a log line is
      // anywhere the log cannot be written; say so once, on stderr.
      static constexpr std::string_view kLost = "keygate: access log write failed; lines lost\n";
      if (!reported_failure_) {
        ssize_t ignored = ::write(STDERR_FILENO, kLost.data(), kLost.size());
        (void)ignored;
      }
      reported_failure_ = true;
      return;
    }
  }
}

}  // namespace keygate::log
