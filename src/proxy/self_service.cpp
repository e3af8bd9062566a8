#include "keygate/proxy/stages.hpp"

namespace keygate {

namespace {
// Where the admin API serves the key routes (SPEC §4).
constexpr std::string_view kAdminKeys = "/v1/api-keys";
}  // namespace

bool under_self_service(const SelfServiceConfig& ss, std::string_view path) {
  if (!ss.path_prefix) return false;
  const std::string& p = *ss.path_prefix;
  return path.starts_with(p) && (path.size() == p.size() || path[p.size()] == '/');
}

std::expected<std::string, Error> self_service_target(const SelfServiceConfig& ss,
                                                      const NormalizedTarget& target) {
  std::string_view rest = target.path().substr(ss.path_prefix->size());  // "", "/id", "/id/rotate"
  std::string_view query = std::string_view(target.target).substr(target.path_size);
  bool key_route = rest.empty();
  if (!key_route && rest.front() == '/') {
    std::string_view id = rest.substr(1);
    auto slash = id.find('/');
    std::string_view after = slash == std::string_view::npos ? "" : id.substr(slash);
    key_route = slash != 0 && !id.empty() && (after.empty() || after == "/rotate");
  }
  if (!key_route)
    return std::unexpected(errors::not_found("No such route: " + std::string(target.path())));
  return std::string(kAdminKeys) + std::string(rest) + std::string(query);
}

}  // namespace keygate
