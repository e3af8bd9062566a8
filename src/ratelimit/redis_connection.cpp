#include "ratelimit/redis_connection.hpp"

#include <hiredis/async.h>
#include <hiredis/hiredis.h>

#include <algorithm>
#include <array>

#include <boost/asio/ip/address.hpp>
#include <boost/asio/post.hpp>

namespace keygate::redis {

namespace asio = boost::asio;
using Clock = std::chrono::steady_clock;

namespace {
constexpr size_t kMaxArgs = 16;
}

Connection::Connection(asio::any_io_executor ex, ConnectionSettings s)
    : ex_(ex),
      s_(std::move(s)),
      socket_(ex),
      deadline_timer_(ex),
      reconnect_timer_(ex),
      resolver_(ex),
      backoff_(s_.reconnect_min) {}

Connection::~Connection() {
  stop();
}

void Connection::start() {
  if (state_ != State::stopped) return;
  begin_connect();
}

void Connection::stop() {
  state_ = State::stopped;
  resolver_.cancel();
  reconnect_timer_.cancel();
  if (ac_) redisAsyncFree(ac_);  // fails what is pending; on_cleanup runs (no reconnect)
}

void Connection::begin_connect() {
  state_ = State::resolving;
  addresses_.clear();
  next_address_ = 0;
  boost::system::error_code ec;
  auto addr = asio::ip::make_address(s_.host, ec);
  if (!ec) {
    addresses_.push_back(addr.to_string());
    return connect_next();
  }
  // A name: resolved off the I/O thread (Asio's resolver), never getaddrinfo here.
  resolver_.async_resolve(
      s_.host, std::to_string(s_.port),
      [self = shared_from_this()](boost::system::error_code rec,
                                  asio::ip::tcp::resolver::results_type results) {
        if (self->state_ != State::resolving) return;
        for (const auto& r : results)
          self->addresses_.push_back(r.endpoint().address().to_string());
        if (rec || self->addresses_.empty()) {
          self->last_error_ = "cannot resolve " + self->s_.host + ": " + rec.message();
          self->schedule_reconnect();
          return;
        }
        self->connect_next();
      });
}

void Connection::connect_next() {
  if (next_address_ >= addresses_.size()) return schedule_reconnect();
  connect_to(addresses_[next_address_++]);
}

void Connection::connect_to(const std::string& ip) {
  // A non-blocking connect: hiredis only starts it; the first write event tells.
  redisAsyncContext* ac = redisAsyncConnect(ip.c_str(), s_.port);
  if (!ac || ac->err) {
    last_error_ = ac ? std::string(ac->errstr) : "out of memory";
    if (ac) redisAsyncFree(ac);
    return connect_next();
  }
  boost::system::error_code ec;
  socket_.assign(ac->c.fd, ec);
  if (ec) {
    last_error_ = "cannot watch the socket: " + ec.message();
    redisAsyncFree(ac);
    return connect_next();
  }
  ac_ = ac;
  ++generation_;
  ac->ev.data = this;
  ac->ev.addRead = &Connection::hook_add_read;
  ac->ev.delRead = &Connection::hook_del_read;
  ac->ev.addWrite = &Connection::hook_add_write;
  ac->ev.delWrite = &Connection::hook_del_write;
  ac->ev.cleanup = &Connection::hook_cleanup;
  state_ = State::connecting;

  // The setup commands leave with the connect, in one write; the connection
  // is ready once every one of them succeeded.
  std::vector<std::vector<std::string>> setup;
  if (!s_.password.empty()) {
    if (s_.username.empty())
      setup.push_back({"AUTH", s_.password});
    else
      setup.push_back({"AUTH", s_.username, s_.password});
  }
  if (s_.db != 0) setup.push_back({"SELECT", std::to_string(s_.db)});
  for (const auto& c : s_.setup) setup.push_back(c);
  if (setup.empty()) setup.push_back({"PING"});
  setup_left_ = static_cast<int>(setup.size());
  const std::uint64_t gen = generation_;
  for (const auto& cmd : setup) {
    std::vector<std::string_view> argv(cmd.begin(), cmd.end());
    std::string name = cmd.front();  // never the arguments: AUTH carries the password
    append(
        argv,
        [this, gen, name](const redisReply* r) {
          if (gen != generation_ || !r) return;  // null: the context is already going away
          if (r->type == REDIS_REPLY_ERROR) {
            fail(name + " failed: " + std::string(r->str, r->len));
            return;
          }
          if (--setup_left_ > 0) return;
          state_ = State::ready;
          backoff_ = s_.reconnect_min;
          ++stats_.connects;
          was_ready_ = true;
          reported_down_ = false;
          if (s_.on_event) s_.on_event("connected", "");
        },
        s_.connect_timeout);
  }
}

void Connection::send(std::span<const std::string_view> argv, Handler h) {
  if (state_ != State::ready || !ac_) {
    asio::post(ex_, [h = std::move(h)]() mutable { h(nullptr); });
    return;
  }
  append(argv, std::move(h), s_.command_timeout);
}

void Connection::append(std::span<const std::string_view> argv, Handler h,
                        Clock::duration timeout) {
  std::array<const char*, kMaxArgs> ptrs{};
  std::array<size_t, kMaxArgs> lens{};
  const size_t n = std::min(argv.size(), kMaxArgs);
  for (size_t i = 0; i < n; ++i) {
    ptrs[i] = argv[i].data();
    lens[i] = argv[i].size();
  }
  if (n != argv.size() ||
      redisAsyncCommandArgv(ac_, &Connection::on_reply, this, static_cast<int>(n), ptrs.data(),
                            lens.data()) != REDIS_OK) {
    asio::post(ex_, [h = std::move(h)]() mutable { h(nullptr); });
    return;
  }
  const Clock::time_point deadline = Clock::now() + timeout;
  pending_.push_back({std::move(h), deadline});
  ++stats_.commands;
  // The timer watches the earliest deadline, which is not always the oldest
  // command's: the setup commands wait connect_timeout, a reload may shorten
  // the timeout. An earlier one moves the timer.
  if (timer_armed_ && deadline < deadline_timer_.expiry()) {
    timer_armed_ = false;
    deadline_timer_.cancel();
  }
  arm_timer();
}

void Connection::on_reply(redisAsyncContext*, void* reply, void* privdata) {
  auto* self = static_cast<Connection*>(privdata);
  if (self->pending_.empty()) return;
  Pending p = std::move(self->pending_.front());
  self->pending_.pop_front();
  // A null reply: the context is going away (timeout, lost, stop): not ready.
  if (!reply && self->state_ == State::ready) self->state_ = State::closing;
  p.handler(static_cast<const redisReply*>(reply));
}

void Connection::fail(std::string_view why) {
  if (!ac_) return;
  last_error_ = std::string(why);
  if (state_ != State::stopped) state_ = State::closing;  // not ready from now on
  // Inside a hiredis callback this is deferred until the callback returns.
  redisAsyncFree(ac_);
}

void Connection::on_cleanup() {
  // hiredis' own reason (refused, closed by the server, …) unless we closed it.
  if (ac_ && ac_->err) last_error_ = ac_->errstr;
  // hiredis closes the fd after this returns: stop watching it first.
  socket_.release();
  ++generation_;
  ac_ = nullptr;
  reading_ = writing_ = read_armed_ = write_armed_ = false;
  deadline_timer_.cancel();
  timer_armed_ = false;
  // hiredis already failed every command it knew; nothing should be left.
  while (!pending_.empty()) {
    asio::post(ex_, [h = std::move(pending_.front().handler)]() mutable { h(nullptr); });
    pending_.pop_front();
  }
  if (state_ == State::stopped) return;
  const bool lost = was_ready_;
  was_ready_ = false;
  if (lost) ++stats_.losses;
  if (!reported_down_) {  // once per outage, not per retry
    reported_down_ = true;
    if (s_.on_event) s_.on_event("unreachable", last_error_);
  }
  // A lost connection backs off (then resolves afresh); a failed attempt
  // tries the host's next address first.
  if (lost) return schedule_reconnect();
  // (Posted: hiredis is still freeing the old context.)
  state_ = State::backoff;
  asio::post(ex_, [self = shared_from_this()] {
    if (self->state_ == State::backoff) self->connect_next();
  });
}

void Connection::schedule_reconnect() {
  state_ = State::backoff;
  reconnect_timer_.expires_after(backoff_);
  backoff_ = std::min(backoff_ * 2, s_.reconnect_max);
  reconnect_timer_.async_wait([self = shared_from_this()](boost::system::error_code ec) {
    if (ec || self->state_ != State::backoff) return;
    self->begin_connect();
  });
}

Clock::time_point Connection::earliest_deadline() const {
  // Usually the front's (one timeout for all); scanned only when the timer is
  // (re)armed, not per command.
  Clock::time_point t = Clock::time_point::max();
  for (const Pending& p : pending_) t = std::min(t, p.deadline);
  return t;
}

void Connection::arm_timer() {
  if (timer_armed_ || pending_.empty()) return;
  timer_armed_ = true;
  deadline_timer_.expires_at(earliest_deadline());
  deadline_timer_.async_wait([self = shared_from_this()](boost::system::error_code ec) {
    if (ec == asio::error::operation_aborted) return;  // the canceller reset the flag
    self->timer_armed_ = false;
    if (!self->ac_ || self->pending_.empty()) return;
    if (self->earliest_deadline() <= Clock::now()) {
      ++self->stats_.timeouts;
      self->fail("no answer within " + std::to_string(self->s_.command_timeout.count()) + "ms");
      return;
    }
    self->arm_timer();
  });
}

void Connection::arm_read() {
  if (read_armed_ || !ac_) return;
  read_armed_ = true;
  socket_.async_wait(asio::posix::stream_descriptor::wait_read,
                     [self = shared_from_this(), gen = generation_](boost::system::error_code ec) {
                       if (gen != self->generation_) return;
                       self->read_armed_ = false;
                       if (ec || !self->reading_ || !self->ac_) return;
                       redisAsyncHandleRead(self->ac_);  // may free the context (gen moves)
                       if (gen == self->generation_ && self->reading_) self->arm_read();
                     });
}

void Connection::arm_write() {
  if (write_armed_ || !ac_) return;
  write_armed_ = true;
  socket_.async_wait(asio::posix::stream_descriptor::wait_write,
                     [self = shared_from_this(), gen = generation_](boost::system::error_code ec) {
                       if (gen != self->generation_) return;
                       self->write_armed_ = false;
                       if (ec || !self->writing_ || !self->ac_) return;
                       redisAsyncHandleWrite(self->ac_);
                       if (gen == self->generation_ && self->writing_) self->arm_write();
                     });
}

void Connection::hook_add_read(void* p) {
  auto* self = static_cast<Connection*>(p);
  self->reading_ = true;
  self->arm_read();
}
void Connection::hook_del_read(void* p) {
  static_cast<Connection*>(p)->reading_ = false;
}
void Connection::hook_add_write(void* p) {
  auto* self = static_cast<Connection*>(p);
  self->writing_ = true;
  self->arm_write();
}
void Connection::hook_del_write(void* p) {
  static_cast<Connection*>(p)->writing_ = false;
}
void Connection::hook_cleanup(void* p) {
  static_cast<Connection*>(p)->on_cleanup();
}

}  // namespace keygate::redis
