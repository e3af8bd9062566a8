#pragma once
// The request path, top to bottom:
//   client IP -> normalise -> [forward auth: the original request] -> health
//   -> [self-service] -> route -> credentials -> authenticate/authorize
//   -> credits -> rate-limit -> forward | forward-auth 200 | self-service
// admit() runs every stage before the rate limit; when it hands back a
// RateQuery, the session asks the rate-limit backend (at once, or by awaiting a
// shared backend) and apply_rate() finishes the verdict. decide() is both for
// backends that always answer at once. The session does the I/O around it.
//
// Modes (SPEC §9): a request to forward_auth.path is judged as the original
// request its headers describe and answered 200 with the identity headers
// instead of being forwarded. A request under self_service.path_prefix is
// authenticated and rate-limited here, then the session hands it to the admin
// API's handler. In shadow mode (global or per route) a 401/403/429 refusal is
// recorded in ctx.shadow_reason and the request passes as if admitted (tokens
// are taken and credits spent exactly as when enforcing: a would-be credits
// 429 spends none); self-service routes are never shadowed.
#include <atomic>
#include <string>

#include "keygate/keys/key_index.hpp"
#include "keygate/keys/key_store.hpp"
#include "keygate/observe/metrics.hpp"
#include "keygate/proxy/context.hpp"
#include "keygate/proxy/runtime.hpp"
#include "keygate/ratelimit/backend.hpp"

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
  bool self_service = false;  // admitted to a self-service key route: the session runs it
  Fields headers;             // more headers of a local reply (forward auth: identity)
};

// What admit() decided, and the rate-limit question still open, if any: take a
// token before forwarding (consume), or only look (the headers of a 403 to a
// valid key). The query's strings point into ctx.key.
struct Admission {
  Verdict verdict;
  std::optional<RateQuery> rate;
};

class Pipeline {
 public:
  // `cache`: the I/O thread's rendered bodies (none: render every time).
  Pipeline(const Runtime& rt, const KeyIndex& index, RateLimitBackend& limits, UsageSink* usage,
           const GatewayState& state, RenderCache* cache = nullptr)
      : rt_(rt), index_(index), limits_(limits), usage_(usage), state_(state), cache_(cache) {}

  Admission admit(const RequestView& req, Context& ctx) const;
  // The backend's answer to admission.rate, applied to admit()'s verdict in
  // place: a 429, a 503 (shared limits unreachable with on_error: closed), or
  // the admitted verdict. (In place: a Verdict moved in and out again cost
  // two moves of its fields and strings a request.)
  void apply_rate(const RateOutcome& outcome, Context& ctx, Verdict& verdict) const;
  // admit + apply_rate for a backend that answers at once (tests, tools);
  // an answer it cannot give now counts as unavailable.
  Verdict decide(const RequestView& req, Context& ctx) const;
  RateLimitBackend& limits() const { return limits_; }
  // Renders a local error (also used by the session for 413/431/502/504).
  Verdict reply(const Error& e, Context& ctx) const;

 private:
  std::optional<Verdict> health(const RequestView& req, Context& ctx) const;
  // A refusal (401/403/429), or in shadow mode the admitted verdict with the
  // reason kept in ctx.shadow_reason.
  Verdict refuse(const Error& e, Context& ctx) const;
  // What an admitted request gets in its mode.
  Verdict admitted(const Context& ctx) const;
  const Runtime& rt_;
  const KeyIndex& index_;
  RateLimitBackend& limits_;
  UsageSink* usage_;
  const GatewayState& state_;
  RenderCache* cache_;
};

}  // namespace keygate
