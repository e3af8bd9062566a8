#include <algorithm>

#include "keygate/proxy/stages.hpp"

namespace keygate {

const Route* match_route(const std::vector<Route>& routes, std::string_view method,
                         std::string_view path) {
  for (const auto& r : routes) {
    if (!path.starts_with(r.path_prefix)) continue;
    if (!r.methods.empty() &&
        std::find(r.methods.begin(), r.methods.end(), method) == r.methods.end())
      continue;
    return &r;
  }
  return nullptr;
}

}  // namespace keygate
