#pragma once
// A head's fields kept flat, in arrival order, their text in one reused
// buffer: what the upstream's response head needs on its way to the client
// (walk it, drop hop-by-hop fields, copy the rest out). Beast's basic_fields
// costs a node and a case-insensitive tree insert per field (~270
// instructions); an add() here is one append and a push_back.
#include <boost/beast/http/field.hpp>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "keygate/core/append.hpp"

namespace keygate {

class FlatFields {
 public:
  // Beast's basic_fields::value_type members, so code walks either kind.
  class Field {
   public:
    Field(boost::beast::http::field name, std::string_view name_string, std::string_view value)
        : name_(name), name_string_(name_string), value_(value) {}
    boost::beast::http::field name() const { return name_; }
    std::string_view name_string() const { return name_string_; }
    std::string_view value() const { return value_; }

   private:
    boost::beast::http::field name_;
    std::string_view name_string_, value_;
  };
  using value_type = Field;

  class const_iterator {
   public:
    const_iterator(const FlatFields& f, std::size_t i) : f_(&f), i_(i) {}
    Field operator*() const { return f_->at(i_); }
    const_iterator& operator++() {
      ++i_;
      return *this;
    }
    bool operator==(const const_iterator& o) const { return i_ == o.i_; }

   private:
    const FlatFields* f_;
    std::size_t i_;
  };

  void add(boost::beast::http::field name, std::string_view name_string, std::string_view value) {
    const auto at = static_cast<std::uint32_t>(text_.size());
    append_parts(text_, {name_string, value});
    entries_.push_back({name, at, static_cast<std::uint32_t>(name_string.size()),
                        static_cast<std::uint32_t>(value.size())});
  }
  void clear() {
    text_.clear();
    entries_.clear();
  }
  std::size_t size() const { return entries_.size(); }
  Field at(std::size_t i) const {
    const Entry& e = entries_[i];
    return {e.name, std::string_view(text_.data() + e.at, e.name_len),
            std::string_view(text_.data() + e.at + e.name_len, e.value_len)};
  }
  const_iterator begin() const { return {*this, 0}; }
  const_iterator end() const { return {*this, entries_.size()}; }

 private:
  struct Entry {
    boost::beast::http::field name;
    std::uint32_t at, name_len, value_len;  // name then value at text_[at]
  };
  std::string text_;
  std::vector<Entry> entries_;
};

}  // namespace keygate
