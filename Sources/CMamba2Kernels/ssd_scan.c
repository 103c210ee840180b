// The SSD recurrence of one head over L tokens (the prefill's recurrent form and the decode step):
//   state (P, N) ← decay_t · state + (dt_t · x_t) ⊗ B_t;   y_t[p] = state[p, :] · C_t
// Glossary: L tokens, P head dimension (x_t, y_t), N state size (B_t, C_t), state (P, N) row-major.
//
// Two forms, the same sums in another order:
//   plain       state rows of P, each row's N terms summed for y (a horizontal sum per row and token);
//               any P and N; the decode step (one token) and the reference the fast form is tested against.
//   transposed  the state copied to (N, P) for the call, P across the vector lanes: per token and n, the
//               decayed state row plus B_t[n]·x_t, and its product with C_t[n] added into y_t's lanes; no
//               horizontal sums. A block of columns (64 floats with AVX-512: 32 KB of state at N = 128)
//               stays in L1 while all L tokens stream by, two tokens per pass over it.
// The transposed form runs for L ≥ MK_SCAN_TRANSPOSED_MIN when the host has AVX2 or AVX-512 (chosen at run
// time, capped by mk_cpu_limit) and P is a multiple of the vector width; else the plain one.
#include "CMamba2Kernels.h"
#include <stdlib.h>
#include "vector_loops.h"

// Below this many tokens the copies of the state in and out cost more than the form saves.
#define MK_SCAN_TRANSPOSED_MIN 8

MK_CLONES
void mk_ssd_scan_plain(int L, int P, int N, float *state, const float *decay, const float *dt, const float *x, long xs,
                       const float *B, long bs, const float *C, long cs, float *y, long ys) {
    enum { TB = 32 };  // tokens per block: B and C of a block (2·TB·N floats) stay in L1/L2
    for (int t0 = 0; t0 < L; t0 += TB) {
        const int t1 = L < t0 + TB ? L : t0 + TB;
        int p = 0;
        // Four state rows at a time share each load of B_t and C_t: 1.5 loads per state value instead of 3.
        for (; p + 4 <= P; p += 4) {
            float *s0 = state + (size_t)p * N, *s1 = s0 + N, *s2 = s1 + N, *s3 = s2 + N;
            for (int t = t0; t < t1; t++) {
                const float a = decay[t];
                const float *xt = x + (size_t)t * xs + p;
                const float x0 = dt[t] * xt[0], x1 = dt[t] * xt[1], x2 = dt[t] * xt[2], x3 = dt[t] * xt[3];
                const float *b = B + (size_t)t * bs, *c = C + (size_t)t * cs;
                float a0 = 0.0f, a1 = 0.0f, a2 = 0.0f, a3 = 0.0f;
                for (int n = 0; n < N; n++) {
                    const float bn = b[n], cn = c[n];
                    const float v0 = a * s0[n] + x0 * bn, v1 = a * s1[n] + x1 * bn;
                    const float v2 = a * s2[n] + x2 * bn, v3 = a * s3[n] + x3 * bn;
                    s0[n] = v0; s1[n] = v1; s2[n] = v2; s3[n] = v3;
                    a0 += v0 * cn; a1 += v1 * cn; a2 += v2 * cn; a3 += v3 * cn;
                }
                float *yt = y + (size_t)t * ys + p;
                yt[0] = a0; yt[1] = a1; yt[2] = a2; yt[3] = a3;
            }
        }
        for (; p < P; p++) {
            float *s = state + (size_t)p * N;
            for (int t = t0; t < t1; t++) {
                const float a = decay[t];
                const float xp = dt[t] * x[(size_t)t * xs + p];
                const float *b = B + (size_t)t * bs, *c = C + (size_t)t * cs;
                float acc = 0.0f;
                for (int n = 0; n < N; n++) {
                    float v = a * s[n] + xp * b[n];
                    s[n] = v;
                    acc += v * c[n];
                }
                y[(size_t)t * ys + p] = acc;
            }
        }
    }
}

#if defined(__x86_64__)
// One block of NV vectors of W lanes of columns p0 … p0 + NV·W − 1 of the transposed state st (N, P), all L
// tokens, two at a time: per n, the state row is loaded once, stepped through tokens t and t + 1, and stored
// once (one token at a time the loads and stores of the state, not the multiply-adds, set the pace: 1.4× on
// the mamba2-130m head). The step of token t: xv = dt_t·x_t[cols]; for n: st[n] = decay_t·st[n] + B_t[n]·xv;
// y_t[cols] += st[n]·C_t[n].
#define MK_SCAN_BLOCK(name, isa, VT, W, NV)                                                                   \
    __attribute__((target(isa))) static void name(int L, int P, int N, float *st, int p0, const float *decay,  \
                                                  const float *dt, const float *x, long xs, const float *B,     \
                                                  long bs, const float *C, long cs, float *y, long ys) {       \
        for (int t = 0; t < L; t += 2) {                                                                      \
            const int two = t + 1 < L;                                                                        \
            const int t1 = two ? t + 1 : t; /* the last token alone: stepped twice, the second not kept */    \
            const float a0 = decay[t], a1 = decay[t1];                                                        \
            const float *x0 = x + (size_t)t * xs + p0, *x1 = x + (size_t)t1 * xs + p0;                        \
            const float *b0 = B + (size_t)t * bs, *b1 = B + (size_t)t1 * bs;                                  \
            const float *c0 = C + (size_t)t * cs, *c1 = C + (size_t)t1 * cs;                                  \
            VT xv0[NV], xv1[NV], acc0[NV], acc1[NV];                                                          \
            for (int k = 0; k < NV; k++) {                                                                    \
                xv0[k] = dt[t] * *(const VT *)(x0 + k * W);                                                   \
                xv1[k] = dt[t1] * *(const VT *)(x1 + k * W);                                                  \
                acc0[k] = 0; acc1[k] = 0;                                                                     \
            }                                                                                                 \
            float *s = st + p0;                                                                               \
            if (two) {                                                                                        \
                for (int n = 0; n < N; n++, s += P) {                                                         \
                    const float bn0 = b0[n], cn0 = c0[n], bn1 = b1[n], cn1 = c1[n];                            \
                    for (int k = 0; k < NV; k++) {                                                            \
                        VT v = a0 * *(VT *)(s + k * W) + bn0 * xv0[k];                                        \
                        acc0[k] += v * cn0;                                                                   \
                        v = a1 * v + bn1 * xv1[k];                                                            \
                        acc1[k] += v * cn1;                                                                   \
                        *(VT *)(s + k * W) = v;                                                               \
                    }                                                                                         \
                }                                                                                             \
            } else {                                                                                          \
                for (int n = 0; n < N; n++, s += P) {                                                         \
                    const float bn0 = b0[n], cn0 = c0[n];                                                     \
                    for (int k = 0; k < NV; k++) {                                                            \
                        const VT v = a0 * *(VT *)(s + k * W) + bn0 * xv0[k];                                  \
                        acc0[k] += v * cn0;                                                                   \
                        *(VT *)(s + k * W) = v;                                                               \
                    }                                                                                         \
                }                                                                                             \
            }                                                                                                 \
            float *y0 = y + (size_t)t * ys + p0, *y1 = y + (size_t)t1 * ys + p0;                              \
            for (int k = 0; k < NV; k++) *(VT *)(y0 + k * W) = acc0[k];                                       \
            if (two) for (int k = 0; k < NV; k++) *(VT *)(y1 + k * W) = acc1[k];                              \
        }                                                                                                     \
    }

typedef float mk_scan_v16 __attribute__((ext_vector_type(16), aligned(4)));
typedef float mk_scan_v8 __attribute__((ext_vector_type(8), aligned(4)));
// Blocks of 64 columns (AVX-512, 32 registers) or 16 (AVX2, 16 registers), and one vector for what is left.
MK_SCAN_BLOCK(mk_scan_avx512_wide, "avx512f,avx512vl,fma", mk_scan_v16, 16, 4)
MK_SCAN_BLOCK(mk_scan_avx512_one, "avx512f,avx512vl,fma", mk_scan_v16, 16, 1)
MK_SCAN_BLOCK(mk_scan_avx2_wide, "avx2,fma", mk_scan_v8, 8, 2)
MK_SCAN_BLOCK(mk_scan_avx2_one, "avx2,fma", mk_scan_v8, 8, 1)
#endif

// The form mk_ssd_scan takes for these sizes: the transposed one on AVX-512 (MK_CPU_AVX512) or AVX2 (MK_CPU_AVX2)
// lanes, or 0, the plain one.
int mk_ssd_scan_form(int L, int P) {
#if defined(__x86_64__)
    const int level = mk_cpu_level() >= MK_CPU_AVX512 ? MK_CPU_AVX512 : mk_cpu_level();
    if (L < MK_SCAN_TRANSPOSED_MIN || level < MK_CPU_AVX2) return 0;
    return P % (level == MK_CPU_AVX512 ? 16 : 8) == 0 ? level : 0;
#else
    (void)L; (void)P;
    return 0;
#endif
}

void mk_ssd_scan(int L, int P, int N, float *state, const float *decay, const float *dt, const float *x, long xs,
                 const float *B, long bs, const float *C, long cs, float *y, long ys) {
#if defined(__x86_64__)
    const int form = mk_ssd_scan_form(L, P);
    float *st = form ? malloc(sizeof(float) * (size_t)P * (size_t)N) : NULL;
    if (st) {
        for (int p = 0; p < P; p++) for (int n = 0; n < N; n++) st[(size_t)n * P + p] = state[(size_t)p * N + n];
        const int avx512 = form == MK_CPU_AVX512, W = avx512 ? 16 : 8, block = avx512 ? 64 : 16;
        int p0 = 0;
        for (; p0 + block <= P; p0 += block)
            (avx512 ? mk_scan_avx512_wide : mk_scan_avx2_wide)(L, P, N, st, p0, decay, dt, x, xs, B, bs, C, cs, y, ys);
        for (; p0 < P; p0 += W)
            (avx512 ? mk_scan_avx512_one : mk_scan_avx2_one)(L, P, N, st, p0, decay, dt, x, xs, B, bs, C, cs, y, ys);
        for (int p = 0; p < P; p++) for (int n = 0; n < N; n++) state[(size_t)p * N + n] = st[(size_t)n * P + p];
        free(st);
        return;
    }
#endif
    mk_ssd_scan_plain(L, P, N, state, decay, dt, x, xs, B, bs, C, cs, y, ys);
}
