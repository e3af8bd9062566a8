#include "keygate/proxy/normalize.hpp"

#include <algorithm>
#include <optional>

#include <boost/url/encode.hpp>
#include <boost/url/grammar/charset.hpp>
#include <boost/url/grammar/hexdig_chars.hpp>
#include <boost/url/parse.hpp>
#include <boost/url/parse_path.hpp>
#include <boost/url/rfc/pchars.hpp>
#include <boost/url/rfc/unreserved_chars.hpp>

namespace keygate {

namespace urls = boost::urls;

namespace {

Error bad_path(std::string message) {
  Error e = errors::bad_request(std::move(message));
  e.reason = "bad_path";
  return e;
}

char upper_hex(char c) {
  return c >= 'a' && c <= 'f' ? static_cast<char>(c - 'a' + 'A') : c;
}

// One segment with its unreserved escapes decoded and the others kept (upper-case
// hex). `%00` is refused always; `%2F`/`%5C` unless they are allowed.
std::optional<Error> decode_unreserved(std::string_view encoded, const NormalizeOptions& options,
                                       std::string& out) {
  for (size_t i = 0; i < encoded.size(); ++i) {
    char c = encoded[i];
    if (c != '%') {
      out += c;
      continue;
    }
    // parse_path validated the escape: two hex digits follow.
    auto v = static_cast<unsigned char>(urls::grammar::hexdig_value(encoded[i + 1]) * 16 +
                                        urls::grammar::hexdig_value(encoded[i + 2]));
    char decoded = static_cast<char>(v);
    if (urls::unreserved_chars(decoded)) {
      out += decoded;
    } else if (v == 0) {
      return bad_path("The path holds an encoded NUL (%00).");
    } else if ((decoded == '/' || decoded == '\\') && !options.allow_encoded_slashes) {
      return bad_path("The path holds an encoded '/' or '\\' (%2F, %5C).");
    } else {
      out += '%';
      out += upper_hex(encoded[i + 1]);
      out += upper_hex(encoded[i + 2]);
    }
    i += 2;
  }
  return std::nullopt;
}

bool is_dot(std::string_view s) {
  return s == "." || s == "..";
}

// A segment that is not a dot-segment here but that some upstream reads as an
// empty or dot segment: `;x`, `.;x`, `..;x` (servlet containers drop `;params`)
// and, when encoded slashes are allowed, `..%2Fx` (upstreams that decode them).
bool reads_as_dot_segment(std::string_view seg, bool encoded_slashes) {
  auto name_of = [](std::string_view s) { return s.substr(0, s.find(';')); };
  if (seg.find(';') != std::string_view::npos) {
    auto name = name_of(seg);
    if (name.empty() || is_dot(name)) return true;
  }
  if (!encoded_slashes) return false;
  for (;;) {
    size_t cut = std::min(seg.find("%2F"), seg.find("%5C"));
    if (is_dot(name_of(seg.substr(0, cut)))) return true;
    if (cut == std::string_view::npos) return false;
    seg.remove_prefix(cut + 3);
  }
}

// A path the walk below would return unchanged: '/' then segments of
// unreserved characters (letters, digits, '-', '.', '_', '~'; none of them
// "." or ".."), no empty one but the last. Most requests' paths; the walk costs ten times the
// check.
bool already_normal(std::string_view path) {
  if (!path.starts_with('/')) return false;
  std::size_t start = 1;
  for (std::size_t i = 1; i <= path.size(); ++i) {
    if (i == path.size() || path[i] == '/') {
      const std::string_view seg = path.substr(start, i - start);
      if ((seg.empty() && i != path.size()) || is_dot(seg)) return false;
      start = i + 1;
      continue;
    }
    if (!urls::unreserved_chars(path[i])) return false;
  }
  return true;
}

std::optional<Error> normalize_into(std::string_view target, const NormalizeOptions& options,
                                    NormalizedTarget& out) {
  const size_t q = target.find('?');
  const std::string_view before_query = target.substr(0, q);
  const std::string_view query =
      q == std::string_view::npos ? std::string_view{} : target.substr(q);
  if (already_normal(before_query)) {
    out.target.assign(target);
    out.path_size = before_query.size();
    return std::nullopt;
  }

  std::string_view raw_path;
  if (before_query.starts_with('/')) {
    raw_path = before_query;
  } else if (before_query.empty() || before_query == "*") {
    return bad_path("The request target must be a path starting with '/'.");
  } else {
    // Absolute-form (RFC 9112 §3.2.2): only its path goes on.
    auto url = urls::parse_absolute_uri(before_query);
    if (!url ||
        (url->scheme_id() != urls::scheme::http && url->scheme_id() != urls::scheme::https) ||
        !url->has_authority() || url->has_userinfo() || url->encoded_host().empty())
      return bad_path("The request target must be a path starting with '/' or an http(s) URL.");
    out.authority = url->encoded_host_and_port();
    raw_path = url->encoded_path();
    if (raw_path.empty()) raw_path = "/";
  }

  if (raw_path.find_first_of("\\#") != std::string_view::npos)
    return bad_path("The path holds a raw '\\' or '#'.");
  // Raw bytes RFC 3986 does not allow in a path (UTF-8, '"', '|', '[' …) are
  // percent-encoded, as Envoy does; existing escapes are left for the walk
  // below (so the text between them is encoded, and each '%' copied).
  static constexpr auto kPathChars = urls::pchars + '/';
  std::string canonical;
  const char* end = raw_path.data() + raw_path.size();
  if (urls::grammar::find_if_not(raw_path.data(), end, kPathChars + '%') != end) {
    for (std::string_view rest = raw_path;;) {
      const std::string_view part = rest.substr(0, rest.find('%'));
      const size_t at = canonical.size(), n = urls::encoded_size(part, kPathChars);
      canonical.resize(at + n);
      urls::encode(canonical.data() + at, n, part, kPathChars);
      if (part.size() == rest.size()) break;
      canonical += '%';
      rest.remove_prefix(part.size() + 1);
    }
    raw_path = canonical;
  }
  auto segments = urls::parse_path(raw_path);
  if (!segments) return bad_path("The path holds a broken percent-escape.");

  // Resolve dot-segments and merge slashes. `path` is "" or "/a/b" while it is
  // built: each segment is decoded onto its end, then taken back if it is
  // empty or a dot-segment; ".." also drops the segment before it.
  std::string& path = out.target;
  path.reserve(raw_path.size() + query.size() + 1);
  bool trailing_slash = false;
  for (auto it = segments->begin(); it != segments->end(); ++it) {
    const size_t mark = path.size();
    path += '/';
    if (auto err = decode_unreserved(*it, options, path)) return err;
    const std::string_view seg = std::string_view(path).substr(mark + 1);
    trailing_slash = seg.empty() || is_dot(seg);
    if (trailing_slash) {
      const bool up = seg == "..";
      path.resize(mark);
      if (up && path.empty()) return bad_path("The path climbs above the root.");
      if (up) path.resize(path.rfind('/'));
      continue;
    }
    if (reads_as_dot_segment(seg, options.allow_encoded_slashes))
      return bad_path("The path holds a segment an upstream could read as '..'.");
  }
  if (path.empty() || trailing_slash) path += '/';
  out.path_size = path.size();
  path += query;
  return std::nullopt;
}

}  // namespace

std::optional<Error> normalize_target(std::string_view target, const NormalizeOptions& options,
                                      NormalizedTarget& out) {
  out.target.clear();
  out.authority.clear();
  out.path_size = 0;
  std::optional<Error> err = normalize_into(target, options, out);
  if (err) {  // nothing half-made is left behind
    out.target.clear();
    out.authority.clear();
    out.path_size = 0;
  }
  return err;
}

std::expected<NormalizedTarget, Error> normalize_target(std::string_view target,
                                                        const NormalizeOptions& options) {
  NormalizedTarget out;
  if (auto err = normalize_target(target, options, out)) return std::unexpected(std::move(*err));
  return out;
}

std::string lenient_reading(std::string_view path) {
  std::string slashes;  // %2F and %5C read as '/' (normalize_target upper-cased them)
  slashes.reserve(path.size());
  for (size_t i = 0; i < path.size(); ++i) {
    std::string_view rest = path.substr(i, 3);
    if (rest == "%2F" || rest == "%5C") {
      slashes += '/';
      i += 2;
    } else {
      slashes += path[i];
    }
  }
  std::string out;
  out.reserve(slashes.size());
  std::string_view s = slashes;
  while (!s.empty()) {
    s.remove_prefix(1);  // the '/'
    std::string_view seg = s.substr(0, s.find('/'));
    s.remove_prefix(seg.size());
    std::string_view name = seg.substr(0, seg.find(';'));
    if (name.empty()) continue;  // empty segments merge
    out += '/';
    out += name;
  }
  if (out.empty() || slashes.ends_with('/')) out += '/';
  return out;
}

}  // namespace keygate
