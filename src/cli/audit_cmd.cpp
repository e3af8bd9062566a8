// `keygate audit list`: the audit events of key changes (SPEC §10), newest first.
#include <iostream>

#include "cli/command.hpp"
#include "keygate/keys/key_service.hpp"

namespace keygate::cli {

namespace {

int list_audit(Session& s, std::int64_t limit, bool json) {
  auto events = s.migrated_store().list_audit(1, limit, nullptr);
  if (json) {
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

  struct Flags {
    std::int64_t limit = 100;
    bool json = false;
  };
  auto f = std::make_shared<Flags>();
  auto* list = audit->add_subcommand(
      "list", "key creations, imports, updates, rotations and revocations, newest first");
  s.add_config_option(*list);
  list->add_option("--limit", f->limit, "at most this many events (default: 100)")
      ->type_name("N")
      ->check(CLI::Range(std::int64_t{1}, std::int64_t{1'000'000'000}).description(""));
  list->add_flag("--json", f->json, "print a JSON array of events (as GET /v1/audit-events)");
  on_run(*list, s, [&s, f] { return list_audit(s, f->limit, f->json); });
}

}  // namespace keygate::cli
