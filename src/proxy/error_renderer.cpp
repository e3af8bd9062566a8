#include "keygate/proxy/error_renderer.hpp"

#include <algorithm>

#include "keygate/core/time.hpp"

namespace keygate {

namespace {

// Error text may carry bytes a client sent (a path, a parameter): never let them
// make dump() throw; invalid UTF-8 becomes U+FFFD.
template <class Json>
std::string to_text(const Json& j) {
  return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

struct Values {
  std::string code, message, reason, request_id, retry_after, retry_at, reset, reset_at;
  int status = 0;
  nlohmann::ordered_json details;

  nlohmann::ordered_json typed(std::string_view name) const {
    auto number = [](const std::string& v) {
      return v.empty() ? nlohmann::ordered_json(nullptr) : nlohmann::ordered_json(std::stoll(v));
    };
    if (name == "status") return status;
    if (name == "details") return details;
    if (name == "retry_after") return number(retry_after);
    if (name == "reset") return number(reset);
    return textual(name);
  }
  std::string textual(std::string_view name) const {
    if (name == "code") return code;
    if (name == "message") return message;
    if (name == "status") return std::to_string(status);
    if (name == "reason") return reason;
    if (name == "request_id") return request_id;
    if (name == "details") return to_text(details);
    if (name == "retry_after") return retry_after;
    if (name == "retry_at") return retry_at;
    if (name == "reset") return reset;
    if (name == "reset_at") return reset_at;
    std::string unknown(1, '{');  // left as written
    unknown.append(name);
    unknown.push_back('}');
    return unknown;
  }
};

// Replaces every {name} in `text`; unknown names are left as written.
std::string substitute(std::string_view text, const Values& v) {
  std::string out;
  size_t i = 0;
  while (i < text.size()) {
    auto open = text.find('{', i);
    if (open == std::string_view::npos) break;
    auto close = text.find('}', open);
    if (close == std::string_view::npos) break;
    out.append(text.substr(i, open - i));
    out += v.textual(text.substr(open + 1, close - open - 1));
    i = close + 1;
  }
  out.append(text.substr(i));
  return out;
}

nlohmann::ordered_json fill(const nlohmann::ordered_json& t, const Values& v) {
  if (t.is_string()) {
    const auto& s = t.get_ref<const std::string&>();
    if (s.size() > 2 && s.front() == '{' && s.back() == '}' && s.find('{', 1) == std::string::npos)
      return v.typed(std::string_view(s).substr(1, s.size() - 2));
    return substitute(s, v);
  }
  if (t.is_array()) {
    auto out = nlohmann::ordered_json::array();
    for (const auto& item : t) out.push_back(fill(item, v));
    return out;
  }
  if (t.is_object()) {
    auto out = nlohmann::ordered_json::object();
    for (const auto& [k, item] : t.items()) out[k] = fill(item, v);
    return out;
  }
  return t;
}

nlohmann::json details_of(const Error& e) {
  nlohmann::json d = e.details.is_object() ? e.details : nlohmann::json::object();
  if (!e.reason.empty()) d["reason"] = e.reason;
  return d;
}

// Stands for the request id in a body kept as pieces. Control characters come
// out of any JSON dump escaped, so this is how the marker reads in the body
// wherever the id went (typed or inside a longer string), and no configured
// text can hold it by accident.
constexpr std::string_view kIdMarker = "\x01kg-request-id\x01";
constexpr std::string_view kIdMarkerDumped = "\\u0001kg-request-id\\u0001";

// An id that needs no JSON escaping can be spliced as is (ids are visible
// ASCII; only '"' and '\\' would need escapes).
bool splices_verbatim(std::string_view id) {
  // (Not find_first_of: libstdc++ calls memchr on the set once per character.)
  return std::none_of(id.begin(), id.end(), [](char c) { return c == '"' || c == '\\'; });
}

// Depends on nothing but the request id: no retry time, no extra details.
bool cacheable(const Error& e) {
  return !e.retry_after && !e.reset_after && (e.details.is_null() || e.details.empty());
}

}  // namespace

std::string RenderCache::take() {
  if (spare_.empty()) return {};
  std::string s = std::move(spare_.back());
  spare_.pop_back();
  s.clear();
  return s;
}

void RenderCache::give(std::string body) {
  if (body.capacity() > 0 && spare_.size() < kMaxSpare) spare_.push_back(std::move(body));
}

std::string ErrorRenderer::envelope(const Error& e, std::string_view request_id) {
  nlohmann::ordered_json body = {{"success", false},
                                 {"error",
                                  {{"code", e.code},
                                   {"message", e.message.view()},
                                   {"details", details_of(e)},
                                   {"request_id", request_id}}}};
  return to_text(body);
}

std::string ErrorRenderer::render(const Error& e, std::string_view request_id,
                                  std::chrono::system_clock::time_point now) const {
  if (!style_) return envelope(e, request_id);
  Values v;
  v.status = e.status;
  v.reason = e.reason;
  v.request_id = std::string(request_id);
  v.details = details_of(e);
  if (e.retry_after) {
    v.retry_after = std::to_string(*e.retry_after);
    v.retry_at = format_rfc3339(now + std::chrono::seconds(*e.retry_after));
  }
  if (e.reset_after) {
    v.reset = std::to_string(*e.reset_after);
    v.reset_at = format_rfc3339(now + std::chrono::seconds(*e.reset_after));
  }
  auto code = style_->codes.find(e.code);
  v.code = code != style_->codes.end() ? code->second : e.code;
  auto msg = style_->messages.find(e.reason);
  v.message = substitute(
      msg != style_->messages.end() ? std::string_view(msg->second) : e.message.view(), v);

  const nlohmann::ordered_json* tmpl = &style_->template_body;
  if (auto t = style_->templates.find(e.reason); t != style_->templates.end()) tmpl = &t->second;
  if (tmpl->is_null()) {
    Error styled = e;
    styled.code = v.code;
    styled.message = v.message;
    return envelope(styled, request_id);
  }
  return to_text(fill(*tmpl, v));
}

void ErrorRenderer::render_into(std::string& out, const Error& e, std::string_view request_id,
                                std::chrono::system_clock::time_point now,
                                RenderCache* cache) const {
  out.clear();
  if (!cache || !cacheable(e) || !splices_verbatim(request_id)) {
    out += render(e, request_id, now);
    return;
  }
  RenderCache::Entry* hit = nullptr;
  for (auto& entry : cache->entries_) {
    if (entry.renderer == this && entry.status == e.status && entry.reason == e.reason &&
        entry.message == e.message.view() && entry.code == e.code) {
      hit = &entry;
      break;
    }
  }
  if (!hit) {
    if (cache->entries_.size() >= RenderCache::kMaxEntries) cache->entries_.clear();
    RenderCache::Entry entry{this, e.status, e.code, e.reason, std::string(e.message.view()), {}};
    const std::string marked = render(e, kIdMarker, now);
    std::string_view rest = marked;
    for (auto at = rest.find(kIdMarkerDumped); at != std::string_view::npos;
         at = rest.find(kIdMarkerDumped)) {
      entry.pieces.emplace_back(rest.substr(0, at));
      rest.remove_prefix(at + kIdMarkerDumped.size());
    }
    entry.pieces.emplace_back(rest);
    cache->entries_.push_back(std::move(entry));
    hit = &cache->entries_.back();
  }
  for (std::size_t i = 0; i < hit->pieces.size(); ++i) {
    if (i > 0) out += request_id;
    out += hit->pieces[i];
  }
}

}  // namespace keygate
