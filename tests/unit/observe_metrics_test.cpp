#include <gtest/gtest.h>

#include <map>
#include <regex>
#include <sstream>
#include <string>

#include "keygate/observe/metrics.hpp"
#include "keygate/observe/process_metrics.hpp"

using namespace keygate;

namespace {
// sample line ("name{labels}") -> value
std::map<std::string, std::string> samples(const std::string& text) {
  std::map<std::string, std::string> out;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty() || line[0] == '#') continue;
    auto sp = line.rfind(' ');
    out[line.substr(0, sp)] = line.substr(sp + 1);
  }
  return out;
}
std::map<std::string, std::string> types(const std::string& text) {
  std::map<std::string, std::string> out;
  std::regex re("^# TYPE (\\S+) (\\S+)$");
  std::istringstream in(text);
  std::string line;
  std::smatch m;
  while (std::getline(in, line))
    if (std::regex_match(line, m, re)) out[m[1]] = m[2];
  return out;
}
}  // namespace

TEST(Metrics, EveryKnownSeriesIsThereAtZeroFromTheStart) {
  Metrics m;
  auto s = samples(m.render({}));
  for (const char* cls : {"1xx", "2xx", "3xx", "4xx", "5xx"})
    for (auto reason : Metrics::kReasons)
      EXPECT_EQ(s[std::string("keygate_requests_total{class=\"") + cls + "\",reason=\"" +
                  std::string(reason) + "\"}"],
                "0")
          << cls << " " << reason;
  for (auto kind : Metrics::kUpstreamKinds)
    EXPECT_EQ(s["keygate_upstream_errors_total{kind=\"" + std::string(kind) + "\"}"], "0");
  EXPECT_EQ(s["keygate_auth_failures_total{reason=\"revoked\"}"], "0");
  EXPECT_EQ(s["keygate_config_reloads_total{result=\"success\"}"], "0");
  EXPECT_EQ(s["keygate_config_reloads_total{result=\"failure\"}"], "0");
  EXPECT_EQ(s["keygate_rate_limited_total"], "0");
  EXPECT_EQ(s["keygate_build_info{version=\"" KEYGATE_VERSION "\"}"], "1");
}

TEST(Metrics, CountersEndInTotalAndGaugesNever) {
  Metrics m;
  Metrics::Gauges g;
  g.process = ProcessStats{1.5, 4096, 8192, 1.7e9, 7, 1024};
  m.tls_certificate_expiry(1'900'000'000);
  for (const auto& [name, type] : types(m.render(g))) {
    if (type == "counter") {
      EXPECT_TRUE(name.ends_with("_total")) << name;
    }
    if (type == "gauge") {
      EXPECT_FALSE(name.ends_with("_total")) << name;
    }
  }
  auto t = types(m.render(g));
  EXPECT_EQ(t["keygate_keys_loaded"], "gauge");
  EXPECT_EQ(t["keygate_store_queries_total"], "counter");
  EXPECT_EQ(t["process_cpu_seconds_total"], "counter");
  EXPECT_EQ(t.count("keygate_keys_total"), 0u);
  auto s = samples(m.render(g));
  EXPECT_EQ(s["process_cpu_seconds_total"], "1.5");
  EXPECT_EQ(s["process_resident_memory_bytes"], "4096");
  EXPECT_EQ(s["process_max_fds"], "1024");
  EXPECT_EQ(s["keygate_tls_certificate_expiry_timestamp_seconds"], "1900000000");
}

TEST(Metrics, NoCertificateNoExpirySeries) {
  Metrics m;
  EXPECT_EQ(m.render({}).find("keygate_tls_certificate_expiry"), std::string::npos);
}

TEST(Metrics, HistogramCoversTheUpstreamTimeoutAndIsCumulative) {
  Metrics m;
  m.upstream_seconds.observe(0.0001);
  m.upstream_seconds.observe(29);
  m.upstream_seconds.observe(45);
  m.upstream_seconds.observe(120);
  auto s = samples(m.render({}));
  EXPECT_EQ(s["keygate_upstream_duration_seconds_bucket{le=\"0.0005\"}"], "1");
  EXPECT_EQ(s["keygate_upstream_duration_seconds_bucket{le=\"10\"}"], "1");
  EXPECT_EQ(s["keygate_upstream_duration_seconds_bucket{le=\"30\"}"], "2");
  EXPECT_EQ(s["keygate_upstream_duration_seconds_bucket{le=\"60\"}"], "3");
  EXPECT_EQ(s["keygate_upstream_duration_seconds_bucket{le=\"+Inf\"}"], "4");
  EXPECT_EQ(s["keygate_upstream_duration_seconds_count"], "4");
  EXPECT_EQ(s["keygate_upstream_duration_seconds_sum"], "194.0001");
}

TEST(Metrics, ReloadsAreCountedByResult) {
  Metrics m;
  m.config_adopted(1, 100);  // the start is not a reload
  m.config_reload_failed();
  m.config_adopted(2, 200);
  m.config_adopted(3, 300);
  m.config_reload_failed();  // e.g. a certificate that does not load: the reload is refused
  auto s = samples(m.render({}));
  EXPECT_EQ(s["keygate_config_reloads_total{result=\"success\"}"], "2");
  EXPECT_EQ(s["keygate_config_reloads_total{result=\"failure\"}"], "2");
  EXPECT_EQ(s["keygate_config_generation"], "3");
  EXPECT_EQ(s["keygate_config_last_reload_successful"], "0");
  EXPECT_EQ(s["keygate_config_last_reload_success_timestamp_seconds"], "300");
}

TEST(Metrics, RequestsCountByClassAndReason) {
  Metrics m;
  m.count_request(401, "revoked");
  m.count_request(429, "rate_limit");
  m.count_request(204, "");
  m.count_request(503, "something new");
  auto s = samples(m.render({}));
  EXPECT_EQ(s["keygate_requests_total{class=\"4xx\",reason=\"revoked\"}"], "1");
  EXPECT_EQ(s["keygate_auth_failures_total{reason=\"revoked\"}"], "1");
  EXPECT_EQ(s["keygate_rate_limited_total"], "1");
  EXPECT_EQ(s["keygate_requests_total{class=\"2xx\",reason=\"none\"}"], "1");
  EXPECT_EQ(s["keygate_requests_total{class=\"5xx\",reason=\"other\"}"], "1");
}

TEST(ProcessStats, ParsesProcSelfStat) {
  // comm with a space and a parenthesis; utime 250, stime 50 ticks; starttime
  // 1000 ticks after boot; vsize 123456789; rss 300 pages.
  std::string stat =
      "4242 (key gate) x) S 1 4242 4242 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 3 0 1000 "
      "123456789 300 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0\n";
  auto p = parse_proc_stat(stat, 1'700'000'000, 100, 4096);
  ASSERT_TRUE(p);
  EXPECT_DOUBLE_EQ(p->cpu_seconds, 3.0);
  EXPECT_EQ(p->virtual_bytes, 123456789);
  EXPECT_EQ(p->resident_bytes, 300 * 4096);
  EXPECT_DOUBLE_EQ(p->start_time_seconds, 1'700'000'010.0);
  EXPECT_FALSE(parse_proc_stat("garbage", 0, 100, 4096));
  EXPECT_FALSE(parse_proc_stat("1 (x) S 1 2", 0, 100, 4096));
}

TEST(ProcessStats, ReadsThisProcess) {
  auto p = read_process_stats();
  ASSERT_TRUE(p);
  EXPECT_GT(p->resident_bytes, 0);
  EXPECT_GT(p->open_fds, 2);
  EXPECT_GT(p->max_fds, 0);
  EXPECT_GT(p->start_time_seconds, 1.6e9);
}
