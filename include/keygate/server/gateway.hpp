#pragma once
// `keygate serve`: migrate, load keys, run the listeners until SIGTERM/SIGINT,
// reload on SIGHUP, drain gracefully. Returns the process exit code.
#include "keygate/config/config.hpp"

namespace keygate {
int serve(Config config);
}
