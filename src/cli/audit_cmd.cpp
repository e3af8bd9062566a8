// `keygate audit list`: the audit events of key changes (SPEC §10), newest first,
// with the filters of GET /v1/audit-events.
#include <iostream>

#include "cli/command.hpp"
#include "keygate/keys/key_service.hpp"

namespace keygate::cli {

namespace {

struct Flags {
  std::int64_t limit = 100;
  std::string key_id, action, since;
  bool json = false;
};

int list_audit(Session& s, const Flags& f) {
  AuditQuery q;
  q.page_size = f.limit;
  if (!f.key_id.empty()) q.key_id = f.key_id;
  if (!f.action.empty()) q.action = f.action;
  if (!f.since.empty()) q.since = parse_time(f.since);  // checked by time_check()
  auto events = s.migrated_store().list_audit(q, nullptr);
  if (f.json) {
    auto arr = nlohmann::json::array();
    for (const auto& e : events) arr.push_back(audit_to_json(e));
    std::cout << arr.dump() << "\n";
    return 0;
  }
  std::vector<std::vector<std::string>> rows = {{"TIME", "ACTION", "KEY", "ACTOR", "DETAILS"}};
  for (const auto& e : events)
    rows.push_back({format_time(e.at), e.action, e.key_id, e.actor, e.details_json});
  print_table(rows);
  if (events.empty()) std::cout << "(no audit events)\n";
  return 0;
}

}  // namespace

void add_audit_commands(CLI::App& app, Session& s) {
  auto* audit = app.add_subcommand("audit", "the audit log of key changes");
  audit->require_subcommand(1);
  s.add_config_option(*audit);

  auto f = std::make_shared<Flags>();
  auto* list = audit->add_subcommand(
      "list", "key creations, imports, updates, rotations and revocations, newest first");
  s.add_config_option(*list);
  list->add_option("--key-id", f->key_id, "only events of this key (its id)")->type_name("ID");
  list->add_option("--action", f->action,
                   "only this action: create, import, update, rotate or revoke")
      ->type_name("ACTION")
      ->check(CLI::IsMember(std::vector<std::string>(kAuditActions.begin(), kAuditActions.end()))
                  .description(""));
  list->add_option("--since", f->since, "only events at or after this time")
      ->type_name("RFC3339")
      ->check(time_check());
  list->add_option("--limit", f->limit, "at most this many events (default: 100)")
      ->type_name("N")
      ->check(CLI::Range(std::int64_t{1}, std::int64_t{1'000'000'000}).description(""));
  list->add_flag("--json", f->json, "print a JSON array of events (as GET /v1/audit-events)");
  on_run(*list, s, [&s, f] { return list_audit(s, *f); });
}

}  // namespace keygate::cli
