#pragma once
// The request path, top to bottom:
//   health -> route -> credentials -> authenticate/authorize -> rate-limit -> forward
// decide() runs every stage up to forwarding and says whether to forward or
// what to answer locally. The session does the I/O around it.
#include <atomic>
#include <string>

#include "keygate/keys/key_index.hpp"
#include "keygate/keys/key_store.hpp"
#include "keygate/observe/metrics.hpp"
#include "keygate/proxy/context.hpp"
#include "keygate/proxy/runtime.hpp"
#include "keygate/ratelimit/rate_limiter.hpp"

namespace keygate {

// Last-used reports leave the request path here; the store worker batches them.
class UsageSink {
 public:
  virtual ~UsageSink() = default;
  virtual void record(UsageEvent e) = 0;
};

struct GatewayState {
  std::atomic<bool> draining{false};
  std::atomic<bool> store_ok{true};
};

struct Verdict {
  bool forward = false;
  int status = 200;
  std::string body;  // local replies: the rendered JSON
  bool www_authenticate = false;
};

class Pipeline {
 public:
  Pipeline(const Runtime& rt, const KeyIndex& index, RateLimiter& limiter, UsageSink* usage,
           const GatewayState& state)
      : rt_(rt), index_(index), limiter_(limiter), usage_(usage), state_(state) {}

  Verdict decide(const RequestView& req, Context& ctx) const;
  // Renders a local error (also used by the session for 413/431/502/504).
  Verdict reply(const Error& e, Context& ctx) const;

 private:
  std::optional<Verdict> health(const RequestView& req, Context& ctx) const;
  const Runtime& rt_;
  const KeyIndex& index_;
  RateLimiter& limiter_;
  UsageSink* usage_;
  const GatewayState& state_;
};

}  // namespace keygate
