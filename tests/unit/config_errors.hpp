#pragma once
// Shared by the config unit tests: the messages a config that must be refused
// is refused with (and a test failure if it loads).
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "keygate/config/loader.hpp"

namespace keygate::test_support {

inline std::vector<std::string> errors_of(const std::string& yaml) {
  auto c = load_config_text(yaml, "t.yaml");
  EXPECT_FALSE(c.has_value()) << "expected a config error for:\n" << yaml;
  return c ? std::vector<std::string>{} : c.error().messages;
}

}  // namespace keygate::test_support
