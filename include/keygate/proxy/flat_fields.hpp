#pragma once
// A head's fields kept flat, in arrival order, their text in one reused
// buffer: the client's request head (routing, credentials, the head that goes
// upstream) and the upstream's response head (walk it, drop hop-by-hop
// fields, copy the rest out). Beast's basic_fields costs a node and a
// case-insensitive tree insert per field (~330 instructions with the
// parser's call); an add() here is one append and a push_back. Lookups are
// linear: a head holds tens of fields, and most are read once, in order.
#include <algorithm>
#include <boost/beast/http/field.hpp>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "keygate/core/append.hpp"
#include "keygate/core/ascii.hpp"

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
  // Emptied for the next head; a buffer grown by an unusually large head is
  // given back rather than kept for the connection's lifetime.
  void clear() {
    if (text_.capacity() > kKeptCapacity) std::string().swap(text_);
    text_.clear();
    entries_.clear();
  }

  // Beast's basic_fields lookups: the first value of that name (names compare
  // case-insensitively), empty when there is none; and how many there are.
  // By enum for a known name only (field::unknown matches every unknown one).
  std::string_view operator[](boost::beast::http::field name) const {
    for (std::size_t i = 0; i < entries_.size(); ++i)
      if (entries_[i].name == name) return at(i).value();
    return {};
  }
  std::string_view operator[](std::string_view name) const {
    for (std::size_t i = 0; i < entries_.size(); ++i)
      if (named(i, name)) return at(i).value();
    return {};
  }
  std::size_t count(boost::beast::http::field name) const {
    std::size_t n = 0;
    for (const Entry& e : entries_) n += e.name == name;
    return n;
  }
  std::size_t count(std::string_view name) const {
    std::size_t n = 0;
    for (std::size_t i = 0; i < entries_.size(); ++i) n += named(i, name);
    return n;
  }

  // Building or editing a head by hand (local replies' extras, tools, tests).
  void insert(boost::beast::http::field name, std::string_view value) {
    add(name, boost::beast::http::to_string(name), value);
  }
  void insert(std::string_view name, std::string_view value) {
    add(boost::beast::http::string_to_field(name), name, value);
  }
  // The one field of that name, the others removed.
  void set(boost::beast::http::field name, std::string_view value) {
    erase(name);
    insert(name, value);
  }
  void set(std::string_view name, std::string_view value) {
    erase(name);
    insert(name, value);
  }
  // Every field of that name removed (their text stays until clear()).
  void erase(boost::beast::http::field name) {
    std::erase_if(entries_, [name](const Entry& e) { return e.name == name; });
  }
  void erase(std::string_view name) {
    std::size_t kept = 0;
    for (std::size_t i = 0; i < entries_.size(); ++i)
      if (!named(i, name)) entries_[kept++] = entries_[i];
    entries_.resize(kept);
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
  static constexpr std::size_t kKeptCapacity = 16 * 1024;
  bool named(std::size_t i, std::string_view name) const {
    const Entry& e = entries_[i];
    return e.name_len == name.size() &&
           ascii_iequals(std::string_view(text_.data() + e.at, e.name_len), name);
  }
  struct Entry {
    boost::beast::http::field name;
    std::uint32_t at, name_len, value_len;  // name then value at text_[at]
  };
  std::string text_;
  std::vector<Entry> entries_;
};

}  // namespace keygate
