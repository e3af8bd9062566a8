#include "keygate/proxy/stages.hpp"

#include "keygate/core/ascii.hpp"

namespace keygate {

namespace {

// The one value the ingress gave under either name; empty when neither is
// present; nullopt when values disagree (e.g. a client's X-Forwarded-Uri
// beside the X-Original-URI nginx sets).
std::optional<std::string_view> one_value(const RequestFields& f, std::string_view preferred,
                                          std::string_view alternative) {
  std::optional<std::string_view> seen;
  for (auto name : {preferred, alternative}) {
    for (const auto& field : f) {
      if (!ascii_iequals(field.name_string(), name)) continue;
      std::string_view v = trim_ows(field.value());
      if (seen && *seen != v) return std::nullopt;
      seen = v;
    }
  }
  return seen.value_or(std::string_view{});
}

bool is_method(std::string_view m) {
  if (m.empty() || m.size() > 32) return false;
  for (char c : m)
    if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z'))) return false;
  return true;
}

Error bad_check(std::string message) {
  Error e = errors::bad_request(std::move(message));
  e.reason = "bad_request";
  return e;
}

}  // namespace

bool at_forward_auth(const ForwardAuthConfig& fa, std::string_view path) {
  if (!fa.path) return false;
  const std::string& p = *fa.path;
  return path.starts_with(p) && (path.size() == p.size() || path[p.size()] == '/' || p == "/");
}

std::expected<OriginalRequest, Error> original_request(const RequestView& check,
                                                       const NormalizedTarget& own,
                                                       const ForwardAuthConfig& fa,
                                                       const NormalizeOptions& options) {
  auto method = one_value(check.fields, "X-Forwarded-Method", "X-Original-Method");
  if (!method)
    return std::unexpected(bad_check(
        "X-Forwarded-Method and X-Original-Method disagree; the ingress must set one of them."));
  auto uri = one_value(check.fields, "X-Forwarded-Uri", "X-Original-URI");
  if (!uri)
    return std::unexpected(bad_check(
        "X-Forwarded-Uri and X-Original-URI disagree; the ingress must set one of them."));

  OriginalRequest original;
  original.method = method->empty() ? check.method : *method;
  if (!is_method(original.method))
    return std::unexpected(bad_check("The original request's method is not a valid method."));
  if (!uri->empty()) {
    auto target = normalize_target(*uri, options);
    if (!target) return std::unexpected(target.error());
    original.target = std::move(*target);
    return original;
  }
  // No header: the check's own target, less forward_auth.path when the
  // original path was appended to it (Envoy's path_prefix).
  std::string_view rest = std::string_view(own.target).substr(own.path_size);  // "?query" or ""
  std::string_view below = own.path().substr(*fa.path == "/" ? 0 : fa.path->size());
  if (below.empty()) {
    original.target = own;
    return original;
  }
  auto target = normalize_target(std::string(below) + std::string(rest), options);
  if (!target) return std::unexpected(target.error());
  original.target = std::move(*target);
  return original;
}

}  // namespace keygate
