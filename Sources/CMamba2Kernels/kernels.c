// Vectorized per-element kernels and the BLAS door. See CMamba2Kernels.h for the contracts.
#include "CMamba2Kernels.h"
#include <math.h>
#include <string.h>
#include "vector_loops.h"

// ---- BLAS -------------------------------------------------------------------------------------------
#if defined(__APPLE__)
#include <Accelerate/Accelerate.h>

#define MK_HAVE_OPENBLAS 0
#else
// OpenBLAS, found at run time rather than named at link time, so that a package depending on this library
// links without any BLAS setting: the entry points are weak references, set when the program itself links
// OpenBLAS (the mamba2 command takes its static archive: a release binary that needs no BLAS shared library);
// otherwise libopenblas.so.0 is opened on first use; without either, the built-in GEMM runs.
// Declared here rather than through cblas.h, whose install path differs between distributions.
#include <dlfcn.h>
#include <strings.h>
#include <pthread.h>
enum { MkRowMajor = 101, MkNoTrans = 111, MkTrans = 112 };
typedef void (*mk_sgemm_fn)(int, int, int, int, int, int, float, const float *, int, const float *, int, float, float *, int);
void cblas_sgemm(int order, int transA, int transB, int M, int N, int K, float alpha, const float *A, int lda,
                 const float *B, int ldb, float beta, float *C, int ldc) __attribute__((weak));
void openblas_set_num_threads(int n) __attribute__((weak));
char *openblas_get_config(void) __attribute__((weak));
char *openblas_get_corename(void) __attribute__((weak));
static struct { mk_sgemm_fn sgemm; void (*setThreads)(int); char *(*config)(void); char *(*corename)(void); } mk_openblas;
static pthread_once_t mk_openblas_once = PTHREAD_ONCE_INIT;

static void mk_openblas_find(void) {
    if (cblas_sgemm && openblas_set_num_threads && openblas_get_config) {
        mk_openblas.sgemm = cblas_sgemm; mk_openblas.setThreads = openblas_set_num_threads; mk_openblas.config = openblas_get_config;
        mk_openblas.corename = openblas_get_corename;  // may be absent (a build without DYNAMIC_ARCH reports none)
        return;
    }
    static const char *const names[] = { "libopenblas.so.0", "libopenblas.so", NULL };
    for (int i = 0; names[i]; i++) {
        void *h = dlopen(names[i], RTLD_NOW | RTLD_LOCAL);
        if (!h) continue;
        *(void **)&mk_openblas.sgemm = dlsym(h, "cblas_sgemm");
        *(void **)&mk_openblas.setThreads = dlsym(h, "openblas_set_num_threads");
        *(void **)&mk_openblas.config = dlsym(h, "openblas_get_config");
        *(void **)&mk_openblas.corename = dlsym(h, "openblas_get_corename");
        if (mk_openblas.sgemm && mk_openblas.setThreads && mk_openblas.config) return;
        mk_openblas.sgemm = NULL;
    }
}

// 1 when OpenBLAS is there (linked into the program or opened), else 0 (the built-in GEMM runs).
static int mk_have_openblas(void) {
    pthread_once(&mk_openblas_once, mk_openblas_find);
    return mk_openblas.sgemm != NULL;
}
#define MK_HAVE_OPENBLAS 1
#endif

static int mk_builtin = 0;
void mk_blas_use_builtin(int on) { mk_builtin = on; }
int mk_blas_is_builtin(void) {
#if MK_HAVE_OPENBLAS
    return mk_builtin || !mk_have_openblas();
#else
    return mk_builtin;
#endif
}

void mk_blas_set_threads(int n) {
#if MK_HAVE_OPENBLAS
    if (mk_have_openblas()) mk_openblas.setThreads(n);
#else
    (void)n;
#endif
}

// OpenBLAS's kernel family as it chose it at load time (openblas_get_corename), or NULL.
const char *mk_blas_core(void) {
#if MK_HAVE_OPENBLAS
    if (mk_blas_is_builtin() || !mk_openblas.corename) return NULL;
    return mk_openblas.corename();
#else
    return NULL;
#endif
}

// The OpenBLAS kernel family this CPU should run, from cpuid (which also checks that the OS saves the
// wide registers): "SkylakeX" with AVX-512 F/BW/VL/DQ, "Haswell" with AVX2 and FMA, else NULL (nothing
// OpenBLAS's own detection could get wrong in a way that costs much).
const char *mk_blas_preferred_core(void) {
#if defined(__x86_64__)
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl")
        && __builtin_cpu_supports("avx512dq")) return "SkylakeX";
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return "Haswell";
#endif
    return NULL;
}

// The vector width an OpenBLAS x86-64 kernel family uses: 3 AVX-512, 2 AVX2, 1 AVX, 0 SSE (the generic
// families, e.g. "Prescott", which OpenBLAS 0.3.21 picks for CPUs newer than it), -1 a name it does not know.
int mk_blas_core_level(const char *name) {
    if (!name) return -1;
    static const char *const avx512[] = { "SkylakeX", "Cooperlake", "SapphireRapids", NULL };
    static const char *const avx2[] = { "Haswell", "Zen", NULL };
    static const char *const avx[] = { "Sandybridge", "Bulldozer", "Piledriver", "Steamroller", "Excavator", NULL };
    static const char *const sse[] = { "Katmai", "Coppermine", "Northwood", "Prescott", "Banias", "Atom", "Core2", "Penryn",
                                       "Dunnington", "Nehalem", "Opteron", "Opteron(SSE3)", "Barcelona", "Nano", "Bobcat", NULL };
    const char *const *tables[] = { sse, avx, avx2, avx512 };
    for (int level = 0; level < 4; level++)
        for (const char *const *n = tables[level]; *n; n++)
            if (strcasecmp(*n, name) == 0) return level;
    return -1;
}

const char *mk_blas_name(void) {
    if (mk_blas_is_builtin()) return "built-in";
#if MK_HAVE_OPENBLAS
    return mk_openblas.config();
#else
    return "Accelerate";
#endif
}

MK_CLONES
void mk_sgemm_builtin(int transA, int transB, int M, int N, int K, float alpha, const float *A, int lda,
                      const float *B, int ldb, float beta, float *C, int ldc) {
    float brow[4096];
    for (int i = 0; i < M; i++) {
        float *c = C + (size_t)i * ldc;
        if (beta == 0.0f) memset(c, 0, sizeof(float) * (size_t)N);
        else if (beta != 1.0f) for (int j = 0; j < N; j++) c[j] *= beta;
    }
    // i-k-j order: the innermost loop runs along a row of B and C, contiguous when B is not transposed.
    for (int j0 = 0; j0 < N; j0 += 4096) {
        int nb = N - j0 < 4096 ? N - j0 : 4096;
        for (int k = 0; k < K; k++) {
            const float *b;
            if (!transB) b = B + (size_t)k * ldb + j0;
            else { for (int j = 0; j < nb; j++) brow[j] = B[(size_t)(j0 + j) * ldb + k]; b = brow; }
            for (int i = 0; i < M; i++) {
                float a = alpha * (transA ? A[(size_t)k * lda + i] : A[(size_t)i * lda + k]);
                float *c = C + (size_t)i * ldc + j0;
                for (int j = 0; j < nb; j++) c[j] += a * b[j];
            }
        }
    }
}

void mk_sgemm(int transA, int transB, int M, int N, int K, float alpha, const float *A, int lda,
              const float *B, int ldb, float beta, float *C, int ldc) {
    if (M <= 0 || N <= 0) return;
    if (mk_blas_is_builtin()) {
        mk_sgemm_builtin(transA, transB, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
        return;
    }
#if defined(__APPLE__)
    cblas_sgemm(CblasRowMajor, transA ? CblasTrans : CblasNoTrans, transB ? CblasTrans : CblasNoTrans,
                M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
#else
    mk_openblas.sgemm(MkRowMajor, transA ? MkTrans : MkNoTrans, transB ? MkTrans : MkNoTrans,
                      M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
#endif
}

typedef struct {
    int transA, transB, M, N, K, lda, ldb, ldc, block;
    float alpha, beta;
    const float *A, *B;
    float *C;
} mk_gemm_job;

static void mk_gemm_task(void *ctx, int i) {
    const mk_gemm_job *j = (const mk_gemm_job *)ctx;
    int j0 = i * j->block;
    int nb = j->N - j0 < j->block ? j->N - j0 : j->block;
    if (nb <= 0) return;
    const float *b = j->B + (j->transB ? (size_t)j0 * j->ldb : (size_t)j0);
    mk_sgemm(j->transA, j->transB, j->M, nb, j->K, j->alpha, j->A, j->lda, b, j->ldb, j->beta, j->C + j0, j->ldc);
}

void mk_sgemm_parallel(int transA, int transB, int M, int N, int K, float alpha, const float *A, int lda,
                       const float *B, int ldb, float beta, float *C, int ldc, int threads) {
    // Below ~1M multiply-adds the split costs more than it saves.
    if (threads <= 1 || (long)M * N * K < (1L << 20) || N < 64) {
        mk_sgemm(transA, transB, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
        return;
    }
    int block = ((N + threads - 1) / threads + 15) / 16 * 16;
    int blocks = (N + block - 1) / block;
    mk_gemm_job job = { transA, transB, M, N, K, lda, ldb, ldc, block, alpha, beta, A, B, C };
    mk_pool_run(blocks, threads, mk_gemm_task, &job);
}

// ---- elementwise ------------------------------------------------------------------------------------
// exp by range reduction x = n·ln2 + r, |r| <= ln2/2, and a degree-6 polynomial for exp(r) (Cephes
// coefficients); about 1 ulp. Inlined into loops so that they vectorize, which libm's expf does not.
static inline float mk_expf(float x) {
    float xc = x < -87.3f ? -87.3f : (x > 88.7f ? 88.7f : x);
    float fx = floorf(xc * 1.44269504088896341f + 0.5f);
    float r = xc - fx * 0.693359375f;
    r = r - fx * -2.12194440e-4f;
    float y = 1.9875691500e-4f;
    y = y * r + 1.3981999507e-3f;
    y = y * r + 8.3334519073e-3f;
    y = y * r + 4.1665795894e-2f;
    y = y * r + 1.6666665459e-1f;
    y = y * r + 5.0000001201e-1f;
    y = y * (r * r) + r + 1.0f;
    union { int32_t i; float f; } s;
    s.i = ((int32_t)fx + 127) << 23;
    float out = y * s.f;
    return x < -87.3f ? 0.0f : out;
}

MK_CLONES
void mk_mul_silu(size_t n, float *y, const float *z) {
    for (size_t i = 0; i < n; i++) y[i] = y[i] * (z[i] / (1.0f + mk_expf(-z[i])));
}

float mk_softplus(float x) { return x <= 20.0f ? log1pf(expf(x)) : x; }

// ---- SSD --------------------------------------------------------------------------------------------
MK_CLONES
void mk_ssd_decay_mask(int Q, const float *CB, int ldcb, const double *cum, const float *dt, float *M, int ldm,
                       float *decay) {
    for (int t = 0; t < Q; t++) {
        const double ct = cum[t];
        const float *cb = CB + (size_t)t * ldcb;
        float *m = M + (size_t)t * ldm;
        float *e = decay ? decay + (size_t)t * ldm : NULL;
        for (int s = 0; s <= t; s++) {
            // The difference is taken in double: over a long span the cumulative sums grow large and a
            // float difference of two large sums would lose the small exponent that matters.
            float d = (float)(ct - cum[s]);
            d = d < 0.0f ? d : 0.0f;   // a segment sum of dt·A ≤ 0; clamp rounding noise, never exp(+big)
            const float x = mk_expf(d);
            m[s] = cb[s] * x * dt[s];
            if (e) e[s] = x;
        }
        for (int s = t + 1; s < Q; s++) m[s] = 0.0f;
    }
}

typedef struct {
    int H, P, N, G, dPerChannel;
    const float *dtRaw, *dtBias, *A, *x, *B, *C, *D;
    float lo, hi;
    float *state, *y;
} mk_decode_job;

static void mk_decode_task(void *ctx, int h) {
    const mk_decode_job *j = (const mk_decode_job *)ctx;
    const int P = j->P, N = j->N, g = h / (j->H / j->G);
    float dt = mk_softplus(j->dtRaw[h] + j->dtBias[h]);
    dt = dt < j->lo ? j->lo : (dt > j->hi ? j->hi : dt);
    float decay = expf(dt * j->A[h]);
    const float *x = j->x + (size_t)h * P;
    float *y = j->y + (size_t)h * P;
    mk_ssd_scan(1, P, N, j->state + (size_t)h * P * N, &decay, &dt, x, 0, j->B + (size_t)g * N, 0,
                j->C + (size_t)g * N, 0, y, 0);
    if (j->dPerChannel) { for (int p = 0; p < P; p++) y[p] += j->D[(size_t)h * P + p] * x[p]; }
    else { const float d = j->D[h]; for (int p = 0; p < P; p++) y[p] += d * x[p]; }
}

void mk_ssd_decode_step(int H, int P, int N, int G, const float *dtRaw, const float *dtBias, const float *A,
                        float dtLo, float dtHi, const float *x, const float *B, const float *C, const float *D,
                        int dPerChannel, float *state, float *y, int threads) {
    mk_decode_job job = { H, P, N, G, dPerChannel, dtRaw, dtBias, A, x, B, C, D, dtLo, dtHi, state, y };
    mk_pool_run(H, threads, mk_decode_task, &job);
}

// ---- model ------------------------------------------------------------------------------------------
MK_CLONES
void mk_causal_conv_silu(int T, int C, int K, const float *in, long ldin, const float *hist, const float *wT,
                         const float *bias, float *out, long ldout) {
    for (int t = 0; t < T; t++) {
        float *o = out + (size_t)t * ldout;
        if (bias) memcpy(o, bias, sizeof(float) * (size_t)C); else memset(o, 0, sizeof(float) * (size_t)C);
        for (int k = 0; k < K; k++) {
            const int src = t - (K - 1) + k;
            const float *row;
            if (src >= 0) row = in + (size_t)src * ldin;
            else if (hist) row = hist + (size_t)(K - 1 + src) * C;
            else continue;
            const float *w = wT + (size_t)k * C;
            for (int c = 0; c < C; c++) o[c] += w[c] * row[c];
        }
        for (int c = 0; c < C; c++) o[c] = o[c] / (1.0f + mk_expf(-o[c]));
    }
}

MK_CLONES
void mk_gated_rmsnorm(int n, int gs, const float *y, const float *z, const float *w, float eps, int normBeforeGate,
                      float *out) {
    for (int g0 = 0; g0 < n; g0 += gs) {
        float ss = 0.0f;
        if (normBeforeGate) {
            for (int i = g0; i < g0 + gs; i++) ss += y[i] * y[i];
            const float scale = 1.0f / sqrtf(ss / (float)gs + eps);
            for (int i = g0; i < g0 + gs; i++) out[i] = y[i] * scale * w[i] * (z[i] / (1.0f + mk_expf(-z[i])));
        } else {
            for (int i = g0; i < g0 + gs; i++) {
                const float v = y[i] * (z[i] / (1.0f + mk_expf(-z[i])));
                out[i] = v;
                ss += v * v;
            }
            const float scale = 1.0f / sqrtf(ss / (float)gs + eps);
            for (int i = g0; i < g0 + gs; i++) out[i] = out[i] * scale * w[i];
        }
    }
}

// ---- norms ------------------------------------------------------------------------------------------
MK_CLONES
void mk_rmsnorm(size_t n, const float *x, const float *w, float eps, float *out) {
    float ss = 0.0f;
    for (size_t i = 0; i < n; i++) ss += x[i] * x[i];
    const float scale = 1.0f / sqrtf(ss / (float)n + eps);
    for (size_t i = 0; i < n; i++) out[i] = x[i] * scale * w[i];
}

// ---- Unicode ----------------------------------------------------------------------------------------
extern const int mk_nfkc_count;
extern const uint32_t mk_nfkc_keys[];
extern const uint32_t mk_nfkc_offsets[];
extern const uint32_t mk_nfkc_data[];

int mk_nfkc_decompose(uint32_t cp, const uint32_t **out) {
    int lo = 0, hi = mk_nfkc_count;
    while (lo < hi) {
        int mid = (lo + hi) / 2;
        if (mk_nfkc_keys[mid] < cp) lo = mid + 1; else hi = mid;
    }
    if (lo < mk_nfkc_count && mk_nfkc_keys[lo] == cp) {
        *out = mk_nfkc_data + mk_nfkc_offsets[lo];
        return (int)(mk_nfkc_offsets[lo + 1] - mk_nfkc_offsets[lo]);
    }
    return 0;
}

// ---- The sampler's reductions over a vocabulary of logits ----

typedef float mk_v16 __attribute__((ext_vector_type(16), aligned(4)));
typedef int mk_i16 __attribute__((ext_vector_type(16)));

// exp(x) for x ≤ 0 in 16 lanes: x = k·ln2 + r with |r| ≤ ln2/2, a degree-6 polynomial for exp(r) (relative
// error below 2e-7 on that range), scaled by 2^k through the exponent bits; below -87 it is 0. A libm call
// per logit made the normalizer of a 50K vocabulary cost ~300 µs a row.
// (A macro: a vector passed by value would change the ABI between the clones.)
#define MK_EXP16_NONPOSITIVE(X) ({                                                                     \
    mk_v16 x_ = (X);                                                                                   \
    const mk_i16 under_ = x_ < -87.0f;                                                                 \
    x_ = x_ < -87.0f ? (mk_v16)-87.0f : x_;                                                            \
    const mk_v16 kf_ = __builtin_elementwise_floor(x_ * 1.44269504088896341f + 0.5f);                 \
    const mk_v16 r_ = x_ - kf_ * 0.693359375f + kf_ * 2.12194440e-4f;                                  \
    mk_v16 p_ = 1.9875691500e-4f;                                                                      \
    p_ = p_ * r_ + 1.3981999507e-3f;                                                                   \
    p_ = p_ * r_ + 8.3334519073e-3f;                                                                   \
    p_ = p_ * r_ + 4.1665795894e-2f;                                                                   \
    p_ = p_ * r_ + 1.6666665459e-1f;                                                                   \
    p_ = p_ * r_ + 5.0000001201e-1f;                                                                   \
    p_ = p_ * r_ * r_ + r_ + 1.0f;                                                                     \
    const mk_i16 bits_ = (__builtin_convertvector(kf_, mk_i16) + 127) << 23;                          \
    mk_v16 scale_;                                                                                     \
    __builtin_memcpy(&scale_, &bits_, sizeof scale_);                                                  \
    under_ ? (mk_v16)0.0f : p_ * scale_;                                                               \
})

MK_CLONES float mk_max_f32(int n, const float *x) {
    float m = -INFINITY;
    int i = 0;
    if (n >= 16) {
        mk_v16 v = *(const mk_v16 *)x;
        for (i = 16; i + 16 <= n; i += 16) { mk_v16 u = *(const mk_v16 *)(x + i); v = u > v ? u : v; }
        for (int l = 0; l < 16; l++) m = v[l] > m ? v[l] : m;
    }
    for (; i < n; i++) m = x[i] > m ? x[i] : m;
    return m;
}

MK_CLONES float mk_log_sum_exp(int n, const float *x, float max) {
    mk_v16 s = 0.0f;
    int i = 0;
    for (; i + 16 <= n; i += 16) s += MK_EXP16_NONPOSITIVE(*(const mk_v16 *)(x + i) - max);
    double total = 0;
    for (int l = 0; l < 16; l++) total += s[l];
    for (; i < n; i++) total += expf(x[i] - max);
    return max + (float)log(total);
}

int mk_first_index_f32(int n, const float *x, float value) {
    for (int i = 0; i < n; i++) if (x[i] == value) return i;
    return 0;
}
