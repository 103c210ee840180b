// Counts heap allocations of the whole test process, by interposing malloc and friends (glibc).
// Tests read the counter around a region to assert that it allocates nothing.
#ifndef CALLOC_COUNTER_H
#define CALLOC_COUNTER_H
#include <stdint.h>
// Counts the calling thread's allocations (on) or stops counting them (off). The library's pool
// workers are always counted.
void alloc_counter_count_this_thread(int on);
// Allocations on counted threads (malloc, calloc, realloc, posix_memalign, aligned_alloc, memalign) since start.
// Returns -1 where interposition is not available (not glibc).
int64_t alloc_counter_read(void);
#endif
