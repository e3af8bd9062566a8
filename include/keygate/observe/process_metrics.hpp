#pragma once
// The process metrics every Prometheus client exports (process_cpu_seconds_total,
// process_resident_memory_bytes, …), read from /proc/self at scrape time.
#include <cstdint>
#include <optional>
#include <string_view>

namespace keygate {

struct ProcessStats {
  double cpu_seconds = 0;  // user + system
  std::int64_t resident_bytes = 0;
  std::int64_t virtual_bytes = 0;
  double start_time_seconds = 0;  // Unix time
  std::int64_t open_fds = 0;
  std::int64_t max_fds = 0;  // soft RLIMIT_NOFILE
};

// Fills cpu, memory and start time from the text of /proc/self/stat; nullopt
// when it is not that format. boot_time: "btime" of /proc/stat.
std::optional<ProcessStats> parse_proc_stat(std::string_view stat, std::int64_t boot_time_seconds,
                                            long ticks_per_second, long page_bytes);

// Everything, for this process; nullopt where /proc is missing (not Linux).
std::optional<ProcessStats> read_process_stats();

}  // namespace keygate
