#include "server/store_worker.hpp"

#include <cmath>

#include "keygate/observe/log.hpp"

namespace keygate {

using namespace net;

namespace {
constexpr auto kFlushEvery = std::chrono::seconds(2);
// Credits and usage: at most this much spending is lost when the process is
// killed without a chance to flush (README "Credits").
constexpr auto kMeterFlushEvery = std::chrono::seconds(1);
constexpr auto kPruneEvery = std::chrono::hours(1);
// Usage rows kept for a retry while the store refuses writes; beyond, dropped.
constexpr size_t kMaxUnwrittenUsage = 1'000'000;
constexpr auto kEvictEvery = std::chrono::seconds(30);
constexpr auto kBucketIdle = std::chrono::seconds(60);
// Reconnect back-off while the store is unreachable: doubles up to the cap.
constexpr auto kFirstRetry = std::chrono::milliseconds(200);
constexpr auto kMaxRetry = std::chrono::seconds(5);

std::int64_t steady_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}
}  // namespace

StoreWorker::StoreWorker(std::unique_ptr<KeyStore> store, RuntimePtr rt, KeyIndex& index,
                         RateLimiter& limiter, GatewayState& state)
    : store_(std::move(store)),
      remote_(store_->remote()),
      feed_(store_->change_feed()),
      index_(index),
      limiter_(limiter),
      state_(state),
      guard_(ioc_.get_executor()),
      sync_(ioc_),
      flush_(ioc_),
      evict_(ioc_),
      meter_flush_(ioc_),
      prune_(ioc_),
      backoff_(kFirstRetry),
      in_sync_at_ns_(steady_ns()) {
  set_runtime(std::move(rt));
  ioc_.poll();  // apply the runtime now, before any request
}

StoreWorker::~StoreWorker() {
  stop();
  unwatch();
}

void StoreWorker::set_runtime(RuntimePtr rt, std::function<void()> adopted) {
  asio::post(ioc_, [this, rt = std::move(rt), adopted = std::move(adopted)] {
    rt_ = rt;
    service_ = std::make_unique<KeyService>(*store_, rt_->config);
    // Changes made through this process apply to the very next request. They
    // do not advance the applied sequence: another replica's write with a
    // smaller sequence may still be unread, and the catch-up reads it.
    service_->on_change([this](const KeyRecord& r) { index_.upsert(r); });
    service_->on_audit([](const AuditEvent& e) { log::audit(e); });
    if (adopted) adopted();
  });
}

bool StoreWorker::initial_sync() {
  auto t0 = std::chrono::steady_clock::now();
  try {
    open_feed();
    double ms =
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    log::info("keys loaded", {{"count", index_.size()},
                              {"ms", std::round(ms)},
                              {"store", store_->describe()},
                              {"sequence", index_.applied_seq.load()}});
    return true;
  } catch (const std::exception& e) {
    unwatch();
    feed_->close();
    feed_open_ = false;
    state_.store_ok = false;
    log::error("store unusable", {{"error", e.what()}, {"store", store_->describe()}});
    return false;
  }
}

void StoreWorker::start() {
  schedule_sync(feed_open_ ? feed_->poll_interval() : backoff_);
  schedule_flush();
  schedule_evict();
  schedule_meter_flush();
  schedule_prune(std::chrono::milliseconds(0));
  thread_ = std::thread([this] { ioc_.run(); });
}

void StoreWorker::stop() {
  if (!thread_.joinable()) return;
  asio::post(ioc_, [this] {
    sync_.cancel();
    flush_.cancel();
    evict_.cancel();
    meter_flush_.cancel();
    prune_.cancel();
    unwatch();
    flush_usage();
    flush_meters();
    guard_.reset();
    // A timer that expired just before the cancels above still runs its
    // handler (with success) and re-arms itself: stop the loop outright.
    ioc_.stop();
  });
  thread_.join();
}

void StoreWorker::record(UsageEvent e) {
  std::lock_guard lock(usage_mu_);  // taken at most once per key per 5 s
  usage_.push_back(std::move(e));
}

// Subscribe first, then read: a change committed in between is both announced
// and read, never neither.
void StoreWorker::open_feed() {
  int fd = feed_->open();
  feed_open_ = true;
  if (fd >= 0) watch(fd);
  if (!migrated_) {
    for (const auto& m : store_->migrate()) log::info("applied migration", {{"name", m}});
    migrated_ = true;
  }
  catch_up();
  in_sync();
}

void StoreWorker::schedule_sync(std::chrono::milliseconds after) {
  sync_.expires_after(after);
  sync_.async_wait([this](boost::system::error_code ec) {
    if (ec) return;
    sync();
  });
}

// The timer: reconnect while the feed is closed, else the safety-net poll.
void StoreWorker::sync() {
  try {
    if (!feed_open_) {
      open_feed();
      log::info("store reachable again; caught up",
                {{"store", store_->describe()}, {"sequence", index_.applied_seq.load()}});
    } else if (feed_->latest() > index_.applied_seq) {
      catch_up();
      in_sync();
    } else {
      in_sync();
    }
    schedule_sync(feed_->poll_interval());
  } catch (const std::exception& e) {
    feed_failed(e);
  }
}

void StoreWorker::watch(int fd) {
  socket_.emplace(ioc_, fd);
  wait_readable();
}

// A notification (or the server closing the connection) makes the socket readable.
void StoreWorker::wait_readable() {
  socket_->async_wait(asio::posix::stream_descriptor::wait_read,
                      [this](boost::system::error_code ec) {
                        if (ec == asio::error::operation_aborted || !socket_) return;
                        try {
                          if (ec) throw StoreError("store: " + ec.message());
                          if (feed_->consume() > index_.applied_seq) catch_up();
                          in_sync();
                          wait_readable();
                        } catch (const std::exception& e) {
                          feed_failed(e);
                        }
                      });
}

void StoreWorker::unwatch() {
  if (!socket_) return;
  boost::system::error_code ignored;
  socket_->cancel(ignored);
  socket_->release();  // libpq closes it
  socket_.reset();
}

// Reads every row changed after the applied sequence, in change order.
void StoreWorker::catch_up() {
  size_t n = 0;
  store_->for_each_changed_batch(index_.applied_seq, [&](std::span<const KeyRecord> rows) {
    index_.apply(rows);
    n += rows.size();
  });
  if (n)
    log::debug("applied key changes from the store",
               {{"count", n}, {"sequence", index_.applied_seq.load()}});
}

void StoreWorker::in_sync() {
  in_sync_at_ns_ = steady_ns();
  backoff_ = kFirstRetry;
  store_up_ = true;
  state_.store_ok = true;
}

void StoreWorker::feed_failed(const std::exception& e) {
  unwatch();
  feed_->close();
  feed_open_ = false;
  if (store_up_.exchange(false))
    log::error(remote_ ? "store unreachable; serving the keys in memory, retrying"
                       : "store unusable, retrying",
               {{"error", e.what()}, {"store", store_->describe()}});
  // A shared store that is down does not take replicas out of the load
  // balancer: they keep serving the keys they know (SPEC §8).
  if (!remote_) state_.store_ok = false;
  schedule_sync(backoff_);
  backoff_ = std::min<std::chrono::milliseconds>(backoff_ * 2, kMaxRetry);
}

double StoreWorker::lag_seconds() const {
  std::int64_t at = in_sync_at_ns_.load();
  if (at == 0) return 0;
  return static_cast<double>(steady_ns() - at) / 1e9;
}

void StoreWorker::schedule_flush() {
  flush_.expires_after(kFlushEvery);
  flush_.async_wait([this](boost::system::error_code ec) {
    if (ec) return;
    flush_usage();
    schedule_flush();
  });
}

void StoreWorker::schedule_evict() {
  evict_.expires_after(kEvictEvery);
  evict_.async_wait([this](boost::system::error_code ec) {
    if (ec) return;
    size_t n = limiter_.evict_idle(kBucketIdle);
    if (n) log::debug("evicted idle rate-limit buckets", {{"count", n}});
    schedule_evict();
  });
}

void StoreWorker::flush_usage() {
  std::vector<UsageEvent> batch;
  {
    std::lock_guard lock(usage_mu_);
    batch.swap(usage_);
  }
  if (batch.empty()) return;
  try {
    store_->record_usage(batch);
  } catch (const std::exception& e) {
    // Last-used times are best effort: while the store is down they are dropped.
    if (store_up_)
      log::error("writing last-used times failed", {{"error", e.what()}, {"count", batch.size()}});
  }
}

void StoreWorker::schedule_meter_flush() {
  meter_flush_.expires_after(kMeterFlushEvery);
  meter_flush_.async_wait([this](boost::system::error_code ec) {
    if (ec) return;
    flush_meters();
    schedule_meter_flush();
  });
}

void StoreWorker::flush_meters() {
  MeterBoard& board = index_.meters();
  MeterBoard::Batch batch = board.collect();
  for (const auto& u : batch.usage) {
    auto& sum = unwritten_usage_[{u.key_id, u.hour}];
    for (size_t i = 0; i < sum.size(); ++i) sum[i] += u.counts[i];
  }
  if (batch.credits.empty() && unwritten_usage_.empty()) return;
  std::vector<CreditDelta> deltas;
  for (const auto& f : batch.credits) deltas.push_back(f.delta);
  std::vector<UsageCounts> usage;
  for (const auto& [at, counts] : unwritten_usage_) usage.push_back({at.first, at.second, counts});
  std::vector<std::optional<std::int64_t>> stored;
  try {
    store_->transaction([&] {
      stored = store_->apply_credit_deltas(deltas);
      store_->add_usage_counts(usage);
    });
  } catch (const std::exception& e) {
    for (const auto& f : batch.credits) board.restore(f);  // spent, so written with the next
    if (unwritten_usage_.size() > kMaxUnwrittenUsage) {
      log::error("dropping usage counts the store did not take",
                 {{"rows", unwritten_usage_.size()}});
      unwritten_usage_.clear();
    }
    if (store_up_)
      log::error("writing credits and usage failed; retrying",
                 {{"error", e.what()}, {"keys", batch.credits.size()}});
    return;
  }
  unwritten_usage_.clear();
  for (size_t i = 0; i < batch.credits.size() && i < stored.size(); ++i)
    if (stored[i]) board.resync(batch.credits[i], *stored[i]);
}

void StoreWorker::schedule_prune(std::chrono::milliseconds after) {
  prune_.expires_after(after);
  prune_.async_wait([this](boost::system::error_code ec) {
    if (ec) return;
    constexpr UnixMillis kHour = 3'600'000;
    const UnixMillis before = (now_millis() - rt_->config.usage.retention.count()) / kHour * kHour;
    try {
      if (auto n = store_->prune_usage(before))
        log::info("pruned usage past its retention",
                  {{"rows", n}, {"before", format_time(before)}});
    } catch (const std::exception& e) {
      if (store_up_) log::warn("pruning usage failed", {{"error", e.what()}});
    }
    schedule_prune(kPruneEvery);
  });
}

AdminResponse StoreWorker::admin(const AdminRequest& req, const Metrics& metrics) {
  // Balances and usage as of now: what is spent and counted in memory first.
  if (req.target.starts_with("/v1/api-keys")) flush_meters();
  AdminDeps deps{*store_, *service_, index_, metrics, *rt_, [&] {
                   Metrics::Gauges g;
                   g.keys_loaded = static_cast<std::int64_t>(index_.size());
                   g.keys_active = static_cast<std::int64_t>(index_.count_active(now_millis()));
                   g.buckets = static_cast<std::int64_t>(limiter_.size());
                   g.store_queries = store_->key_reads();
                   g.store_up = store_up_.load() ? 1 : 0;
                   g.store_lag_seconds = lag_seconds();
                   g.store_applied_sequence = index_.applied_seq.load();
                   g.process = read_process_stats();
                   return g;
                 }};
  return handle_admin(req, deps);
}

}  // namespace keygate
