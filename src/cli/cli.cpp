#include "keygate/cli/cli.hpp"

#include <cstdlib>
#include <iostream>

#include "cli/args.hpp"
#include "keygate/config/loader.hpp"
#include "keygate/keys/key_store.hpp"
#include "keygate/server/gateway.hpp"

namespace keygate {

int run_keys(const std::string& sub, const std::vector<std::string>& args, const Config& cfg);

namespace {

constexpr const char* kUsage = R"(usage: keygate <command> [--config PATH]

commands:
  serve            run the gateway (applies pending migrations first)
  check-config     validate the config file
  migrate          apply pending store migrations
  keys create|list|show|update|revoke|rotate   manage API keys (keygate keys --help)
  version          print the version

--config defaults to $KEYGATE_CONFIG, else config/keygate.yaml.
)";

std::string config_path(std::vector<std::string>& args) {
  std::string path;
  for (size_t i = 0; i < args.size(); ++i) {
    if (args[i] == "--config" || args[i].starts_with("--config=")) {
      if (args[i] == "--config") {
        if (i + 1 >= args.size()) throw UsageError("--config needs a value");
        path = args[i + 1];
        args.erase(args.begin() + static_cast<long>(i), args.begin() + static_cast<long>(i) + 2);
      } else {
        path = args[i].substr(9);
        args.erase(args.begin() + static_cast<long>(i));
      }
      break;
    }
  }
  if (path.empty()) {
    const char* env = std::getenv("KEYGATE_CONFIG");
    path = env && *env ? env : "config/keygate.yaml";
  }
  return path;
}

}  // namespace

int run_cli(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  try {
    if (args.empty() || args[0] == "--help" || args[0] == "-h" || args[0] == "help") {
      std::cout << kUsage;
      return args.empty() ? 2 : 0;
    }
    std::string cmd = args[0];
    args.erase(args.begin());
    if (cmd == "version" || cmd == "--version") {
      std::cout << "keygate " << KEYGATE_VERSION << "\n";
      return 0;
    }
    std::string path = config_path(args);
    if (cmd != "serve" && cmd != "check-config" && cmd != "migrate" && cmd != "keys") {
      std::cerr << "error: unknown command '" << cmd << "' (see keygate --help)\n";
      return 2;
    }
    auto cfg = load_config_file(path);
    if (!cfg) {
      for (const auto& m : cfg.error().messages) std::cerr << m << "\n";
      if (cmd != "check-config")
        std::cerr << "error: invalid config " << path << " (" << cfg.error().messages.size()
                  << " problem(s))\n";
      return 2;
    }
    if (cmd == "check-config") {
      if (!args.empty()) throw UsageError("check-config takes no arguments");
      std::cout << "config OK\n";
      return 0;
    }
    if (cmd == "serve") {
      if (!args.empty()) throw UsageError("serve takes no arguments besides --config");
      return serve(std::move(*cfg));
    }
    if (cmd == "migrate") {
      if (!args.empty()) throw UsageError("migrate takes no arguments besides --config");
      auto store = open_store(*cfg);
      auto applied = store->migrate();
      for (const auto& m : applied) std::cout << "applied " << m << "\n";
      std::cout << (applied.empty() ? "store is up to date" : "migrations applied") << " ("
                << store->describe() << ")\n";
      return 0;
    }
    if (args.empty())
      throw UsageError("keys needs a subcommand: create, list, show, update, revoke, rotate");
    std::string sub = args[0];
    args.erase(args.begin());
    return run_keys(sub, args, *cfg);
  } catch (const UsageError& e) {
    std::cerr << "error: " << e.what() << "\n";
    return 2;
  } catch (const StoreError& e) {
    std::cerr << "error: " << e.what() << "\n";
    return 1;
  } catch (const std::exception& e) {
    std::cerr << "error: " << e.what() << "\n";
    return 1;
  }
}

}  // namespace keygate
