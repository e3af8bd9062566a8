#include "keygate/core/ascii.hpp"
#include "keygate/proxy/stages.hpp"

namespace keygate {

namespace {

// A query parameter's raw value (keys are base62 and '_': no decoding needed;
// anything percent-encoded fails the format check later, as it should).
std::optional<std::string_view> query_param(std::string_view query, std::string_view name) {
  while (!query.empty()) {
    auto amp = query.find('&');
    auto pair = query.substr(0, amp);
    auto eq = pair.find('=');
    if (pair.substr(0, eq) == name)
      return eq == std::string_view::npos ? std::string_view{} : pair.substr(eq + 1);
    if (amp == std::string_view::npos) break;
    query.remove_prefix(amp + 1);
  }
  return std::nullopt;
}

}  // namespace

std::string missing_key_message(const AuthConfig& auth) {
  std::string ways;
  for (size_t i = 0; i < auth.sources.size(); ++i) {
    const auto& s = auth.sources[i];
    std::string way = s.kind == AuthSource::Kind::bearer ? "as 'Authorization: Bearer <key>'"
                      : s.kind == AuthSource::Kind::header
                          ? "in the " + s.name + " header"
                          : "in the " + s.name + " query parameter";
    if (i > 0) ways += i + 1 == auth.sources.size() ? " or " : ", ";
    ways += way;
  }
  return "Missing API key. Pass it " + ways + ".";
}

std::optional<Error> extract_credential(const RequestView& req, const AuthConfig& auth,
                                        Context& ctx) {
  // Every occurrence counts: a key in a repeated header is a key too, and two
  // different ones are a conflict wherever they sit. The fields are scanned in
  // order (Beast keeps same-name fields together, in arrival order, as
  // equal_range() would give them): a head has a handful of fields, and a
  // case-insensitive tree search by name cost ~240 instructions a source.
  auto offer = [&](std::string_view value, const AuthSource& src) -> std::optional<Error> {
    if (ctx.credential && ctx.credential->value != value)
      return errors::auth("conflict", "Two different API keys were sent; send exactly one.");
    if (!ctx.credential) ctx.credential = Credential{value, src};
    return std::nullopt;
  };
  for (const auto& src : auth.sources) {
    switch (src.kind) {
      case AuthSource::Kind::bearer: {
        for (const auto& field : req.fields) {
          if (field.name() != boost::beast::http::field::authorization) continue;
          std::string_view h = trim_ows(field.value());
          auto space = h.find(' ');
          if (!ascii_iequals(h.substr(0, space), "bearer")) continue;  // another scheme
          std::string_view value =
              space == std::string_view::npos ? std::string_view{} : trim_ows(h.substr(space + 1));
          if (value.empty())
            return errors::auth("malformed",
                                "Malformed Authorization header: 'Bearer' needs a key after it.");
          if (auto e = offer(value, src)) return e;
        }
        break;
      }
      case AuthSource::Kind::header: {
        for (const auto& field : req.fields) {
          if (!ascii_iequals(field.name_string(), src.name)) continue;
          std::string_view value = trim_ows(field.value());
          if (value.empty())
            return errors::auth("malformed", "The " + src.name + " header is empty.");
          if (auto e = offer(value, src)) return e;
        }
        break;
      }
      case AuthSource::Kind::query: {
        std::string_view query = req.query();
        while (auto value = query_param(query, src.name)) {
          if (value->empty())
            return errors::auth("malformed", "The " + src.name + " query parameter is empty.");
          if (auto e = offer(*value, src)) return e;
          // Look again after this occurrence (`?api_key=a&api_key=b`).
          query.remove_prefix(static_cast<size_t>(value->data() + value->size() - query.data()));
        }
        break;
      }
    }
  }
  return std::nullopt;
}

}  // namespace keygate
