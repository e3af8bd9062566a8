#include "keygate/cli/cli.hpp"

int main(int argc, char** argv) {
  return keygate::run_cli(argc, argv);
}
