#pragma once
// YAML file -> Config, with every problem reported as "FILE:LINE: message".
#include <expected>
#include <string>
#include <string_view>
#include <vector>

#include "keygate/config/config.hpp"

namespace keygate {

struct ConfigErrors {
  std::vector<std::string> messages;  // each "FILE:LINE: message"
  std::string joined() const;
};

// Neither throws. A path that is missing, unreadable, a directory or not a
// regular file is an error on line 0 of that path.
std::expected<Config, ConfigErrors> load_config_file(const std::string& path);
// `name` is used in messages in place of a file path.
std::expected<Config, ConfigErrors> load_config_text(const std::string& yaml,
                                                     const std::string& name);

// Starts the message of a failure the reader did not anticipate (a yaml-cpp call
// that threw): still an error, never an exception, but a bug to fix.
inline constexpr std::string_view kUnexpectedConfigError =
    "unexpected error while reading the config: ";

}  // namespace keygate
