// bench_seed DB N: writes N keys into a keygate store in one transaction (for
// the startup-time and RSS measurement with 1M keys). Keys are real (format,
// hash) but their secrets are discarded.
#include <cstdio>
#include <cstdlib>

#include "keygate/keys/key_format.hpp"
#include "keygate/keys/sqlite_store.hpp"

using namespace keygate;

int main(int argc, char** argv) {
  if (argc != 3) {
    std::fprintf(stderr, "usage: bench_seed DB COUNT\n");
    return 2;
  }
  long n = std::atol(argv[2]);
  SqliteStore store(argv[1]);
  store.migrate();
  KeyFormat format{KeysConfig{}};
  KeyHasher hasher;
  UnixMillis now = now_millis();
  store.transaction([&] {
    for (long i = 0; i < n; ++i) {
      std::string key = format.generate();
      KeyRecord r;
      r.id = generate_key_id();
      r.prefix = format.display_prefix(key);
      r.last4 = key.substr(key.size() - 4);
      r.hash = hasher.hash(key);
      r.name = "bench-" + std::to_string(i);
      r.owner = "owner-" + std::to_string(i % 1000);
      r.created_at = now;
      r.created_by = "bench";
      store.insert_key(r);
    }
  });
  std::printf("seeded %ld keys into %s\n", n, argv[1]);
  return 0;
}
