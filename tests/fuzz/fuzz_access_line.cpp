// The access log's JSON line (AccessLineRenderer) against what nlohmann::json
// dumps for the same record: byte for byte, whatever the strings a client
// chose (path, request id, method) or an operator stored (owner, key id) hold.
// The renderer copies plain strings itself, eight bytes at a time, and writes
// durations from integers; a mistake there is a forged or broken log line.
// Input: eight strings separated by NUL (request id, client IP, method, path,
// reason, key id, owner, shadow reason), then the rest as numbers.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

#include "../unit/access_line_reference.hpp"
#include "fuzz_check.hpp"
#include "keygate/core/time.hpp"
#include "keygate/observe/access_log.hpp"

using namespace keygate;
using fuzz::check;

namespace {

template <class T>
T take(std::string_view& rest) {
  T v{};
  const std::size_t n = std::min(sizeof v, rest.size());
  std::memcpy(&v, rest.data(), n);
  rest.remove_prefix(n);
  return v;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string_view rest(reinterpret_cast<const char*>(data), size);
  std::vector<std::string_view> s;
  for (int i = 0; i < 8; ++i) {
    const auto nul = rest.find('\0');
    s.push_back(rest.substr(0, nul));
    rest.remove_prefix(nul == std::string_view::npos ? rest.size() : nul + 1);
  }
  log::AccessRecord r{s[0], s[1], s[2], s[3], s[4], s[5], s[6]};
  r.shadow_reason = s[7];
  r.status = take<std::uint16_t>(rest);
  r.bytes_in = take<std::uint64_t>(rest);
  r.bytes_out = take<std::uint64_t>(rest);
  r.duration_ms = take<double>(rest);
  r.upstream_ms = take<double>(rest);
  r.deprecated = take<std::uint8_t>(rest) & 1;
  // Any instant from 1970 to 9999 (format_time's range).
  const UnixMillis now = static_cast<UnixMillis>(take<std::uint64_t>(rest) % 253402300800000ULL);

  static log::AccessLineRenderer renderer;  // reused, as per thread in the gateway
  const std::string_view line = renderer.render(r, now, true);
  const std::string want = test_support::reference_json(r, now);
  check(line == want, "the line is nlohmann's dump of the record",
        std::string(line) + "\nwanted:\n" + want);
  return 0;
}
