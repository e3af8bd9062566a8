#include "keygate/cli/cli.hpp"

#include <algorithm>
#include <cstdlib>
#include <iostream>

#include "cli/command.hpp"
#include "keygate/config/loader.hpp"
#include "keygate/config/values.hpp"
#include "keygate/core/time.hpp"
#include "keygate/keys/cidr.hpp"
#include "keygate/keys/key_service.hpp"
#include "keygate/observe/log.hpp"
#include "keygate/server/gateway.hpp"

namespace keygate {

namespace cli {

void Session::add_config_option(CLI::App& cmd) {
  cmd.add_option("-c,--config", config_flag_,
                 "config file (default: $KEYGATE_CONFIG, else config/keygate.yaml)")
      ->type_name("PATH");
}

std::string Session::config_path() const {
  if (!config_flag_.empty()) return config_flag_;
  const char* env = std::getenv("KEYGATE_CONFIG");
  return env && *env ? env : "config/keygate.yaml";
}

const Config& Session::config() {
  if (!config_) {
    auto cfg = load_config_file(config_path());
    if (!cfg) {
      for (const auto& m : cfg.error().messages) std::cerr << m << "\n";
      throw ConfigInvalid("invalid config " + config_path() + " (" +
                          std::to_string(cfg.error().messages.size()) + " problem(s))");
    }
    config_ = std::move(*cfg);
  }
  return *config_;
}

KeyStore& Session::store() {
  if (!store_) store_ = open_store(config());
  return *store_;
}

KeyStore& Session::migrated_store() {
  KeyStore& s = store();
  if (!migrated_) s.migrate();
  migrated_ = true;
  return s;
}

KeyService Session::key_service() {
  KeyService service(migrated_store(), config());
  // The CLI's log stream is its stderr: one JSON line per audit event.
  service.on_audit([](const AuditEvent& e) { log::audit(e); });
  return service;
}

namespace {

// A validator without a description: the option's type_name says what it takes.
CLI::Validator check(std::function<std::string(const std::string&)> f, std::string name) {
  CLI::Validator v([f = std::move(f)](std::string& value) { return f(value); }, "");
  v.name(std::move(name));
  return v;
}

}  // namespace

CLI::Validator rate_check() {
  return check(
      [](const std::string& v) {
        auto r = parse_rate(v);
        return r ? std::string() : r.error();
      },
      "N/PERIOD");
}

CLI::Validator duration_check(bool allow_zero) {
  return check(
      [allow_zero](const std::string& v) {
        auto d = parse_duration(v);
        if (!d) return d.error();
        return d->count() > 0 || allow_zero ? std::string()
                                            : "must be a positive duration like 30d";
      },
      "DURATION");
}

CLI::Validator time_check() {
  return check(
      [](const std::string& v) {
        return parse_time(v) ? std::string()
                             : "must be an RFC 3339 time, e.g. 2027-01-31T00:00:00Z";
      },
      "RFC3339");
}

CLI::Validator cidr_check() {
  return check(
      [](const std::string& v) {
        auto c = parse_cidr(v);
        return c ? std::string() : c.error();
      },
      "CIDR");
}

CLI::Validator meta_check() {
  return check(
      [](const std::string& v) {
        auto eq = v.find('=');
        return eq == std::string::npos || eq == 0 ? "must be key=value" : std::string();
      },
      "k=v");
}

void print_table(const std::vector<std::vector<std::string>>& rows) {
  auto columns = [](const std::string& s) {
    return static_cast<size_t>(std::ranges::count_if(
        s, [](char c) { return (static_cast<unsigned char>(c) & 0xC0) != 0x80; }));
  };
  std::vector<size_t> width;
  for (const auto& r : rows) {
    width.resize(std::max(width.size(), r.size()), 0);
    for (size_t i = 0; i < r.size(); ++i) width[i] = std::max(width[i], columns(r[i]));
  }
  for (const auto& r : rows) {
    std::string line;
    for (size_t i = 0; i < r.size(); ++i) {
      line += r[i];
      if (i + 1 < r.size()) line += std::string(width[i] + 2 - columns(r[i]), ' ');
    }
    std::cout << line << "\n";
  }
}

namespace {

int check_config(Session& s) {
  try {
    s.config();
  } catch (const ConfigInvalid&) {
    return 2;  // every problem is printed as PATH:LINE: message
  }
  std::cout << "config OK\n";
  return 0;
}

int migrate(Session& s) {
  auto applied = s.store().migrate();
  for (const auto& m : applied) std::cout << "applied " << m << "\n";
  std::cout << (applied.empty() ? "store is up to date" : "migrations applied") << " ("
            << s.store().describe() << ")\n";
  return 0;
}

// "keys create" for the deepest subcommand parsed so far ("" for the root).
std::string command_path(const CLI::App& app) {
  std::string path;
  for (const CLI::App* a = &app; !a->get_subcommands().empty();) {
    a = a->get_subcommands().front();
    path += (path.empty() ? "" : " ") + a->get_name();
  }
  return path;
}

const CLI::App& deepest(const CLI::App& app) {
  const CLI::App* a = &app;
  while (!a->get_subcommands().empty()) a = a->get_subcommands().front();
  return *a;
}

// One line naming the command, the problem and where help is. An argument CLI11
// could not place (an unknown option, a stray word) is the clearer message even
// when it also complains about something missing.
std::string usage_message(const CLI::App& app, const CLI::ParseError& e) {
  const CLI::App& cmd = deepest(app);
  std::string path = command_path(app);
  std::string what = e.what();
  if (auto extra = cmd.remaining(); !extra.empty()) {
    const std::string& a = extra.front();
    if (a.starts_with("-"))
      what = "unknown option '" + a + "'";
    else if (cmd.get_require_subcommand_min() > 0)  // a group: keys, audit, the root
      what = "unknown command '" + a + "'";
    else
      what = "unexpected argument '" + a + "'";
  } else if (dynamic_cast<const CLI::RequiredError*>(&e) && cmd.get_require_subcommand_min() > 0) {
    what = "a command is required";
  }
  std::string help = "keygate" + (path.empty() ? "" : " " + path) + " --help";
  return (path.empty() ? "" : path + ": ") + what + " (see '" + help + "')";
}

}  // namespace

}  // namespace cli

int run_cli(int argc, char** argv) {
  using namespace cli;
  Session session;
  CLI::App app("keygate: an API-key authentication gateway (reverse proxy).", "keygate");
  app.set_version_flag("--version", std::string("keygate ") + KEYGATE_VERSION);
  app.require_subcommand(1);
  session.add_config_option(app);
  app.footer("Every command takes -c/--config; 'keygate <command> --help' shows its options.");

  auto* serve_cmd = app.add_subcommand(
      "serve", "run the gateway until SIGTERM/SIGINT (applies pending migrations first)");
  session.add_config_option(*serve_cmd);
  on_run(*serve_cmd, session, [&] { return serve(session.config()); });

  auto* check_cmd = app.add_subcommand(
      "check-config", "validate the config file: 'config OK' (exit 0) or every problem (exit 2)");
  session.add_config_option(*check_cmd);
  on_run(*check_cmd, session, [&] { return check_config(session); });

  auto* migrate_cmd = app.add_subcommand("migrate", "apply pending store migrations and exit");
  session.add_config_option(*migrate_cmd);
  on_run(*migrate_cmd, session, [&] { return migrate(session); });

  add_keys_commands(app, session);
  add_audit_commands(app, session);

  auto* version_cmd = app.add_subcommand("version", "print the version");
  session.add_config_option(*version_cmd);
  on_run(*version_cmd, session, [] {
    std::cout << "keygate " << KEYGATE_VERSION << "\n";
    return 0;
  });

  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);  // the help of the command it was asked of
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForVersion& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    std::cerr << "error: " << usage_message(app, e) << "\n";
    return 2;
  }

  if (!session.action) {  // every leaf command sets one; groups require a leaf
    std::cerr << "error: a command is required (see 'keygate --help')\n";
    return 2;
  }
  try {
    return session.action();
  } catch (const UsageError& e) {
    std::string path = command_path(app);
    std::cerr << "error: " << path << ": " << e.what() << " (see 'keygate " << path
              << " --help')\n";
    return 2;
  } catch (const ConfigInvalid& e) {
    std::cerr << "error: " << e.what() << "\n";
    return 2;
  } catch (const std::exception& e) {  // the store, I/O: runtime failures
    std::cerr << "error: " << e.what() << "\n";
    return 1;
  }
}

}  // namespace keygate
