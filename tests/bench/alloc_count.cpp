// libkeygate_alloc_count.so: an LD_PRELOAD shim that counts heap allocations
// of the process it is loaded into, for `make bench`'s allocations/request.
// Every malloc-family call (operator new ends in malloc) bumps one relaxed
// counter; SIGUSR2 writes "allocations bytes" to $KG_ALLOC_REPORT. The bench
// takes a snapshot, sends N requests, takes another: (b - a) / N.
// The real allocator is glibc's own (__libc_*): no dlsym, which allocates.
#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cstddef>
#include <cstdlib>

extern "C" {
void* __libc_malloc(size_t);
void* __libc_calloc(size_t, size_t);
void* __libc_realloc(void*, size_t);
void* __libc_memalign(size_t, size_t);
void __libc_free(void*);
}

namespace {

std::atomic<unsigned long> g_allocs{0};
std::atomic<unsigned long> g_bytes{0};
const char* g_report = nullptr;

inline void count(size_t n) {
  g_allocs.fetch_add(1, std::memory_order_relaxed);
  g_bytes.fetch_add(n, std::memory_order_relaxed);
}

// Async-signal-safe: no stdio, no allocation.
char* put_number(char* p, unsigned long v) {
  char tmp[24];
  int n = 0;
  do {
    tmp[n++] = static_cast<char>('0' + v % 10);
    v /= 10;
  } while (v != 0);
  while (n > 0) *p++ = tmp[--n];
  return p;
}

void report(int) {
  char line[64];
  char* p = put_number(line, g_allocs.load(std::memory_order_relaxed));
  *p++ = ' ';
  p = put_number(p, g_bytes.load(std::memory_order_relaxed));
  *p++ = '\n';
  int fd = ::open(g_report, O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (fd < 0) return;
  ssize_t ignored = ::write(fd, line, static_cast<size_t>(p - line));
  (void)ignored;
  ::close(fd);
}

__attribute__((constructor)) void install() {
  g_report = std::getenv("KG_ALLOC_REPORT");
  if (!g_report) return;
  struct sigaction sa {};
  sa.sa_handler = report;
  sa.sa_flags = SA_RESTART;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGUSR2, &sa, nullptr);
}

}  // namespace

extern "C" {

__attribute__((visibility("default"))) void* malloc(size_t n) {
  count(n);
  return __libc_malloc(n);
}
__attribute__((visibility("default"))) void* calloc(size_t n, size_t size) {
  count(n * size);
  return __libc_calloc(n, size);
}
__attribute__((visibility("default"))) void* realloc(void* p, size_t n) {
  count(n);
  return __libc_realloc(p, n);
}
__attribute__((visibility("default"))) void free(void* p) {
  __libc_free(p);
}
__attribute__((visibility("default"))) void* memalign(size_t align, size_t n) {
  count(n);
  return __libc_memalign(align, n);
}
__attribute__((visibility("default"))) void* aligned_alloc(size_t align, size_t n) {
  count(n);
  return __libc_memalign(align, n);
}
__attribute__((visibility("default"))) int posix_memalign(void** out, size_t align, size_t n) {
  count(n);
  void* p = __libc_memalign(align, n);
  if (!p) return 12;  // ENOMEM
  *out = p;
  return 0;
}

}  // extern "C"
