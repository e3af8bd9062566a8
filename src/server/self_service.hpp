#pragma once
// Self-service key routes on the proxy listener (SPEC §9): a request the
// pipeline admitted (key authenticated, token taken) is run by the admin API's
// own handler on the store worker thread — the I/O thread only awaits it — and
// its answer becomes the local reply.
#include "keygate/proxy/pipeline.hpp"
#include "server/asio.hpp"
#include "keygate/proxy/flat_parser.hpp"
#include "server/stream.hpp"
#include "server/worker.hpp"

namespace keygate {

// Reads the (small) request body, then hops to the store worker and back.
net::awaitable<Verdict> run_self_service(Stream& stream, net::beast::flat_buffer& buffer,
                                         RequestParser& parser, Context& ctx,
                                         const Pipeline& pipeline, Services& svc,
                                         const Config& cfg);

}  // namespace keygate
