// `keygate keys import` and `keys export`: moving an API's existing keys behind
// keygate (SPEC §10), and the metadata of every key back out.
#include <filesystem>
#include <fstream>
#include <iostream>

#include "cli/command.hpp"
#include "keygate/keys/key_json.hpp"
#include "keygate/keys/key_service.hpp"

namespace keygate::cli {

namespace {

struct Line {
  size_t number;
  std::string text;
};

std::vector<Line> read_lines(const std::string& path) {
  std::ifstream file;
  std::istream* in = &std::cin;
  if (path != "-") {
    file.open(path);
    if (!file) throw std::runtime_error("cannot read " + path);
    in = &file;
  }
  std::vector<Line> lines;
  std::string text;
  for (size_t n = 1; std::getline(*in, text); ++n)
    if (text.find_first_not_of(" \t\r") != std::string::npos) lines.push_back({n, text});
  if (in->bad()) throw std::runtime_error("cannot read " + path);
  return lines;
}

struct Problem {
  size_t line;
  std::string message;
};

std::string describe(const Error& e) {
  std::string m = e.message;
  if (e.details.contains("field") && e.details["field"].is_string() &&
      m.find(e.details["field"].get<std::string>()) == std::string::npos)
    m = e.details["field"].get<std::string>() + ": " + m;
  return m;
}

// All or nothing: every line is parsed and checked before anything is written,
// and every bad line is reported; one bad line means nothing is imported.
int import_file(Session& s, const std::string& path, bool json) {
  auto lines = read_lines(path);
  UnixMillis now = now_millis();
  std::vector<KeyImport> batch;
  std::vector<size_t> line_of;  // batch index -> line number
  std::vector<Problem> problems;
  for (const auto& l : lines) {
    auto j = nlohmann::json::parse(l.text, nullptr, false);
    if (j.is_discarded()) {
      problems.push_back({l.number, "not valid JSON (one JSON object a line)"});
      continue;
    }
    auto item = key_import_from_json(j, now);
    if (!item) {
      problems.push_back({l.number, describe(item.error())});
      continue;
    }
    batch.push_back(std::move(*item));
    line_of.push_back(l.number);
  }
  KeyService service = s.key_service();
  auto result =
      problems.empty() ? service.import(batch, "cli") : service.check_import(batch, "cli");
  if (!result)
    for (const auto& p : result.error()) problems.push_back({line_of[p.item], describe(p.error)});
  if (!problems.empty()) {
    std::ranges::sort(problems, {}, &Problem::line);
    for (const auto& p : problems)
      std::cerr << "error: " << path << ":" << p.line << ": " << p.message << "\n";
    std::cerr << "error: nothing imported: " << problems.size() << " of " << lines.size()
              << " line(s) of " << path << " are invalid\n";
    return 2;
  }
  if (json) {
    auto arr = nlohmann::json::array();
    for (const auto& r : *result) arr.push_back(key_to_json(r, now));
    std::cout << arr.dump() << "\n";
    return 0;
  }
  size_t foreign = std::ranges::count_if(*result, &KeyRecord::foreign_format);
  std::cout << "Imported " << result->size() << " key(s) from " << path;
  if (foreign) std::cout << " (" << foreign << " in their own format, accepted by hash)";
  std::cout << "\n";
  std::vector<std::vector<std::string>> rows = {{"ID", "PREFIX", "NAME", "FORMAT"}};
  for (const auto& r : *result)
    rows.push_back(
        {r.id, r.prefix + "…" + r.last4, r.name, r.foreign_format ? "own (by hash)" : "keygate"});
  print_table(rows);
  return 0;
}

int export_keys(Session& s, const KeyListQuery& q, bool json) {
  UnixMillis now = now_millis();
  auto keys = s.migrated_store().list_keys(q, now, nullptr);
  auto arr = nlohmann::json::array();
  for (const auto& k : keys) {
    auto obj = key_to_json(k, now);
    if (json)
      arr.push_back(std::move(obj));
    else
      std::cout << obj.dump() << "\n";
  }
  if (json) std::cout << arr.dump() << "\n";
  return 0;
}

}  // namespace

void add_transfer_commands(CLI::App& keys, Session& s) {
  struct ImportFlags {
    std::string file;
    bool json = false;
  };
  auto in = std::make_shared<ImportFlags>();
  auto* import = keys.add_subcommand("import", "import keys an API already issued (all or none)");
  import->footer(
      "One JSON object a line: name and either key (the plaintext, any format) or sha256 (the\n"
      "hex SHA-256 of the plaintext; not with keys.pepper), plus any field of keys create as\n"
      "the admin API names it (owner, scopes, plan, rate, expires_at | expires_in, allowed_ips,\n"
      "metadata), enabled, created_at, and with sha256 the prefix and last4 to display. Lines\n"
      "of keys export are accepted. Every line is checked first; one bad line (reported with\n"
      "its number) and nothing is imported.");
  s.add_config_option(*import);
  import->add_option("--file", in->file, "JSON Lines file ('-': standard input)")
      ->type_name("FILE")
      ->required()
      ->check(CLI::Validator(
          [](std::string& v) {
            std::error_code ec;  // the throwing overload fails on a name too long
  return v == "-" || std::filesystem::is_regular_file(v, ec) ? std::string() : "no such file: " + v;
},
          ""));
import->add_flag("--json", in->json, "print a JSON array of the imported key objects");
on_run(*import, s, [&s, in] { return import_file(s, in->file, in->json); });

struct ExportFlags {
  std::string owner, status = "all";
  bool json = false;
};
auto out = std::make_shared<ExportFlags>();
auto* exp = keys.add_subcommand("export", "print every key's metadata (never secret or hash)");
exp->footer(
    "One key object a line (the fields of keys show --json); with key or sha256 added, a\n"
    "line is a line for keys import.");
s.add_config_option(*exp);
auto* owner = exp->add_option("--owner", out->owner, "only this owner's keys") -> type_name("ID");
exp->add_option("--status", out->status, "which keys (default: all)")
    ->check(CLI::IsMember({"active", "revoked", "expired", "all"}).description(""))
    ->type_name("active|revoked|expired|all");
exp->add_flag("--json", out->json, "print one JSON array instead of one object a line");
on_run(*exp, s, [&s, out, owner] {
  KeyListQuery q;
  if (*owner) q.owner = out->owner;
  q.status = out->status;
  return export_keys(s, q, out->json);
});
}  // namespace keygate::cli

}  // namespace keygate::cli
