// Decode projections: Y (B, N) = X (B, K) · Wᵀ (+ bias) for a few rows B, weights in float32, bfloat16
// or float16, arithmetic in float32. Memory-bound: each weight row is streamed once and dotted with all
// B rows of X (kept in cache); rows of W are split across the pool's threads.
#include "CMamba2Kernels.h"
#include "element_types.h"
#include <stdint.h>
#include <string.h>
#include <math.h>
#include "vector_loops.h"

// Explicit 16-lane vectors (clang's vector extension), so that the dot products vectorize the same way
// at any optimization level and without fast-math flags: VLOAD reads 16 weights of row `wr` from k as floats.
typedef float mk_f32x16 __attribute__((ext_vector_type(16), aligned(4)));
typedef uint16_t mk_u16x16 __attribute__((ext_vector_type(16), aligned(2)));
typedef uint32_t mk_u32x16 __attribute__((ext_vector_type(16)));
#define MK_LOAD_F32(p) (*(const mk_f32x16 *)(p))
#define MK_LOAD_BF16(p) ((mk_f32x16)(__builtin_convertvector(*(const mk_u16x16 *)(p), mk_u32x16) << 16))
#if defined(__x86_64__) || defined(__aarch64__)
typedef _Float16 mk_h16x16 __attribute__((ext_vector_type(16), aligned(2)));
#define MK_LOAD_F16(p) (__builtin_convertvector(*(const mk_h16x16 *)(p), mk_f32x16))
#endif

// The sum of a vector's lanes (a macro: a vector passed by value would change the ABI between clones).
#define MK_SUM16(v) ({ const mk_f32x16 mk_s_ = (v); float mk_t_ = 0; for (int mk_i_ = 0; mk_i_ < 16; mk_i_++) mk_t_ += mk_s_[mk_i_]; mk_t_; })

// One kernel per weight type (LOAD reads element k of weight row `wr`, VLOAD 16 of them), so each inner loop
// is a plain dot product. One row of X (batch-1 decode): four independent sums, 64 weights a step. Several
// rows: rows of X are taken 4 at a time (fewer rows repeat row 0, so the loop has no branch), 16 weights a
// step, one vector sum per row; the weight rows are walked in tiles of MK_GEMV_TILE, and each tile meets
// every block of 4 rows of X while it is in L1, so that the weights stream from memory once per call
// whatever the batch (walking all weight rows per block of X read them B/4 times: batch 16 decoded
// barely faster than batch 4).
#define MK_GEMV_TILE 4
// One row of X (batch-1 decode) streams the weights once, front to back: each step also asks for the cache
// lines MK_GEMV_AHEAD bytes further on. On an AVX-512/AMX Xeon (2 threads) this raised the read rate of a
// 130m token's matrices from 20 to 22–27 GB/s (f32), 13 to 20.5 (bf16) and 10–12 to 16–18 (Q8_0), against
// 512–2,048 bytes ahead, which gained less (benchmarks/results/cpu-gemv-prefetch.txt); on the AMD EPYC
// development host it changed nothing measurable. Prefetches past the end are harmless (they never fault).
#define MK_GEMV_AHEAD 4096
#define MK_PREFETCH_LINES(p, bytes)                                                                   \
    for (int mk_q_ = 0; mk_q_ < (bytes); mk_q_ += 64) __builtin_prefetch((p) + MK_GEMV_AHEAD + mk_q_)
// Rows b0 … b0 + 3 of X as x0 … x3, nb of them real (past the last row they repeat row b0, so the loops
// have no branch).
#define MK_X_BLOCK(X, ldx, B, b0)                                                                     \
    const int nb = (B) - (b0) < 4 ? (B) - (b0) : 4;                                                   \
    const float *x0 = (X) + (size_t)(b0) * (ldx);                                                     \
    const float *x1 = nb > 1 ? x0 + (ldx) : x0, *x2 = nb > 2 ? x0 + 2 * (size_t)(ldx) : x0,           \
                *x3 = nb > 3 ? x0 + 3 * (size_t)(ldx) : x0
// Y's rows b0 … b0 + nb − 1 at column n get the sums s0 … s3 (the real ones) plus the bias.
#define MK_STORE_X_BLOCK(Y, ldy, b0, n, bias, s0, s1, s2, s3)                                        \
    do {                                                                                              \
        const float bb = (bias) ? (bias)[n] : 0.0f;                                                   \
        float *y = (Y) + (size_t)(b0) * (ldy) + (n);                                                  \
        y[0] = (s0) + bb;                                                                             \
        if (nb > 1) y[ldy] = (s1) + bb;                                                               \
        if (nb > 2) y[2 * (size_t)(ldy)] = (s2) + bb;                                                 \
        if (nb > 3) y[3 * (size_t)(ldy)] = (s3) + bb;                                                 \
    } while (0)
#define MK_GEMV_KERNEL(NAME, WT, LOAD, VLOAD)                                                          \
    MK_CLONES static void NAME(int B, int n0, int n1, int K, const float *X, int ldx, const WT *W,     \
                               const float *bias, float *Y, int ldy) {                                 \
        if (B == 1) {                                                                                  \
            const float *x0 = X;                                                                       \
            for (int n = n0; n < n1; n++) {                                                            \
                const WT *wr = W + (size_t)n * K;                                                      \
                mk_f32x16 s0 = 0, s1 = 0, s2 = 0, s3 = 0;                                              \
                int k = 0;                                                                             \
                for (; k + 64 <= K; k += 64) {                                                         \
                    MK_PREFETCH_LINES((const char *)(wr + k), 64 * (int)sizeof(WT));                  \
                    s0 += VLOAD(wr + k) * MK_LOAD_F32(x0 + k);                                         \
                    s1 += VLOAD(wr + k + 16) * MK_LOAD_F32(x0 + k + 16);                               \
                    s2 += VLOAD(wr + k + 32) * MK_LOAD_F32(x0 + k + 32);                               \
                    s3 += VLOAD(wr + k + 48) * MK_LOAD_F32(x0 + k + 48);                               \
                }                                                                                      \
                float a0 = MK_SUM16((s0 + s1) + (s2 + s3));                                            \
                for (; k < K; k++) a0 += (LOAD) * x0[k];                                               \
                Y[n] = a0 + (bias ? bias[n] : 0.0f);                                                   \
            }                                                                                          \
            return;                                                                                    \
        }                                                                                              \
        for (int t0 = n0; t0 < n1; t0 += MK_GEMV_TILE) {                                               \
            const int t1 = n1 - t0 < MK_GEMV_TILE ? n1 : t0 + MK_GEMV_TILE;                            \
            for (int b0 = 0; b0 < B; b0 += 4) {                                                        \
                MK_X_BLOCK(X, ldx, B, b0);                                                             \
                for (int n = t0; n < t1; n++) {                                                        \
                    const WT *wr = W + (size_t)n * K;                                                  \
                    mk_f32x16 v0 = 0, v1 = 0, v2 = 0, v3 = 0;                                          \
                    int k = 0;                                                                         \
                    for (; k + 16 <= K; k += 16) {                                                     \
                        const mk_f32x16 w = VLOAD(wr + k);                                             \
                        v0 += w * MK_LOAD_F32(x0 + k); v1 += w * MK_LOAD_F32(x1 + k);                  \
                        v2 += w * MK_LOAD_F32(x2 + k); v3 += w * MK_LOAD_F32(x3 + k);                  \
                    }                                                                                  \
                    float a0 = MK_SUM16(v0), a1 = MK_SUM16(v1), a2 = MK_SUM16(v2), a3 = MK_SUM16(v3);  \
                    for (; k < K; k++) {                                                               \
                        const float w = LOAD;                                                          \
                        a0 += w * x0[k]; a1 += w * x1[k]; a2 += w * x2[k]; a3 += w * x3[k];            \
                    }                                                                                  \
                    MK_STORE_X_BLOCK(Y, ldy, b0, n, bias, a0, a1, a2, a3);                             \
                }                                                                                      \
            }                                                                                          \
        }                                                                                              \
    }

MK_GEMV_KERNEL(mk_gemv_f32, float, wr[k], MK_LOAD_F32)
MK_GEMV_KERNEL(mk_gemv_bf16, uint16_t, mk_bf16_to_f32(wr[k]), MK_LOAD_BF16)
#if defined(__x86_64__) || defined(__aarch64__)
MK_GEMV_KERNEL(mk_gemv_f16, _Float16, (float)wr[k], MK_LOAD_F16)
#endif

#if defined(__x86_64__) || defined(__aarch64__)
// Q8_0 weights, llama.cpp's block layout: per 32 weights of a row, an fp16 scale d then 32 int8 q (34 bytes;
// weight = d·q), so a row of K weights is K/32 blocks (K a multiple of 32). Each block's 32 int8 become two
// 16-lane float vectors in registers, are dotted with x, and the block's sum is scaled by d once: the same
// products as the float32 kernel on the dequantized weights, from a quarter of the bytes.
typedef int8_t mk_i8x16 __attribute__((ext_vector_type(16), aligned(1)));
#define MK_Q8_LO(b) (__builtin_convertvector(*(const mk_i8x16 *)((b) + 2), mk_f32x16))
#define MK_Q8_HI(b) (__builtin_convertvector(*(const mk_i8x16 *)((b) + 18), mk_f32x16))

// One kernel per block type (BLOCK bytes per 32 weights, an fp16 d first; LO and HI give weights 0–15 and 16–31
// of a block as floats before the scale; PF_MASK: prefetch on the blocks k with k & PF_MASK == 0, about one
// cache line apart). The block's sum is scaled by d once.
#define MK_BLOCK_GEMV_KERNEL(NAME, BLOCK, LO, HI, PF_MASK)                                             \
    MK_CLONES static void NAME(int B, int n0, int n1, int K, const float *X, int ldx, const uint8_t *W, \
                               const float *bias, float *Y, int ldy) {                                 \
        const int blocks = K / 32;                                                                     \
        const size_t rowBytes = (size_t)blocks * (BLOCK);                                              \
        for (int t0 = n0; t0 < n1; t0 += MK_GEMV_TILE) {                                               \
            const int t1 = n1 - t0 < MK_GEMV_TILE ? n1 : t0 + MK_GEMV_TILE;                            \
            for (int b0 = 0; b0 < B; b0 += 4) {                                                        \
                MK_X_BLOCK(X, ldx, B, b0);                                                             \
                for (int n = t0; n < t1; n++) {                                                        \
                    const uint8_t *wr = W + (size_t)n * rowBytes;                                      \
                    mk_f32x16 a0 = 0, a1 = 0, a2 = 0, a3 = 0;                                          \
                    for (int k = 0; k < blocks; k++) {                                                 \
                        const uint8_t *blk = wr + (size_t)k * (BLOCK);                                 \
                        if (nb == 1 && (k & (PF_MASK)) == 0) __builtin_prefetch(blk + MK_GEMV_AHEAD);  \
                        const float d = mk_h2f(blk);                                                   \
                        const mk_f32x16 lo = LO(blk), hi = HI(blk);                                    \
                        const int e = k * 32;                                                          \
                        a0 += (lo * MK_LOAD_F32(x0 + e) + hi * MK_LOAD_F32(x0 + e + 16)) * d;          \
                        if (nb > 1) { /* one row (batch-1 decode) pays for one */                      \
                            a1 += (lo * MK_LOAD_F32(x1 + e) + hi * MK_LOAD_F32(x1 + e + 16)) * d;      \
                            a2 += (lo * MK_LOAD_F32(x2 + e) + hi * MK_LOAD_F32(x2 + e + 16)) * d;      \
                            a3 += (lo * MK_LOAD_F32(x3 + e) + hi * MK_LOAD_F32(x3 + e + 16)) * d;      \
                        }                                                                              \
                    }                                                                                  \
                    MK_STORE_X_BLOCK(Y, ldy, b0, n, bias, MK_SUM16(a0), MK_SUM16(a1), MK_SUM16(a2), MK_SUM16(a3)); \
                }                                                                                      \
            }                                                                                          \
        }                                                                                              \
    }

MK_BLOCK_GEMV_KERNEL(mk_gemv_q8_0, MK_Q8_BLOCK, MK_Q8_LO, MK_Q8_HI, 1)  // 68 bytes per two blocks

void mk_quantize_q8_0(size_t rows, size_t K, const float *in, uint8_t *out) {
    for (size_t r = 0; r < rows; r++)
        for (size_t b = 0; b < K / 32; b++) {
            const float *x = in + r * K + b * 32;
            uint8_t *blk = out + (r * (K / 32) + b) * MK_Q8_BLOCK;
            float amax = 0;
            for (int j = 0; j < 32; j++) amax = fabsf(x[j]) > amax ? fabsf(x[j]) : amax;
            // As llama.cpp quantizes (quantize_row_q8_0_ref, and gguf-py bit for bit): q = round(x·(1/d)) with
            // the unrounded d = amax/127, d stored in fp16.
            const float d0 = amax / 127.0f;
            const _Float16 dh = (_Float16)d0;
            memcpy(blk, &dh, 2);
            const float id = d0 != 0.0f ? 1.0f / d0 : 0.0f;
            for (int j = 0; j < 32; j++) {
                float v = roundf(x[j] * id);
                v = v > 127.0f ? 127.0f : (v < -127.0f ? -127.0f : v);
                blk[2 + j] = (uint8_t)(int8_t)v;
            }
        }
}
// Q4_0 weights, llama.cpp's block layout: per 32 weights of a row, an fp16 scale d then 16 bytes whose low
// nibbles are weights 0–15 and high nibbles weights 16–31, each w = d·(q − 8) (18 bytes, 4.5 bits a weight).
// As the Q8_0 kernel: the nibbles become two 16-lane float vectors in registers.
typedef uint8_t mk_u8x16 __attribute__((ext_vector_type(16), aligned(1)));
#define MK_Q4_LO(b) (__builtin_convertvector(*(const mk_u8x16 *)((b) + 2) & (uint8_t)0x0F, mk_f32x16) - 8.0f)
#define MK_Q4_HI(b) (__builtin_convertvector(*(const mk_u8x16 *)((b) + 2) >> (uint8_t)4, mk_f32x16) - 8.0f)

MK_BLOCK_GEMV_KERNEL(mk_gemv_q4_0, MK_Q4_BLOCK, MK_Q4_LO, MK_Q4_HI, 3)  // 72 bytes per four blocks

void mk_quantize_q4_0(size_t rows, size_t K, const float *in, uint8_t *out) {
#pragma clang fp contract(off)  // x·(1/d) + 8.5 rounded twice, as numpy and llama.cpp's C reference round it
    for (size_t r = 0; r < rows; r++) {
        for (size_t b = 0; b < K / 32; b++) {
            const float *x = in + r * K + b * 32;
            uint8_t *blk = out + (r * (K / 32) + b) * MK_Q4_BLOCK;
            // As llama.cpp quantizes (quantize_row_q4_0_ref, and gguf-py bit for bit): d = the value of largest
            // magnitude / −8 (so that it maps to q = 0), q = min(15, trunc(x·(1/d) + 8.5)), d stored in fp16.
            float amax = 0.0f, max = 0.0f;
            for (int j = 0; j < 32; j++)
                if (fabsf(x[j]) > amax) { amax = fabsf(x[j]); max = x[j]; }
            const float d = max / -8.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
            const _Float16 dh = (_Float16)d;
            memcpy(blk, &dh, 2);
            for (int j = 0; j < 16; j++) {
                int q0 = (int)(x[j] * id + 8.5f), q1 = (int)(x[j + 16] * id + 8.5f);
                q0 = q0 > 15 ? 15 : (q0 < 0 ? 0 : q0);
                q1 = q1 > 15 ? 15 : (q1 < 0 ? 0 : q1);
                blk[2 + j] = (uint8_t)(q0 | (q1 << 4));
            }
        }
    }
}
#endif  // Q8_0 and Q4_0: the targets with a half-precision type, as the F16 kernel

#if defined(__x86_64__)
#include <immintrin.h>

// Several rows of X against float32 weights on AVX2 hosts without AVX-512 (AMD Zen 2–4 here): 8-lane
// registers, three weight rows against four rows of X at once, so that 7 loads feed 12 FMAs (the 16-lane
// kernel above splits each vector in two on these hosts and needs 10 loads for 8 FMAs: load-bound). The
// weight tile meets every block of X while it is in L1, as above.
__attribute__((target("avx2,fma"))) static inline float mk_hsum8(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

// Tiles of 6 weight rows (three at a time, twice) for this kernel.
#define MK_GEMV_TILE_AVX2 6

__attribute__((target("avx2,fma"))) static void mk_gemv_f32_avx2(int B, int n0, int n1, int K, const float *X, int ldx,
                                                                 const float *W, const float *bias, float *Y, int ldy) {
    for (int t0 = n0; t0 < n1; t0 += MK_GEMV_TILE_AVX2) {
        const int t1 = n1 - t0 < MK_GEMV_TILE_AVX2 ? n1 : t0 + MK_GEMV_TILE_AVX2;
        for (int b0 = 0; b0 < B; b0 += 4) {
            MK_X_BLOCK(X, ldx, B, b0);
            for (int n = t0; n < t1; n += 3) {
                // Three weight rows against four rows of X: 12 accumulators, 7 loads for 12 FMAs. Rows past
                // the tile's end repeat the last one (computed, not written).
                const float *w0 = W + (size_t)n * K;
                const float *w1 = n + 1 < t1 ? w0 + K : w0, *w2 = n + 2 < t1 ? w0 + 2 * (size_t)K : w0;
                // While the first block of X runs, fetch the next tile's rows (the stream of weights otherwise
                // stalls on each row's first touch: the profile showed 40% of the kernel on that load).
                const int pf = b0 == 0 && n + MK_GEMV_TILE_AVX2 + 2 < n1;
                __m256 a00 = _mm256_setzero_ps(), a01 = a00, a02 = a00, a03 = a00;
                __m256 a10 = a00, a11 = a00, a12 = a00, a13 = a00;
                __m256 a20 = a00, a21 = a00, a22 = a00, a23 = a00;
                int k = 0;
                for (; k + 8 <= K; k += 8) {
                    if (pf && (k & 15) == 0) {
                        const size_t ahead = (size_t)MK_GEMV_TILE_AVX2 * K + k;
                        _mm_prefetch((const char *)(w0 + ahead), _MM_HINT_T0);
                        _mm_prefetch((const char *)(w1 + ahead), _MM_HINT_T0);
                        _mm_prefetch((const char *)(w2 + ahead), _MM_HINT_T0);
                    }
                    const __m256 u = _mm256_loadu_ps(w0 + k), v = _mm256_loadu_ps(w1 + k), q = _mm256_loadu_ps(w2 + k);
                    __m256 xi = _mm256_loadu_ps(x0 + k);
                    a00 = _mm256_fmadd_ps(u, xi, a00); a10 = _mm256_fmadd_ps(v, xi, a10); a20 = _mm256_fmadd_ps(q, xi, a20);
                    xi = _mm256_loadu_ps(x1 + k);
                    a01 = _mm256_fmadd_ps(u, xi, a01); a11 = _mm256_fmadd_ps(v, xi, a11); a21 = _mm256_fmadd_ps(q, xi, a21);
                    xi = _mm256_loadu_ps(x2 + k);
                    a02 = _mm256_fmadd_ps(u, xi, a02); a12 = _mm256_fmadd_ps(v, xi, a12); a22 = _mm256_fmadd_ps(q, xi, a22);
                    xi = _mm256_loadu_ps(x3 + k);
                    a03 = _mm256_fmadd_ps(u, xi, a03); a13 = _mm256_fmadd_ps(v, xi, a13); a23 = _mm256_fmadd_ps(q, xi, a23);
                }
                float r[3][4] = { { mk_hsum8(a00), mk_hsum8(a01), mk_hsum8(a02), mk_hsum8(a03) },
                                  { mk_hsum8(a10), mk_hsum8(a11), mk_hsum8(a12), mk_hsum8(a13) },
                                  { mk_hsum8(a20), mk_hsum8(a21), mk_hsum8(a22), mk_hsum8(a23) } };
                const float *xs[4] = { x0, x1, x2, x3 }, *ws[3] = { w0, w1, w2 };
                for (; k < K; k++)
                    for (int j = 0; j < 3; j++)
                        for (int i = 0; i < 4; i++) r[j][i] += ws[j][k] * xs[i][k];
                for (int j = 0; j < 3 && n + j < t1; j++)
                    for (int i = 0; i < nb; i++) Y[(size_t)(b0 + i) * ldy + n + j] = r[j][i] + (bias ? bias[n + j] : 0.0f);
            }
        }
    }
}
#endif

// The hand-written AVX2 kernel: on AVX2 hosts without AVX-512 (where the 16-lane kernel splits each vector
// in two), unless the kernels are capped at generic (mk_cpu_limit), so that the portable one runs and is tested.
static int mk_gemv_avx2_batch(void) {
    return mk_cpu_host_level() == MK_CPU_AVX2 && mk_cpu_level() == MK_CPU_AVX2;
}

const char *mk_gemv_path_name(int batch) {
    if (batch > 1 && mk_gemv_avx2_batch()) return "avx2-fma 3x4";
#if defined(__x86_64__)
    if (__builtin_cpu_supports("avx512f")) return "x86-64-v4 (avx-512)";
    if (__builtin_cpu_supports("avx2")) return "x86-64-v3 (avx2)";
#endif
    return "portable";
}

typedef struct {
    int B, N, K, ldx, ldy, wtype, parts;
    const float *X, *bias;
    const void *W;
    float *Y;
} mk_gemv_job;

static void mk_gemv_task(void *ctx, int i) {
    const mk_gemv_job *j = (const mk_gemv_job *)ctx;
    // Row blocks of 16, so that each thread's output stays vector-aligned.
    const int rows16 = (j->N + 15) / 16;
    const int n0 = (int)((long)rows16 * i / j->parts) * 16;
    int n1 = (int)((long)rows16 * (i + 1) / j->parts) * 16;
    if (n1 > j->N) n1 = j->N;
    if (n0 >= n1) return;
    switch (j->wtype) {
    case 0:
#if defined(__x86_64__)
        if (j->B > 1 && mk_gemv_avx2_batch()) {
            mk_gemv_f32_avx2(j->B, n0, n1, j->K, j->X, j->ldx, (const float *)j->W, j->bias, j->Y, j->ldy);
            break;
        }
#endif
        mk_gemv_f32(j->B, n0, n1, j->K, j->X, j->ldx, (const float *)j->W, j->bias, j->Y, j->ldy);
        break;
    case 1: mk_gemv_bf16(j->B, n0, n1, j->K, j->X, j->ldx, (const uint16_t *)j->W, j->bias, j->Y, j->ldy); break;
#if defined(__x86_64__) || defined(__aarch64__)
    case 3: mk_gemv_q8_0(j->B, n0, n1, j->K, j->X, j->ldx, (const uint8_t *)j->W, j->bias, j->Y, j->ldy); break;
    case 4: mk_gemv_q4_0(j->B, n0, n1, j->K, j->X, j->ldx, (const uint8_t *)j->W, j->bias, j->Y, j->ldy); break;
    default: mk_gemv_f16(j->B, n0, n1, j->K, j->X, j->ldx, (const _Float16 *)j->W, j->bias, j->Y, j->ldy); break;
#else
    default: break;
#endif
    }
}

void mk_gemv_rows(int B, int N, int K, const float *X, int ldx, const void *W, int wtype, const float *bias,
                  float *Y, int ldy, int threads) {
    mk_gemv_job job = { B, N, K, ldx, ldy, wtype, 1, X, bias, W, Y };
    // Small matrices stay on the calling thread.
    job.parts = ((long)N * K < (1L << 16) || threads < 1) ? 1 : threads;
    mk_pool_run(job.parts, threads, mk_gemv_task, &job);
}

void mk_f32_to_bf16(size_t n, const float *in, uint16_t *out) {
    for (size_t i = 0; i < n; i++) out[i] = mk_f32_to_bf16_one(in[i]);
}

void mk_f32_to_f16(size_t n, const float *in, uint16_t *out) {
#if defined(__x86_64__) || defined(__aarch64__)
    for (size_t i = 0; i < n; i++) {
        _Float16 h = (_Float16)in[i];
        memcpy(&out[i], &h, 2);
    }
#else
    for (size_t i = 0; i < n; i++) out[i] = 0;
#endif
}
