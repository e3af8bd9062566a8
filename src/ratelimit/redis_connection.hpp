#pragma once
// One pipelined connection to Redis, driven by an Asio executor: hiredis'
// async API (0.14, which has no Asio adapter) with its read/write hooks mapped
// onto posix::stream_descriptor::async_wait on the context's socket. Commands
// issued in the same turn of the event loop leave in one write (pipelining);
// replies come back in order, so the pending commands are a FIFO and one
// timer watches the oldest. A command that outlives `command_timeout` fails
// the connection: every pending command fails, and it reconnects with
// exponential back-off. The host name is resolved by Asio's resolver (never
// getaddrinfo on the I/O thread); then AUTH, SELECT and the `setup` commands
// are pipelined and the connection is ready once all of them succeeded.
//
// Not thread-safe: everything runs on the executor's single thread.
#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/steady_timer.hpp>

struct redisAsyncContext;
struct redisReply;

namespace keygate::redis {

struct ConnectionSettings {
  std::string host = "127.0.0.1";
  std::uint16_t port = 6379;
  std::string username;
  std::string password;
  int db = 0;
  std::chrono::milliseconds command_timeout{50};
  std::chrono::milliseconds connect_timeout{1000};  // TCP connect plus the setup commands
  std::chrono::milliseconds reconnect_min{50};
  std::chrono::milliseconds reconnect_max{2000};
  std::vector<std::vector<std::string>> setup;  // sent on every connect, after AUTH/SELECT
  // Connection events for the log ("connected", "unreachable"); the detail
  // never holds the password.
  std::function<void(std::string_view event, std::string_view detail)> on_event;
};

class Connection : public std::enable_shared_from_this<Connection> {
 public:
  // Called exactly once per command with the reply, or with null when the
  // command failed (timeout, connection lost or closed). Runs inside hiredis'
  // reply processing: it may send() further commands.
  using Handler = std::move_only_function<void(const redisReply* reply)>;

  Connection(boost::asio::any_io_executor ex, ConnectionSettings s);
  ~Connection();
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  void start();  // connects, and keeps reconnecting until stop()
  void stop();   // fails what is pending, closes, no reconnect
  bool ready() const { return state_ == State::ready; }
  // Applies to commands sent from now on (a reload).
  void set_command_timeout(std::chrono::milliseconds t) { s_.command_timeout = t; }

  // Appends a command to the pipeline. When the connection is not ready the
  // handler gets null (posted, never inline).
  void send(std::span<const std::string_view> argv, Handler h);

  struct Stats {
    std::uint64_t commands = 0;  // sent, setup included
    std::uint64_t timeouts = 0;
    std::uint64_t connects = 0;  // times it became ready
    std::uint64_t losses = 0;    // times a ready connection was lost
  };
  const Stats& stats() const { return stats_; }

 private:
  enum class State { stopped, resolving, connecting, ready, closing, backoff };
  struct Pending {
    Handler handler;
    std::chrono::steady_clock::time_point deadline;
  };

  void begin_connect();
  void connect_next();  // the next resolved address, or back off once all failed
  void connect_to(const std::string& ip);
  void append(std::span<const std::string_view> argv, Handler h,
              std::chrono::steady_clock::duration timeout);
  void fail(std::string_view why);  // closes the context; on_cleanup does the rest
  void schedule_reconnect();
  void arm_timer();
  std::chrono::steady_clock::time_point earliest_deadline() const;
  void arm_read();
  void arm_write();

  // hiredis hooks and callbacks (privdata: this).
  static void on_reply(redisAsyncContext* ac, void* reply, void* privdata);
  static void hook_add_read(void* self);
  static void hook_del_read(void* self);
  static void hook_add_write(void* self);
  static void hook_del_write(void* self);
  static void hook_cleanup(void* self);
  void on_cleanup();

  boost::asio::any_io_executor ex_;
  ConnectionSettings s_;
  State state_ = State::stopped;
  redisAsyncContext* ac_ = nullptr;
  std::uint64_t generation_ = 0;  // bumped per context: late completions of an old one are ignored
  boost::asio::posix::stream_descriptor
      socket_;  // hiredis owns the fd; released before it closes it
  boost::asio::steady_timer deadline_timer_;
  boost::asio::steady_timer reconnect_timer_;
  boost::asio::ip::tcp::resolver resolver_;
  std::vector<std::string> addresses_;  // of the host, tried in order
  size_t next_address_ = 0;
  bool reading_ = false, writing_ = false;
  bool read_armed_ = false, write_armed_ = false, timer_armed_ = false;
  std::deque<Pending> pending_;
  int setup_left_ = 0;
  bool was_ready_ = false;
  bool reported_down_ = false;
  std::string last_error_;
  std::chrono::milliseconds backoff_;
  Stats stats_;
};

}  // namespace keygate::redis
