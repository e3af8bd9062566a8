#pragma once
// What every subcommand shares: the -c/--config option, the config and the
// store — opened only once the command line parsed, so `--help` and usage
// errors never read the config or touch the store — and flag validators.
#include <CLI/CLI.hpp>

#include <functional>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "keygate/config/config.hpp"
#include "keygate/keys/key_service.hpp"
#include "keygate/keys/key_store.hpp"

namespace keygate::cli {

// A usage problem found after parsing (exit 2, like CLI11's own parse errors).
struct UsageError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// The config file does not validate; its problems are printed already (exit 2).
struct ConfigInvalid : std::runtime_error {
  using std::runtime_error::runtime_error;
};

class Session {
 public:
  // Every command takes -c/--config, before or after the subcommand name.
  void add_config_option(CLI::App& cmd);

  // --config, else $KEYGATE_CONFIG, else config/keygate.yaml.
  std::string config_path() const;
  // Loads and validates the config once; throws ConfigInvalid.
  const Config& config();
  // The store the config names (open_store), opened once: the one place the
  // CLI opens a store.
  KeyStore& store();
  // store() with every pending migration applied (what the keys commands need).
  KeyStore& migrated_store();
  // A KeyService on migrated_store() whose audit events also go to stderr as
  // JSON lines (SPEC §10: the log stream).
  KeyService key_service();

  // What the parsed (sub)command does; set by its callback, run after parsing.
  std::function<int()> action;

 private:
  std::string config_flag_;
  std::optional<Config> config_;
  std::unique_ptr<KeyStore> store_;
  bool migrated_ = false;
};

// The parsed subcommand's callback: makes `run` the session's action.
inline void on_run(CLI::App& cmd, Session& s, std::function<int()> run) {
  cmd.callback([&s, run = std::move(run)] { s.action = run; });
}

// Flag validators: a bad value is a usage error at parse time (exit 2).
CLI::Validator rate_check();                             // N/PERIOD
CLI::Validator duration_check(bool allow_zero = false);  // 30s, 24h, 30d
CLI::Validator time_check();                             // RFC 3339
CLI::Validator cidr_check();                             // 10.0.0.0/8, ::1
CLI::Validator meta_check();                             // k=v

// Rows as aligned columns (UTF-8 aware: "…" is one column); the first row is the header.
void print_table(const std::vector<std::vector<std::string>>& rows);

void add_keys_commands(CLI::App& app, Session& s);
void add_transfer_commands(CLI::App& keys, Session& s);  // keys import / export
void add_audit_commands(CLI::App& app, Session& s);

}  // namespace keygate::cli
