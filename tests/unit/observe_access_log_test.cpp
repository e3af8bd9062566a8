#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <map>
#include <new>
#include <nlohmann/json.hpp>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "access_line_reference.hpp"
#include "keygate/core/time.hpp"
#include "keygate/observe/access_log.hpp"

using namespace keygate;
using keygate::log::AccessLineRenderer;
using keygate::log::AccessLogWriter;
using keygate::log::AccessRecord;
using keygate::test_support::reference_json;

// Allocations made by this thread (every operator new of the binary counts):
// the renderer must make none once warm. (g++ flags malloc/free in a
// replacement operator new/delete once inlined into a new-expression.)
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
namespace {
thread_local long t_allocations = 0;
}
void* operator new(std::size_t n) {
  ++t_allocations;
  if (void* p = std::malloc(n ? n : 1)) return p;
  throw std::bad_alloc();
}
void operator delete(void* p) noexcept {
  std::free(p);
}
void operator delete(void* p, std::size_t) noexcept {
  std::free(p);
}

namespace {

constexpr UnixMillis kNow = 1795500123456;  // 2026-11-24T06:02:03.456Z

// The text line as log.cpp built it before the renderer, by concatenation.
std::string reference_text(const AccessRecord& r, UnixMillis now) {
  char buf[64];
  std::snprintf(buf, sizeof buf, " %.3fms", r.duration_ms);
  std::string_view path = r.path.substr(0, r.path.find('?'));
  std::string line = format_time(now) + " " + std::string(r.client_ip) + " " +
                     std::string(r.method) + " " + std::string(path) + " " +
                     std::to_string(r.status) + " " +
                     (r.reason.empty() ? "-" : std::string(r.reason)) + " " +
                     (r.key_id.empty() ? "-" : std::string(r.key_id)) + " " +
                     std::string(r.request_id) + buf + (r.deprecated ? " deprecated" : "");
  if (!r.shadow_reason.empty()) line += " shadow=" + std::string(r.shadow_reason);
  return line + "\n";
}

AccessRecord valid_request() {
  AccessRecord r;
  r.request_id = "3f2a9c1e0b7d4e5f8a6b2c1d0e9f8a7b";
  r.client_ip = "203.0.113.7";
  r.method = "POST";
  r.path = "/v1/things?q=1&key=secret";
  r.key_id = "key_01HZX";
  r.owner = "acme";
  r.status = 200;
  r.bytes_in = 5;
  r.bytes_out = 100;
  r.duration_ms = 1.23456;
  r.upstream_ms = 0.9876;
  return r;
}

TEST(AccessLineRenderer, JsonLineHasEveryFieldOfTheSpec) {
  AccessLineRenderer renderer;
  std::string line(renderer.render(valid_request(), kNow, true));
  ASSERT_EQ(line.back(), '\n');
  EXPECT_EQ(line.find('\n'), line.size() - 1);  // one line
  auto j = nlohmann::json::parse(line);
  EXPECT_EQ(j["time"], "2026-11-24T06:02:03.456Z");
  EXPECT_EQ(j["type"], "access");
  EXPECT_EQ(j["request_id"], "3f2a9c1e0b7d4e5f8a6b2c1d0e9f8a7b");
  EXPECT_EQ(j["client_ip"], "203.0.113.7");
  EXPECT_EQ(j["method"], "POST");
  EXPECT_EQ(j["path"], "/v1/things");  // no query string (it may hold a key)
  EXPECT_EQ(j["status"], 200);
  EXPECT_TRUE(j["reason"].is_null());
  EXPECT_EQ(j["key_id"], "key_01HZX");
  EXPECT_EQ(j["owner"], "acme");
  EXPECT_EQ(j["bytes_in"], 5);
  EXPECT_EQ(j["bytes_out"], 100);
  EXPECT_DOUBLE_EQ(j["duration_ms"].get<double>(), 1.235);
  EXPECT_DOUBLE_EQ(j["upstream_ms"].get<double>(), 0.988);
  EXPECT_TRUE(j["shadow_reason"].is_null());
  EXPECT_FALSE(j.contains("deprecated"));
  EXPECT_EQ(line.find("secret"), std::string::npos);
  EXPECT_EQ(line, reference_json(valid_request(), kNow));
}

TEST(AccessLineRenderer, RefusedRequestHasNullsWhereNothingIsKnown) {
  AccessRecord r;
  r.request_id = "rid";
  r.client_ip = "::1";
  r.method = "GET";
  r.path = "/x";
  r.reason = "missing";
  r.status = 401;
  r.bytes_out = 190;
  auto j = nlohmann::json::parse(AccessLineRenderer().render(r, kNow, true));
  EXPECT_EQ(j["reason"], "missing");
  EXPECT_TRUE(j["key_id"].is_null());
  EXPECT_TRUE(j["owner"].is_null());
  EXPECT_TRUE(j["upstream_ms"].is_null());  // never forwarded
  EXPECT_EQ(j["duration_ms"].get<double>(), 0.0);
  EXPECT_EQ(j["status"], 401);
}

TEST(AccessLineRenderer, DeprecatedAndShadowReason) {
  AccessRecord r = valid_request();
  r.deprecated = true;
  r.shadow_reason = "rate_limited";
  AccessLineRenderer renderer;
  std::string line(renderer.render(r, kNow, true));
  auto j = nlohmann::json::parse(line);
  EXPECT_EQ(j["deprecated"], true);
  EXPECT_EQ(j["shadow_reason"], "rate_limited");
  EXPECT_EQ(line, reference_json(r, kNow));
}

TEST(AccessLineRenderer, EscapesQuotesBackslashesAndControlCharacters) {
  AccessRecord r = valid_request();
  const std::string path("/a\"b\\c\x01\n\t\x1f\x7f\0/d", 14);  // NUL included
  r.path = path;
  r.request_id = R"(id"with\quotes)";
  std::string line(AccessLineRenderer().render(r, kNow, true));
  const std::string escaped_path = R"("path":"/a\"b\\c\u0001\n\t\u001f)"
                                   "\x7f"  // DEL is no control character in JSON
                                   R"(\u0000/d")";
  EXPECT_NE(line.find(escaped_path), std::string::npos) << line;
  EXPECT_NE(line.find(R"("request_id":"id\"with\\quotes")"), std::string::npos) << line;
  EXPECT_EQ(line.find('\n'), line.size() - 1);  // the raw newline was escaped
  auto j = nlohmann::json::parse(line);
  EXPECT_EQ(j["path"], path);
  EXPECT_EQ(j["request_id"], std::string(r.request_id));
}

TEST(AccessLineRenderer, InvalidUtf8IsReplacedNotPassedThrough) {
  AccessRecord r = valid_request();
  r.path = "/caf\xc3\xa9/\xff\xfe/\xe2\x82";  // valid é, two stray bytes, a truncated €
  r.request_id = "id-\xc0\xaf";               // an overlong '/'
  std::string line(AccessLineRenderer().render(r, kNow, true));
  auto j = nlohmann::json::parse(line);  // throws on invalid UTF-8
  EXPECT_EQ(j["path"], "/caf\xc3\xa9/\xef\xbf\xbd\xef\xbf\xbd/\xef\xbf\xbd");
  EXPECT_EQ(j["request_id"].get<std::string>().substr(0, 3), "id-");
  EXPECT_EQ(j["request_id"].get<std::string>().find('\xc0'), std::string::npos);
  EXPECT_EQ(line, reference_json(r, kNow));
}

// Random bytes of every kind in every string field, random numbers: the line
// is byte for byte nlohmann's dump() of the same record.
TEST(AccessLineRenderer, MatchesNlohmannDumpOnFuzzedRecords) {
  std::mt19937 gen(20261201);
  const std::vector<std::string> pieces = {"a",
                                           "Z",
                                           "/",
                                           "?",
                                           " ",
                                           "\"",
                                           "\\",
                                           "\x00",
                                           "\x01",
                                           "\b",
                                           "\f",
                                           "\n",
                                           "\r",
                                           "\t",
                                           "\x1f",
                                           "\x7f",
                                           "\xc3\xa9",
                                           "\xe2\x82\xac",
                                           "\xf0\x9f\x94\x91",
                                           "\xed\xa0\x80",
                                           "\xc0\x80",
                                           "\xe2\x82",
                                           "\xf4\x90\x80\x80",
                                           "\x80",
                                           "\xbf",
                                           "\xfe",
                                           "\xff",
                                           "\xf8\x88\x80\x80\x80",
                                           "%2F"};
  auto random_string = [&](bool may_be_empty) {
    std::string s;
    int n = std::uniform_int_distribution<int>(may_be_empty ? 0 : 1, 24)(gen);
    for (int i = 0; i < n; ++i) {
      if (std::uniform_int_distribution<int>(0, 3)(gen) == 0)
        s += static_cast<char>(std::uniform_int_distribution<int>(0, 255)(gen));
      else
        s += pieces[std::uniform_int_distribution<std::size_t>(0, pieces.size() - 1)(gen)];
    }
    return s;
  };
  AccessLineRenderer renderer;
  for (int i = 0; i < 5000; ++i) {
    std::string id = random_string(false), ip = random_string(false), method = random_string(false),
                path = random_string(false), reason = random_string(true),
                key = random_string(true), owner = random_string(true),
                shadow = random_string(true);
    AccessRecord r{id, ip, method, path, reason, key, owner};
    r.status = std::uniform_int_distribution<int>(100, 599)(gen);
    r.bytes_in = std::uniform_int_distribution<std::uint64_t>()(gen);
    r.bytes_out = std::uniform_int_distribution<std::uint64_t>(0, 1u << 20)(gen);
    r.duration_ms = std::uniform_real_distribution<double>(0, 100000)(gen);
    r.upstream_ms = i % 3 == 0 ? -1 : std::uniform_real_distribution<double>(0, 5)(gen);
    r.deprecated = i % 7 == 0;
    r.shadow_reason = shadow;
    const UnixMillis now = kNow + std::uniform_int_distribution<UnixMillis>(0, 4'000'000'000)(gen);
    ASSERT_EQ(renderer.render(r, now, true), reference_json(r, now)) << "record " << i;
    ASSERT_EQ(renderer.render(r, now, false), reference_text(r, now)) << "record " << i;
  }
}

// Durations are written by the renderer's own digits, not nlohmann's dtoa:
// they must still be nlohmann's bytes, at the edges of rounding (half a
// microsecond), for whole numbers ("2.0"), trailing zeros, large values, and
// the values it hands back to nlohmann (negative, -0, NaN, infinity, huge).
TEST(AccessLineRenderer, DurationsAreWhatNlohmannWrites) {
  std::vector<double> values = {
      0,    0.0004, 0.0005, 0.0015,  0.001,    0.01,         0.1,      0.5,      1,
      2,    10.5,   10.05,  10.005,  123.4565, 1e6,          1e9,      1e12,     1e12 + 0.5,
      1e15, 1e18,   -0.0,   -0.0004, -1.5,     std::nan(""), INFINITY, -INFINITY};
  for (std::uint64_t k = 0; k < 20000; ++k) values.push_back(static_cast<double>(k) / 1000);
  std::mt19937_64 gen(20261202);
  for (int i = 0; i < 20000; ++i) {
    values.push_back(std::uniform_real_distribution<double>(0, 1e12)(gen));
    values.push_back(std::ldexp(std::uniform_real_distribution<double>(0, 1)(gen),
                                std::uniform_int_distribution<int>(-30, 50)(gen)));
  }
  AccessLineRenderer renderer;
  AccessRecord r = valid_request();
  for (double v : values) {
    r.duration_ms = v;
    r.upstream_ms = v;
    ASSERT_EQ(renderer.render(r, kNow, true), reference_json(r, kNow)) << v;
  }
}

TEST(AccessLineRenderer, TextLine) {
  AccessRecord r = valid_request();
  EXPECT_EQ(AccessLineRenderer().render(r, kNow, false),
            "2026-11-24T06:02:03.456Z 203.0.113.7 POST /v1/things 200 - key_01HZX "
            "3f2a9c1e0b7d4e5f8a6b2c1d0e9f8a7b 1.235ms\n");
  r.deprecated = true;
  r.shadow_reason = "missing";
  r.key_id = "";
  EXPECT_EQ(AccessLineRenderer().render(r, kNow, false), reference_text(r, kNow));
}

TEST(AccessLineRenderer, TimeIsFormattedOncePerSecond) {
  AccessLineRenderer renderer;
  const UnixMillis second = kNow - kNow % 1000;
  for (UnixMillis t = second; t < second + 1000; ++t) {
    auto j = nlohmann::json::parse(renderer.render(valid_request(), t, true));
    ASSERT_EQ(j["time"], format_time(t));
  }
  EXPECT_EQ(renderer.time_formats(), 1u);
  renderer.render(valid_request(), second + 1000, true);
  EXPECT_EQ(renderer.time_formats(), 2u);
  // Dates the seconds' cache must get right: a leap day, the turn of a year.
  for (UnixMillis t : {UnixMillis{1709164800000}, UnixMillis{1709251199999},
                       UnixMillis{1798761599999}, UnixMillis{1798761600000}, UnixMillis{0}}) {
    auto j = nlohmann::json::parse(renderer.render(valid_request(), t, true));
    EXPECT_EQ(j["time"], format_time(t));
  }
}

TEST(AccessLineRenderer, NoAllocationOnceWarm) {
  AccessLineRenderer renderer;
  AccessRecord r = valid_request();
  renderer.render(r, kNow, true);  // the buffers grow to a line's size
  renderer.render(r, kNow, false);
  const long before = t_allocations;
  for (int i = 0; i < 1000; ++i) {
    renderer.render(r, kNow + i * 7, true);
    renderer.render(r, kNow + i * 7, false);
  }
  EXPECT_EQ(t_allocations - before, 0);
}

// A temp file the writer writes to; read back as lines.
class TempFile {
 public:
  TempFile() {
    char name[] = "/tmp/keygate-access-XXXXXX";
    fd_ = ::mkstemp(name);
    path_ = name;
  }
  ~TempFile() {
    ::close(fd_);
    ::unlink(path_.c_str());
  }
  int fd() const { return fd_; }
  std::vector<std::string> lines() const {
    std::ifstream in(path_, std::ios::binary);
    std::vector<std::string> out;
    for (std::string line; std::getline(in, line);) out.push_back(line);
    return out;
  }
  std::string text() const {
    std::ifstream in(path_, std::ios::binary);
    std::ostringstream s;
    s << in.rdbuf();
    return s.str();
  }

 private:
  int fd_ = -1;
  std::string path_;
};

// Several threads log at once through a buffer smaller than their lines
// together (appenders wait for room): every line arrives whole, once, and
// each thread's lines in the order it logged them.
TEST(AccessLogWriter, LinesFromManyThreadsArriveWholeAndInOrder) {
  TempFile file;
  constexpr int kThreads = 4, kLines = 5000;
  {
    AccessLogWriter writer(file.fd(), 4096);
    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; ++t) {
      threads.emplace_back([&writer, t] {
        for (int i = 0; i < kLines; ++i) {
          // Lines of different lengths, some longer than the 4 KiB buffer.
          std::string pad(i % 97 == 0 ? 5000 : static_cast<std::size_t>(i % 50), 'x');
          writer.append("thread " + std::to_string(t) + " line " + std::to_string(i) + " " + pad +
                        " end\n");
        }
      });
    }
    for (auto& th : threads) th.join();
    writer.flush();
    EXPECT_GE(writer.writes(), 1u);
    EXPECT_EQ(file.lines().size(), static_cast<std::size_t>(kThreads * kLines));  // flushed
  }
  std::map<int, int> next;
  for (const auto& line : file.lines()) {
    int t = -1, i = -1;
    ASSERT_EQ(std::sscanf(line.c_str(), "thread %d line %d ", &t, &i), 2) << line;
    ASSERT_EQ(i, next[t]++) << "thread " << t << " out of order";
    std::string pad(i % 97 == 0 ? 5000 : static_cast<std::size_t>(i % 50), 'x');
    ASSERT_EQ(line,
              "thread " + std::to_string(t) + " line " + std::to_string(i) + " " + pad + " end");
  }
  for (int t = 0; t < kThreads; ++t) EXPECT_EQ(next[t], kLines);
}

// Stopped while lines are pending (100k lines outrun the writer's first
// batches): it writes them all before its thread ends.
TEST(AccessLogWriter, DestructorWritesWhatIsPending) {
  TempFile file;
  constexpr int kLines = 100000;
  {
    AccessLogWriter writer(file.fd());
    for (int i = 0; i < kLines; ++i) writer.append("line " + std::to_string(i) + "\n");
  }
  auto lines = file.lines();
  ASSERT_EQ(lines.size(), static_cast<std::size_t>(kLines));
  EXPECT_EQ(lines.back(), "line " + std::to_string(kLines - 1));
}

TEST(AccessLogWriter, FlushWaitsForEveryLineAppendedBefore) {
  TempFile file;
  AccessLogWriter writer(file.fd());
  for (int round = 1; round <= 50; ++round) {
    writer.append("round " + std::to_string(round) + "\n");
    writer.flush();
    ASSERT_EQ(file.lines().size(), static_cast<std::size_t>(round));
  }
}

// Lines appended while the writer gathers go out in one write().
TEST(AccessLogWriter, GathersLinesIntoOneWrite) {
  TempFile file;
  AccessLogWriter writer(file.fd(), 1 << 20, std::chrono::hours(1));
  for (int i = 0; i < 1000; ++i) writer.append("line " + std::to_string(i) + "\n");
  writer.flush();  // ends the gathering at once
  EXPECT_EQ(writer.writes(), 1u);
  EXPECT_EQ(file.lines().size(), 1000u);
}

// A half-full buffer is written without waiting for the gathering to end.
TEST(AccessLogWriter, HalfFullBufferIsWrittenAtOnce) {
  TempFile file;
  AccessLogWriter writer(file.fd(), 1000, std::chrono::hours(1));
  for (int i = 0; i < 60; ++i) writer.append("0123456789\n");  // 660 bytes
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (writer.writes() == 0 && std::chrono::steady_clock::now() < deadline)
    std::this_thread::yield();
  ASSERT_GE(writer.writes(), 1u);
  EXPECT_GE(file.lines().size(), 46u);  // at least the lines that made it half full
}

}  // namespace
