// The memory's read rate as a plain stream reaches it: the bandwidth behind the decode floor that
// `mamba2 bench` quotes (bytes a decoded token must read / this rate). Measured with a kernel of its own,
// not the decode GEMV, so that the decode's share of the floor says how far the GEMV is from the memory.
#include "CMamba2Kernels.h"
#include <stdint.h>
#if defined(__x86_64__)
#include <immintrin.h>
#endif

enum { STREAM_MAX_PARTS = 256 };

typedef struct {
    const uint64_t *words;
    size_t count;
    int parts;
    uint64_t sums[STREAM_MAX_PARTS];
} stream_ctx;

// Eight independent sums, so that loads are not serialised behind one addition chain.
static uint64_t sum_portable(const uint64_t *w, size_t n) {
    uint64_t a[8] = {0};
    size_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int k = 0; k < 8; k++) a[k] += w[i + k];
    for (; i < n; i++) a[0] += w[i];
    return a[0] + a[1] + a[2] + a[3] + a[4] + a[5] + a[6] + a[7];
}

#if defined(__x86_64__)
// 32-byte loads into four vector sums (128 bytes, two cache lines, an iteration).
__attribute__((target("avx2"))) static uint64_t sum_avx2(const uint64_t *w, size_t n) {
    __m256i a0 = _mm256_setzero_si256(), a1 = a0, a2 = a0, a3 = a0;
    size_t i = 0;
    for (; i + 16 <= n; i += 16) {
        a0 = _mm256_add_epi64(a0, _mm256_loadu_si256((const __m256i *)(w + i)));
        a1 = _mm256_add_epi64(a1, _mm256_loadu_si256((const __m256i *)(w + i + 4)));
        a2 = _mm256_add_epi64(a2, _mm256_loadu_si256((const __m256i *)(w + i + 8)));
        a3 = _mm256_add_epi64(a3, _mm256_loadu_si256((const __m256i *)(w + i + 12)));
    }
    uint64_t lanes[4];
    _mm256_storeu_si256((__m256i *)lanes, _mm256_add_epi64(_mm256_add_epi64(a0, a1), _mm256_add_epi64(a2, a3)));
    return lanes[0] + lanes[1] + lanes[2] + lanes[3] + sum_portable(w + i, n - i);
}
#endif

static uint64_t sum_words(const uint64_t *w, size_t n) {
#if defined(__x86_64__)
    static int avx2 = -1;
    if (avx2 < 0) avx2 = __builtin_cpu_supports("avx2");
    if (avx2) return sum_avx2(w, n);
#endif
    return sum_portable(w, n);
}

static void stream_task(void *ctx, int index) {
    stream_ctx *c = ctx;
    const size_t per = (c->count + (size_t)c->parts - 1) / (size_t)c->parts;
    const size_t w0 = (size_t)index * per;
    const size_t w1 = w0 + per < c->count ? w0 + per : c->count;
    c->sums[index] = w0 < w1 ? sum_words(c->words + w0, w1 - w0) : 0;
}

uint64_t mk_stream_read(const void *p, size_t count, int threads) {
    stream_ctx c;
    c.words = p;
    c.count = count;
    c.parts = threads < 1 ? 1 : threads > STREAM_MAX_PARTS ? STREAM_MAX_PARTS : threads;
    mk_pool_run(c.parts, c.parts, stream_task, &c);
    uint64_t total = 0;
    for (int i = 0; i < c.parts; i++) total += c.sums[i];
    return total;
}
