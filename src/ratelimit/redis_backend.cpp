#include "keygate/ratelimit/redis_backend.hpp"

#include <hiredis/hiredis.h>

#include <array>
#include <charconv>
#include <span>

#include <boost/asio/post.hpp>

#include "ratelimit/gcra_script.hpp"
#include "ratelimit/redis_connection.hpp"

namespace keygate {

namespace asio = boost::asio;

namespace {

constexpr std::string_view kKeyBuckets = "keygate:rl:k:";
constexpr std::string_view kOwnerBuckets = "keygate:rl:o:";
constexpr std::string_view kCredits = "keygate:credits:";

// The script's answer: the decision (none without a bucket) and the credits.
struct Reply {
  std::optional<Decision> decision;
  std::optional<CreditOutcome> credits;
};

std::optional<Reply> parse_reply(const redisReply* r, const std::optional<BucketShape>& shape) {
  if (!r || r->type != REDIS_REPLY_ARRAY || (r->elements != 5 && r->elements != 7))
    return std::nullopt;
  for (size_t i = 0; i < r->elements; ++i)
    if (r->element[i]->type != REDIS_REPLY_INTEGER || (i < 4 && r->element[i]->integer < 0))
      return std::nullopt;
  Reply out;
  if (r->element[4]->integer >= 0 && r->elements == 7)
    out.credits =
        CreditOutcome{r->element[4]->integer != 0, r->element[5]->integer, r->element[6]->integer};
  if (!shape) return out;
  Decision d;
  d.allowed = r->element[0]->integer != 0;
  d.remaining = static_cast<std::uint64_t>(r->element[1]->integer);
  d.reset_ns = r->element[2]->integer;
  d.retry_ns = r->element[3]->integer;
  d.limit = shape->capacity;
  d.window_ns = shape->window_ns;
  out.decision = d;
  return out;
}

bool is_noscript(const redisReply* r) {
  return r && r->type == REDIS_REPLY_ERROR &&
         std::string_view(r->str, r->len).starts_with("NOSCRIPT");
}

}  // namespace

// One decision in flight: what the reply needs, and what a fallback needs.
struct RedisBackend::Op {
  // (Constructed, never assigned: Boost 1.81's any_completion_handler move
  // assignment wraps the handler in itself until the stack overflows.)
  Op(Handler h, asio::any_io_executor e) : handler(std::move(h)), ex(std::move(e)) {}
  Handler handler;
  asio::any_io_executor ex;  // the caller's
  std::string bucket;
  size_t id_at = 0;  // the key id or owner inside `bucket`
  RatePolicy policy;
  std::optional<BucketShape> shape;  // none: unlimited, only credits asked
  std::optional<CreditQuery> credits;
  std::string credits_key;  // credits->key_id points into it
  bool consume = true;
  std::uint32_t cost = 1;  // tokens a consuming decision takes
  bool retried = false;    // after NOSCRIPT, once
  std::int64_t sent_ns = 0;
  std::string_view id() const { return std::string_view(bucket).substr(id_at); }
};

RedisBackend::RedisBackend(asio::any_io_executor ex, Settings s, RateLimiter& local,
                           const Clock& clock)
    : ex_(ex), s_(std::move(s)), local_(local), clock_(clock), breaker_(s_.breaker) {
  redis::ConnectionSettings cs;
  cs.host = s_.redis.host;
  cs.port = s_.redis.port;
  cs.username = s_.redis.username;
  cs.password = s_.redis.password;
  cs.db = s_.redis.db;
  cs.command_timeout = s_.redis.timeout;
  cs.connect_timeout = s_.connect_timeout;
  cs.reconnect_min = s_.reconnect_min;
  cs.reconnect_max = s_.reconnect_max;
  // Loaded once per connection, before any EVALSHA (same pipeline).
  cs.setup.push_back({"SCRIPT", "LOAD", std::string(redis::gcra_script())});
  cs.on_event = [this](std::string_view event, std::string_view detail) {
    connected_.store(event == "connected", std::memory_order_relaxed);
    if (s_.on_event) s_.on_event(event, detail);
  };
  conn_ = std::make_shared<redis::Connection>(ex, std::move(cs));
}

RedisBackend::~RedisBackend() {
  stop();
}

void RedisBackend::start() {
  conn_->start();
}
void RedisBackend::stop() {
  conn_->stop();
  connected_.store(false, std::memory_order_relaxed);
}
void RedisBackend::adopt(const RedisConfig& next) {
  s_.redis.timeout = next.timeout;
  s_.redis.on_error = next.on_error;
  conn_->set_command_timeout(next.timeout);
}
bool RedisBackend::connected() const {
  return conn_->ready();
}

std::string RedisBackend::credits_name(std::string_view key_id) {
  std::string name(kCredits);
  name += key_id;
  return name;
}

std::string RedisBackend::bucket_name(bool by_owner, std::string_view id) {
  std::string name(by_owner ? kOwnerBuckets : kKeyBuckets);
  name += id;
  return name;
}

RedisBackend::Stats RedisBackend::stats() const {
  auto get = [](const std::atomic<std::uint64_t>& c) { return c.load(std::memory_order_relaxed); };
  Stats st;
  st.round_trips = get(counters_.round_trips);
  st.shared = get(counters_.shared);
  st.cache_denials = get(counters_.cache_denials);
  st.fallbacks = get(counters_.fallbacks);
  st.failures = get(counters_.failures);
  st.script_loads = get(counters_.script_loads);
  st.breaker_opened = get(counters_.breaker_opened);
  st.connected = connected_.load(std::memory_order_relaxed);
  st.breaker = breaker_state_.load(std::memory_order_relaxed);
  return st;
}

std::optional<RateOutcome> RedisBackend::try_decide(const RateQuery& q) {
  if (!q.policy.rate && !q.credits) return RateOutcome{};
  const std::int64_t now = clock_.now_ns();
  if (q.policy.rate) {
    const BucketShape shape = BucketShape::of(*q.policy.rate);
    scratch_.assign(q.policy.by_owner ? kOwnerBuckets : kKeyBuckets);
    scratch_ += q.policy.by_owner ? q.owner : q.key_id;
    if (auto d = cache_.check(scratch_, shape, now, q.consume)) {
      count(counters_.cache_denials);
      return RateOutcome{d, false, RateOutcome::Source::cache};
    }
  }
  // Not connected, or the breaker is open: no waiting for a timeout.
  const bool go = conn_->ready() && breaker_.allow(now);
  breaker_moved();
  if (!go) {
    count(counters_.fallbacks);
    return fallback(q.policy, q.policy.by_owner ? q.owner : q.key_id, q.consume, q.cost);
  }
  return std::nullopt;
}

void RedisBackend::start_decide(const RateQuery& q, Handler h, asio::any_io_executor ex) {
  std::string_view id = q.policy.by_owner ? q.owner : q.key_id;
  const bool asked = q.policy.rate || q.credits;
  if (!asked || !conn_->ready()) {  // try_decide would have answered
    // A probe the breaker granted but that cannot go: it failed.
    if (breaker_.state() == CircuitBreaker::State::half_open) {
      breaker_.failure(clock_.now_ns());
      breaker_moved();
    }
    if (asked) count(counters_.fallbacks);
    complete(std::move(h), ex, asked ? fallback(q.policy, id, q.consume, q.cost) : RateOutcome{});
    return;
  }
  auto op = std::make_unique<Op>(std::move(h), std::move(ex));
  op->bucket = bucket_name(q.policy.by_owner, id);
  op->id_at = op->bucket.size() - id.size();
  op->policy = q.policy;
  if (q.policy.rate) op->shape = BucketShape::of(*q.policy.rate);
  if (q.credits) {
    op->credits_key = credits_name(q.credits->key_id);
    op->credits = q.credits;
    op->credits->key_id = std::string_view(op->credits_key).substr(kCredits.size());
  }
  op->consume = q.consume;
  op->cost = q.cost;
  send(std::move(op));
}

void RedisBackend::send(std::unique_ptr<Op> op) {
  op->sent_ns = clock_.now_ns();
  // Numbers as text, in buffers that live until conn_->send has copied them.
  std::array<std::array<char, 24>, 9> num{};
  size_t used = 0;
  auto text = [&](std::int64_t v) {
    auto& b = num[used++];
    auto e = std::to_chars(b.data(), b.data() + b.size(), v);
    return std::string_view(b.data(), static_cast<size_t>(e.ptr - b.data()));
  };
  std::array<std::string_view, 14> argv = {
      "EVALSHA",
      redis::gcra_script_sha1(),
      "2",
      op->bucket,
      op->credits ? std::string_view(op->credits_key) : std::string_view(op->bucket),
      text(op->shape ? op->shape->interval_ns : 0),
      text(op->shape ? static_cast<std::int64_t>(op->shape->capacity) : 0),
      text(op->consume ? op->cost : 0u)};
  size_t argc = 8;
  if (const auto& c = op->credits) {
    for (std::int64_t v :
         {c->cost, c->balance, c->version, c->refilled_at, c->refill_amount, c->refill_interval_ms})
      argv[argc++] = text(v);
  }
  count(counters_.round_trips);
  // (The Op stays where it is when the pointer moves into the handler.)
  conn_->send(
      std::span<const std::string_view>(argv.data(), argc),
      [this, op = std::move(op)](const redisReply* r) mutable { finish(std::move(op), r); });
}

void RedisBackend::finish(std::unique_ptr<Op> op, const void* reply) {
  const auto* r = static_cast<const redisReply*>(reply);
  if (is_noscript(r) && !op->retried && conn_->ready()) {
    // SCRIPT FLUSH or a restarted Redis: load it again and retry, pipelined
    // behind the load (one extra round trip, once).
    op->retried = true;
    if (!reload_in_flight_) {
      reload_in_flight_ = true;
      count(counters_.script_loads);
      const std::array<std::string_view, 3> load = {"SCRIPT", "LOAD", redis::gcra_script()};
      conn_->send(load, [this](const redisReply*) { reload_in_flight_ = false; });
    }
    send(std::move(op));
    return;
  }
  auto d = parse_reply(r, op->shape);
  if (!d) {
    count(counters_.failures);
    const auto opened = breaker_.times_opened();
    breaker_.failure(clock_.now_ns());
    if (breaker_.times_opened() != opened) count(counters_.breaker_opened);
    breaker_moved();
    count(counters_.fallbacks);
    complete(std::move(op->handler), op->ex, fallback(op->policy, op->id(), op->consume, op->cost));
    return;
  }
  breaker_.success();
  breaker_moved();
  count(counters_.shared);
  // (A refusal for credits only looked at the bucket: nothing to cache.)
  if (op->shape && d->decision && (!d->credits || d->credits->allowed))
    cache_.note(op->bucket, *op->shape, *d->decision, op->sent_ns);
  RateOutcome o{d->decision, false, RateOutcome::Source::shared};
  o.credits = d->credits;
  complete(std::move(op->handler), op->ex, std::move(o));
}

RateOutcome RedisBackend::fallback(const RatePolicy& policy, std::string_view id, bool consume,
                                   std::uint32_t cost) {
  RateOutcome o;
  o.source = RateOutcome::Source::fallback;
  if (!policy.rate) {  // only credits were asked: the local meter spends them, unless closed
    o.unavailable = consume && s_.redis.on_error == RedisConfig::OnError::closed;
    return o;
  }
  switch (s_.redis.on_error) {
    case RedisConfig::OnError::local:  // this replica's own buckets (the id is the owner or key)
      o.decision = consume ? local_.take(policy, id, id, cost) : local_.peek(policy, id, id);
      break;
    case RedisConfig::OnError::open: {  // admitted; the headers show a full bucket
      const BucketShape shape = BucketShape::of(*policy.rate);
      Decision d;
      d.limit = shape.capacity;
      d.remaining = consume ? shape.capacity - 1 : shape.capacity;
      d.reset_ns = consume ? shape.interval_ns : 0;
      d.window_ns = shape.window_ns;
      o.decision = d;
      break;
    }
    case RedisConfig::OnError::closed:  // a request is refused (503); a look finds nothing
      o.unavailable = consume;
      break;
  }
  return o;
}

void RedisBackend::complete(Handler h, asio::any_io_executor ex, RateOutcome o) {
  // Never inline: the caller may be inside hiredis' reply processing.
  asio::post(ex, [h = std::move(h), o = std::move(o)]() mutable { std::move(h)(std::move(o)); });
}

}  // namespace keygate
