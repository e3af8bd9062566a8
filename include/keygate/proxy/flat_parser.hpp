#pragma once
// Beast's parsers with the fields kept flat in a FlatFields the session owns
// (Beast's own container stays empty but for what the start line carries):
// each field is one append instead of a node and a case-insensitive tree
// insert, ~330 instructions a field. Framing (keep_alive(), chunked(),
// content_length()) is the parser's own; the header's field-reading
// accessors (req.keep_alive(), res.chunked(), operator[]) see no fields, so
// only the parser's flags and the FlatFields are read.
#include <boost/beast/http/buffer_body.hpp>
#include <boost/beast/http/parser.hpp>
#include <tuple>
#include <utility>

#include "keygate/core/arena.hpp"
#include "keygate/proxy/flat_fields.hpp"

namespace keygate {

template <bool isRequest>
using BeastParser =
    boost::beast::http::parser<isRequest, boost::beast::http::buffer_body, ArenaAllocator<char>>;

template <bool isRequest>
class FlatFieldsParser final : public BeastParser<isRequest> {
 public:
  // `fields` is emptied for this head; it must outlive the parser's use of it.
  FlatFieldsParser(FlatFields& fields, ArenaAllocator<char> alloc)
      : BeastParser<isRequest>(std::piecewise_construct, std::make_tuple(), std::make_tuple(alloc)),
        fields_(fields) {
    fields_.clear();
  }
  const FlatFields& fields() const { return fields_; }
  FlatFields& fields() { return fields_; }

 private:
  void on_field_impl(boost::beast::http::field name, boost::beast::string_view name_string,
                     boost::beast::string_view value, boost::system::error_code&) override {
    fields_.add(name, name_string, value);
  }
  FlatFields& fields_;
};

using RequestParser = FlatFieldsParser<true>;
using ResponseParser = FlatFieldsParser<false>;

}  // namespace keygate
