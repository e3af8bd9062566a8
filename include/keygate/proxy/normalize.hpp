#pragma once
// Request-target normalisation (SPEC §7): the one place that turns what a
// client sent into the path routes are matched against and the target that
// goes upstream. A pure function of (target, options), so it is unit-tested and
// fuzzed without a network.
//
// What it does, in order (nginx and Envoy's `normalize_path` + `merge_slashes`):
//   - origin-form `/p?q` is taken as is; absolute-form `http(s)://host/p?q` is
//     reduced to `/p?q` (its authority is returned); `*`, authority-form and
//     anything else is refused;
//   - percent-encoded unreserved characters (ALPHA DIGIT - . _ ~) are decoded,
//     once (`%252e` stays `%252e`), other escapes are kept with upper-case hex;
//     raw characters outside RFC 3986 `pchar` (UTF-8 bytes, `"`, `|`, `[` …) are
//     percent-encoded, as Envoy/Chromium's URL canonicaliser does;
//   - dot-segments are resolved and repeated slashes merged;
//   - the query string is kept byte for byte.
// Refused (400 VALIDATION_ERROR, details.reason "bad_path"): `%2F`/`%5C` (unless
// `allow_encoded_slashes`, which keeps them encoded and opaque), `%00`, a raw `\`
// or `#`, a broken escape, `..` climbing above the root, and segments an
// upstream could still read as dot-segments: `..;x` (servlet path parameters)
// and, with `allow_encoded_slashes`, `..%2F`.
//
// The result is idempotent and holds no dot-segment, no `//`, no `%2F`/`%5C`
// (unless allowed) and no `%00`: an upstream that decodes and resolves it again
// lands where keygate judged it.
#include <expected>
#include <optional>
#include <string>
#include <string_view>

#include "keygate/core/error.hpp"

namespace keygate {

struct NormalizeOptions {
  bool allow_encoded_slashes = false;
};

struct NormalizedTarget {
  std::string target;     // normalised path, then `?query` as sent (when there was one)
  size_t path_size = 0;   // target[0, path_size) is the path
  std::string authority;  // host[:port] of an absolute-form target, else empty
  std::string_view path() const { return std::string_view(target).substr(0, path_size); }
};

std::expected<NormalizedTarget, Error> normalize_target(std::string_view target,
                                                        const NormalizeOptions& options);
// The same into `out`, whose strings keep their capacity (the per-request
// path: a path longer than a short string cost an allocation a request).
// On an error `out` is left empty.
std::optional<Error> normalize_target(std::string_view target, const NormalizeOptions& options,
                                      NormalizedTarget& out);

// A normalised path as upstreams that read more into it see it: servlet
// containers (Tomcat, Jetty) drop `;params` from every segment, and many
// upstreams decode %2F/%5C into '/' (relevant with allow_encoded_slashes).
// Routing refuses a path whose two readings select different routes.
std::string lenient_reading(std::string_view normalized_path);

}  // namespace keygate
