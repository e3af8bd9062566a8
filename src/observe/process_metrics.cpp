#include "keygate/observe/process_metrics.hpp"

#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <limits>
#include <sstream>
#include <string>
#include <vector>

namespace keygate {

namespace {

std::optional<std::int64_t> to_int(std::string_view s) {
  std::int64_t v = 0;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc{} || p != s.data() + s.size()) return std::nullopt;
  return v;
}

std::string read_file(const char* path) {
  std::ifstream f(path);
  return {std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>()};
}

std::int64_t boot_time() {
  std::istringstream in(read_file("/proc/stat"));
  std::string word;
  std::int64_t v = 0;
  while (in >> word)
    if (word == "btime" && in >> v) return v;
  return 0;
}

}  // namespace

std::optional<ProcessStats> parse_proc_stat(std::string_view stat, std::int64_t boot_time_seconds,
                                            long ticks_per_second, long page_bytes) {
  // "pid (comm) state ppid …": comm may hold spaces and parentheses, so the
  // fields are counted from the last ')'. After it comes field 3 (state).
  auto close = stat.rfind(')');
  if (close == std::string_view::npos || ticks_per_second <= 0) return std::nullopt;
  std::vector<std::string_view> f;
  std::string_view rest = stat.substr(close + 1);
  while (!rest.empty()) {
    auto start = rest.find_first_not_of(" \n");
    if (start == std::string_view::npos) break;
    rest.remove_prefix(start);
    auto end = rest.find_first_of(" \n");
    f.push_back(rest.substr(0, end));
    rest.remove_prefix(end == std::string_view::npos ? rest.size() : end);
  }
  auto field = [&](size_t n) { return n - 3 < f.size() ? to_int(f[n - 3]) : std::nullopt; };
  auto utime = field(14), stime = field(15), start = field(22), vsize = field(23), rss = field(24);
  if (!utime || !stime || !start || !vsize || !rss) return std::nullopt;
  const auto ticks = static_cast<double>(ticks_per_second);
  ProcessStats s;
  s.cpu_seconds = static_cast<double>(*utime + *stime) / ticks;
  s.virtual_bytes = *vsize;
  s.resident_bytes = *rss * page_bytes;
  s.start_time_seconds =
      static_cast<double>(boot_time_seconds) + static_cast<double>(*start) / ticks;
  return s;
}

std::optional<ProcessStats> read_process_stats() {
  auto s = parse_proc_stat(read_file("/proc/self/stat"), boot_time(), sysconf(_SC_CLK_TCK),
                           sysconf(_SC_PAGESIZE));
  if (!s) return std::nullopt;
  std::error_code ec;
  for (std::filesystem::directory_iterator it("/proc/self/fd", ec), end; !ec && it != end;
       it.increment(ec))
    ++s->open_fds;
  rlimit lim{};
  if (getrlimit(RLIMIT_NOFILE, &lim) == 0)
    s->max_fds = static_cast<std::int64_t>(
        std::min<rlim_t>(lim.rlim_cur, std::numeric_limits<std::int64_t>::max()));
  return s;
}

}  // namespace keygate
