#include "keygate/keys/usage_report.hpp"

#include "keygate/keys/key_service.hpp"

namespace keygate {

namespace {
constexpr UnixMillis kHour = 3'600'000;
constexpr UnixMillis kDay = 24 * kHour;

UnixMillis floor_to(UnixMillis t, UnixMillis step) {
  return (t >= 0 ? t : t - step + 1) / step * step;
}

nlohmann::json counts_json(const std::array<std::int64_t, 4>& n) {
  nlohmann::json j = nlohmann::json::object();
  std::int64_t total = 0;
  for (size_t i = 0; i < n.size(); ++i) {
    j[std::string(kUsageOutcomes[i])] = n[i];
    total += n[i];
  }
  j["total"] = total;
  return j;
}
}  // namespace

std::expected<nlohmann::json, Error> usage_report(KeyStore& store, const std::string& key_id,
                                                  const UsageQuery& q, UnixMillis now) {
  if (q.granularity != "hour" && q.granularity != "day")
    return std::unexpected(validation_error("granularity", "granularity must be hour or day"));
  const bool hourly = q.granularity == "hour";
  const UnixMillis step = hourly ? kHour : kDay;
  const std::int64_t max_periods = hourly ? 744 : 400;
  const UnixMillis to = floor_to(q.to.value_or(now) + step - 1, step);
  const UnixMillis from = floor_to(q.from.value_or(to - (hourly ? kDay : 30 * kDay)), step);
  if (from >= to) return std::unexpected(validation_error("from", "from must be before to"));
  if ((to - from) / step > max_periods)
    return std::unexpected(validation_error("from", "at most " + std::to_string(max_periods) + " " +
                                                        q.granularity +
                                                        "s at a time: narrow from/to"));
  std::vector<std::array<std::int64_t, 4>> periods(static_cast<size_t>((to - from) / step));
  std::array<std::int64_t, 4> totals{};
  for (const auto& row : store.usage_counts(key_id, from, to)) {
    auto& p = periods[static_cast<size_t>((row.hour - from) / step)];
    for (size_t i = 0; i < p.size(); ++i) {
      p[i] += row.counts[i];
      totals[i] += row.counts[i];
    }
  }
  nlohmann::json list = nlohmann::json::array();
  for (size_t i = 0; i < periods.size(); ++i) {
    nlohmann::json p = {{"start", format_time(from + static_cast<UnixMillis>(i) * step)}};
    p.update(counts_json(periods[i]));
    list.push_back(std::move(p));
  }
  return nlohmann::json{
      {"key_id", key_id},      {"granularity", q.granularity},  {"from", format_time(from)},
      {"to", format_time(to)}, {"totals", counts_json(totals)}, {"periods", std::move(list)}};
}

}  // namespace keygate
