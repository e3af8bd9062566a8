#pragma once
// YAML file -> Config, with every problem reported as "FILE:LINE: message".
#include <expected>
#include <string>
#include <vector>

#include "keygate/config/config.hpp"

namespace keygate {

struct ConfigErrors {
  std::vector<std::string> messages;  // each "FILE:LINE: message"
  std::string joined() const;
};

std::expected<Config, ConfigErrors> load_config_file(const std::string& path);
// `name` is used in messages in place of a file path.
std::expected<Config, ConfigErrors> load_config_text(const std::string& yaml,
                                                     const std::string& name);

}  // namespace keygate
