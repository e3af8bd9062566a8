#include <algorithm>
#include <array>

#include "keygate/core/ascii.hpp"
#include "keygate/proxy/normalize.hpp"
#include "keygate/proxy/stages.hpp"

namespace keygate {

namespace {

// Methods compare case-insensitively (frameworks such as Werkzeug upper-case
// them); a route listing GET also covers HEAD, which upstreams answer with
// their GET handler (nginx's limit_except does the same).
bool method_listed(const Route& r, std::string_view method) {
  if (r.methods.empty()) return true;
  auto listed = [&](std::string_view m) {
    return std::any_of(r.methods.begin(), r.methods.end(),
                       [&](const std::string& x) { return ascii_iequals(x, m); });
  };
  return listed(method) || (ascii_iequals(method, "HEAD") && listed("GET"));
}

}  // namespace

const Route* match_route(const std::vector<Route>& routes, std::string_view method,
                         std::string_view path) {
  for (const auto& r : routes)
    if (path.starts_with(r.path_prefix) && method_listed(r, method)) return &r;
  return nullptr;
}

std::expected<const Route*, Error> select_route(const std::vector<Route>& routes,
                                                std::string_view method, std::string_view path) {
  const Route* route = match_route(routes, method, path);
  const bool other_reading = path.find(';') != std::string_view::npos ||
                             path.find("%2F") != std::string_view::npos ||
                             path.find("%5C") != std::string_view::npos;
  if (routes.empty() || !other_reading) return route;
  if (match_route(routes, method, lenient_reading(path)) != route) {
    Error e = errors::bad_request(
        "The path reads differently to upstreams that drop ';' parameters or decode '%2F'; "
        "send it without them.");
    e.reason = "bad_path";
    return std::unexpected(std::move(e));
  }
  return route;
}

std::optional<Error> check_method_override(const std::vector<Route>& routes, const Route* chosen,
                                           std::string_view path, const RequestFields& fields) {
  static constexpr std::array<std::string_view, 3> kOverrides{"X-HTTP-Method-Override",
                                                              "X-HTTP-Method", "X-Method-Override"};
  if (std::none_of(routes.begin(), routes.end(), [](const Route& r) { return !r.methods.empty(); }))
    return std::nullopt;  // no rule depends on the method
  for (std::string_view name : kOverrides) {
    for (const auto& field : fields) {
      if (!ascii_iequals(field.name_string(), name)) continue;
      std::string_view method = trim_ows(field.value());
      if (match_route(routes, method, path) == chosen) continue;
      Error e = errors::bad_request(
          "The " + std::string(name) +
          " header names a method that routes differently; send the request with that method.");
      e.reason = "method_override";
      return e;
    }
  }
  return std::nullopt;
}

}  // namespace keygate
