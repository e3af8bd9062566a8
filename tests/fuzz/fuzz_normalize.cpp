// normalize_target (SPEC §7) on arbitrary request targets, with and without
// limits.allow_encoded_slashes. Properties (issue 11): a refusal is a 400
// bad_path; an accepted target is idempotent, keeps its query byte for byte, and
// its path holds no dot-segment, no '//', no %00, no raw '\' or '#', no %2F/%5C
// (unless allowed), only RFC 3986 path characters; read again as an upstream
// reads it (escapes decoded; with encoded slashes allowed, also %2F as '/' and
// ';params' dropped) it still has no dot-segment, so it never leaves a prefix
// it was judged under.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include <boost/url/grammar/hexdig_chars.hpp>
#include <boost/url/rfc/pchars.hpp>

#include "fuzz_check.hpp"
#include "keygate/proxy/normalize.hpp"

using namespace keygate;
using fuzz::check;

namespace {

bool contains_ci(std::string_view s, std::string_view needle) {
  for (size_t i = 0; i + needle.size() <= s.size(); ++i) {
    bool same = true;
    for (size_t k = 0; k < needle.size() && same; ++k)
      same = (s[i + k] | 0x20) == (needle[k] | 0x20);
    if (same) return true;
  }
  return false;
}

// Segments "." or "..", or an empty one before the end ("//").
bool has_dot_or_empty_segment(std::string_view path) {
  if (!path.starts_with('/')) return true;
  std::string_view s = path.substr(1);
  while (true) {
    auto slash = s.find('/');
    std::string_view seg = s.substr(0, slash);
    if (seg == "." || seg == "..") return true;
    if (slash == std::string_view::npos) return false;
    if (seg.empty()) return true;
    s.remove_prefix(slash + 1);
  }
}

// Every %XX decoded, except %2F/%5C when they stay opaque.
std::string decoded(std::string_view path, bool keep_slash_escapes) {
  std::string out;
  for (size_t i = 0; i < path.size(); ++i) {
    if (path[i] == '%' && i + 2 < path.size()) {
      std::string_view esc = path.substr(i, 3);
      if (keep_slash_escapes && (contains_ci(esc, "%2F") || contains_ci(esc, "%5C"))) {
        out += esc;
      } else {
        out += static_cast<char>(boost::urls::grammar::hexdig_value(path[i + 1]) * 16 +
                                 boost::urls::grammar::hexdig_value(path[i + 2]));
      }
      i += 2;
    } else {
      out += path[i];
    }
  }
  return out;
}

void check_one(std::string_view input, bool allow_encoded_slashes) {
  const NormalizeOptions options{allow_encoded_slashes};
  auto r = normalize_target(input, options);
  if (!r) {
    check(r.error().status == 400 && r.error().reason == "bad_path", "refused as 400 bad_path",
          r.error().message);
    return;
  }
  const std::string& target = r->target;
  const std::string_view path = r->path();
  check(r->path_size <= target.size(), "path_size within the target", target);
  const auto q = input.find('?');
  const std::string_view query = q == std::string_view::npos ? "" : input.substr(q);
  check(std::string_view(target).substr(r->path_size) == query, "the query is kept byte for byte",
        target);
  check(!has_dot_or_empty_segment(path), "no dot-segment and no '//'", target);
  check(path.find_first_of("\\#?") == std::string_view::npos, "no raw '\\', '#' or '?'", target);
  check(!contains_ci(path, "%00"), "no %00", target);
  if (!allow_encoded_slashes)
    check(!contains_ci(path, "%2F") && !contains_ci(path, "%5C"), "no %2F or %5C", target);
  for (char c : path)
    check(boost::urls::pchars(c) || c == '/' || c == '%', "only RFC 3986 path characters", target);
  check(!has_dot_or_empty_segment(decoded(path, allow_encoded_slashes)),
        "an upstream that decodes the path finds no dot-segment", target);
  if (allow_encoded_slashes)
    check(!has_dot_or_empty_segment(lenient_reading(path)),
          "an upstream that decodes %2F and drops ';params' finds no dot-segment", target);

  auto again = normalize_target(target, options);
  check(again.has_value(), "a normalised target is accepted again", target);
  check(again->target == target && again->path_size == r->path_size, "normalisation is idempotent",
        target + " -> " + again->target);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  check_one(input, false);
  check_one(input, true);
  return 0;
}
