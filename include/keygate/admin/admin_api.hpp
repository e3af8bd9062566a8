#pragma once
// The admin API (SPEC §4) as a function from request to response. It runs on
// the store worker thread (it reads and writes SQLite), never on an I/O thread.
#include <functional>
#include <string>

#include "keygate/keys/key_index.hpp"
#include "keygate/keys/key_service.hpp"
#include "keygate/keys/key_store.hpp"
#include "keygate/observe/metrics.hpp"
#include "keygate/proxy/runtime.hpp"

namespace keygate {

struct AdminRequest {
  std::string method;
  std::string target;
  std::string body;
  std::string authorization;  // raw Authorization header
  std::string api_key;        // raw X-Api-Key header
  std::string request_id;
  bool metrics_only = false;  // the metrics.listen listener: GET /metrics and nothing else
  // Self-service on the proxy listener (SPEC §9): `api_key` is the credential
  // the proxy pipeline authenticated; only a key holding admin.key_scope is
  // accepted, never the admin token.
  bool keys_only = false;
};

struct AdminResponse {
  int status = 200;
  std::string body;
  std::string content_type = "application/json";
  std::string allow;  // for 405
};

struct AdminDeps {
  KeyStore& store;
  KeyService& service;
  const KeyIndex& index;
  const Metrics& metrics;
  const Runtime& runtime;
  std::function<Metrics::Gauges()> gauges;
};

AdminResponse handle_admin(const AdminRequest& req, AdminDeps deps);

// Constant-time comparison for secrets (CRYPTO_memcmp), length leak only.
bool secret_equals(std::string_view a, std::string_view b);

}  // namespace keygate
