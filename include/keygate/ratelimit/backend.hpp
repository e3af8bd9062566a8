#pragma once
// What the rate-limit stage calls, whichever backend holds the buckets: the
// local one answers at once; the Redis one answers at once when it can (a
// local "no token until T" cache, or the on_error fallback) and otherwise
// completes asynchronously on the caller's executor. Both return the same
// Decision, so headers and 429s do not care where the bucket lives.
#include <cstdint>
#include <optional>
#include <string_view>

#include <boost/asio/any_completion_handler.hpp>
#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/associated_executor.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/post.hpp>

#include "keygate/ratelimit/rate_limiter.hpp"

namespace keygate {

// A key's credits spent with the tokens, in the same atomic step, by a backend
// that shares them across replicas (SPEC §11). The balance, version and grid
// are the payer's as this process knows them: they seed the shared balance
// when it has none yet or an older version (an operator set a new one).
struct CreditQuery {
  std::string_view key_id;  // the payer's
  std::int64_t cost = 1;
  std::int64_t balance = 0;
  std::int64_t version = 0;
  std::int64_t refilled_at = 0;  // Unix ms: the refill grid's last point
  std::int64_t refill_amount = 0;
  std::int64_t refill_interval_ms = 0;  // 0: no refill
};

// The shared balance after the step: spent only if the tokens were taken too.
struct CreditOutcome {
  bool allowed = false;          // the balance could pay the cost
  std::int64_t remaining = 0;    // after this request, or as it stands when refused
  std::int64_t next_refill = 0;  // Unix ms; 0: no refill
};

struct RateQuery {
  RatePolicy policy;
  std::string_view key_id;
  std::string_view owner;
  bool consume = true;                 // false: only look (the headers of a 403 to a valid key)
  std::uint32_t cost = 1;              // tokens to take: the route's cost (SPEC §11)
  std::optional<CreditQuery> credits;  // only to a backend that shares_credits()
};

struct RateOutcome {
  // Where the answer came from (tests and metrics).
  enum class Source { local, shared, cache, fallback };
  std::optional<Decision> decision;  // nullopt: unlimited, or nothing known (closed, Redis down)
  bool unavailable = false;          // on_error: closed while Redis is unreachable: answer 503
  Source source = Source::local;
  std::optional<CreditOutcome> credits;  // the shared balance; nullopt: spend the local one
};

class RateLimitBackend {
 public:
  using Handler = boost::asio::any_completion_handler<void(RateOutcome)>;
  virtual ~RateLimitBackend() = default;

  // The answer now when there is one without waiting; nullopt: call
  // async_decide with the same query next.
  virtual std::optional<RateOutcome> try_decide(const RateQuery& q) = 0;
  // Whether credits are spent here (queries carry them) rather than in this
  // process' own meters.
  virtual bool shares_credits() const { return false; }

  // The answer of the shared bucket, delivered on the handler's executor. The
  // query's strings need to live only until this call returns.
  template <class Token>
  auto async_decide(const RateQuery& q, Token&& token) {
    return boost::asio::async_initiate<Token, void(RateOutcome)>(
        [this](auto h, const RateQuery& query) {
          // The handler's own executor (the caller's), taken before type erasure.
          auto ex = boost::asio::get_associated_executor(h);
          start_decide(query, Handler(std::move(h)), boost::asio::any_io_executor(ex));
        },
        token, q);
  }

 protected:
  // Completes `h` on `ex` (never inline).
  virtual void start_decide(const RateQuery& q, Handler h, boost::asio::any_io_executor ex) = 0;
};

// Per-process buckets (the CAS bucket table): always answers at once.
class LocalBackend final : public RateLimitBackend {
 public:
  explicit LocalBackend(RateLimiter& limiter) : limiter_(limiter) {}
  std::optional<RateOutcome> try_decide(const RateQuery& q) override { return decide(q); }

 private:
  RateOutcome decide(const RateQuery& q) {
    return {q.consume ? limiter_.take(q.policy, q.key_id, q.owner, q.cost)
                      : limiter_.peek(q.policy, q.key_id, q.owner)};
  }
  void start_decide(const RateQuery& q, Handler h, boost::asio::any_io_executor ex) override {
    boost::asio::post(ex, [h = std::move(h), o = decide(q)]() mutable { std::move(h)(o); });
  }
  RateLimiter& limiter_;
};

}  // namespace keygate
