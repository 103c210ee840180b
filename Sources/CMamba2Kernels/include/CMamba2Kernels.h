// C kernels for Mamba-2: the BLAS door and the small vectorized loops that run per element.
//
// Each kernel is a plain loop over contiguous float32 memory, written so that the compiler vectorizes it;
// hot ones are compiled for AVX-512, AVX2 and baseline x86-64 and picked at load time (target_clones).
// Glossary (as in the paper): L sequence length, H heads, P head dim, N state size, G groups, Q chunk.
#ifndef CMAMBA2_KERNELS_H
#define CMAMBA2_KERNELS_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

// ---- BLAS -------------------------------------------------------------------------------------------
// Row-major single-precision GEMM: C = alpha * op(A) * op(B) + beta * C.
// transA/transB: 0 = as stored, 1 = transposed. Calls the linked BLAS (OpenBLAS or Accelerate).
void mk_sgemm(int transA, int transB, int M, int N, int K, float alpha, const float *A, int lda,
              const float *B, int ldb, float beta, float *C, int ldc);
// Reference GEMM with the same contract: the plain triple loop that tests compare the BLAS against,
// and the fallback when no BLAS is wanted (MAMBA2_BLAS=builtin).
void mk_sgemm_builtin(int transA, int transB, int M, int N, int K, float alpha, const float *A, int lda,
                      const float *B, int ldb, float beta, float *C, int ldc);
// The same GEMM split across `threads` participants of the persistent pool by blocks of C's columns
// (multiples of 16). Small products run on the calling thread. Allocates nothing.
void mk_sgemm_parallel(int transA, int transB, int M, int N, int K, float alpha, const float *A, int lda,
                       const float *B, int ldb, float beta, float *C, int ldc, int threads);
// Y (B, N) = X (B, K) · Wᵀ (+ bias) for a few rows B (the decode step's projections): each weight row is
// streamed from memory once and dotted with all B rows of X, the rows of W split across `threads`
// participants of the pool. W is (N, K) row-major in float32 (wtype 0), bfloat16 (1) or float16 (2);
// arithmetic is float32. This is the memory-bound path: the bytes of W are the cost.
// The decode GEMV's hand-written AVX2 kernel runs on AVX2 hosts (without AVX-512) unless mk_cpu_limit caps the
// kernels at MK_CPU_GENERIC; the other kernels are compiled for each instruction set and chosen by the loader.
// The kernel path a call with `batch` rows of X takes on this host, in words.
const char *mk_gemv_path_name(int batch);
void mk_gemv_rows(int B, int N, int K, const float *X, int ldx, const void *W, int wtype, const float *bias,
                  float *Y, int ldy, int threads);
// rows × K float32 weights (K a multiple of 32) → Q8_0 blocks (34 bytes per 32: fp16 d = max|w|/127, int8 q =
// round(w/d)), as llama.cpp quantizes; wtype 3 of mk_gemv_rows reads them. x86-64 and arm64 (they have _Float16).
void mk_quantize_q8_0(size_t rows, size_t K, const float *in, uint8_t *out);
// rows × K float32 weights (K a multiple of 32) → Q4_0 blocks (18 bytes per 32: fp16 d = (the value of largest
// magnitude)/−8, 16 bytes of 4-bit q = min(15, trunc(w/d + 8.5)), weights 0–15 in the low nibbles, 16–31 in the
// high), as llama.cpp quantizes; wtype 4 of mk_gemv_rows and mk_gemm reads them.
void mk_quantize_q4_0(size_t rows, size_t K, const float *in, uint8_t *out);
// float32 → bfloat16 and → float16, rounding to nearest even, n values.
void mk_f32_to_bf16(size_t n, const float *in, uint16_t *out);
void mk_f32_to_f16(size_t n, const float *in, uint16_t *out);
// Threads the BLAS itself may use for one call. We run the BLAS single-threaded and split work across
// cores ourselves, so that concurrent small GEMMs (one per head) do not oversubscribe the cores.
void mk_blas_set_threads(int n);
// 1 when the BLAS calls go to the built-in loop instead of OpenBLAS/Accelerate.
void mk_blas_use_builtin(int on);
int mk_blas_is_builtin(void);
// A short name of the linked BLAS, for reports ("OpenBLAS 0.3.21 ...", "Accelerate").
const char *mk_blas_name(void);
// OpenBLAS's kernel family as chosen at load time ("Haswell", "Prescott", ...), or NULL (no OpenBLAS).
const char *mk_blas_core(void);
// The family this CPU should run, from cpuid: "SkylakeX", "Haswell", or NULL.
const char *mk_blas_preferred_core(void);
// A family's vector width: 3 AVX-512, 2 AVX2, 1 AVX, 0 SSE only, -1 unknown (or NULL).
int mk_blas_core_level(const char *name);

// ---- prefill GEMM ------------------------------------------------------------------------------------
// The instruction sets the CPU kernels may use, in order: the host's best (MK_CPU_AUTO), or a limit that
// turns the better ones off so that every path runs and is timed on one host.
enum { MK_CPU_AUTO = 0, MK_CPU_GENERIC = 1, MK_CPU_AVX2 = 2, MK_CPU_AVX512 = 3, MK_CPU_AVX512BF16 = 4, MK_CPU_AMX = 5 };
void mk_cpu_limit(int level);
// The best level this host runs (cpuid, the OS's saved state, and for AMX the kernel's permission).
int mk_cpu_host_level(void);
// The level in use: the host's, capped by the limit.
int mk_cpu_level(void);
const char *mk_cpu_level_name(int level);
// Y (M, N) = X (M, K) · Wᵀ (+ bias) for many rows (prefill). W (N, K) row-major: float32 (wtype 0), bfloat16
// (1), float16 (2), Q8_0 blocks (3) or Q4_0 blocks (4; both K a multiple of 32). Float32 sums; bf16 weights on the avx512-bf16 and
// amx paths multiply bf16-rounded X. Threads split Y's columns. Returns 0, −1 for bad arguments, −2 when
// its scratch (a few hundred KB per thread) cannot be allocated.
int mk_gemm(int M, int N, int K, const float *X, int ldx, const void *W, int wtype, const float *bias, float *Y, int ldy,
            int threads);
// The level mk_gemm runs at for weights of wtype with rows of K on this host (the bf16 levels only for bf16
// weights and K a multiple of 32).
int mk_gemm_path(int wtype, int K);
// Rows n0 … n0 + n − 1 of W (N, K) held as wtype (as mk_gemm takes it), widened to float32 into out (n, K).
void mk_weight_rows(const void *W, int wtype, int K, size_t n0, size_t n, float *out);
// mk_gemm's product through the linked BLAS for weights held in 16 bits or blocks: each part widens up to 512 rows
// of W at a time into a float32 scratch (2 MB at K = 1024) and multiplies them with sgemm, so that a model holds
// its matrices once, in their own type, and still takes the BLAS's float32 speed where the own kernels are not
// the faster. Returns 0, −1 for bad arguments, −2 when a part's scratch cannot be allocated.
int mk_gemm_widened(int M, int N, int K, const float *X, int ldx, const void *W, int wtype, const float *bias, float *Y,
                    int ldy, int threads);

// ---- memory -----------------------------------------------------------------------------------------
// Reads `count` 64-bit words from p once, split evenly over `threads` threads of the pool, and returns their
// wrapping sum: a plain streaming read, timed by the caller as the memory's read rate.
uint64_t mk_stream_read(const void *p, size_t count, int threads);

// ---- threads ----------------------------------------------------------------------------------------
typedef void (*mk_task_fn)(void *ctx, int index);
// Runs fn(ctx, i) for i in [0, count) on a persistent pool of `threads` participants (the caller is
// one); returns when all are done. Allocates nothing per call.
void mk_pool_run(int count, int threads, mk_task_fn fn, void *ctx);
// Parts of work cut per participant (Parallel.forEach's stripes, mk_gemm's parts), taken from the pool's shared
// counter as participants come free: on a shared host one core is often slower than another (a neighbour on its
// sibling), and one equal share each had the faster thread wait for the slower (a third of a 2-core prefill).
enum { MK_PARTS_PER_THREAD = 4 };

// ---- elementwise ------------------------------------------------------------------------------------
// y[i] = y[i] * silu(z[i])
void mk_mul_silu(size_t n, float *y, const float *z);
// softplus with the reference threshold: x <= 20 ? log1p(exp(x)) : x
float mk_softplus(float x);

// ---- SSD --------------------------------------------------------------------------------------------
// The recurrence of one head over L tokens: for each t,
//   state (P, N) <- decay[t] * state + (dt[t] * x_t) ⊗ B_t;   y_t[p] = state[p, :] · C_t.
// x_t = x + t*xs (P floats), B_t = B + t*bs, C_t = C + t*cs (N floats), y_t = y + t*ys (P floats).
// Runs in the form mk_ssd_scan_form names (ssd_scan.c): the state transposed, P across vector lanes, for
// longer inputs on AVX2 / AVX-512 hosts; else mk_ssd_scan_plain, the reference (any sizes, the decode step).
void mk_ssd_scan(int L, int P, int N, float *state, const float *decay, const float *dt,
                 const float *x, long xs, const float *B, long bs, const float *C, long cs, float *y, long ys);
void mk_ssd_scan_plain(int L, int P, int N, float *state, const float *decay, const float *dt,
                       const float *x, long xs, const float *B, long bs, const float *C, long cs, float *y, long ys);
// The form mk_ssd_scan takes for L tokens of head dimension P on this host (and level): the transposed one on the
// lanes of MK_CPU_AVX512 or MK_CPU_AVX2 (that level returned), or 0, the plain one.
int mk_ssd_scan_form(int L, int P);
// Intra-chunk decay matrix of one head, lower triangle: M[t, s] = CB[t, s] * exp(min(cum[t] - cum[s], 0)) * dt[s]
// with cum the inclusive cumulative sum of dt·A over the chunk (double, so long spans keep precision)
// for s <= t, 0 above the diagonal. CB (Q, Q) row stride ldcb, M (Q, Q) row stride ldm. When decay is not
// NULL, the factors exp(min(cum[t] - cum[s], 0)) of the lower triangle are also written there (stride ldm),
// for the backward, which needs them apart from CB and dt.
void mk_ssd_decay_mask(int Q, const float *CB, int ldcb, const double *cum, const float *dt, float *M, int ldm,
                       float *decay);

// One decode step of the SSD for one sequence and one layer, all heads (in parallel on the pool):
//   dt_h = clamp(softplus(dtRaw_h + dtBias_h), lo, hi);  state_h ← exp(dt_h·A_h)·state_h + dt_h·x_h ⊗ B_g;
//   y_h = state_h · C_g + D·x_h          (g = h / (H/G); D per head, or per channel when dPerChannel)
// x (H·P), B and C (G·N), state (H, P, N), y (H·P).
void mk_ssd_decode_step(int H, int P, int N, int G, const float *dtRaw, const float *dtBias, const float *A,
                        float dtLo, float dtHi, const float *x, const float *B, const float *C, const float *D,
                        int dPerChannel, float *state, float *y, int threads);

// ---- model ------------------------------------------------------------------------------------------
// Causal depthwise convolution + SiLU over one sequence of T tokens and C channels, width K:
//   out[t, c] = silu(bias[c] + Σ_k wT[k, c] · in[t − (K−1) + k, c])
// where inputs before t = 0 come from hist ((K−1) rows, oldest first; NULL means zeros).
// in rows have stride ldin; out is (T, C) with stride ldout; wT is the filter transposed to (K, C).
void mk_causal_conv_silu(int T, int C, int K, const float *in, long ldin, const float *hist, const float *wT,
                         const float *bias, float *out, long ldout);
// Gated RMSNorm of mamba_ssm (norm_before_gate = false), over n channels in groups of gs:
//   v = y · silu(z);  out = v / sqrt(mean_group(v²) + eps) · w.   (norm_before_gate = true: norm y, then gate)
void mk_gated_rmsnorm(int n, int gs, const float *y, const float *z, const float *w, float eps, int normBeforeGate,
                      float *out);

// ---- norms ------------------------------------------------------------------------------------------
// out = x / sqrt(mean(x^2) + eps) * w over n elements; out may equal x.
void mk_rmsnorm(size_t n, const float *x, const float *w, float eps, float *out);

// ---- Unicode ----------------------------------------------------------------------------------------
// Compatibility decomposition of a code point for NFKC (table in nfkc_table.c): returns how many code
// points it decomposes to and points *out at them; 0 when it has none (keep the code point).
int mk_nfkc_decompose(uint32_t cp, const uint32_t **out);

// The sampler's reductions over n logits: the largest value (NaN-free input), the first index holding a
// value (the argmax, given the max), and max + log Σ exp(x − max) (the log-softmax normalizer; vectorized
// exp, relative error below 2e-7).
float mk_max_f32(int n, const float *x);
int mk_first_index_f32(int n, const float *x, float value);
float mk_log_sum_exp(int n, const float *x, float max);

#ifdef __cplusplus
}
#endif
#endif
