// StoreWorker::stop() must return even when one of its periodic timers has
// expired but not yet run when the stop request is queued: that handler then
// runs after the timers were cancelled, and used to re-arm itself, so the
// worker's io_context never ran out of work and `serve` hung at shutdown
// (seen as a rare drain that never ended).
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <thread>

#include "keygate/keys/key_format.hpp"
#include "keygate/keys/sqlite_store.hpp"
#include "server/store_worker.hpp"

using namespace keygate;
using namespace std::chrono_literals;

namespace {
struct TempDb {
  std::filesystem::path dir = std::filesystem::temp_directory_path() /
                              ("kg-worker-" + std::to_string(::getpid()) + "-" + random_base62(8));
  TempDb() { std::filesystem::create_directories(dir); }
  ~TempDb() { std::filesystem::remove_all(dir); }
  std::string path() const { return (dir / "k.db").string(); }
};
}  // namespace

TEST(StoreWorker, StopReturnsWhenATimerExpiredBehindTheStopRequest) {
  TempDb db;
  auto store = std::make_unique<SqliteStore>(db.path());
  KeyIndex index;
  SteadyClock clock;
  RateLimiter limiter(clock);
  GatewayState state;
  const Config config;
  StoreWorker worker(std::move(store), std::make_shared<const Runtime>(config), index, limiter,
                     state);
  ASSERT_TRUE(worker.initial_sync());
  worker.start();
  // Keep the worker thread busy past its 200 ms refresh period, and queue the
  // stop request meanwhile: the refresh timer expires behind it.
  std::atomic<bool> busy{false};
  net::asio::post(worker.executor(), [&] {
    busy = true;
    std::this_thread::sleep_for(600ms);
  });
  while (!busy) std::this_thread::yield();
  std::atomic<bool> stopped{false};
  std::thread stopper([&] {
    worker.stop();
    stopped = true;
  });
  auto deadline = std::chrono::steady_clock::now() + 20s;
  while (!stopped && std::chrono::steady_clock::now() < deadline) std::this_thread::sleep_for(10ms);
  EXPECT_TRUE(stopped) << "StoreWorker::stop() hung: a timer re-armed itself after the stop";
  if (!stopped) {  // unstick the worker so the test can end
    auto& ctx = net::asio::query(worker.executor(), net::asio::execution::context);
    static_cast<net::asio::io_context&>(ctx).stop();
  }
  stopper.join();
}
