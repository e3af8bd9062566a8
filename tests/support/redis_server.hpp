#pragma once
// A real redis-server for tests and benchmarks: on a free loopback port, in a
// temp dir, no persistence; killed (and the dir removed) on destruction.
// Also a small blocking client for the test's own checks (INFO, SCRIPT FLUSH,
// CONFIG SET): blocking is fine in test code, never in the gateway.
#include <fcntl.h>
#include <hiredis/hiredis.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace keygate::testing {

inline std::uint16_t free_loopback_port() {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  if (fd < 0 || ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 ||
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) != 0)
    throw std::runtime_error("no free port");
  ::close(fd);
  return ntohs(a.sin_port);
}

struct ReplyDeleter {
  void operator()(redisReply* r) const { freeReplyObject(r); }
};
using Reply = std::unique_ptr<redisReply, ReplyDeleter>;

class RedisServer {
 public:
  explicit RedisServer(std::vector<std::string> extra_args = {})
      : port_(free_loopback_port()), extra_(std::move(extra_args)) {
    char tmpl[] = "/tmp/keygate-redis.XXXXXX";
    if (!::mkdtemp(tmpl)) throw std::runtime_error("mkdtemp failed");
    dir_ = tmpl;
    start();
  }
  ~RedisServer() {
    stop();
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }
  RedisServer(const RedisServer&) = delete;
  RedisServer& operator=(const RedisServer&) = delete;

  std::uint16_t port() const { return port_; }
  std::string url(const std::string& auth = "", int db = 0) const {
    return "redis://" + auth + "127.0.0.1:" + std::to_string(port_) + "/" + std::to_string(db);
  }

  // Starts (again, on the same port) and waits until it answers PING.
  void start() {
    if (pid_ > 0) return;
    std::vector<std::string> args = {
        "redis-server", "--port",    std::to_string(port_), "--bind", "127.0.0.1",
        "--save",       "",          "--appendonly",        "no",     "--dir",
        dir_,           "--logfile", dir_ + "/redis.log"};
    args.insert(args.end(), extra_.begin(), extra_.end());
    pid_ = ::fork();
    if (pid_ == 0) {
      ::prctl(PR_SET_PDEATHSIG, SIGKILL);  // never outlives a killed test
      int null = ::open("/dev/null", O_WRONLY);
      ::dup2(null, 1);  // (and never holds the test's output pipe open)
      ::dup2(null, 2);
      std::vector<char*> argv;
      for (auto& a : args) argv.push_back(a.data());
      argv.push_back(nullptr);
      ::execvp("redis-server", argv.data());
      ::_exit(127);
    }
    if (pid_ < 0) throw std::runtime_error("fork failed");
    for (int i = 0; i < 500; ++i) {  // bounded: 5 s
      if (ping()) return;
      int status = 0;
      if (::waitpid(pid_, &status, WNOHANG) == pid_) {
        pid_ = -1;
        throw std::runtime_error("redis-server exited at start (is it installed?)");
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    throw std::runtime_error("redis-server did not answer within 5 s");
  }

  void stop() {
    if (pid_ <= 0) return;
    ::kill(pid_, SIGCONT);  // a paused server cannot exit
    ::kill(pid_, SIGKILL);
    ::waitpid(pid_, nullptr, 0);
    pid_ = -1;
  }
  void pause() { ::kill(pid_, SIGSTOP); }  // connections stay open, nothing answers
  void resume() { ::kill(pid_, SIGCONT); }

  // One command on a fresh blocking connection (AUTH first when `password`).
  Reply command(const std::vector<std::string>& argv, const std::string& password = "") const {
    timeval tv{2, 0};
    std::unique_ptr<redisContext, void (*)(redisContext*)> c(
        redisConnectWithTimeout("127.0.0.1", port_, tv), redisFree);
    if (!c || c->err) return nullptr;
    redisSetTimeout(c.get(), tv);
    if (!password.empty()) Reply(run(c.get(), {"AUTH", password}));
    return Reply(run(c.get(), argv));
  }
  // A sequence on one connection (e.g. SELECT then EXISTS); the last reply.
  Reply commands(const std::vector<std::vector<std::string>>& seq) const {
    timeval tv{2, 0};
    std::unique_ptr<redisContext, void (*)(redisContext*)> c(
        redisConnectWithTimeout("127.0.0.1", port_, tv), redisFree);
    if (!c || c->err) return nullptr;
    redisSetTimeout(c.get(), tv);
    Reply last;
    for (const auto& argv : seq) last = Reply(run(c.get(), argv));
    return last;
  }

  // calls=N of one command in INFO commandstats (0 if never called).
  long long calls(const std::string& cmd) const {
    auto r = command({"INFO", "commandstats"});
    if (!r || r->type != REDIS_REPLY_STRING) return -1;
    std::string info(r->str, r->len);
    std::string tag = "cmdstat_" + cmd + ":calls=";
    auto at = info.find(tag);
    if (at == std::string::npos) return 0;
    return std::atoll(info.c_str() + at + tag.size());
  }

 private:
  static redisReply* run(redisContext* c, const std::vector<std::string>& argv) {
    std::vector<const char*> ptrs;
    std::vector<size_t> lens;
    for (const auto& a : argv) {
      ptrs.push_back(a.data());
      lens.push_back(a.size());
    }
    return static_cast<redisReply*>(
        redisCommandArgv(c, static_cast<int>(argv.size()), ptrs.data(), lens.data()));
  }
  bool ping() const {
    auto r = command({"PING"});
    // With requirepass an unauthenticated PING answers NOAUTH: up all the same.
    return r && (r->type == REDIS_REPLY_STATUS || r->type == REDIS_REPLY_ERROR);
  }

  std::uint16_t port_;
  std::vector<std::string> extra_;
  std::string dir_;
  pid_t pid_ = -1;
};

}  // namespace keygate::testing
