#include "keygate/observe/access_log.hpp"

#include <fmt/format.h>
#include <poll.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstring>
#include <iterator>
#include <nlohmann/json.hpp>

namespace keygate::log {

using namespace std::string_view_literals;

// nlohmann's serializer, kept for the thread's lifetime (dump() would build a
// new one, and a new string, per call), for the strings and numbers the
// renderer does not write itself: it appends to `scratch`, whose bytes are
// then copied into the line, so they are exactly what nlohmann writes.
struct AccessLineRenderer::Json {
  Json()
      : serializer(
            std::make_shared<nlohmann::detail::output_string_adapter<char, std::string>>(scratch),
            ' ', nlohmann::json::error_handler_t::replace) {}
  std::string scratch;
  nlohmann::detail::serializer<nlohmann::json> serializer;
  nlohmann::json text = "";     // the string being written
  nlohmann::json number = 0.0;  // the float being written
};

namespace {

// Bytes JSON escaping leaves alone: dump() with ensure_ascii off changes only
// '"', '\\', control characters and invalid UTF-8 (replaced), so a string of
// printable ASCII other than those two is its own escaped form.
constexpr std::array<bool, 256> kPlainByte = [] {
  std::array<bool, 256> plain{};
  for (int c = 0x20; c < 0x80; ++c) plain[c] = c != '"' && c != '\\';
  return plain;
}();

// Whether any of a word's eight bytes is not plain. A word has a byte below n
// (n <= 0x80) exactly when (w - n * ones) & ~w & highs is non-zero (a borrow
// starts only at such a byte), and a byte equal to c when w ^ (c * ones) has
// one below 1.
constexpr std::uint64_t any_escaped(std::uint64_t w) {
  constexpr std::uint64_t kOnes = 0x0101010101010101, kHighs = kOnes * 0x80;
  auto any_below = [](std::uint64_t v, std::uint64_t n) { return (v - n * kOnes) & ~v & kHighs; };
  return (w & kHighs) | any_below(w, 0x20) | any_below(w ^ (kOnes * '"'), 1) |
         any_below(w ^ (kOnes * '\\'), 1);
}

// Copies `s` to `out` if it is plain, eight bytes at a time (the last word
// overlapping the one before), checking as it copies; false if it is not.
bool copy_if_plain(std::string_view s, char* out) {
  const char* in = s.data();
  const std::size_t n = s.size();
  if (n < 8) {
    for (std::size_t i = 0; i < n; ++i) {
      if (!kPlainByte[static_cast<unsigned char>(in[i])]) return false;
      out[i] = in[i];
    }
    return true;
  }
  auto word = [&](std::size_t at) {
    std::uint64_t w;
    std::memcpy(&w, in + at, 8);
    if (any_escaped(w)) return false;
    std::memcpy(out + at, &w, 8);
    return true;
  };
  for (std::size_t i = 0; i + 8 <= n; i += 8)
    if (!word(i)) return false;
  return n % 8 == 0 || word(n - 8);
}

// The most one byte of a string can become: a control character is written
// as \u00XX (an invalid byte becomes U+FFFD, three bytes).
constexpr std::size_t kEscapedBytesPerByte = 6;
// The most the JSON line can hold besides its strings: the keys and
// punctuation (about 230 bytes), two integers, a status, two numbers and the
// time.
constexpr std::size_t kJsonLineWithoutStrings = 512;

}  // namespace

// Writes into the line's buffer, sized beforehand for the longest line the
// record can give; every write is a copy with no check of room.
class AccessLineRenderer::Cursor {
 public:
  Cursor(char* p, Json& json) : p_(p), json_(json) {}
  char* end() const { return p_; }

  template <std::size_t N>
  void literal(const char (&s)[N]) {
    std::memcpy(p_, s, N - 1);
    p_ += N - 1;
  }
  void bytes(std::string_view s) {
    std::memcpy(p_, s.data(), s.size());
    p_ += s.size();
  }
  void string(std::string_view s) {
    if (copy_if_plain(s, p_ + 1)) {
      p_[0] = '"';
      p_[s.size() + 1] = '"';
      p_ += s.size() + 2;
      return;
    }
    escaped_string(s);
  }
  void optional_string(std::string_view s) {
    if (s.empty())
      literal("null");
    else
      string(s);
  }
  void integer(std::uint64_t v) { digits(fmt::format_int(v)); }
  void integer(std::int64_t v) { digits(fmt::format_int(v)); }

  // `ms` to the microsecond, as nlohmann writes the double
  // round(ms * 1000) / 1000: the shortest decimal that reads back as it,
  // which for k / 1000 below 2^40 (a ulp well under 0.0005) is k's digits
  // with the point three places from the right, trailing zeros dropped but
  // one kept ("2.0"). Anything else (negative, -0, huge, NaN) goes to nlohmann.
  void milliseconds(double ms) {
    const double micros = std::round(ms * 1000);
    if (!(micros >= 0 && micros < 1e15) || std::signbit(micros)) {
      json_.number.get_ref<nlohmann::json::number_float_t&>() = micros / 1000;
      return dumped(json_.number);
    }
    const auto k = static_cast<std::uint64_t>(micros);
    integer(k / 1000);
    const auto fraction = static_cast<unsigned>(k % 1000);
    const char point_and_digits[] = {'.', static_cast<char>('0' + fraction / 100),
                                     static_cast<char>('0' + fraction / 10 % 10),
                                     static_cast<char>('0' + fraction % 10)};
    const std::size_t length = fraction % 100 == 0 ? 2 : fraction % 10 == 0 ? 3 : 4;
    bytes(std::string_view(point_and_digits, length));
  }

 private:
  void digits(const fmt::format_int& text) { bytes({text.data(), text.size()}); }
  // Out of line: the common, plain case stays small.
  [[gnu::noinline]] void escaped_string(std::string_view s) {
    json_.text.get_ref<nlohmann::json::string_t&>().assign(s);
    dumped(json_.text);
  }
  // `v` as nlohmann's serializer writes it.
  void dumped(const nlohmann::json& v) {
    json_.scratch.clear();
    json_.serializer.dump(v, false, false, 0);
    bytes(json_.scratch);
  }

  char* p_;
  Json& json_;
};

AccessLineRenderer::AccessLineRenderer() : json_(std::make_unique<Json>()) {}
AccessLineRenderer::~AccessLineRenderer() = default;

std::string_view AccessLineRenderer::render(const AccessRecord& r, UnixMillis now, bool json) {
  const std::string_view path = r.path.substr(0, r.path.find('?'));  // no query string
  if (!json) {
    line_.clear();
    auto out = std::back_inserter(line_);
    auto dash = [](std::string_view s) { return s.empty() ? std::string_view("-") : s; };
    line_ += time_text(now);
    fmt::format_to(out, " {} {} {} {} {} {} {} {:.3f}ms", r.client_ip, r.method, path, r.status,
                   dash(r.reason), dash(r.key_id), r.request_id, r.duration_ms);
    if (r.deprecated) line_ += " deprecated";
    if (!r.shadow_reason.empty()) fmt::format_to(out, " shadow={}", r.shadow_reason);
    line_ += '\n';
    return line_;
  }
  const std::size_t strings = r.request_id.size() + r.client_ip.size() + r.method.size() +
                              path.size() + r.reason.size() + r.key_id.size() + r.owner.size() +
                              r.shadow_reason.size();
  const std::size_t most = kJsonLineWithoutStrings + kEscapedBytesPerByte * strings;
  // The keys in nlohmann::json's (std::map's) order, as the line always had
  // them, written straight into the buffer (appending piece by piece to a
  // std::string, each append checking its room, was most of the line's cost).
  line_.resize_and_overwrite(most, [&](char* begin, std::size_t) {
    Cursor c(begin, *json_);
    c.literal(R"({"bytes_in":)");
    c.integer(r.bytes_in);
    c.literal(R"(,"bytes_out":)");
    c.integer(r.bytes_out);
    c.literal(R"(,"client_ip":)");
    c.string(r.client_ip);
    if (r.deprecated) c.literal(R"(,"deprecated":true)");
    c.literal(R"(,"duration_ms":)");
    c.milliseconds(r.duration_ms);
    c.literal(R"(,"key_id":)");
    c.optional_string(r.key_id);
    c.literal(R"(,"method":)");
    c.string(r.method);
    c.literal(R"(,"owner":)");
    c.optional_string(r.owner);
    c.literal(R"(,"path":)");
    c.string(path);
    c.literal(R"(,"reason":)");
    c.optional_string(r.reason);
    c.literal(R"(,"request_id":)");
    c.string(r.request_id);
    c.literal(R"(,"shadow_reason":)");
    c.optional_string(r.shadow_reason);
    c.literal(R"(,"status":)");
    c.integer(static_cast<std::int64_t>(r.status));
    c.literal(R"(,"time":")");
    c.bytes(time_text(now));
    c.literal(R"(","type":"access","upstream_ms":)");
    if (r.upstream_ms < 0)
      c.literal("null");
    else
      c.milliseconds(r.upstream_ms);
    c.literal("}\n");
    return static_cast<std::size_t>(c.end() - begin);
  });
  return line_;
}

// RFC 3339 UTC with milliseconds, as format_time() writes it.
std::string_view AccessLineRenderer::time_text(UnixMillis now) {
  using namespace std::chrono;
  const sys_time<milliseconds> t{milliseconds(now)};
  const sys_seconds second = floor<seconds>(t);
  if (second.time_since_epoch().count() != second_) {
    const sys_days day = floor<days>(second);
    const year_month_day ymd{day};
    const hh_mm_ss hms{second - day};
    const auto written =
        fmt::format_to_n(time_text_.data(), time_text_.size() - kFractionLength,
                         "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}", static_cast<int>(ymd.year()),
                         static_cast<unsigned>(ymd.month()), static_cast<unsigned>(ymd.day()),
                         hms.hours().count(), hms.minutes().count(), hms.seconds().count());
    seconds_length_ = std::min(written.size, time_text_.size() - kFractionLength);
    second_ = second.time_since_epoch().count();
    ++time_formats_;
  }
  const auto ms = static_cast<unsigned>((t - second).count());
  char* fraction = time_text_.data() + seconds_length_;
  fraction[0] = '.';
  fraction[1] = static_cast<char>('0' + ms / 100);
  fraction[2] = static_cast<char>('0' + ms / 10 % 10);
  fraction[3] = static_cast<char>('0' + ms % 10);
  fraction[4] = 'Z';
  return {time_text_.data(), seconds_length_ + kFractionLength};
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
