#pragma once
#include <string>
#include <vector>

namespace keygate {
struct Migration {
  std::string name;  // file name, e.g. 0001_init.sql
  std::string sql;
};
// Every migrations/*.sql, embedded at build time, in file-name order.
const std::vector<Migration>& embedded_migrations();
}  // namespace keygate
