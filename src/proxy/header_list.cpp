// HeaderList on its own: the response-head writers (and the response-head fuzz
// target) need it without the stages that fill it.
#include "keygate/proxy/response_headers.hpp"

#include "keygate/core/append.hpp"
#include "keygate/core/ascii.hpp"

namespace keygate {

void HeaderList::set(std::string_view name, std::string_view value) {
  for (auto it = fields_.begin(); it != fields_.end(); ++it) {
    if (it->name_len == name.size() && ascii_iequals(this->name(*it), name)) {
      fields_.erase(it);  // set() semantics: the new one goes last
      replaced_ = true;
      break;
    }
  }
  const auto at = static_cast<std::uint32_t>(text_.size());
  append_parts(text_, {name, ": ", value, "\r\n"});
  fields_.push_back(
      {at, static_cast<std::uint32_t>(name.size()), static_cast<std::uint32_t>(text_.size() - at)});
}

bool HeaderList::has(std::string_view n) const {
  for (const auto& s : fields_)
    if (s.name_len == n.size() && ascii_iequals(name(s), n)) return true;
  return false;
}

void HeaderList::append_to(std::string& out) const {
  if (!replaced_) {
    out += text_;
    return;
  }
  for (const auto& s : fields_) out.append(text_, s.at, s.line_len);
}

}  // namespace keygate
