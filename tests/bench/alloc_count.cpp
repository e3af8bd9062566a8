// libkeygate_alloc_count.so: an LD_PRELOAD shim that counts heap allocations
// of the process it is loaded into, for `make bench`'s allocations/request.
// Every malloc-family call (operator new ends in malloc) bumps one relaxed
// counter; SIGUSR2 writes "allocations bytes" to $KG_ALLOC_REPORT. The bench
// takes a snapshot, sends N requests, takes another: (b - a) / N.
// The real allocator is glibc's own (__libc_*): no dlsym, which allocates.
//
// Where they come from: with $KG_ALLOC_TRACE set to a file, each SIGUSR2 also
// turns tracing on (the first) or off (the next). While on, every allocation
// appends one line "A <bytes> <return address>..." (its call stack) to that
// file, at most $KG_ALLOC_TRACE_MAX lines (default 20000); the first SIGUSR2
// also copies /proc/self/maps there ("M ..." lines) so the addresses can be
// resolved afterwards (per_request.py --mode trace runs addr2line).
#include <execinfo.h>
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
int g_trace_fd = -1;
std::atomic<bool> g_tracing{false};
std::atomic<long> g_trace_left{20000};
bool g_maps_copied = false;
// Set while this thread is inside backtrace(): its own allocations are not traced.
__attribute__((tls_model("initial-exec"))) thread_local bool t_in_trace = false;

char* put_number(char* p, unsigned long v);
char* put_hex(char* p, unsigned long v);

void trace(size_t n) {
  if (t_in_trace || g_trace_left.fetch_sub(1, std::memory_order_relaxed) <= 0) return;
  t_in_trace = true;
  void* frames[48];
  int depth = backtrace(frames, 48);
  char line[48 * 19 + 32];
  char* p = line;
  *p++ = 'A';
  *p++ = ' ';
  p = put_number(p, n);
  for (int i = 1; i < depth; ++i) {  // frame 0 is this shim
    *p++ = ' ';
    p = put_hex(p, reinterpret_cast<unsigned long>(frames[i]));
  }
  *p++ = '\n';
  ssize_t ignored =
      ::write(g_trace_fd, line, static_cast<size_t>(p - line));  // one line, one write
  (void)ignored;
  t_in_trace = false;
}

inline void count(size_t n) {
  g_allocs.fetch_add(1, std::memory_order_relaxed);
  g_bytes.fetch_add(n, std::memory_order_relaxed);
  if (g_tracing.load(std::memory_order_relaxed)) trace(n);
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

char* put_hex(char* p, unsigned long v) {
  char tmp[20];
  int n = 0;
  do {
    tmp[n++] = "0123456789abcdef"[v % 16];
    v /= 16;
  } while (v != 0);
  while (n > 0) *p++ = tmp[--n];
  return p;
}

// "M <line of /proc/self/maps>" for each mapping, into the trace file.
void copy_maps() {
  int fd = ::open("/proc/self/maps", O_RDONLY);
  if (fd < 0) return;
  char in[4096], out[8192];
  char* o = out;
  bool line_start = true;
  for (ssize_t got; (got = ::read(fd, in, sizeof in)) > 0;) {
    for (ssize_t i = 0; i < got; ++i) {
      if (line_start) {
        *o++ = 'M';
        *o++ = ' ';
      }
      *o++ = in[i];
      line_start = in[i] == '\n';
      if (o - out > static_cast<long>(sizeof out) - 4) {
        ssize_t ignored = ::write(g_trace_fd, out, static_cast<size_t>(o - out));
        (void)ignored;
        o = out;
      }
    }
  }
  ssize_t ignored = ::write(g_trace_fd, out, static_cast<size_t>(o - out));
  (void)ignored;
  ::close(fd);
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
  if (g_trace_fd >= 0) {
    if (!g_maps_copied) copy_maps();
    g_maps_copied = true;
    g_tracing.store(!g_tracing.load(std::memory_order_relaxed), std::memory_order_relaxed);
  }
}

__attribute__((constructor)) void install() {
  g_report = std::getenv("KG_ALLOC_REPORT");
  if (!g_report) return;
  if (const char* path = std::getenv("KG_ALLOC_TRACE")) {
    g_trace_fd = ::open(path, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND, 0644);
    if (const char* max = std::getenv("KG_ALLOC_TRACE_MAX")) g_trace_left = std::atol(max);
    void* warm[2];
    backtrace(warm, 2);  // loads the unwinder (it allocates) before any tracing
  }
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
