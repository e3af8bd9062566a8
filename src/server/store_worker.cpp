#include "server/store_worker.hpp"

#include "keygate/observe/log.hpp"

namespace keygate {

using namespace net;

namespace {
constexpr auto kPollEvery = std::chrono::milliseconds(200);
constexpr auto kFlushEvery = std::chrono::seconds(2);
constexpr auto kEvictEvery = std::chrono::seconds(30);
constexpr auto kBucketIdle = std::chrono::seconds(60);
}  // namespace

StoreWorker::StoreWorker(std::unique_ptr<KeyStore> store, RuntimePtr rt, KeyIndex& index,
                         RateLimiter& limiter, GatewayState& state)
    : store_(std::move(store)),
      index_(index),
      limiter_(limiter),
      state_(state),
      guard_(ioc_.get_executor()),
      poll_(ioc_),
      flush_(ioc_),
      evict_(ioc_) {
  set_runtime(std::move(rt));
  ioc_.poll();  // apply the runtime now, before any request
}

StoreWorker::~StoreWorker() {
  stop();
}

void StoreWorker::set_runtime(RuntimePtr rt, std::function<void()> adopted) {
  asio::post(ioc_, [this, rt = std::move(rt), adopted = std::move(adopted)] {
    rt_ = rt;
    service_ = std::make_unique<KeyService>(*store_, rt_->config);
    // Changes made through this process apply to the very next request.
    service_->on_change([this](const KeyRecord& r) { index_.apply(r); });
    if (adopted) adopted();
  });
}

void StoreWorker::start() {
  schedule_poll();
  schedule_flush();
  schedule_evict();
  thread_ = std::thread([this] { ioc_.run(); });
}

void StoreWorker::stop() {
  if (!thread_.joinable()) return;
  asio::post(ioc_, [this] {
    poll_.cancel();
    flush_.cancel();
    evict_.cancel();
    flush_usage();
    guard_.reset();
  });
  thread_.join();
}

void StoreWorker::record(UsageEvent e) {
  std::lock_guard lock(usage_mu_);  // taken at most once per key per 5 s
  usage_.push_back(std::move(e));
}

void StoreWorker::schedule_poll() {
  poll_.expires_after(kPollEvery);
  poll_.async_wait([this](boost::system::error_code ec) {
    if (ec) return;
    refresh();
    schedule_poll();
  });
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

// Another process (the CLI) committed: read only the rows changed since.
void StoreWorker::refresh() {
  try {
    std::int64_t dv = store_->data_version();
    state_.store_ok = true;
    if (dv == data_version_) return;
    data_version_ = dv;
    size_t n = 0;
    ++key_reads_;
    store_->for_each_changed(index_.applied_seq, [&](const KeyRecord& r) {
      index_.apply(r);
      ++n;
    });
    if (n) log::info("applied key changes from the store", {{"count", n}});
  } catch (const std::exception& e) {
    state_.store_ok = false;
    log::error("store refresh failed", {{"error", e.what()}});
  }
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
    log::error("writing last-used times failed", {{"error", e.what()}, {"count", batch.size()}});
  }
}

AdminResponse StoreWorker::admin(const AdminRequest& req, const Metrics& metrics) {
  if (req.target.starts_with("/v1/api-keys") && req.method == "GET") ++key_reads_;
  AdminDeps deps{*store_, *service_, index_, metrics, *rt_, [&] {
                   Metrics::Gauges g;
                   g.keys_total = static_cast<std::int64_t>(index_.size());
                   g.keys_active = static_cast<std::int64_t>(index_.count_active(now_millis()));
                   g.buckets = static_cast<std::int64_t>(limiter_.size());
                   g.store_queries = key_reads_.load();
                   return g;
                 }};
  return handle_admin(req, deps);
}

}  // namespace keygate
