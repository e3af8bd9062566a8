#pragma once
// The one thread that touches the store while serving: admin API handlers, the
// change feed that keeps the in-memory index current with other processes'
// writes (SQLite: PRAGMA data_version polling; PostgreSQL: LISTEN/NOTIFY, a
// catch-up on every notification and reconnect, and a safety-net poll),
// batched last-used writes, bucket eviction, and the key meters: credits spent
// and usage counted on the request path, written in one transaction a second
// (kMeterFlushEvery), and usage older than usage.retention pruned.
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
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

  // Before start(), on the calling thread: subscribe to changes, apply pending
  // migrations, load every key. False (logged) when the store is unusable;
  // then /ready answers 503 and the worker keeps trying once started.
  bool initial_sync();
  void start();
  void stop();  // flushes pending usage, then joins
  net::asio::any_io_executor executor() { return ioc_.get_executor(); }
  // `adopted` runs on the worker thread once the runtime is in force there.
  void set_runtime(RuntimePtr rt, std::function<void()> adopted = {});
  void record(UsageEvent e) override;
  bool remote_store() const { return remote_; }

  // Only on the worker thread:
  AdminResponse admin(const AdminRequest& req, const Metrics& metrics);

 private:
  void schedule_sync(std::chrono::milliseconds after);
  void sync();
  void open_feed();
  void watch(int fd);
  void wait_readable();
  void unwatch();
  void catch_up();
  void in_sync();
  void feed_failed(const std::exception& e);
  void schedule_flush();
  void schedule_evict();
  void flush_usage();
  void schedule_meter_flush();
  void flush_meters();
  void schedule_prune(std::chrono::milliseconds after);
  double lag_seconds() const;

  std::unique_ptr<KeyStore> store_;
  const bool remote_;
  std::unique_ptr<ChangeFeed> feed_;  // refers to *store_
  RuntimePtr rt_;
  std::unique_ptr<KeyService> service_;
  KeyIndex& index_;
  RateLimiter& limiter_;
  GatewayState& state_;
  net::asio::io_context ioc_{1};
  net::asio::executor_work_guard<net::asio::io_context::executor_type> guard_;
  net::asio::steady_timer sync_, flush_, evict_, meter_flush_, prune_;
  // The feed's socket (PostgreSQL); libpq owns the descriptor, so it is released, never closed
  // here.
  std::optional<net::asio::posix::stream_descriptor> socket_;
  bool feed_open_ = false;
  bool migrated_ = false;
  std::chrono::milliseconds backoff_;
  std::thread thread_;
  std::atomic<bool> store_up_{false};
  std::atomic<std::int64_t> in_sync_at_ns_{0};  // steady clock
  std::mutex usage_mu_;
  std::vector<UsageEvent> usage_;
  // Usage counts a failed flush could not write, by (key, hour): sent again
  // with the next (credits go back into their accounts instead).
  std::map<std::pair<std::string, UnixMillis>, std::array<std::int64_t, 4>> unwritten_usage_;
};

}  // namespace keygate
