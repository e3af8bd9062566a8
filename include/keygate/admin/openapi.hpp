#pragma once
// docs/openapi.json, embedded at build time (CMakeLists.txt): GET /openapi.json.
#include <string_view>

namespace keygate {
std::string_view openapi_document();
}
