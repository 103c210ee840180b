import Mamba2
extension CUDAKernelSource {
    /// The training step's norms as row kernels: a thread per 8 adjacent columns of a row (the block as wide
    /// as the row, ⌈cols / 8⌉ threads rounded up to a warp, at most 1,024), a block walking a contiguous range
    /// of rows (as many blocks as the GPU holds at once, so no tail wave), each value loaded once in 16-byte
    /// copies through a shared-memory pipeline, the weight's gradient summed over the block's rows in
    /// registers and added once per column per block.
    /// Appended to `training` (ACT, act_t, warp_sum and the bf16 conversions come from there).
    ///
    /// Each backward also writes what its matrix product's weight gradient needs, the forward it replaces
    /// (the gated norm's output for out_proj's dW, the block norm's for in_proj's dW), so the backward runs
    /// the input gradient's product first, then the norm, then the weight gradient's product: one pass over
    /// the norm's inputs instead of two. (Before: the 1.3b step spent 12.2 + 5.7 ms in the gated norm's
    /// backward and its recompute, 7.7 + 2.1 in the block norm's: two passes, dw summed by shared atomics.)
    ///
    /// Taken where every row start and column offset is a whole multiple of 8 values and the group size
    /// too (every released shape); otherwise the trainer runs `training`'s kernels and recomputes.
    static let trainingNorms = #"""
    // 8 act values (16 bytes in bf16, 32 in float32) and 8 float32 values, loaded and stored whole.
    #if ACT == 1
    typedef uint4 apk;
    __device__ __forceinline__ apk ldA(const act_t* p) { return *(const uint4*)p; }
    __device__ __forceinline__ void stA(act_t* p, apk v) { *(uint4*)p = v; }
    __device__ __forceinline__ void unA(apk v, float* o) {
        const u32 w[4] = {v.x, v.y, v.z, v.w};
        #pragma unroll
        for (int k = 0; k < 4; k++) { o[2 * k] = __uint_as_float(w[k] << 16); o[2 * k + 1] = __uint_as_float(w[k] & 0xffff0000u); }
    }
    __device__ __forceinline__ apk pkA(const float* o) {
        u32 w[4];
        #pragma unroll
        for (int k = 0; k < 4; k++) w[k] = (u32)from_f(o[2 * k]) | ((u32)from_f(o[2 * k + 1]) << 16);
        return make_uint4(w[0], w[1], w[2], w[3]);
    }
    #else  // float32 activations: the float32 pack below
    #define apk fpk
    #define ldA ldF
    #define stA stF
    #define unA unF
    #define pkA pkF
    #endif
    struct fpk { float4 a, b; };
    __device__ __forceinline__ fpk ldF(const float* p) { fpk v; v.a = *(const float4*)p; v.b = *(const float4*)(p + 4); return v; }
    __device__ __forceinline__ void stF(float* p, fpk v) { *(float4*)p = v.a; *(float4*)(p + 4) = v.b; }
    __device__ __forceinline__ void unF(fpk v, float* o) {
        o[0] = v.a.x; o[1] = v.a.y; o[2] = v.a.z; o[3] = v.a.w; o[4] = v.b.x; o[5] = v.b.y; o[6] = v.b.z; o[7] = v.b.w;
    }
    __device__ __forceinline__ fpk pkF(const float* o) {
        fpk v; v.a = make_float4(o[0], o[1], o[2], o[3]); v.b = make_float4(o[4], o[5], o[6], o[7]); return v;
    }

    // Sums (a, b) over the threads of the block whose group id is gid (one of ng ≤ 64 groups); every thread of
    // the block calls it, the same number of times. A warp whose threads share a group sums in registers and
    // adds once; others add per thread. red: 3 × 2·ng floats, zero at the first call; `it` counts the calls:
    // three buffers in turn, so one barrier a call suffices (the buffer zeroed here was read by the previous
    // call, before this call's barrier, and is next added to by the call after the next one, after the next
    // call's barrier).
    __device__ __forceinline__ float2 group_sum2(float a, float b, int gid, int ng, float* red, int it) {
        float* cur = red + (it % 3) * 2 * ng;
        const int g0 = __shfl_sync(0xffffffffu, gid, 0);
        if (__all_sync(0xffffffffu, gid == g0)) {
            a = warp_sum(a); b = warp_sum(b);
            if ((threadIdx.x & 31) == 0) { atomicAdd(cur + 2 * gid, a); atomicAdd(cur + 2 * gid + 1, b); }
        } else {
            atomicAdd(cur + 2 * gid, a); atomicAdd(cur + 2 * gid + 1, b);
        }
        __syncthreads();
        const float2 s = make_float2(cur[2 * gid], cur[2 * gid + 1]);
        float* old = red + ((it + 2) % 3) * 2 * ng;
        for (int i = threadIdx.x; i < 2 * ng; i += blockDim.x) old[i] = 0.f;
        return s;
    }
    #define RED_INIT(red, ng) for (int i = threadIdx.x; i < 6 * (ng); i += blockDim.x) red[i] = 0.f; __syncthreads();

    // Rows reach shared memory through a pipeline of PIPE stages (cp.async): a thread copies its own 8 columns of
    // row u + PIPE − 1 while it works on row u, so PIPE − 1 rows of loads are in flight whatever the registers
    // allow (holding the next row in registers, these kernels reached 2.1–2.5 TB/s at 1.3b; ncu showed them
    // waiting on memory with half the warps a multiprocessor can hold). Each thread reads back only what it
    // copied itself, so the pipeline needs no barrier of its own. A block takes a contiguous range of rows.
    #define PIPE 4
    __device__ __forceinline__ void cp16(unsigned char* smem, const void* g) {
        const unsigned a = (unsigned)__cvta_generic_to_shared(smem);
        asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" :: "r"(a), "l"(g) : "memory");
    }
    __device__ __forceinline__ void cp_commit() { asm volatile("cp.async.commit_group;\n" ::: "memory"); }
    __device__ __forceinline__ void cp_wait() { asm volatile("cp.async.wait_group %0;\n" :: "n"(PIPE - 1) : "memory"); }
    // Copies 8 act values (SA bytes) or 8 floats (32 bytes).
    #define SA ((int)sizeof(apk))
    __device__ __forceinline__ void cpA(unsigned char* s, const act_t* g) { cp16(s, g); if (SA == 32) cp16(s + 16, (const unsigned char*)g + 16); }
    __device__ __forceinline__ void cpF(unsigned char* s, const float* g) { cp16(s, g); cp16(s + 16, g + 4); }

    // A row kernel's thread: its 8 weights (and zeroed sums of their gradients); at the end, those sums added.
    __device__ __forceinline__ void row_weights(const float* __restrict__ w, int c, bool on, float* wv, float* acc) {
        #pragma unroll
        for (int k = 0; k < 8; k++) acc[k] = 0.f;
        if (on) unF(ldF(w + c), wv);
    }
    __device__ __forceinline__ void row_weight_grads(float* __restrict__ dw, int c, bool on, const float* acc) {
        if (!on) return;
        #pragma unroll
        for (int k = 0; k < 8; k++) atomicAdd(dw + c + k, acc[k]);
    }

    // RMSNorm forward: out (T, d) = x·r·w in act, r = 1/sqrt(mean(x²) + eps); with copy, x is also copied
    // there (the next layer's residual stream, which out_proj then adds into). Stage: x (32 bytes a thread).
    extern "C" __global__ void __launch_bounds__(1024) t_rmsnorm_rows(int T, int d, int rows, float eps, const float* __restrict__ x,
                                                                       const float* __restrict__ w, act_t* __restrict__ out,
                                                                       float* __restrict__ copy) {
        extern __shared__ __align__(16) unsigned char pipe[];
        __shared__ float red[6];
        RED_INIT(red, 1)
        const int nt = blockDim.x, c = threadIdx.x * 8;
        const bool on = c < d;
        const int t0 = blockIdx.x * rows, t1 = min(T, t0 + rows);
        #define SX(u) (pipe + ((size_t)(((u) - t0) % PIPE) * nt + threadIdx.x) * 32)
        float wv[8];
        if (on) unF(ldF(w + c), wv);
        for (int u = t0; u < t0 + PIPE - 1; u++) { if (on && u < t1) cpF(SX(u), x + (size_t)u * d + c); cp_commit(); }
        for (int t = t0, it = 0; t < t1; t++, it++) {
            { const int u = t + PIPE - 1; if (on && u < t1) cpF(SX(u), x + (size_t)u * d + c); cp_commit(); }
            cp_wait();
            float xv[8], ss = 0.f;
            if (on) {
                unF(*(const fpk*)SX(t), xv);
                #pragma unroll
                for (int k = 0; k < 8; k++) ss += xv[k] * xv[k];
            }
            const float r = rsqrtf(group_sum2(ss, 0.f, 0, 1, red, it).x / d + eps);
            if (on) {
                float o[8];
                #pragma unroll
                for (int k = 0; k < 8; k++) o[k] = xv[k] * r * wv[k];
                stA(out + (size_t)t * d + c, pkA(o));
                if (copy) stF(copy + (size_t)t * d + c, *(const fpk*)SX(t));
            }
        }
        #undef SX
    }

    // RMSNorm backward from g = d out (act): dx += r·g·w − x·r³·Σ(g·w·x)/d in place (the residual stream's
    // gradient) and its act copy dxAct (the next product's input), dw += Σ_rows g·x·r, and the forward's output
    // normed = x·r·w (in_proj's weight gradient takes it next). Stage: x (32 bytes a thread), g (SA), dx (32).
    extern "C" __global__ void __launch_bounds__(1024) t_rmsnorm_bwd_rows(int T, int d, int rows, float eps, const float* __restrict__ x,
                                                                           const float* __restrict__ w, const act_t* __restrict__ g,
                                                                           float* __restrict__ dx, act_t* __restrict__ dxAct,
                                                                           act_t* __restrict__ normed, float* __restrict__ dw) {
        extern __shared__ __align__(16) unsigned char pipe[];
        __shared__ float red[6];
        RED_INIT(red, 1)
        const int nt = blockDim.x, c = threadIdx.x * 8;
        const bool on = c < d;
        const int t0 = blockIdx.x * rows, t1 = min(T, t0 + rows);
        #define ST0(u) (pipe + (size_t)(((u) - t0) % PIPE) * nt * (64 + SA))
        #define SXr(u) (ST0(u) + threadIdx.x * 32)
        #define SGr(u) (ST0(u) + nt * 32 + threadIdx.x * SA)
        #define SDr(u) (ST0(u) + nt * (32 + SA) + threadIdx.x * 32)
        #define ISSUE(u) { if (on && (u) < t1) { const size_t e = (size_t)(u) * d + c; cpF(SXr(u), x + e); cpA(SGr(u), g + e); cpF(SDr(u), dx + e); } cp_commit(); }
        float wv[8], acc[8];
        row_weights(w, c, on, wv, acc);
        for (int u = t0; u < t0 + PIPE - 1; u++) ISSUE(u)
        for (int t = t0, it = 0; t < t1; t++, it++) {
            ISSUE(t + PIPE - 1)
            cp_wait();
            float ss = 0.f, dot = 0.f;
            if (on) {
                float xv[8], gv[8];
                unF(*(const fpk*)SXr(t), xv); unA(*(const apk*)SGr(t), gv);
                #pragma unroll
                for (int k = 0; k < 8; k++) { ss += xv[k] * xv[k]; dot += gv[k] * wv[k] * xv[k]; }
            }
            const float2 s = group_sum2(ss, dot, 0, 1, red, it);
            const float r = rsqrtf(s.x / d + eps), kk = r * r * r * s.y / d;
            if (on) {
                const size_t e = (size_t)t * d + c;
                float xv[8], gv[8], dv[8], o[8];
                unF(*(const fpk*)SXr(t), xv); unA(*(const apk*)SGr(t), gv); unF(*(const fpk*)SDr(t), dv);
                #pragma unroll
                for (int k = 0; k < 8; k++) {
                    dv[k] += r * gv[k] * wv[k] - xv[k] * kk;
                    o[k] = xv[k] * r * wv[k];
                    acc[k] += gv[k] * xv[k] * r;
                }
                stF(dx + e, pkF(dv));
                if (dxAct) stA(dxAct + e, pkA(dv));
                if (normed) stA(normed + e, pkA(o));
            }
        }
        row_weight_grads(dw, c, on, acc);
        #undef ISSUE
        #undef SXr
        #undef SGr
        #undef SDr
        #undef ST0
    }

    // The gated RMSNorm's forward (norm_before_gate = false): gated (T, S) = v·r·w, v = y·silu(z), r per group
    // of gs = S / G channels; z is zx's first S columns. Stage: y, z (SA bytes a thread each).
    extern "C" __global__ void __launch_bounds__(1024) t_gated_norm_rows(int T, int S, int G, int rows, float eps, const act_t* __restrict__ y,
                                                                          const act_t* __restrict__ zx, int E, const float* __restrict__ w,
                                                                          act_t* __restrict__ gated) {
        extern __shared__ __align__(16) unsigned char pipe[];
        __shared__ float red[6 * 64];
        RED_INIT(red, G)
        const int nt = blockDim.x, c = threadIdx.x * 8, gs = S / G;
        const bool on = c < S;
        const int gid = min(c / gs, G - 1);
        const int t0 = blockIdx.x * rows, t1 = min(T, t0 + rows);
        #define SL(u, a) (pipe + ((size_t)((((u) - t0) % PIPE) * 2 + (a)) * nt + threadIdx.x) * SA)
        #define ISSUE(u) { if (on && (u) < t1) { cpA(SL(u, 0), y + (size_t)(u) * S + c); cpA(SL(u, 1), zx + (size_t)(u) * E + c); } cp_commit(); }
        float wv[8];
        if (on) unF(ldF(w + c), wv);
        for (int u = t0; u < t0 + PIPE - 1; u++) ISSUE(u)
        for (int t = t0, it = 0; t < t1; t++, it++) {
            ISSUE(t + PIPE - 1)
            cp_wait();
            float v[8], ss = 0.f;
            if (on) {
                float yv[8], zv[8];
                unA(*(const apk*)SL(t, 0), yv); unA(*(const apk*)SL(t, 1), zv);
                #pragma unroll
                for (int k = 0; k < 8; k++) { v[k] = yv[k] * zv[k] * csigm(zv[k]); ss += v[k] * v[k]; }
            }
            const float r = rsqrtf(group_sum2(ss, 0.f, gid, G, red, it).x / gs + eps);
            if (on) {
                #pragma unroll
                for (int k = 0; k < 8; k++) v[k] *= r * wv[k];
                stA(gated + (size_t)t * S + c, pkA(v));
            }
        }
        #undef ISSUE
        #undef SL
    }

    // The gated RMSNorm's backward (norm_before_gate = false; groups of gs = S / G channels) from g = d out
    // (T, S) act: v = y·silu(z), r = 1/sqrt(mean_group(v²) + eps); dv = r·g·w − v·r³·Σ_group(g·w·v)/gs;
    // dy = dv·silu(z) (the SSD's output gradient), dz = dv·y·silu'(z) into zx's first S columns of dzx,
    // dw += Σ_rows g·v·r, and the forward's output gated = v·r·w (out_proj's weight gradient takes it next).
    // Stage: y, z, g (SA bytes a thread each); v is recomputed from them after the reduction rather than held.
    extern "C" __global__ void __launch_bounds__(1024) t_gated_norm_bwd_rows(
            int T, int S, int G, int rows, float eps, const act_t* __restrict__ y, const act_t* __restrict__ zx, int E,
            const float* __restrict__ w, const act_t* __restrict__ g, act_t* __restrict__ dy, act_t* __restrict__ dzx,
            act_t* __restrict__ gated, float* __restrict__ dw) {
        extern __shared__ __align__(16) unsigned char pipe[];
        __shared__ float red[6 * 64];
        RED_INIT(red, G)
        const int nt = blockDim.x, c = threadIdx.x * 8, gs = S / G;
        const bool on = c < S;
        const int gid = min(c / gs, G - 1);
        const int t0 = blockIdx.x * rows, t1 = min(T, t0 + rows);
        #define SL(u, a) (pipe + ((size_t)((((u) - t0) % PIPE) * 3 + (a)) * nt + threadIdx.x) * SA)
        #define ISSUE(u) { if (on && (u) < t1) { cpA(SL(u, 0), y + (size_t)(u) * S + c); cpA(SL(u, 1), zx + (size_t)(u) * E + c); \
                                                  cpA(SL(u, 2), g + (size_t)(u) * S + c); } cp_commit(); }
        float wv[8], acc[8];
        row_weights(w, c, on, wv, acc);
        for (int u = t0; u < t0 + PIPE - 1; u++) ISSUE(u)
        for (int t = t0, it = 0; t < t1; t++, it++) {
            ISSUE(t + PIPE - 1)
            cp_wait();
            float ss = 0.f, dot = 0.f;
            if (on) {
                float yv[8], zv[8], gv[8];
                unA(*(const apk*)SL(t, 0), yv); unA(*(const apk*)SL(t, 1), zv); unA(*(const apk*)SL(t, 2), gv);
                #pragma unroll
                for (int k = 0; k < 8; k++) {
                    const float v = yv[k] * zv[k] * csigm(zv[k]);
                    ss += v * v; dot += gv[k] * wv[k] * v;
                }
            }
            const float2 s = group_sum2(ss, dot, gid, G, red, it);
            const float r = rsqrtf(s.x / gs + eps), kk = r * r * r * s.y / gs;
            if (on) {
                float yv[8], zv[8], gv[8], dyo[8], dzo[8], o[8];
                unA(*(const apk*)SL(t, 0), yv); unA(*(const apk*)SL(t, 1), zv); unA(*(const apk*)SL(t, 2), gv);
                #pragma unroll
                for (int k = 0; k < 8; k++) {
                    const float sg = csigm(zv[k]), v = yv[k] * zv[k] * sg;
                    const float dv = r * gv[k] * wv[k] - v * kk;
                    dyo[k] = dv * zv[k] * sg;
                    dzo[k] = dv * yv[k] * sg * (1.f + zv[k] * (1.f - sg));
                    o[k] = v * r * wv[k];
                    acc[k] += gv[k] * v * r;
                }
                const size_t ro = (size_t)t * S + c, zo = (size_t)t * E + c;
                stA(dy + ro, pkA(dyo)); stA(dzx + zo, pkA(dzo)); stA(gated + ro, pkA(o));
            }
        }
        row_weight_grads(dw, c, on, acc);
        #undef ISSUE
        #undef SL
    }
    """#
}
