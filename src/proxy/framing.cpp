#include "keygate/core/ascii.hpp"
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

std::optional<Error> check_framing(const Fields& fields, unsigned version) {
  // Beast reads any Transfer-Encoding whose last coding is not `chunked` as "no
  // body", so `chunked, gzip`, `identity` or `xchunked` would let the body be
  // parsed as the next request. Only a lone, exact `chunked` is accepted, and
  // none on HTTP/1.0 (RFC 9112 §6.1: its framing is faulty).
  if (auto te = fields.equal_range(http::field::transfer_encoding); te.first != te.second) {
    std::string_view v = te.first->value();
    while (!v.empty() && (v.front() == ' ' || v.front() == '\t')) v.remove_prefix(1);
    while (!v.empty() && (v.back() == ' ' || v.back() == '\t')) v.remove_suffix(1);
    if (version < 11 || std::next(te.first) != te.second || !ascii_iequals(v, "chunked"))
      return bad_framing("Transfer-Encoding must be exactly 'chunked'.");
  }
  // RFC 9112 §3.2: exactly one Host on HTTP/1.1; two let the gateway and the
  // upstream disagree about which one counts.
  if (version >= 11 && fields.count(http::field::host) != 1)
    return bad_framing("An HTTP/1.1 request needs exactly one Host header.");
  return std::nullopt;
}

}  // namespace keygate
