// Prefill projections: Y (M, N) = X (M, K) · Wᵀ (+ bias) for many rows M (a prompt's tokens), W (N, K)
// row-major in float32, bfloat16, float16, Q8_0 or Q4_0 blocks, as the model holds it. Compute-bound, so unlike
// the decode GEMV (gemv.c) the operands are put in the layouts the micro-kernels want, once per call.
//
// Float32 paths (any weight type; the weights converted while packed):
//   X packed once into strips of MR rows ([KC][MR] per k block), shared by the threads; then per thread
//   for each block of NC columns of Y:  for each block of KC of k:
//     pack W[n0:n0+NC, k0:k0+KC] into panels [KC][NR] of float32 (≤ 256 KB: stays in L2)
//     for each block of MC rows:  for each panel (in L1):  for each strip: micro-kernel (MR × NR outputs)
// bf16 paths (bf16 weights; the activations rounded to bf16, float32 sums, as a bf16 model under autocast):
//   the roles turn: W's rows are read as they are stored (tiles of 16 rows × 32 k, or 32-bit pairs of k to
//   broadcast) and X is packed once into panels of 16 rows as pairs of k ([K/2][16][2], the "VNNI" layout
//   that vdpbf16ps and AMX's B tiles take), so that the weights, the larger operand, are never copied; the
//   results come out transposed (n × m) and are stored into Y's rows.
// Micro-kernels, one per instruction set, chosen from cpuid at run time (a limit set by mk_cpu_limit turns
// the better ones off, so that each can be tested and timed on one host):
//   generic      4 × 16   clang vector extension (every path is tested against float64 sums: selftest --device cpu)
//   avx2         6 × 16   8-lane FMA: 12 accumulators, 2 weight loads and 6 broadcasts per k
//   avx512      12 × 32   16-lane FMA: 24 accumulators
//   avx512-bf16 12 × 32   12 rows of W × 32 rows of X, vdpbf16ps on pairs of k: 24 accumulators
//   amx         32 × 32   AMX-BF16: four 16 × 16 float32 tiles of C, two of W (16 rows × 32 k), two of X
#include "CMamba2Kernels.h"
#include "element_types.h"
#include "clones.h"
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#pragma clang fp contract(fast)

#if defined(__x86_64__)
#include <cpuid.h>
#include <immintrin.h>
#endif
#if defined(__x86_64__) && defined(__linux__)
#include <sys/syscall.h>
#include <unistd.h>
#endif

#define MK_KC 256  // k block of the float32 paths: a 16-column panel of it is 16 KB (32 columns: 32 KB)
#define MK_KC16 1024  // k block of the bf16 paths: 512 rows of X in it are 1 MB (L2 on AMX hosts)
#define MK_NC 256  // columns per packed block: ≤ 256 KB of packed weights
#define MK_MC_STRIPS 16  // strips of MR rows per block of X (avx2: 96 rows × 256 k = 96 KB)

// ---- the host's instruction sets ------------------------------------------------------------------------

static int mk_cpu_limit_level = MK_CPU_AUTO;

void mk_cpu_limit(int level) { mk_cpu_limit_level = level; }

#if defined(__x86_64__) && defined(__linux__)
// AMX needs the kernel's permission for the tile data state (Linux ≥ 5.16): asked once per process.
static int mk_amx_permitted(void) {
    static int state = -1;
    if (state < 0) state = syscall(SYS_arch_prctl, 0x1023 /* ARCH_REQ_XCOMP_PERM */, 18 /* XTILEDATA */) == 0;
    return state;
}
#endif

int mk_cpu_host_level(void) {
#if defined(__x86_64__)
    static int level = -1;
    if (level >= 0) return level;
    int l = MK_CPU_GENERIC;
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) l = MK_CPU_AVX2;
    // __builtin_cpu_supports checks that the OS saves the zmm state as well as the cpuid bits.
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl")) {
        l = MK_CPU_AVX512;
        unsigned a, b, c, d;
        if (__get_cpuid_count(7, 1, &a, &b, &c, &d) && (a & (1u << 5))) l = MK_CPU_AVX512BF16;  // AVX512_BF16
#if defined(__linux__)
        // AMX-BF16 (edx 22) and AMX-TILE (edx 24) in leaf 7, and the OS's permission for the tile data.
        if (l == MK_CPU_AVX512BF16 && __get_cpuid_count(7, 0, &a, &b, &c, &d) && (d & (1u << 22)) && (d & (1u << 24))
            && mk_amx_permitted())
            l = MK_CPU_AMX;
#endif
    }
    level = l;
    return level;
#else
    return MK_CPU_GENERIC;
#endif
}

int mk_cpu_level(void) {
    const int host = mk_cpu_host_level();
    return mk_cpu_limit_level == MK_CPU_AUTO || mk_cpu_limit_level > host ? host : mk_cpu_limit_level;
}

const char *mk_cpu_level_name(int level) {
    switch (level) {
    case MK_CPU_GENERIC: return "generic";
    case MK_CPU_AVX2: return "avx2";
    case MK_CPU_AVX512: return "avx512";
    case MK_CPU_AVX512BF16: return "avx512-bf16";
    case MK_CPU_AMX: return "amx";
    default: return "auto";
    }
}

// The bf16 paths only for bf16 weights and K a multiple of 32 (a tile's depth; every released shape's).
int mk_gemm_path(int wtype, int K) {
    const int l = mk_cpu_level();
    return l > MK_CPU_AVX512 && (wtype != 1 || K % 32) ? MK_CPU_AVX512 : l;
}

// ---- packing ------------------------------------------------------------------------------------------

// Elements k0 … k0 + kc − 1 of weight row n of W (N, K) held as wtype, as float32 (past K: zeros; k0 a multiple
// of 32 for the block types), in loops the compiler vectorizes for each instruction set (x86-64-v3 and up convert
// float16 with F16C): the packing converts every weight it packs, and mk_gemm_widened whole matrices per call,
// where an element-at-a-time form cost a float16 model's prefill a quarter of its time.
MK_CLONES
static void mk_weight_row(const void *W, int wtype, int K, size_t n, int k0, int kc, float *restrict out) {
    const int end = k0 + kc < K ? k0 + kc : K;
    switch (wtype) {
    case 0: {
        const float *w = (const float *)W + n * K;
        for (int k = k0; k < end; k++) out[k - k0] = w[k];
        break;
    }
    case 1: {
        const uint16_t *w = (const uint16_t *)W + n * K;
        for (int k = k0; k < end; k++) out[k - k0] = mk_bf16_to_f32(w[k]);
        break;
    }
#if defined(__x86_64__) || defined(__aarch64__)
    case 2: {
        const _Float16 *w = (const _Float16 *)W + n * K;
        for (int k = k0; k < end; k++) out[k - k0] = (float)w[k];
        break;
    }
    case 3:
    case 4: {
        // Q8_0 / Q4_0 blocks (element_types.h): whole blocks, then the part of the last one before `end`.
        const int bytes = wtype == 3 ? MK_Q8_BLOCK : MK_Q4_BLOCK;
        const uint8_t *row = (const uint8_t *)W + n * (size_t)(K / 32) * bytes;
        for (int k = k0; k < end; k += 32) {
            const uint8_t *blk = row + (size_t)(k / 32) * bytes;
            const float d = mk_h2f(blk);
            float v[32];
            if (wtype == 3) {
                for (int i = 0; i < 32; i++) v[i] = d * (float)((const int8_t *)blk)[2 + i];
            } else {
                for (int i = 0; i < 16; i++) {
                    v[i] = d * (float)((blk[2 + i] & 15) - 8);
                    v[16 + i] = d * (float)((blk[2 + i] >> 4) - 8);
                }
            }
            const int m = end - k < 32 ? end - k : 32;
            memcpy(out + (k - k0), v, sizeof(float) * (size_t)m);
        }
        break;
    }
#endif
    default: break;
    }
    for (int k = end > k0 ? end : k0; k < k0 + kc; k++) out[k - k0] = 0;
}

// Columns n0 … n0 + nc − 1 (nc a multiple of NR; those past N are zeros), k0 … k0 + kc − 1 of W as float32
// panels [kc][NR].
static void mk_pack(const void *W, int wtype, int N, int K, int n0, int nc, int k0, int kc, int NR, float *out,
                    float *row) {
    for (int j = 0; j < nc; j++) {
        const int n = n0 + j;
        if (n < N) mk_weight_row(W, wtype, K, n, k0, kc, row);
        else memset(row, 0, sizeof(float) * (size_t)kc);
        float *panel = out + (size_t)(j / NR) * kc * NR + j % NR;
        for (int k = 0; k < kc; k++) panel[(size_t)k * NR] = row[k];
    }
}

// X in bf16 as panels of 16 rows, pairs of k: panel p holds rows 16p … 16p + 15 as [K/2][16][2] (rows past M
// zeros; K even). The B operand of the bf16 paths: a row of pairs is 64 bytes, 16 of them an AMX tile. This
// call writes panels p0 … p1 − 1.
static void mk_pack_x_pairs(const float *X, int ldx, int M, int K, int p0, int p1, uint16_t *out) {
    for (int p = p0; p < p1; p++) {
        uint16_t *panel = out + (size_t)p * K * 16;
        for (int i = 0; i < 16; i++) {
            const int m = p * 16 + i;
            if (m < M) {
                const float *x = X + (size_t)m * ldx;
                for (int k = 0; k < K; k++) panel[(size_t)(k / 2) * 32 + i * 2 + (k & 1)] = mk_f32_to_bf16_one(x[k]);
            } else
                for (int k = 0; k < K; k++) panel[(size_t)(k / 2) * 32 + i * 2 + (k & 1)] = 0;
        }
    }
}

// All of X as strips of MR rows, k block by k block: block k0 holds (M rounded up to MR) × kc values, strip s
// at s·kc·MR as [kc][MR] (rows past M zeros), so that the micro-kernel's broadcasts read one sequential
// stream. This call writes strips s0 … s1 − 1 of every block.
static void mk_pack_x(const float *X, int ldx, int M, int K, int KC, int MR, int s0, int s1, float *out) {
    const size_t Mr = ((size_t)M + MR - 1) / MR * MR;
    for (int k0 = 0; k0 < K; k0 += KC) {
        const int kc = K - k0 < KC ? K - k0 : KC;
        float *block = out + Mr * (size_t)k0;
        for (size_t m = (size_t)s0 * MR; m < (size_t)s1 * MR; m++) {
            float *d = block + m / MR * (size_t)kc * MR + m % MR;
            if (m < (size_t)M) {
                const float *x = X + m * (size_t)ldx + k0;
                for (int k = 0; k < kc; k++) d[(size_t)k * MR] = x[k];
            } else
                for (int k = 0; k < kc; k++) d[(size_t)k * MR] = 0;
        }
    }
}

// X packed by the pool's threads before the products start (one M × K pass; on one thread it was about 5% of
// a 130m prefill through AMX).
typedef struct {
    const float *X;
    int ldx, M, K, KC, MR, units, parts, bf16;
    void *out;
} mk_pack_job;

static void mk_pack_task(void *ctx, int part) {
    const mk_pack_job *j = (const mk_pack_job *)ctx;
    const int u0 = (int)((long)j->units * part / j->parts), u1 = (int)((long)j->units * (part + 1) / j->parts);
    if (j->bf16) mk_pack_x_pairs(j->X, j->ldx, j->M, j->K, u0, u1, (uint16_t *)j->out);
    else mk_pack_x(j->X, j->ldx, j->M, j->K, j->KC, j->MR, u0, u1, (float *)j->out);
}

// Adds (or stores, acc = 0) a block of results to C, only mr × nr of it real, plus bias on the last k block.
// Row i, column j of the block is r[i·rs + j·cs]: cs = 1 row-major (the float32 kernels' partial blocks), rs = 1
// transposed (the bf16 ones, every block). Scalar on purpose: vectorized over j, clang read the transposed rows
// with gathers (vgatherqps) from the block the kernel had just stored, and on an AMD EPYC (Zen 4) host that took
// 21 of a 130m in_proj product's 33 ms through the avx512-bf16 kernel (512 × 3352 × 768, one thread: 78 → 179–190
// GFLOP/s scalar; the kernel alone, results not stored, 219). The same sums either way, bit for bit.
static inline void mk_store(int mr, int nr, const float *r, int rs, int cs, float *C, long ldc, int acc,
                            const float *bias) {
    for (int i = 0; i < mr; i++) {
        float *c = C + (size_t)i * ldc;
#pragma clang loop vectorize(disable)
        for (int j = 0; j < nr; j++) {
            const float v = r[(size_t)i * rs + (size_t)j * cs] + (bias ? bias[j] : 0.0f);
            c[j] = acc ? c[j] + v : v;
        }
    }
}

// ---- micro-kernels ------------------------------------------------------------------------------------
// The float32 ones: a packed strip A of X ([kc][MR], mr ≤ MR rows real, the others zeros) and a packed panel B
// of W, kc terms → C (stride ldc), nr ≤ NR columns real. The bf16 ones (below) turn the roles.

typedef float mk_v16 __attribute__((ext_vector_type(16), aligned(4)));

static void mk_gemm_k_generic(int mr, int kc, const float *A, const float *B, float *C, long ldc, int nr, int acc,
                              const float *bias) {
    mk_v16 c0 = 0, c1 = 0, c2 = 0, c3 = 0;
    for (int k = 0; k < kc; k++) {
        const mk_v16 b = *(const mk_v16 *)(B + (size_t)k * 16);
        const float *a = A + (size_t)k * 4;
        c0 += a[0] * b; c1 += a[1] * b; c2 += a[2] * b; c3 += a[3] * b;
    }
    float r[4][16];
    for (int j = 0; j < 16; j++) { r[0][j] = c0[j]; r[1][j] = c1[j]; r[2][j] = c2[j]; r[3][j] = c3[j]; }
    mk_store(mr, nr, &r[0][0], 16, 1, C, ldc, acc, bias);
}

#if defined(__x86_64__)
__attribute__((target("avx2,fma"))) static void mk_gemm_k_avx2(int mr, int kc, const float *A, const float *B, float *C,
                                                              long ldc, int nr, int acc, const float *bias) {
    __m256 c[6][2];
    for (int i = 0; i < 6; i++) c[i][0] = c[i][1] = _mm256_setzero_ps();
    for (int k = 0; k < kc; k++) {
        const __m256 b0 = _mm256_load_ps(B + (size_t)k * 16), b1 = _mm256_load_ps(B + (size_t)k * 16 + 8);
        for (int i = 0; i < 6; i++) {
            const __m256 x = _mm256_broadcast_ss(A + (size_t)k * 6 + i);
            c[i][0] = _mm256_fmadd_ps(x, b0, c[i][0]);
            c[i][1] = _mm256_fmadd_ps(x, b1, c[i][1]);
        }
    }
    if (mr == 6 && nr == 16) {
        const __m256 b0 = bias ? _mm256_loadu_ps(bias) : _mm256_setzero_ps(), b1 = bias ? _mm256_loadu_ps(bias + 8) : b0;
        for (int i = 0; i < 6; i++) {
            float *ci = C + (size_t)i * ldc;
            __m256 v0 = _mm256_add_ps(c[i][0], b0), v1 = _mm256_add_ps(c[i][1], b1);
            if (acc) { v0 = _mm256_add_ps(v0, _mm256_loadu_ps(ci)); v1 = _mm256_add_ps(v1, _mm256_loadu_ps(ci + 8)); }
            _mm256_storeu_ps(ci, v0);
            _mm256_storeu_ps(ci + 8, v1);
        }
        return;
    }
    float r[6][16];
    for (int i = 0; i < 6; i++) { _mm256_storeu_ps(r[i], c[i][0]); _mm256_storeu_ps(r[i] + 8, c[i][1]); }
    mk_store(mr, nr, &r[0][0], 16, 1, C, ldc, acc, bias);
}

// Stores 12 × 32 accumulators (c[i][0] columns 0–15, c[i][1] 16–31).
#define MK_STORE_512(c)                                                                                       \
    do {                                                                                                      \
        if (mr == 12 && nr == 32) {                                                                           \
            const __m512 b0 = bias ? _mm512_loadu_ps(bias) : _mm512_setzero_ps();                             \
            const __m512 b1 = bias ? _mm512_loadu_ps(bias + 16) : b0;                                         \
            for (int i = 0; i < 12; i++) {                                                                    \
                float *ci = C + (size_t)i * ldc;                                                              \
                __m512 v0 = _mm512_add_ps(c[i][0], b0), v1 = _mm512_add_ps(c[i][1], b1);                      \
                if (acc) { v0 = _mm512_add_ps(v0, _mm512_loadu_ps(ci)); v1 = _mm512_add_ps(v1, _mm512_loadu_ps(ci + 16)); } \
                _mm512_storeu_ps(ci, v0);                                                                     \
                _mm512_storeu_ps(ci + 16, v1);                                                                \
            }                                                                                                 \
        } else {                                                                                              \
            float r[12][32];                                                                                  \
            for (int i = 0; i < 12; i++) { _mm512_storeu_ps(r[i], c[i][0]); _mm512_storeu_ps(r[i] + 16, c[i][1]); } \
            mk_store(mr, nr, &r[0][0], 32, 1, C, ldc, acc, bias);                                                \
        }                                                                                                     \
    } while (0)

__attribute__((target("avx512f,avx512bw,avx512vl,fma"))) static void mk_gemm_k_avx512(
    int mr, int kc, const float *A, const float *B, float *C, long ldc, int nr, int acc, const float *bias) {
    __m512 c[12][2];
    for (int i = 0; i < 12; i++) c[i][0] = c[i][1] = _mm512_setzero_ps();
    for (int k = 0; k < kc; k++) {
        const __m512 b0 = _mm512_load_ps(B + (size_t)k * 32), b1 = _mm512_load_ps(B + (size_t)k * 32 + 16);
        for (int i = 0; i < 12; i++) {
            const __m512 x = _mm512_set1_ps(A[(size_t)k * 12 + i]);
            c[i][0] = _mm512_fmadd_ps(x, b0, c[i][0]);
            c[i][1] = _mm512_fmadd_ps(x, b1, c[i][1]);
        }
    }
    MK_STORE_512(c);
}

// bf16: 12 rows of W (n … n + 11, nr real; the others repeat row n and are not stored) against two panels of
// pairs of X (32 rows of X, mr real) over kc = 2·kp terms: C (mr × nr, stride ldc) gets the transposed sums.
__attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16"))) static void mk_gemm_k_avx512bf16(
    int mr, int nr, int kp, const uint16_t *W, long ldw, const uint16_t *X0, const uint16_t *X1, float *C, long ldc,
    int acc, const float *bias) {
    const uint16_t *w[12];
    for (int i = 0; i < 12; i++) w[i] = W + (i < nr ? i : 0) * ldw;
    __m512 c[12][2];
    for (int i = 0; i < 12; i++) c[i][0] = c[i][1] = _mm512_setzero_ps();
    for (int kk = 0; kk < kp; kk++) {
        const __m512bh x0 = (__m512bh)_mm512_loadu_si512(X0 + (size_t)kk * 32);
        const __m512bh x1 = (__m512bh)_mm512_loadu_si512(X1 + (size_t)kk * 32);
        for (int i = 0; i < 12; i++) {
            int32_t pair;
            memcpy(&pair, w[i] + 2 * kk, 4);
            const __m512bh b = (__m512bh)_mm512_set1_epi32(pair);
            c[i][0] = _mm512_dpbf16_ps(c[i][0], b, x0);
            c[i][1] = _mm512_dpbf16_ps(c[i][1], b, x1);
        }
    }
    float r[12][32];
    for (int i = 0; i < 12; i++) { _mm512_storeu_ps(r[i], c[i][0]); _mm512_storeu_ps(r[i] + 16, c[i][1]); }
    mk_store(mr, nr, &r[0][0], 1, 32, C, ldc, acc, bias);
}

#if defined(__linux__)
// AMX: 32 rows of W (n … n + 31, tiles 4 and 5 of 16 rows × 32 k, read in place with stride ldw) against two
// panels of pairs of X (tiles 6 and 7: 16 pairs of k × 16 rows of X) over kc terms (a multiple of 32), into
// four 16 × 16 float32 tiles (0–3) of the transposed result; mr × nr of it stored into C. The tile
// configuration is loaded by the caller.
__attribute__((target("amx-tile,amx-bf16,avx512f"))) static void mk_gemm_k_amx(
    int mr, int nr, int kc, const uint16_t *W, long ldw, const uint16_t *X0, const uint16_t *X1, float *C, long ldc,
    int acc, const float *bias) {
    _tile_zero(0); _tile_zero(1); _tile_zero(2); _tile_zero(3);
    const long sw = ldw * 2;
    for (int k = 0; k < kc; k += 32) {
        _tile_loadd(4, W + k, sw);
        _tile_loadd(5, W + 16 * ldw + k, sw);
        _tile_loadd(6, X0 + (size_t)k * 16, 64);
        _tile_loadd(7, X1 + (size_t)k * 16, 64);
        _tile_dpbf16ps(0, 4, 6);  // W rows 0–15 × X rows 0–15
        _tile_dpbf16ps(1, 4, 7);  // W rows 0–15 × X rows 16–31
        _tile_dpbf16ps(2, 5, 6);
        _tile_dpbf16ps(3, 5, 7);
    }
    float r[32][32];  // [n][m]
    _tile_stored(0, &r[0][0], 128);
    _tile_stored(1, &r[0][16], 128);
    _tile_stored(2, &r[16][0], 128);
    _tile_stored(3, &r[16][16], 128);
    mk_store(mr, nr, &r[0][0], 1, 32, C, ldc, acc, bias);
}

typedef struct {
    uint8_t palette, start_row, reserved[14];
    uint16_t colsb[16];
    uint8_t rows[16];
} mk_tilecfg;

__attribute__((target("amx-tile"))) static void mk_amx_configure(void) {
    mk_tilecfg cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.palette = 1;
    for (int t = 0; t < 8; t++) { cfg.colsb[t] = 64; cfg.rows[t] = 16; }
    _tile_loadconfig(&cfg);
}

__attribute__((target("amx-tile"))) static void mk_amx_release(void) { _tile_release(); }
#endif
#endif  // __x86_64__

// ---- the driver -------------------------------------------------------------------------------------------

typedef struct {
    int M, N, K, ldx, ldy, wtype, level, MR, NR, KC, units, parts;
    const float *X, *bias;
    const float *Xp;     // float32 paths: X packed by mk_pack_x
    const uint16_t *Xv;  // bf16 paths: X packed by mk_pack_x_pairs, rows padded to a multiple of 32
    const void *W;
    float *Y;
    char *scratch;       // per part: float32 paths a packed block of W and a row; amx a copy of the last rows of W
    size_t scratchPart;  // bytes of one part's scratch, a multiple of 64
} mk_gemm_job;

static inline void mk_kernel_f32(const mk_gemm_job *j, int mr, int kc, const float *A, const float *B, float *C, int nr,
                                 int acc, const float *bias) {
    switch (j->level) {
#if defined(__x86_64__)
    case MK_CPU_AVX2: mk_gemm_k_avx2(mr, kc, A, B, C, j->ldy, nr, acc, bias); break;
    case MK_CPU_AVX512: mk_gemm_k_avx512(mr, kc, A, B, C, j->ldy, nr, acc, bias); break;
#endif
    default: mk_gemm_k_generic(mr, kc, A, B, C, j->ldy, nr, acc, bias); break;
    }
}

// Float32 paths: part `part` of the panels of NR columns.
static void mk_gemm_task_f32(const mk_gemm_job *j, int part) {
    const int u0 = (int)((long)j->units * part / j->parts), u1 = (int)((long)j->units * (part + 1) / j->parts);
    const int NR = j->NR, MR = j->MR, KC = j->KC;
    float *packed = (float *)(j->scratch + (size_t)part * j->scratchPart);
    float *row = packed + (size_t)MK_NC * KC;
    for (int pc = u0; pc < u1; pc += MK_NC / NR) {
        const int n0 = pc * NR, nc = ((pc + MK_NC / NR < u1 ? pc + MK_NC / NR : u1) - pc) * NR;
        for (int k0 = 0; k0 < j->K; k0 += KC) {
            const int kc = j->K - k0 < KC ? j->K - k0 : KC;
            const int first = k0 == 0, last = k0 + kc >= j->K;
            const float *xb = j->Xp + (size_t)(j->M + MR - 1) / MR * MR * k0;  // this k block of X
            mk_pack(j->W, j->wtype, j->N, j->K, n0, nc, k0, kc, NR, packed, row);
            // Rows in blocks of MC, whose strips of X stay in L2 while each panel (in L1) meets all of them.
            const int MC = MR * MK_MC_STRIPS;
            for (int m0 = 0; m0 < j->M; m0 += MC) {
                const int mEnd = j->M - m0 < MC ? j->M : m0 + MC;
                for (int p = 0; p < nc / NR && n0 + p * NR < j->N; p++) {
                    const int n = n0 + p * NR, nr = j->N - n < NR ? j->N - n : NR;
                    const float *bias = last && j->bias ? j->bias + n : NULL;
                    for (int m = m0; m < mEnd; m += MR)
                        mk_kernel_f32(j, mEnd - m < MR ? mEnd - m : MR, kc, xb + (size_t)m * kc, packed + (size_t)p * kc * NR,
                                      j->Y + (size_t)m * j->ldy + n, nr, !first, bias);
                }
            }
        }
    }
}

#if defined(__x86_64__)
// bf16 paths: part `part` of the blocks of NR rows of W (columns of Y).
static void mk_gemm_task_bf16(const mk_gemm_job *j, int part) {
    const int u0 = (int)((long)j->units * part / j->parts), u1 = (int)((long)j->units * (part + 1) / j->parts);
    const int NR = j->NR, K = j->K;
    const uint16_t *W = (const uint16_t *)j->W;
#if defined(__linux__)
    if (j->level == MK_CPU_AMX) mk_amx_configure();
#endif
    for (int k0 = 0; k0 < K; k0 += j->KC) {
        const int kc = K - k0 < j->KC ? K - k0 : j->KC;
        const int first = k0 == 0, last = k0 + kc >= K;
        for (int u = u0; u < u1; u++) {
            const int n = u * NR, nr = j->N - n < NR ? j->N - n : NR;
            const uint16_t *Wb = W + (size_t)n * K;
            if (j->level == MK_CPU_AMX && nr < NR) {
                // A tile reads 16 whole rows: the last block's rows are copied with zero rows after them (once per
                // k block of 1,024: once for K ≤ 1,024, three times for 2.7b's in_proj; left as it ran on the AMX host).
                uint16_t *copy = (uint16_t *)(j->scratch + (size_t)part * j->scratchPart);
                memcpy(copy, Wb, (size_t)nr * K * 2);
                memset(copy + (size_t)nr * K, 0, (size_t)(NR - nr) * K * 2);
                Wb = copy;
            }
            const float *bias = last && j->bias ? j->bias + n : NULL;
            for (int m0 = 0; m0 < j->M; m0 += 32) {
                const int mr = j->M - m0 < 32 ? j->M - m0 : 32;
                const uint16_t *X0 = j->Xv + (size_t)(m0 / 16) * K * 16 + (size_t)k0 * 16, *X1 = X0 + (size_t)K * 16;
                float *C = j->Y + (size_t)m0 * j->ldy + n;
#if defined(__linux__)
                if (j->level == MK_CPU_AMX) { mk_gemm_k_amx(mr, nr, kc, Wb + k0, K, X0, X1, C, j->ldy, !first, bias); continue; }
#endif
                mk_gemm_k_avx512bf16(mr, nr, kc / 2, Wb + k0, K, X0, X1, C, j->ldy, !first, bias);
            }
        }
    }
#if defined(__linux__)
    if (j->level == MK_CPU_AMX) mk_amx_release();
#endif
}
#endif

static void mk_gemm_task(void *ctx, int part) {
    const mk_gemm_job *j = (const mk_gemm_job *)ctx;
#if defined(__x86_64__)
    if (j->Xv) { mk_gemm_task_bf16(j, part); return; }
#endif
    mk_gemm_task_f32(j, part);
}

int mk_gemm(int M, int N, int K, const float *X, int ldx, const void *W, int wtype, const float *bias, float *Y, int ldy,
            int threads) {
    if (M <= 0 || N <= 0) return 0;
    if (K <= 0 || ldx < K || ldy < N || (wtype >= 3 && K % 32) || wtype < 0 || wtype > 4) return -1;
    mk_gemm_job job;
    memset(&job, 0, sizeof job);
    job.M = M; job.N = N; job.K = K; job.X = X; job.ldx = ldx; job.W = W; job.wtype = wtype; job.bias = bias;
    job.Y = Y; job.ldy = ldy;
    job.level = mk_gemm_path(wtype, K);
    const int bf16 = job.level >= MK_CPU_AVX512BF16;
    switch (job.level) {
    case MK_CPU_AVX2: job.MR = 6; job.NR = 16; break;
    case MK_CPU_AVX512: job.MR = 12; job.NR = 32; break;
    case MK_CPU_AVX512BF16: job.MR = 32; job.NR = 12; break;
    case MK_CPU_AMX: job.MR = 32; job.NR = 32; break;
    default: job.level = MK_CPU_GENERIC; job.MR = 4; job.NR = 16; break;
    }
    job.KC = bf16 ? MK_KC16 : MK_KC;
    job.units = (N + job.NR - 1) / job.NR;
    const double flops = 2.0 * M * N * K;
    const int parts = threads < 1 ? 1 : MK_PARTS_PER_THREAD * threads;
    job.parts = flops < 4e6 ? 1 : (parts < job.units ? parts : job.units);
    if (bf16) job.scratchPart = job.level == MK_CPU_AMX ? ((size_t)job.NR * K * 2 + 63) / 64 * 64 : 0;
    else job.scratchPart = ((size_t)MK_NC * job.KC * 4 + sizeof(float) * (size_t)job.KC + 63) / 64 * 64;
    // The packed X: float32 strips of MR rows, or bf16 pairs in panels of 16 rows (rows to a multiple of 32).
    const size_t rows = bf16 ? ((size_t)M + 31) / 32 * 32 : ((size_t)M + job.MR - 1) / job.MR * job.MR;
    void *xp = aligned_alloc(64, (rows * (size_t)K * (bf16 ? 2 : 4) + 63) / 64 * 64);
    job.scratch = job.scratchPart ? (char *)aligned_alloc(64, job.scratchPart * (size_t)job.parts) : NULL;
    if (!xp || (job.scratchPart && !job.scratch)) { free(xp); free(job.scratch); return -2; }
    mk_pack_job pack = { X, ldx, M, K, job.KC, job.MR, (int)(rows / (bf16 ? 16 : (size_t)job.MR)), 1, bf16, xp };
    pack.parts = job.parts < pack.units ? job.parts : pack.units;
    mk_pool_run(pack.parts, threads, mk_pack_task, &pack);
    if (bf16) job.Xv = (const uint16_t *)xp;
    else job.Xp = (const float *)xp;
    mk_pool_run(job.parts, threads, mk_gemm_task, &job);
    free(job.scratch);
    free(xp);
    return 0;
}

// ---- weights widened for the BLAS ---------------------------------------------------------------------

void mk_weight_rows(const void *W, int wtype, int K, size_t n0, size_t n, float *out) {
    for (size_t j = 0; j < n; j++) mk_weight_row(W, wtype, K, n0 + j, 0, K, out + j * (size_t)K);
}

// A part of mk_gemm_widened: columns [n0, n1) of Y in chunks of at most MK_WIDEN_ROWS rows of W through one
// scratch. Chunks are large because sgemm packs all of X again for each call: with 128-row chunks that
// repacking cost a 370m Q8_0 prefill ~15% against the float32 copy's one call.
#define MK_WIDEN_ROWS 512
typedef struct {
    int M, N, K, ldx, wtype, ldy, parts;
    const float *X;
    const void *W;
    const float *bias;
    float *Y;
    int failed;
} mk_widen_job;

static void mk_widen_task(void *ctx, int part) {
    mk_widen_job *j = (mk_widen_job *)ctx;
    // Even shares of whole 16-column groups (the kernels' panel width), split into equal chunks.
    const int groups = (j->N + 15) / 16;
    const int n0 = (int)((long)groups * part / j->parts) * 16, n1e = (int)((long)groups * (part + 1) / j->parts) * 16;
    const int n1 = n1e < j->N ? n1e : j->N;
    if (n0 >= n1) return;
    const int chunks = (n1 - n0 + MK_WIDEN_ROWS - 1) / MK_WIDEN_ROWS, rows = (n1 - n0 + chunks - 1) / chunks;
    float *w = (float *)malloc(sizeof(float) * (size_t)rows * (size_t)j->K);
    if (!w) { __atomic_store_n(&j->failed, 1, __ATOMIC_RELAXED); return; }
    for (int c = n0; c < n1; c += rows) {
        const int nb = n1 - c < rows ? n1 - c : rows;
        mk_weight_rows(j->W, j->wtype, j->K, (size_t)c, (size_t)nb, w);
        mk_sgemm(0, 1, j->M, nb, j->K, 1.0f, j->X, j->ldx, w, j->K, 0.0f, j->Y + c, j->ldy);
        if (j->bias)
            for (int m = 0; m < j->M; m++) {
                float *y = j->Y + (size_t)m * j->ldy + c;
                for (int i = 0; i < nb; i++) y[i] += j->bias[c + i];
            }
    }
    free(w);
}

int mk_gemm_widened(int M, int N, int K, const float *X, int ldx, const void *W, int wtype, const float *bias, float *Y,
                    int ldy, int threads) {
    if (M <= 0 || N <= 0) return 0;
    if (K <= 0 || ldx < K || ldy < N || (wtype >= 3 && K % 32) || wtype < 0 || wtype > 4) return -1;
    // MK_PARTS_PER_THREAD parts a thread (taken as threads come free), no more than there are 16-column groups.
    const int groups = (N + 15) / 16;
    int parts = threads < 1 ? 1 : MK_PARTS_PER_THREAD * threads;
    if (parts > groups) parts = groups;
    mk_widen_job job = { M, N, K, ldx, wtype, ldy, parts, X, W, bias, Y, 0 };
    mk_pool_run(parts, threads, mk_widen_task, &job);
    return job.failed ? -2 : 0;
}
