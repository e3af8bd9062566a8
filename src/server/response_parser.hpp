#pragma once
// Beast's response parser with the fields kept flat in `fields` (Beast's own
// container stays empty but for the reason phrase): each field is one append
// instead of a node and a tree insert, ~1.1k instructions a proxied response.
// Framing (keep_alive(), chunked(), content_length()) is the parser's own.
#include <boost/beast/http/buffer_body.hpp>
#include <boost/beast/http/parser.hpp>
#include <tuple>
#include <utility>

#include "keygate/core/arena.hpp"
#include "keygate/proxy/flat_fields.hpp"

namespace keygate {

using BeastResponseParser =
    boost::beast::http::response_parser<boost::beast::http::buffer_body, ArenaAllocator<char>>;

class ResponseParser final : public BeastResponseParser {
 public:
  ResponseParser(FlatFields& fields, ArenaAllocator<char> alloc)
      : BeastResponseParser(std::piecewise_construct, std::make_tuple(), std::make_tuple(alloc)),
        fields_(fields) {
    fields_.clear();
  }

 private:
  void on_field_impl(boost::beast::http::field name, boost::beast::string_view name_string,
                     boost::beast::string_view value, boost::system::error_code&) override {
    fields_.add(name, name_string, value);
  }
  FlatFields& fields_;
};

}  // namespace keygate
