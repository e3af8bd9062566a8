#include "keygate/server/gateway.hpp"

#include <chrono>
#include <csignal>
#include <cstdint>
#include <functional>
#include <thread>

#include "keygate/config/loader.hpp"
#include "keygate/observe/log.hpp"
#include "keygate/ratelimit/redis_backend.hpp"
#include "server/admin_session.hpp"
#include "server/store_worker.hpp"
#include "server/tls.hpp"
#include "server/worker.hpp"

namespace keygate {

using namespace net;

namespace {

using reuse_port = asio::detail::socket_option::boolean<SOL_SOCKET, SO_REUSEPORT>;

tcp::endpoint resolve_listen(const HostPort& hp) {
  boost::system::error_code ec;
  auto addr = asio::ip::make_address(hp.host, ec);
  if (!ec) return {addr, hp.port};
  asio::io_context ioc;  // startup only: a blocking lookup is fine here
  tcp::resolver r(ioc);
  auto results = r.resolve(hp.host, std::to_string(hp.port));
  return *results.begin();
}

std::unique_ptr<tcp::acceptor> open_acceptor(asio::io_context& ioc, const tcp::endpoint& ep,
                                             bool share_port) {
  auto a = std::make_unique<tcp::acceptor>(ioc);
  a->open(ep.protocol());
  a->set_option(tcp::acceptor::reuse_address(true));
  if (share_port) a->set_option(reuse_port(true));
  a->bind(ep);
  a->listen(asio::socket_base::max_listen_connections);
  return a;
}

// Out of descriptors, accept fails again after every 50 ms back-off: one line
// per failure flooded the log (~40 lines/s with two threads). The first failure
// is logged, then at most one line per 5 s with the count since the last line.
class AcceptFailureLog {
 public:
  explicit AcceptFailureLog(std::string_view msg) : msg_(msg) {}
  void failed(const boost::system::error_code& ec) {
    ++failures_;
    auto now = std::chrono::steady_clock::now();
    if (logged_ && now - last_ < std::chrono::seconds(5)) return;
    log::warn(msg_, {{"error", ec.message()}, {"failures", failures_}});
    failures_ = 0;
    last_ = now;
    logged_ = true;
  }

 private:
  std::string_view msg_;
  std::uint64_t failures_ = 0;
  bool logged_ = false;
  std::chrono::steady_clock::time_point last_;
};

awaitable<void> accept_proxy(tcp::acceptor& acceptor, Worker& w, Services& svc) {
  AcceptFailureLog failures("accept failed");
  for (;;) {
    auto [ec, socket] = co_await acceptor.async_accept(use_tuple);
    if (ec) {
      if (!acceptor.is_open() || ec == asio::error::operation_aborted) co_return;
      failures.failed(ec);
      asio::steady_timer t(w.ioc, std::chrono::milliseconds(50));  // e.g. out of descriptors
      co_await t.async_wait(use_tuple);
      continue;
    }
    if (static_cast<std::uint64_t>(svc.metrics.open_connections()) >=
        w.runtime->config.limits.max_connections) {
      boost::system::error_code ignored;
      socket.close(ignored);  // over max_connections: refuse at once
      continue;
    }
    asio::co_spawn(w.ioc, run_proxy_session(std::move(socket), w, svc), asio::detached);
  }
}

// The admin listener, or (metrics_only) the metrics.listen one.
awaitable<void> accept_admin(tcp::acceptor& acceptor, StoreWorker& store, const Metrics& metrics,
                             const GatewayState& state, bool metrics_only) {
  AcceptFailureLog failures(metrics_only ? "metrics accept failed" : "admin accept failed");
  for (;;) {
    auto [ec, socket] = co_await acceptor.async_accept(use_tuple);
    if (ec) {
      if (!acceptor.is_open() || ec == asio::error::operation_aborted) co_return;
      failures.failed(ec);
      // Out of descriptors (EMFILE) fails again at once: back off, don't spin.
      asio::steady_timer t(acceptor.get_executor(), std::chrono::milliseconds(50));
      co_await t.async_wait(use_tuple);
      continue;
    }
    asio::co_spawn(acceptor.get_executor(),
                   run_admin_session(std::move(socket), store, metrics, state, metrics_only),
                   asio::detached);
  }
}

// rate_limit.backend: redis: the backend of one I/O thread (its own pipelined
// connection), logging its connection events with the URL's password redacted.
std::unique_ptr<RedisBackend> make_redis_backend(asio::io_context& ioc, const RedisConfig& redis,
                                                 int thread, RateLimiter& local,
                                                 const Clock& clock) {
  RedisBackend::Settings s;
  s.redis = redis;
  s.on_event = [url = redis.redacted(), thread](std::string_view event, std::string_view detail) {
    if (event == "connected")
      log::info("redis connected", {{"redis", url}, {"thread", thread}});
    else
      log::warn("redis unreachable; rate_limit.redis.on_error applies until it is back",
                {{"redis", url}, {"thread", thread}, {"error", detail}});
  };
  return std::make_unique<RedisBackend>(ioc.get_executor(), std::move(s), local, clock);
}

Metrics::SharedLimits shared_limit_stats(const std::vector<RedisBackend*>& backends) {
  Metrics::SharedLimits m;
  for (const RedisBackend* b : backends) {
    RedisBackend::Stats st = b->stats();
    ++m.connections;
    m.connections_up += st.connected ? 1 : 0;
    m.round_trips += st.round_trips;
    m.errors += st.failures;
    m.breaker_opened += st.breaker_opened;
    m.shared += st.shared;
    m.cache += st.cache_denials;
    m.fallback += st.fallbacks;
    ++m.breakers[static_cast<size_t>(st.breaker)];
  }
  return m;
}

}  // namespace

int serve(Config config) {
  // SIGHUP is caught from before the first line is logged: one sent while the
  // store loads waits in the set and is a reload once serving (its default
  // action killed the process). SIGTERM and SIGINT keep theirs until the
  // listeners are open: there is nothing to drain, and a load of millions of
  // keys should not delay a stop.
  asio::io_context control;
  asio::signal_set signals(control, SIGHUP);
  log::setup(config.logging);
  // Short secrets are allowed (SPEC sets no minimum) but worth a warning.
  if (config.admin.enabled() && config.admin.token.size() < 16)
    log::warn("admin.token is shorter than 16 characters; use a long random token");
  if (config.keys.pepper && config.keys.pepper->size() < 16)
    log::warn("keys.pepper is shorter than 16 characters; use a long random pepper");
  // Signals are handled by asio on the main thread; block them in every other thread.
  sigset_t set;
  sigemptyset(&set);
  for (int s : {SIGINT, SIGTERM, SIGHUP}) sigaddset(&set, s);
  std::signal(SIGPIPE, SIG_IGN);

  KeyIndex index;
  std::unique_ptr<KeyStore> store;
  try {
    store = open_store(config);
  } catch (const std::exception& e) {
    log::error("store unusable", {{"error", e.what()}, {"store", config.store_sqlite}});
    return 1;
  }

  auto rt = std::make_shared<const Runtime>(config);
  SteadyClock clock;
  RateLimiter limiter(clock);
  GatewayState state;
  Metrics metrics;
  StoreWorker storew(std::move(store), rt, index, limiter, state);
  Services svc{index, limiter, storew, state, metrics, storew};
  if (!storew.initial_sync()) {
    // A local file that cannot be used is fatal. A shared PostgreSQL may come
    // back: serve (with no keys yet, /ready 503) and keep reconnecting.
    if (!storew.remote_store()) return 1;
    log::warn("starting without keys; /ready answers 503 until the store is reachable");
  }

  std::shared_ptr<asio::ssl::context> server_tls;
  if (config.tls.enabled()) {
    try {
      server_tls = make_server_tls(config.tls);
      metrics.tls_certificate_expiry(certificate_expiry(*server_tls));
    } catch (const std::exception& e) {
      log::error("cannot start TLS", {{"error", e.what()}});
      return 1;
    }
  }

  const int n = config.effective_threads();
  std::vector<std::unique_ptr<Worker>> workers;
  std::vector<std::unique_ptr<tcp::acceptor>> acceptors;
  std::vector<RedisBackend*> redis_backends;  // owned by the workers; empty with backend: local
  const bool shared_limits = config.rate_limit.backend == RateLimitConfig::Backend::redis;
  std::unique_ptr<tcp::acceptor> admin_acceptor;
  std::unique_ptr<tcp::acceptor> metrics_acceptor;
  try {
    tcp::endpoint ep = resolve_listen(config.listen);
    for (int i = 0; i < n; ++i) {
      workers.push_back(std::make_unique<Worker>(rt));
      if (shared_limits) {
        auto rb =
            make_redis_backend(workers.back()->ioc, config.rate_limit.redis, i, limiter, clock);
        redis_backends.push_back(rb.get());
        workers.back()->limits = std::move(rb);
      } else {
        workers.back()->limits = std::make_unique<LocalBackend>(limiter);
      }
      workers.back()->tls = server_tls;
      acceptors.push_back(open_acceptor(workers.back()->ioc, ep, true));
      if (i == 0) ep.port(acceptors[0]->local_endpoint().port());  // port 0: share the one picked
    }
    // From here a stop is a drain: caught before "listening" tells anyone so.
    signals.add(SIGINT);
    signals.add(SIGTERM);
    log::info("listening", {{"address", ep.address().to_string()},
                            {"port", ep.port()},
                            {"scheme", server_tls ? "https" : "http"},
                            {"threads", n},
                            {"upstream", config.upstream.url}});
    if (config.admin.enabled()) {
      auto aep = resolve_listen(config.admin.listen);
      admin_acceptor = open_acceptor(workers[0]->ioc, aep, false);
      log::info("admin API listening", {{"address", aep.address().to_string()},
                                        {"port", admin_acceptor->local_endpoint().port()}});
    } else {
      log::info("admin API off (admin.token is empty)");
    }
    if (config.metrics.listen) {
      auto mep = resolve_listen(*config.metrics.listen);
      metrics_acceptor = open_acceptor(workers[0]->ioc, mep, false);
      log::info("metrics listening", {{"address", mep.address().to_string()},
                                      {"port", metrics_acceptor->local_endpoint().port()}});
    }
  } catch (const std::exception& e) {
    log::error("cannot listen", {{"error", e.what()}});
    return 1;
  }

  for (int i = 0; i < n; ++i)
    asio::co_spawn(workers[i]->ioc, accept_proxy(*acceptors[i], *workers[i], svc), asio::detached);
  if (admin_acceptor)
    asio::co_spawn(workers[0]->ioc, accept_admin(*admin_acceptor, storew, metrics, state, false),
                   asio::detached);
  if (metrics_acceptor)
    asio::co_spawn(workers[0]->ioc, accept_admin(*metrics_acceptor, storew, metrics, state, true),
                   asio::detached);

  if (shared_limits) {
    log::info("rate limits shared on redis",
              {{"redis", config.rate_limit.redis.redacted()},
               {"timeout_ms", config.rate_limit.redis.timeout.count()},
               {"connections", redis_backends.size()}});
    metrics.set_shared_limits([&redis_backends] { return shared_limit_stats(redis_backends); });
    for (size_t i = 0; i < workers.size(); ++i)
      asio::post(workers[i]->ioc, [rb = redis_backends[i]] { rb->start(); });
  }

  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  storew.start();
  std::vector<std::thread> threads;
  std::vector<asio::executor_work_guard<asio::io_context::executor_type>> guards;
  for (auto& w : workers) {
    guards.push_back(asio::make_work_guard(w->ioc));
    threads.emplace_back([&ioc = w->ioc] { ioc.run(); });
  }
  pthread_sigmask(SIG_UNBLOCK, &set, nullptr);

  std::string config_path = config.source_path;
  std::int64_t config_generation = 1;
  metrics.config_adopted(config_generation, now_millis() / 1000);
  // SIGHUP: read the file and build everything derived from it (TLS context,
  // runtime) before adopting anything; any failure at all (missing file,
  // directory, bad YAML, invalid values, bad certificate, anything thrown) is
  // logged, counted, and leaves the running config in force. Reload never kills.
  auto reload = [&] {
    auto reject = [&](const std::vector<std::string>& errors) {
      metrics.config_reload_failed();
      log::error("reload failed; keeping the running config",
                 {{"path", config_path}, {"errors", errors}});
    };
    try {
      auto next = load_config_file(config_path);
      if (!next) return reject(next.error().messages);
      if (next->listen.str() != config.listen.str() || next->threads != config.threads ||
          next->store_sqlite != config.store_sqlite ||
          next->store_postgres != config.store_postgres ||
          next->admin.listen.str() != config.admin.listen.str() ||
          (next->metrics.listen ? next->metrics.listen->str() : "") !=
              (config.metrics.listen ? config.metrics.listen->str() : ""))
        log::warn("listen, threads, store, admin.listen and metrics.listen change only on restart");
      if (next->rate_limit.backend != config.rate_limit.backend ||
          (shared_limits && next->rate_limit.redis.url != config.rate_limit.redis.url))
        log::warn(
            "rate_limit.backend and rate_limit.redis.url change only on restart; "
            "keeping the running ones",
            {{"redis", config.rate_limit.redis.redacted()}});
      // The certificate is re-read too (renewals).
      std::shared_ptr<asio::ssl::context> tls;
      if (next->tls.enabled()) tls = make_server_tls(next->tls);
      auto fresh = std::make_shared<const Runtime>(*next);
      metrics.tls_certificate_expiry(tls ? certificate_expiry(*tls) : 0);
      log::setup(next->logging);
      // The generation moves (and "config reloaded" is logged) only once every
      // I/O thread and the store worker use the new config.
      const std::int64_t generation = ++config_generation;
      auto pending = std::make_shared<std::atomic<size_t>>(workers.size() + 1);
      auto adopted = [pending, generation, &metrics, config_path] {
        if (pending->fetch_sub(1) != 1) return;
        metrics.config_adopted(generation, now_millis() / 1000);
        log::info("config reloaded", {{"path", config_path}, {"generation", generation}});
      };
      for (size_t i = 0; i < workers.size(); ++i) {
        RedisBackend* rb = shared_limits ? redis_backends[i] : nullptr;
        asio::post(workers[i]->ioc, [&wk = *workers[i], rb, fresh, tls, adopted] {
          wk.runtime = fresh;
          wk.pool.adopt(fresh->config.upstream);  // another upstream: no old connection
          wk.replies.clear();                     // bodies rendered in the old error style
          wk.tls = tls;
          if (rb) rb->adopt(fresh->config.rate_limit.redis);  // timeout, on_error
          adopted();
        });
      }
      storew.set_runtime(fresh, adopted);
    } catch (const std::exception& e) {
      reject({e.what()});
    } catch (...) {
      reject({"unknown exception"});
    }
  };
  bool stop = false;
  std::function<void()> wait_signal = [&] {
    signals.async_wait([&](boost::system::error_code ec, int sig) {
      if (ec) return;
      if (sig == SIGHUP) {
        reload();
        wait_signal();
        return;
      }
      stop = true;
    });
  };
  wait_signal();
  while (!stop) control.run_one();

  // Drain: refuse new connections, close idle ones, let in-flight requests finish.
  log::info("draining", {{"open_connections", metrics.open_connections()},
                         {"timeout_ms", config.shutdown_timeout.count()}});
  state.draining = true;
  for (size_t i = 0; i < workers.size(); ++i) {
    asio::post(workers[i]->ioc, [&, i] {
      boost::system::error_code ignored;
      acceptors[i]->close(ignored);
      if (i == 0 && admin_acceptor) admin_acceptor->close(ignored);
      if (i == 0 && metrics_acceptor) metrics_acceptor->close(ignored);
      for (auto& c : workers[i]->idle) c.socket->cancel(ignored);
    });
  }
  auto deadline = std::chrono::steady_clock::now() + config.shutdown_timeout;
  while (metrics.open_connections() > 0 && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  if (metrics.open_connections() > 0)
    log::warn("shutdown timeout: closing remaining connections",
              {{"open_connections", metrics.open_connections()}});
  for (auto& w : workers) w->ioc.stop();
  for (auto& t : threads) t.join();
  for (RedisBackend* rb : redis_backends) rb->stop();  // the I/O threads are gone: safe here
  storew.stop();
  log::info("stopped");
  log::shutdown();
  return 0;
}

}  // namespace keygate
