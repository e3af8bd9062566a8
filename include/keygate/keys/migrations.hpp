#pragma once
#include <string>
#include <vector>

namespace keygate {
struct Migration {
  std::string name;  // file name, e.g. 0001_init.sql
  std::string sql;
};
// The SQL dialects of migrations/<dialect>/ (same numbering in each).
enum class Dialect { sqlite, postgres };
// Every migrations/<dialect>/*.sql, embedded at build time, in file-name order.
const std::vector<Migration>& embedded_migrations(Dialect dialect);
}  // namespace keygate
