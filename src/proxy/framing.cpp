#include "keygate/core/ascii.hpp"
#include "keygate/proxy/forward_headers.hpp"
#include "keygate/proxy/stages.hpp"

namespace keygate {

namespace http = boost::beast::http;

namespace {
Error bad_framing(std::string message) {
  Error e = errors::bad_request(std::move(message));
  e.reason = "bad_request";
  return e;
}
}  // namespace

std::optional<Error> check_framing(const RequestFields& fields, unsigned version) {
  // One pass over the fields, in arrival order: the first seen is the first sent.
  std::optional<std::string_view> te;
  std::size_t te_count = 0, host_count = 0, options = 0;
  for (const auto& f : fields) {
    if (f.name() == http::field::transfer_encoding) {
      if (!te) te = f.value();
      ++te_count;
    } else if (f.name() == http::field::host) {
      ++host_count;
    } else if (f.name() == http::field::connection) {
      options += connection_options(f.value());
    }
  }
  // Beast reads any Transfer-Encoding whose last coding is not `chunked` as "no
  // body", so `chunked, gzip`, `identity` or `xchunked` would let the body be
  // parsed as the next request. Only a lone, exact `chunked` is accepted, and
  // none on HTTP/1.0 (RFC 9112 §6.1: its framing is faulty).
  if (te) {
    std::string_view v = *te;
    while (!v.empty() && (v.front() == ' ' || v.front() == '\t')) v.remove_prefix(1);
    while (!v.empty() && (v.back() == ' ' || v.back() == '\t')) v.remove_suffix(1);
    if (version < 11 || te_count != 1 || !ascii_iequals(v, "chunked"))
      return bad_framing("Transfer-Encoding must be exactly 'chunked'.");
  }
  // RFC 9112 §3.2: exactly one Host on HTTP/1.1; two let the gateway and the
  // upstream disagree about which one counts.
  if (version >= 11 && host_count != 1)
    return bad_framing("An HTTP/1.1 request needs exactly one Host header.");
  if (options > kMaxConnectionOptions)
    return bad_framing("The Connection header may list at most " +
                       std::to_string(kMaxConnectionOptions) + " options.");
  return std::nullopt;
}

}  // namespace keygate
