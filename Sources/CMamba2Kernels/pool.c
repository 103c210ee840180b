// A persistent pool of worker threads for Parallel.forEach: created once, woken per parallel section,
// spinning briefly between sections (decode runs hundreds of short sections per token) before sleeping.
// Nothing is allocated per section, unlike Dispatch's concurrentPerform.
#include "CMamba2Kernels.h"
#include <pthread.h>
#include <stdatomic.h>
#include <sched.h>
#include <stdint.h>

#define MK_POOL_MAX 256

static struct {
    pthread_t threads[MK_POOL_MAX];
    int nthreads;                 // workers (the caller is one more participant)
    _Atomic uint64_t generation;  // bumped once per section
    _Atomic int next;             // next task index to take
    _Atomic int busy;             // workers still inside the current section
    int count;
    mk_task_fn fn;
    void *ctx;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    pthread_mutex_t run_mu;       // one section at a time (callers from several threads take turns)
} P = { .mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER, .run_mu = PTHREAD_MUTEX_INITIALIZER };

// Set on pool workers, and on a caller while it takes part in a section: a parallel section started
// from inside another (a task that itself calls Parallel.forEach) runs serially on its thread instead of
// waiting for a pool that is busy with its parent.
static _Thread_local int in_section = 0;

static inline void cpu_relax(void) {
#if defined(__x86_64__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

static void drain(void) {
    int i;
    while ((i = atomic_fetch_add_explicit(&P.next, 1, memory_order_relaxed)) < P.count) P.fn(P.ctx, i);
}

// A hook a test program may define (weak: absent in the library and the command), called on each
// worker thread as it starts; the allocation-counting test uses it to count the pool's threads too.
extern void mk_pool_worker_started(void) __attribute__((weak));

static void *worker(void *arg) {
    if (mk_pool_worker_started) mk_pool_worker_started();
    in_section = 1;
    // The generation current when the worker was created: it joins the first section bumped after it,
    // even when it starts running only after that bump.
    uint64_t seen = (uint64_t)(uintptr_t)arg;
    for (;;) {
        // Spin a little (the next section usually follows within microseconds), then sleep.
        int spins = 0;
        while (atomic_load_explicit(&P.generation, memory_order_acquire) == seen) {
            if (++spins < 20000) { cpu_relax(); continue; }
            pthread_mutex_lock(&P.mu);
            while (atomic_load_explicit(&P.generation, memory_order_acquire) == seen) pthread_cond_wait(&P.cv, &P.mu);
            pthread_mutex_unlock(&P.mu);
        }
        seen = atomic_load_explicit(&P.generation, memory_order_acquire);
        drain();
        atomic_fetch_sub_explicit(&P.busy, 1, memory_order_release);
    }
    return NULL;
}

static void ensure_workers(int n) {
    if (n > MK_POOL_MAX) n = MK_POOL_MAX;
    while (P.nthreads < n) {
        pthread_attr_t attr;
        pthread_attr_init(&attr);
        pthread_attr_setstacksize(&attr, 1 << 20);
        void *gen = (void *)(uintptr_t)atomic_load_explicit(&P.generation, memory_order_acquire);
        if (pthread_create(&P.threads[P.nthreads], &attr, worker, gen) != 0) { pthread_attr_destroy(&attr); break; }
        pthread_attr_destroy(&attr);
        P.nthreads++;
    }
}

void mk_pool_run(int count, int threads, mk_task_fn fn, void *ctx) {
    if (count <= 0) return;
    if (threads <= 1 || count == 1 || in_section) {
        for (int i = 0; i < count; i++) fn(ctx, i);
        return;
    }
    pthread_mutex_lock(&P.run_mu);
    ensure_workers(threads - 1);
    P.fn = fn; P.ctx = ctx; P.count = count;
    atomic_store_explicit(&P.next, 0, memory_order_relaxed);
    atomic_store_explicit(&P.busy, P.nthreads, memory_order_relaxed);
    pthread_mutex_lock(&P.mu);
    atomic_fetch_add_explicit(&P.generation, 1, memory_order_release);
    pthread_cond_broadcast(&P.cv);
    pthread_mutex_unlock(&P.mu);
    in_section = 1;
    drain();
    in_section = 0;
    while (atomic_load_explicit(&P.busy, memory_order_acquire) > 0) cpu_relax();
    pthread_mutex_unlock(&P.run_mu);
}
