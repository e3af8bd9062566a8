#pragma once
#include "keygate/observe/metrics.hpp"
#include "server/asio.hpp"
#include "server/store_worker.hpp"

namespace keygate {
net::awaitable<void> run_admin_session(net::tcp::socket socket, StoreWorker& store,
                                       const Metrics& metrics, const GatewayState& state,
                                       bool metrics_only);
}
