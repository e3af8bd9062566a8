#include "keygate/keys/key_store.hpp"

#include "keygate/keys/postgres_store.hpp"
#include "keygate/keys/sqlite_store.hpp"

namespace keygate {

std::unique_ptr<KeyStore> open_store(const Config& config) {
  if (!config.store_postgres.empty()) return std::make_unique<PostgresStore>(config.store_postgres);
  return std::make_unique<SqliteStore>(config.store_sqlite);
}

}  // namespace keygate
