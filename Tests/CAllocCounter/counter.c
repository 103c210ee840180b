#include "CAllocCounter.h"
#include <stddef.h>
#include <stdatomic.h>
#include <unistd.h>

#ifndef __has_feature
#define __has_feature(x) 0
#endif
// Not under AddressSanitizer, which interposes malloc itself (a second interposer crashes at the first free).
#if defined(__linux__) && defined(__GLIBC__) && !__has_feature(address_sanitizer) && !defined(__SANITIZE_ADDRESS__)
// glibc's own entry points, which stay reachable when the program defines malloc itself.
extern void *__libc_malloc(size_t);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);
extern void *__libc_memalign(size_t, size_t);

static _Atomic int64_t count = 0;
// Only threads that opted in are counted: the test's own thread and the library's pool workers, so
// that other tests' background work (a cancelled stream finishing its token, say) does not count.
static _Thread_local int counted = 0;
void alloc_counter_count_this_thread(int on) { counted = on; }
void mk_pool_worker_started(void) { counted = 1; }
#define COUNT() do { if (counted) atomic_fetch_add_explicit(&count, 1, memory_order_relaxed); } while (0)

void *malloc(size_t n) { COUNT(); return __libc_malloc(n); }
void *calloc(size_t a, size_t b) { COUNT(); return __libc_calloc(a, b); }
void *realloc(void *p, size_t n) { COUNT(); return __libc_realloc(p, n); }
void *memalign(size_t a, size_t n) { COUNT(); return __libc_memalign(a, n); }
void *aligned_alloc(size_t a, size_t n) { COUNT(); return __libc_memalign(a, n); }
int posix_memalign(void **out, size_t a, size_t n) {
    COUNT();
    void *p = __libc_memalign(a, n);
    if (!p) return 12;
    *out = p;
    return 0;
}
int64_t alloc_counter_read(void) { return atomic_load_explicit(&count, memory_order_relaxed); }
#else
int64_t alloc_counter_read(void) { return -1; }
void alloc_counter_count_this_thread(int on) { (void)on; }
#endif
