#include "keygate/proxy/response_headers.hpp"

#include "keygate/core/append.hpp"
#include "keygate/core/ascii.hpp"
#include "keygate/proxy/pipeline.hpp"
#include "keygate/proxy/stages.hpp"

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

void add_response_headers(HeaderSink& out, const Context& ctx, const Runtime& rt,
                          std::int64_t now_epoch_seconds) {
  out.set("X-Request-Id", ctx.request_id);
  add_rate_limit_headers(rt.config.rate_limit, ctx, out, now_epoch_seconds);
  add_key_lifecycle_headers(ctx, out);  // after: a credits refusal's Retry-After wins
}

void add_local_reply_headers(HeaderSink& out, const Verdict& v, const Context& ctx,
                             const Runtime& rt, std::int64_t now_epoch_seconds) {
  out.set("Content-Type", "application/json");
  if (v.www_authenticate) out.set("WWW-Authenticate", "Bearer realm=\"keygate\"");
  for (const auto& f : v.headers) out.set(f.name_string(), f.value());  // forward auth: identity
  add_response_headers(out, ctx, rt, now_epoch_seconds);
}

}  // namespace keygate
