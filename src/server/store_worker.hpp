#pragma once
// The one thread that touches SQLite while serving: admin API handlers, the
// refresh of the in-memory index from other processes' changes (PRAGMA
// data_version, every 200 ms), batched last-used writes, bucket eviction.
#include <functional>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "keygate/admin/admin_api.hpp"
#include "keygate/keys/key_service.hpp"
#include "keygate/proxy/pipeline.hpp"
#include "server/asio.hpp"

namespace keygate {

class StoreWorker final : public UsageSink {
 public:
  StoreWorker(std::unique_ptr<KeyStore> store, RuntimePtr rt, KeyIndex& index, RateLimiter& limiter,
              GatewayState& state);
  ~StoreWorker() override;

  void start();
  void stop();  // flushes pending usage, then joins
  net::asio::any_io_executor executor() { return ioc_.get_executor(); }
  // `adopted` runs on the worker thread once the runtime is in force there.
  void set_runtime(RuntimePtr rt, std::function<void()> adopted = {});
  void record(UsageEvent e) override;

  // Only on the worker thread:
  AdminResponse admin(const AdminRequest& req, const Metrics& metrics);
  std::int64_t key_reads() const { return key_reads_.load(); }

 private:
  void schedule_poll();
  void schedule_flush();
  void schedule_evict();
  void refresh();
  void flush_usage();

  std::unique_ptr<KeyStore> store_;
  RuntimePtr rt_;
  std::unique_ptr<KeyService> service_;
  KeyIndex& index_;
  RateLimiter& limiter_;
  GatewayState& state_;
  net::asio::io_context ioc_{1};
  net::asio::executor_work_guard<net::asio::io_context::executor_type> guard_;
  net::asio::steady_timer poll_, flush_, evict_;
  std::thread thread_;
  std::int64_t data_version_ = -1;
  std::atomic<std::int64_t> key_reads_{0};
  std::mutex usage_mu_;
  std::vector<UsageEvent> usage_;
};

}  // namespace keygate
