// Key parsing: KeyFormat (shape, charset, CRC32 checksum), KeyHasher, and the
// credential extractor (src/proxy/credentials.cpp) on fuzzed header values.
// Input, one field a line:
//   keys config: "<prefix> <environment or -> [pepper]"   (invalid: kg live)
//   Authorization header value
//   X-Api-Key header value
//   query string
// Properties: a well-formed key has the configured shape and checksum; any one
// character changed in a well-formed key is refused; a key built from fuzzed body
// characters and its checksum is well-formed; hashing is deterministic and the
// pepper changes it; the extractor either refuses with 401 or returns exactly
// one of the values it was given.
#include <boost/beast/http/fields.hpp>

#include <cstddef>
#include <cstdint>
#include <regex>
#include <string>
#include <string_view>
#include <vector>

#include "fuzz_check.hpp"
#include "keygate/keys/key_format.hpp"
#include "keygate/keys/key_hasher.hpp"
#include "keygate/proxy/stages.hpp"

using namespace keygate;
using fuzz::check;

namespace {

constexpr std::string_view kBase62 =
    "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

std::vector<std::string> fields_of(std::string_view s) {
  std::vector<std::string> out;
  while (!s.empty()) {
    auto nl = s.find('\n');
    out.emplace_back(s.substr(0, nl));
    if (nl == std::string_view::npos) break;
    s.remove_prefix(nl + 1);
  }
  out.resize(std::max<size_t>(out.size(), 4));
  return out;
}

// What Beast's parser hands on: no CR, LF or NUL in a value, no surrounding blanks.
std::string header_value(std::string v) {
  std::erase_if(v, [](char c) { return c == '\r' || c == '\n' || c == '\0'; });
  while (!v.empty() && (v.front() == ' ' || v.front() == '\t')) v.erase(0, 1);
  while (!v.empty() && (v.back() == ' ' || v.back() == '\t')) v.pop_back();
  return v;
}

KeysConfig keys_config(const std::string& line) {
  KeysConfig cfg;  // kg, live
  auto sp = line.find(' ');
  std::string prefix = line.substr(0, sp);
  static const std::regex prefix_re("[a-z0-9]{1,16}");
  if (sp == std::string::npos || !std::regex_match(prefix, prefix_re)) return cfg;
  std::string rest = line.substr(sp + 1);
  auto sp2 = rest.find(' ');
  std::string env = rest.substr(0, sp2);
  if (env != "live" && env != "test" && env != "-") return cfg;
  cfg.prefix = prefix;
  cfg.environment = env == "-" ? std::nullopt : std::optional(env);
  if (sp2 != std::string::npos) cfg.pepper = rest.substr(sp2 + 1);
  const int head = static_cast<int>(cfg.prefix.size()) + 1 +
                   (cfg.environment ? static_cast<int>(cfg.environment->size()) + 1 : 0);
  cfg.display_prefix_length = head + 4;
  return cfg;
}

void check_format(const KeyFormat& format, const KeyHasher& hasher, const KeyHasher& plain,
                  bool peppered, const std::string& s) {
  const bool ok = format.well_formed(s);
  check(format.display_prefix(s).size() <= format.display_prefix_length(), "display prefix");
  check(hasher.hash(s) == hasher.hash(s), "hashing is deterministic", s);
  if (peppered) check(hasher.hash(s) != plain.hash(s), "the pepper changes the hash", s);
  if (!ok) return;
  check(s.size() == format.length() && s.starts_with(format.head()), "a key's shape", s);
  const auto body = std::string_view(s).substr(s.size() - kChecksumChars);
  check(checksum_base62(std::string_view(s).substr(0, s.size() - kChecksumChars)) == body,
        "a key's checksum", s);
  // CRC32 catches every error burst up to 32 bits: any one character changed is refused.
  for (size_t i = 0; i < s.size(); ++i) {
    std::string typo = s;
    typo[i] = typo[i] == 'x' ? 'y' : 'x';
    check(!format.well_formed(typo), "one changed character is refused", typo);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const auto f = fields_of(std::string_view(reinterpret_cast<const char*>(data), size));
  const KeysConfig keys = keys_config(f[0]);
  const KeyFormat format(keys);
  const KeyHasher hasher(keys.pepper), plain;

  // A key built from the fuzzed characters: their base62 ones, padded, then the checksum.
  std::string built = format.head();
  for (char c : f[1] + f[2] + f[3])
    if (kBase62.find(c) != std::string_view::npos &&
        built.size() < format.head().size() + kRandomChars)
      built += c;
  while (built.size() < format.head().size() + kRandomChars) built += 'A';
  built += checksum_base62(built);
  check(format.well_formed(built), "a key with its checksum is well-formed", built);
  check_format(format, hasher, plain, keys.pepper.has_value(), built);

  RequestFields headers;
  const std::string authorization = header_value(f[1]), api_key = header_value(f[2]);
  if (!f[1].empty()) headers.set(boost::beast::http::field::authorization, authorization);
  if (!f[2].empty()) headers.set("X-Api-Key", api_key);
  const std::string target = "/v1/x?" + f[3];
  for (const auto& candidate : {authorization, api_key, f[3]})
    check_format(format, hasher, plain, keys.pepper.has_value(), candidate);

  AuthConfig auth;
  auth.sources.push_back({AuthSource::Kind::query, "api_key"});
  Context ctx;
  RequestView req{"GET", target, headers};
  if (auto err = extract_credential(req, auth, ctx)) {
    check(err->status == 401 && (err->reason == "malformed" || err->reason == "conflict"),
          "the extractor refuses with 401 malformed or conflict", err->reason);
  } else if (ctx.credential) {
    const std::string v(ctx.credential->value);
    check(!v.empty(), "an extracted credential is not empty");
    check(authorization.find(v) != std::string::npos || api_key == v ||
              target.find(v) != std::string::npos,
          "the extracted credential is one of the values sent", v);
    check_format(format, hasher, plain, keys.pepper.has_value(), v);
  }
  return 0;
}
