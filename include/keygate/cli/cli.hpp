#pragma once
// Subcommand dispatch for the `keygate` binary (SPEC §1). Returns the exit code:
// 0 success, 1 runtime failure, 2 usage or config error.
namespace keygate {
int run_cli(int argc, char** argv);
}
