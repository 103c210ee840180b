import Mamba2
extension CUDAKernelSource {
    /// The activation type of the model's and the training step's modules (after `halfConversions`, with ACT
    /// defined: 0 float32, else the 16-bit type): act_t, LD (to float), ST (from float); and a warp's sum.
    static let activationType = #"""
    #if ACT == 0
    typedef float act_t;
    __device__ __forceinline__ float LD(float v) { return v; }
    __device__ __forceinline__ float ST(float f) { return f; }
    #else
    typedef u16 act_t;
    __device__ __forceinline__ float LD(u16 v) { return to_f(v); }
    __device__ __forceinline__ u16 ST(float f) { return from_f(f); }
    #endif
    __device__ __forceinline__ float warp_sum(float v) {
        for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
        return v;
    }

    """#

    /// The language model's kernels besides the SSD (`CUDAModel`), compiled per precision after
    /// `halfConversions`, with ACT prepended (0: float32, 1: bf16, 2: fp16): the type of the weight matrices, of the embedding and
    /// of the activations fed to matrix products. Everything else (the residual stream, norms, conv,
    /// dt, A, D, states, accumulation) is float32, as in mamba_ssm with residual_in_fp32.
    ///
    /// Glossary: rows = sequences (b), L tokens each, T = b·L token rows in prefill; d = d_model;
    /// zx = the in_proj output (T, in_proj_size) = [z (d_ssm) | xBC (conv_dim) | dt (H)]: in prefill of a
    /// 16-bit model in the activation type (as mamba_ssm keeps it), else float32.
    ///
    /// Prefill (per layer): m_rmsnorm → cuBLAS in_proj → m_conv_prefill → SSD kernels → m_gated_norm →
    /// cuBLAS out_proj added into the residual. Decode (per layer): m_gemv (RMSNorm fused in front, the
    /// conv step in its epilogue) → m_ssd_step → m_gemv (gated RMSNorm in front, added into the residual);
    /// the whole token (embedding to argmax) is one CUDA graph.
    static let model = activationType + #"""
    #if ACT == 0
    #define VW 4
    #else
    #define VW 8
    #endif
    // SiLU. In the 16-bit modules with the fast division (about 2 ulp, far below the 16-bit roundings around
    // it): the accurate one is a call of some 10 instructions, and prefill's conv, which takes one a value, was
    // bound by its instructions (ncu, 130m at 16,384 tokens: the schedulers issuing 0.62 a cycle, DRAM at 31%).
    // Measured on the H200 (bench --profile, 16,384 tokens, ms a layer, accurate / fast): 2.7b conv 0.214 /
    // 0.172, gated norm 0.197 / 0.176; 130m conv 0.063 / 0.050. The float32 module keeps the accurate division.
    __device__ __forceinline__ float silu(float v) {
    #if ACT == 0
        return v / (1.f + __expf(-v));
    #else
        return __fdividef(v, 1.f + __expf(-v));  // 0 once e^-v passes 2^126: silu(v) is below 1e-36 there
    #endif
    }
    // Stores v at element i of a float32 buffer (half = 0) or one of the activation type (half = 1).
    __device__ __forceinline__ void store(void* p, size_t i, float v, int half) {
        if (half) ((act_t*)p)[i] = ST(v); else ((float*)p)[i] = v;
    }
    // Element i of a float32 buffer (half = 0) or of one of the activation type (half = 1), as float.
    __device__ __forceinline__ float load(const void* p, size_t i, int half) {
        return half ? LD(((const act_t*)p)[i]) : ((const float*)p)[i];
    }
    // Elements base + 4i .. base + 4i + 3 as floats: 16 bytes of float32, or (half, a 16-bit activation type
    // only) 8 of the activation type.
    __device__ __forceinline__ float4 load4(const void* p, size_t base, int i, int half) {
    #if ACT != 0
        if (half) {
            const uint2 h = ((const uint2*)((const act_t*)p + base))[i];
            const act_t* e = (const act_t*)&h;
            return make_float4(LD(e[0]), LD(e[1]), LD(e[2]), LD(e[3]));
        }
    #endif
        return ((const float4*)((const float*)p + base))[i];
    }
    // Four values into elements 4i .. 4i + 3 of an activation-type buffer: one 16-byte (float32) or 8-byte
    // (16-bit) store.
    __device__ __forceinline__ void store4(act_t* p, int i, float a, float b, float c, float d) {
        const act_t e[4] = {ST(a), ST(b), ST(c), ST(d)};
        if (sizeof(act_t) == 2) *(uint2*)(p + 4 * i) = *(const uint2*)e; else *(float4*)(p + 4 * i) = *(const float4*)e;
    }
    #if ACT != 0
    // Eight 16-bit values (one 16-byte load, element 8i on from base) as float32, and eight stored at once.
    __device__ __forceinline__ void load8(const act_t* p, size_t base, int i, float (&v)[8]) {
        const uint4 q = *(const uint4*)(p + base + 8 * (size_t)i);
        const u32 u[4] = {q.x, q.y, q.z, q.w};
        #pragma unroll
        for (int k = 0; k < 4; k++) { v[2 * k] = LD((act_t)(u[k] & 0xffffu)); v[2 * k + 1] = LD((act_t)(u[k] >> 16)); }
    }
    __device__ __forceinline__ void store8(act_t* p, size_t base, int i, const float (&v)[8]) {
        u32 u[4];
        #pragma unroll
        for (int k = 0; k < 4; k++) u[k] = (u32)ST(v[2 * k]) | ((u32)ST(v[2 * k + 1]) << 16);
        *(uint4*)(p + base + 8 * (size_t)i) = make_uint4(u[0], u[1], u[2], u[3]);
    }
    #endif
    // Sum over a block (a whole number of warps, up to 1,024 threads); red holds a float per warp.
    __device__ float block_sum(float v, float* red) {
        const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
        v = warp_sum(v);
        if (lane == 0) red[warp] = v;
        __syncthreads();
        float s = 0.f;
        for (int w = 0; w < (int)(blockDim.x >> 5); w++) s += red[w];
        __syncthreads();
        return s;
    }

    // Programmatic dependent launch (sm_90): a kernel launched with that attribute may start while the
    // kernel before it finishes; it does what does not depend on it (loading weights), then waits here
    // until the previous kernel is complete and its writes visible, then lets the next kernel start. Before
    // sm_90 the host launches without the attribute (stream order alone), and this is nothing.
    #if __CUDA_ARCH__ >= 900
    #define SM90 1
    #else
    #define SM90 0
    #endif
    __device__ __forceinline__ void pdl_wait() {
    #if SM90
        asm volatile("griddepcontrol.wait;" ::: "memory");
        asm volatile("griddepcontrol.launch_dependents;" :::);
    #endif
    }

    // residual (T, d) = E[tokens]. Block 0 also advances the decode-step counter (graph decode). With normW,
    // handed to layer 0's norm as the streaming decode takes it (`decodeStream`): xh = ST(residual·normW) and
    // Σ residual² in slot 0 of the row's nslots (the others 0: the layout out_proj's hand-over fills).
    extern "C" __global__ void __launch_bounds__(256) m_embed(int d, const int* __restrict__ tokens, const act_t* __restrict__ E,
                                                             float* __restrict__ residual, int* counter, const float* __restrict__ normW,
                                                             act_t* __restrict__ xh, float* __restrict__ ssq, int nslots) {
        __shared__ float red[8];
        pdl_wait();
        const size_t t = blockIdx.x, tok = tokens[t];
        float s = 0.f;
        for (int i = threadIdx.x; i < d; i += 256) {
            const float v = LD(E[tok * d + i]);
            residual[t * d + i] = v;
            if (normW) { xh[t * d + i] = ST(v * normW[i]); s += v * v; }
        }
        if (counter && t == 0 && threadIdx.x == 0) *counter += 1;
        if (!normW) return;  // uniform across the block
        s = block_sum(s, red);
        for (int i = threadIdx.x; i < nslots; i += 256) ssq[t * nslots + i] = i == 0 ? s : 0.f;
    }

    // out (T, d) = x · rsqrt(mean(x²) + eps) · w, one block per row; x read at row stride ldx.
    // With `pend` (decode on cuBLAS, the gated norm handed over): first the previous out_proj's product is
    // added into the residual row, scaled by that gated norm's rsqrt(Σ pssq[row][0..slots) / pin + eps) (one
    // group; without pssq by 1), plus its bias: x[row] += inv·pend[row] (+ pbias), written back; then the
    // RMSNorm of the sum. The product may come as `pslices` partial products (slices of its input, in slice
    // order), `pstride` values apart: they are added here (`CUDAModel.decodeSlices`).
    extern "C" __global__ void __launch_bounds__(256) m_rmsnorm(int d, float eps, float* __restrict__ x, int ldx,
                                                                 const float* __restrict__ w, act_t* __restrict__ out,
                                                                 const float* __restrict__ pend, const float* __restrict__ pssq,
                                                                 int slots, int pin, const float* __restrict__ pbias, int pslices,
                                                                 int pstride) {
        __shared__ float red[8];
        pdl_wait();
        float* xr = x + (size_t)blockIdx.x * ldx;
        float pinv = 1.f;  // without sums: a product already normalized (tensor parallelism, the norm local to each rank)
        if (pend && pssq) {
            float q = 0.f;
            for (int i = threadIdx.x; i < slots; i += 256) q += __ldcg(pssq + (size_t)blockIdx.x * slots + i);
            pinv = rsqrtf(block_sum(q, red) / pin + eps);
        }
        if ((ldx & 3) == 0 && (d & 3) == 0 && d <= 256 * 4 * 8) {
            // A row held in registers, its loads issued together (a loop of loads was a chain of round trips:
            // decode's few rows took 4.8 µs at d = 2,560).
            float4* x4 = (float4*)xr;
            float4 v[8];
            float s = 0.f;
            #pragma unroll
            for (int k = 0; k < 8; k++) {
                const int i = threadIdx.x + 256 * k;
                if (i < d / 4) {
                    v[k] = x4[i];
                    if (pend) {
                        const float* pr = pend + (size_t)blockIdx.x * d;
                        float4 u = ((const float4*)pr)[i];
                        for (int q = 1; q < pslices; q++) {
                            const float4 t = ((const float4*)(pr + (size_t)q * pstride))[i];
                            u.x += t.x; u.y += t.y; u.z += t.z; u.w += t.w;
                        }
                        const float4 b = pbias ? ((const float4*)pbias)[i] : make_float4(0.f, 0.f, 0.f, 0.f);
                        v[k] = make_float4(v[k].x + pinv * u.x + b.x, v[k].y + pinv * u.y + b.y, v[k].z + pinv * u.z + b.z, v[k].w + pinv * u.w + b.w);
                        x4[i] = v[k];
                    }
                    s += v[k].x * v[k].x + v[k].y * v[k].y + v[k].z * v[k].z + v[k].w * v[k].w;
                }
            }
            const float inv = rsqrtf(block_sum(s, red) / d + eps);
            act_t* o = out + (size_t)blockIdx.x * d;
            #pragma unroll
            for (int k = 0; k < 8; k++) {
                const int i = threadIdx.x + 256 * k;
                if (i < d / 4) {
                    const float4 wv = ((const float4*)w)[i];
                    o[4 * i] = ST(v[k].x * inv * wv.x); o[4 * i + 1] = ST(v[k].y * inv * wv.y);
                    o[4 * i + 2] = ST(v[k].z * inv * wv.z); o[4 * i + 3] = ST(v[k].w * inv * wv.w);
                }
            }
            return;
        }
        float ss = 0.f;
        for (int i = threadIdx.x; i < d; i += 256) {
            if (pend) {
                float u = 0.f;
                for (int q = 0; q < pslices; q++) u += pend[(size_t)q * pstride + (size_t)blockIdx.x * d + i];
                xr[i] += pinv * u + (pbias ? pbias[i] : 0.f);
            }
            ss += xr[i] * xr[i];
        }
        const float inv = rsqrtf(block_sum(ss, red) / d + eps);
        for (int i = threadIdx.x; i < d; i += 256) out[(size_t)blockIdx.x * d + i] = ST(xr[i] * inv * w[i]);
    }

    // The same for rows of up to 1,024 values (d % 4 == 0, ldx % 4 == 0; `CUDAModel.rmsnormWarpRows`): a warp
    // per row, 8 rows a block, 16-byte loads, the row's four-value groups stored at once. A block per row left
    // a multiprocessor with 8 rows' loads in flight, a few KB: 130m's 16,384-token prefill took 48 µs a layer
    // (1.6 TB/s).
    template <int NPL>
    __device__ __forceinline__ void rmsnorm_warp_row(int rows, int d, float eps, const float* __restrict__ x, int ldx,
                                                     const float* __restrict__ w, act_t* __restrict__ out) {
        const int lane = threadIdx.x & 31, row = blockIdx.x * 8 + (threadIdx.x >> 5);
        if (row >= rows) return;  // a whole warp
        const float4* x4 = (const float4*)(x + (size_t)row * ldx);
        float4 v[NPL];
        float s = 0.f;
        #pragma unroll
        for (int k = 0; k < NPL; k++) {
            const int i = lane + 32 * k;
            v[k] = i < d / 4 ? x4[i] : make_float4(0.f, 0.f, 0.f, 0.f);
            s += v[k].x * v[k].x + v[k].y * v[k].y + v[k].z * v[k].z + v[k].w * v[k].w;
        }
        const float inv = rsqrtf(warp_sum(s) / d + eps);
        act_t* o = out + (size_t)row * d;
        #pragma unroll
        for (int k = 0; k < NPL; k++) {
            const int i = lane + 32 * k;
            if (i >= d / 4) break;
            const float4 wv = ((const float4*)w)[i];
            store4(o, i, v[k].x * inv * wv.x, v[k].y * inv * wv.y, v[k].z * inv * wv.z, v[k].w * inv * wv.w);
        }
    }
    extern "C" __global__ void __launch_bounds__(256) m_rmsnorm_rows(int rows, int d, float eps, const float* __restrict__ x, int ldx,
                                                                      const float* __restrict__ w, act_t* __restrict__ out) {
        pdl_wait();
        if (d <= 512) rmsnorm_warp_row<4>(rows, d, eps, x, ldx, w, out); else rmsnorm_warp_row<8>(rows, d, eps, x, ldx, w, out);
    }

    // The gated RMSNorm of mamba_ssm, per group of d_ssm / G channels, one block per token row:
    // norm_before_gate = 0: rmsnorm(y·silu(z))·w; 1: rmsnorm(y)·w·silu(z). y is float32 (yHalf = 0) or
    // the activation type; z is read from zx at row stride ldz. Blocks of 256–1,024 threads (a multiple of
    // 32; `CUDAModel.gatedNormThreads`): enough that a group fits 4 × 4 values a thread, or with a 16-bit y
    // and z (prefill of a 16-bit model) 2 × 8.
    #define GN_NV 4
    #define GN_NV8 2
    // The gated norm's scale of a group whose squares sum to `sum`: rsqrt(sum / gs + eps); with ssqOut (tensor
    // parallelism, the group spanning ranks) the sum is written there for the ranks to add, and the values
    // leave unscaled (scale 1): the next RMSNorm applies the scale to out_proj's summed product.
    __device__ __forceinline__ float gn_scale(float sum, int gs, float eps, float* ssqOut, size_t slot) {
        if (!ssqOut) return rsqrtf(sum / gs + eps);
        if (threadIdx.x == 0) ssqOut[slot] = sum;
        return 1.f;
    }
    extern "C" __global__ void __launch_bounds__(1024) m_gated_norm(int dSsm, int G, float eps, int nbg, const void* __restrict__ y,
                                                                     int yHalf, const void* __restrict__ z, int zHalf, int ldz,
                                                                     const float* __restrict__ w, act_t* __restrict__ out,
                                                                     float* __restrict__ ssqOut) {
        __shared__ float red[32];
        pdl_wait();
        const size_t row = blockIdx.x;
        const size_t zr = row * ldz;  // z's row, an element index (float32 or 16-bit: zHalf)
        const int gs = dSsm / G, nt = blockDim.x;
    #if ACT != 0
        if (yHalf && zHalf && (ldz & 7) == 0 && (gs & 7) == 0 && gs / 8 <= GN_NV8 * nt) {
            // 16-bit y and z: eight values at a time, 16-byte loads and stores, and blocks only as wide as the
            // group needs (130m's 1,536 values: 96 threads, not 256). A 16,384-token prefill, ms a layer on the
            // H200 (bench --profile, the accurate SiLU): four values a thread (8-byte loads) 0.225 at 2.7b and
            // 0.090 at 130m (the committed profile before this), eight 0.196–0.201 and 0.052–0.053 (three runs).
            for (int g = 0; g < G; g++) {
                const size_t y0 = row * dSsm + g * gs, z0 = zr + g * gs;
                float v[GN_NV8][8], sz[GN_NV8][8];
                float s = 0.f;
                #pragma unroll
                for (int k = 0; k < GN_NV8; k++) {
                    const int i = threadIdx.x + nt * k;
                    if (i < gs / 8) {
                        load8((const act_t*)y, y0, i, v[k]);
                        load8((const act_t*)z, z0, i, sz[k]);
                    }
                }
                #pragma unroll
                for (int k = 0; k < GN_NV8; k++) {
                    const int i = threadIdx.x + nt * k;
                    if (i < gs / 8) {
                        #pragma unroll
                        for (int e = 0; e < 8; e++) {
                            sz[k][e] = silu(sz[k][e]);
                            if (!nbg) v[k][e] *= sz[k][e];
                            s += v[k][e] * v[k][e];
                        }
                    }
                }
                const float inv = gn_scale(block_sum(s, red), gs, eps, ssqOut, row * G + g);
                #pragma unroll
                for (int k = 0; k < GN_NV8; k++) {
                    const int i = threadIdx.x + nt * k;
                    if (i < gs / 8) {
                        const float4 w0 = ((const float4*)(w + g * gs))[2 * i], w1 = ((const float4*)(w + g * gs))[2 * i + 1];
                        const float wv[8] = {w0.x, w0.y, w0.z, w0.w, w1.x, w1.y, w1.z, w1.w};
                        float o[8];
                        #pragma unroll
                        for (int e = 0; e < 8; e++) o[e] = v[k][e] * inv * wv[e] * (nbg ? sz[k][e] : 1.f);
                        store8(out, row * dSsm + g * gs, i, o);
                    }
                }
            }
            return;
        }
    #endif
        if ((!(yHalf || zHalf) || sizeof(act_t) == 2) && (ldz & 3) == 0 && (gs & 3) == 0 && gs / 4 <= GN_NV * nt) {
            // A group held in registers, its loads issued together (a loop of loads, as below, took 21 µs for
            // decode's 16 rows of d_ssm = 5,120, and 0.82 ms for prefill's 16,384 rows of 2.7b with a 16-bit y: a
            // chain of round trips per thread). y four values at a time: 16 bytes of float32 or 8 of 16-bit
            // values; four outputs stored at a time. At most 4 × 4 values a thread (so the block is as wide as
            // the group needs): with 8 × 4 a thread in blocks of 256, 97 registers left room for 2 blocks a
            // multiprocessor and prefill's 2.7b rows ran at 1.8 TB/s (0.376 ms); now 57 registers, 2.8 TB/s
            // (0.237 ms, H200, bench --profile).
            for (int g = 0; g < G; g++) {
                const size_t y0 = row * dSsm + g * gs, z0 = zr + g * gs;
                float4 v[GN_NV], sz[GN_NV];
                float s = 0.f;
                #pragma unroll
                for (int k = 0; k < GN_NV; k++) {
                    const int i = threadIdx.x + nt * k;
                    if (i < gs / 4) {
                        v[k] = load4(y, y0, i, yHalf);
                        const float4 zv = load4(z, z0, i, zHalf);
                        sz[k] = make_float4(silu(zv.x), silu(zv.y), silu(zv.z), silu(zv.w));
                        if (!nbg) { v[k].x *= sz[k].x; v[k].y *= sz[k].y; v[k].z *= sz[k].z; v[k].w *= sz[k].w; }
                        s += v[k].x * v[k].x + v[k].y * v[k].y + v[k].z * v[k].z + v[k].w * v[k].w;
                    }
                }
                const float inv = gn_scale(block_sum(s, red), gs, eps, ssqOut, row * G + g);
                act_t* o = out + row * dSsm + g * gs;
                #pragma unroll
                for (int k = 0; k < GN_NV; k++) {
                    const int i = threadIdx.x + nt * k;
                    if (i < gs / 4) {
                        const float4 wv = ((const float4*)(w + g * gs))[i];
                        const float4 m = nbg ? sz[k] : make_float4(1.f, 1.f, 1.f, 1.f);
                        store4(o, i, v[k].x * inv * wv.x * m.x, v[k].y * inv * wv.y * m.y, v[k].z * inv * wv.z * m.z,
                               v[k].w * inv * wv.w * m.w);
                    }
                }
            }
            return;
        }
        for (int g = 0; g < G; g++) {
            float ss = 0.f;
            for (int i = g * gs + threadIdx.x; i < (g + 1) * gs; i += nt) {
                float v = load(y, row * dSsm + i, yHalf);
                if (!nbg) v *= silu(load(z, zr + i, zHalf));
                ss += v * v;
            }
            const float inv = gn_scale(block_sum(ss, red), gs, eps, ssqOut, row * G + g);
            for (int i = g * gs + threadIdx.x; i < (g + 1) * gs; i += nt) {
                float v = load(y, row * dSsm + i, yHalf);
                const float sz = silu(load(z, zr + i, zHalf));
                v = nbg ? v * inv * w[i] * sz : v * sz * inv * w[i];
                out[row * dSsm + i] = ST(v);
            }
        }
    }

    // dst[i] += src[i], n floats: the all-reduce of tensor-parallel ranks that share one device (the self-test's
    // stand-in for NCCL).
    extern "C" __global__ void m_add_into(size_t n, float* __restrict__ dst, const float* __restrict__ src) {
        for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) dst[i] += src[i];
    }

    // Y (T, n) += bias (n): the projections' optional biases in prefill.
    // dst (n, d) = src rows idx[i] (n, d): the last token of each prompt, for its logits.
    extern "C" __global__ void m_gather_rows(int d, const int* __restrict__ idx, const float* __restrict__ src, float* __restrict__ dst) {
        const float* s = src + (size_t)idx[blockIdx.x] * d;
        for (int i = threadIdx.x; i < d; i += blockDim.x) dst[(size_t)blockIdx.x * d + i] = s[i];
    }

    extern "C" __global__ void m_add_bias(int n, void* __restrict__ Y, int half, const float* __restrict__ bias) {
        pdl_wait();
        for (int i = threadIdx.x; i < n; i += blockDim.x) {
            const size_t e = (size_t)blockIdx.x * n + i;
            store(Y, e, load(Y, e, half) + bias[i], half);
        }
    }

    // Prefill's causal depthwise conv + SiLU over L tokens of each row, from a zero state, splitting the
    // result into the SSD's x (T, d_ssm), B and C (T, G·N) (float32 or the activation type: half; zx is read
    // as float32 or the activation type: zxHalf), copying
    // dt (T, H) out of zx, and leaving the last d_conv − 1 inputs as the row's conv state
    // (rows, d_conv − 1, conv_dim). Grid (⌈(conv_dim + H) / 256⌉, L, rows).
    extern "C" __global__ void __launch_bounds__(256) m_conv_prefill(
            int L, int convDim, int dConv, int dSsm, int GN, int H, const void* __restrict__ zx, int zxHalf, int ld, int xbcOffset,
            int dtOffset, const float* __restrict__ convW, const float* __restrict__ convB, int half, void* xOut, void* bOut,
            void* cOut, float* __restrict__ dtOut, float* __restrict__ convState, const int* __restrict__ seqStart,
            const int* __restrict__ seqEnd, const int* __restrict__ seqIndex) {
        const int ch = blockIdx.x * 256 + threadIdx.x, t = blockIdx.y, r = blockIdx.z;
        const size_t tok = (size_t)r * L + t;
        const size_t row = tok * ld;  // zx's row, an element index (float32 or 16-bit: zxHalf)
        // Packed prompts (seqStart non-null): the taps stop at the sequence's start, and its conv state is
        // kept in its own row (seqIndex); otherwise each row is one sequence.
        const int st = seqStart ? seqStart[tok] : 0, en = seqStart ? seqEnd[tok] : L, sr = seqStart ? seqIndex[tok] : r;
        if (ch < convDim) {
            float acc = convB ? convB[ch] : 0.f;
            for (int k = 0; k < dConv; k++) {
                const int tt = t - (dConv - 1) + k;
                if (tt >= st) acc += convW[ch * dConv + k] * load(zx, ((size_t)r * L + tt) * ld + xbcOffset + ch, zxHalf);
            }
            const float v = silu(acc);
            if (ch < dSsm) store(xOut, tok * dSsm + ch, v, half);
            else if (ch < dSsm + GN) store(bOut, tok * GN + ch - dSsm, v, half);
            else store(cOut, tok * GN + ch - dSsm - GN, v, half);
            float* state = convState + (size_t)sr * (dConv - 1) * convDim + ch;
            const int k = t - (en - (dConv - 1));  // the slot of this input in the final conv state
            if (k >= 0) state[(size_t)k * convDim] = load(zx, row + xbcOffset + ch, zxHalf);
            if (t == st) for (int s = 0; s < dConv - 1 - (en - st); s++) state[(size_t)s * convDim] = 0.f;  // shorter than d_conv − 1
        } else if (ch < convDim + H) {
            dtOut[tok * H + ch - convDim] = load(zx, row + dtOffset + ch - convDim, zxHalf);
        }
    }

    // m_conv_prefill's work, two channels and a run of CONV_RUN consecutive tokens a thread (taps K ≤ KW, KW
    // fixed at compile time): the run's inputs loaded together, the window of the last KW inputs carried in
    // registers, so each input is read once and a thread has CONV_RUN loads in flight (m_conv_prefill reads K
    // inputs a token, one 4-byte round trip after another: 0.88 ms for 2.7b's 16,384 tokens, 0.6 TB/s).
    // Runs of 8 tokens for a float32 zx (8-byte loads), of 16 for a 16-bit one (4-byte loads: as many bytes in
    // flight). Measured on the H200 at those 16,384 tokens (bench --profile): float32 zx, same run, two rounds,
    // 0.212–0.230 ms with runs of 8 (76 registers: 3 blocks a multiprocessor), 0.282 with runs of 16 (100
    // registers: 2 blocks), 0.281 with one channel and 16 tokens a thread; 16-bit zx 0.284 with runs of 8 and
    // 0.210 with runs of 16 (80 registers), in separate runs. Arithmetic in the same order as m_conv_prefill
    // (bias, then taps k = 0..K − 1), so both give the same bits; it stays as the path for other shapes (odd
    // sizes, K > KW) and as this one's reference in the self-test. Needs even conv_dim, d_ssm, G·N, ld and
    // xbcOffset (pairs never straddle x, B, C or dt; loads and stores aligned). Grid (⌈(conv_dim + H) / 512⌉,
    // ⌈L / CONV_RUN⌉, rows).
    __device__ __forceinline__ void store2(void* p, size_t i, float a, float b, int half) {
        if (half) *(u32*)((act_t*)p + i) = (u32)ST(a) | ((u32)ST(b) << 16);  // (16-bit types only: act_t is u16)
        else *(float2*)((float*)p + i) = make_float2(a, b);
    }
    // Two adjacent values of zx (the first at an even element i) as loaded: 8 bytes of float32 (ZH = 0), or
    // (ZH = 1) 4 bytes of the 16-bit type (act_t is u16 then), kept packed until used (half the registers).
    template <int ZH> struct ZPair;
    template <> struct ZPair<0> {
        float2 v;
        __device__ __forceinline__ static ZPair load(const void* p, size_t i) { return {*(const float2*)((const float*)p + i)}; }
        __device__ __forceinline__ float2 get() const { return v; }
    };
    template <> struct ZPair<1> {
        u32 v;
        __device__ __forceinline__ static ZPair load(const void* p, size_t i) { return {*(const u32*)((const act_t*)p + i)}; }
        __device__ __forceinline__ float2 get() const { return make_float2(LD((act_t)(v & 0xffffu)), LD((act_t)(v >> 16))); }
    };
    template <int KW, int CONV_RUN, int ZH>
    __device__ __forceinline__ void conv_prefill_run(
            int L, int convDim, int K, int dSsm, int GN, int H, const void* __restrict__ zx, int zxHalf, int ld, int xbcOffset,
            int dtOffset, const float* __restrict__ convW, const float* __restrict__ convB, int half, void* xOut, void* bOut,
            void* cOut, float* __restrict__ dtOut, float* __restrict__ convState, const int* __restrict__ seqStart,
            const int* __restrict__ seqEnd, const int* __restrict__ seqIndex) {
        const int ch = 2 * (blockIdx.x * 256 + threadIdx.x), t0 = blockIdx.y * CONV_RUN, r = blockIdx.z, n = min(CONV_RUN, L - t0);
        const size_t tok0 = (size_t)r * L + t0;
        if (ch >= convDim) {  // dt columns ch − convDim and the next
            #pragma unroll
            for (int e = 0; e < 2; e++) {
                const int hd = ch + e - convDim;
                if (hd >= H) break;
                #pragma unroll
                for (int i = 0; i < CONV_RUN; i++) if (i < n) dtOut[(tok0 + i) * H + hd] = load(zx, (tok0 + i) * ld + dtOffset + hd, ZH);
            }
            return;
        }
        const size_t e0 = xbcOffset + ch;
        ZPair<ZH> in[CONV_RUN];
        float2 h[KW], wr[KW];
        #pragma unroll
        for (int i = 0; i < CONV_RUN; i++) if (i < n) in[i] = ZPair<ZH>::load(zx, (tok0 + i) * ld + e0);
        #pragma unroll
        for (int j = 0; j < KW; j++) {  // h[j] = input t0 − 1 − j (the shift below moves it to j + 1 first)
            h[j] = j < K - 1 && t0 - 1 - j >= 0 ? ZPair<ZH>::load(zx, (tok0 - 1 - j) * ld + e0).get() : make_float2(0.f, 0.f);
            // tap K − 1 − j meets input t − j
            wr[j] = j < K ? make_float2(convW[(size_t)ch * K + K - 1 - j], convW[(size_t)(ch + 1) * K + K - 1 - j]) : make_float2(0.f, 0.f);
        }
        const float2 bias = convB ? make_float2(convB[ch], convB[ch + 1]) : make_float2(0.f, 0.f);
        void* out = ch < dSsm ? xOut : ch < dSsm + GN ? bOut : cOut;
        const int ldo = ch < dSsm ? dSsm : GN, co = ch < dSsm ? ch : ch < dSsm + GN ? ch - dSsm : ch - dSsm - GN;
        #pragma unroll
        for (int i = 0; i < CONV_RUN; i++) {
            if (i >= n) break;  // the same for the whole block
            #pragma unroll
            for (int j = KW - 1; j > 0; j--) h[j] = h[j - 1];
            h[0] = in[i].get();
            const int t = t0 + i;
            const size_t tok = tok0 + i;
            const int st = seqStart ? seqStart[tok] : 0;
            float2 acc = bias;
            #pragma unroll
            for (int j = KW - 1; j >= 0; j--)
                if (j < K && t - j >= st) { acc.x += wr[j].x * h[j].x; acc.y += wr[j].y * h[j].y; }
            store2(out, tok * ldo + co, silu(acc.x), silu(acc.y), half);
            const int en = seqStart ? seqEnd[tok] : L, sr = seqStart ? seqIndex[tok] : r;
            float* state = convState + (size_t)sr * (K - 1) * convDim + ch;
            const int k = t - (en - (K - 1));  // the slot of this input in the final conv state
            if (k >= 0) *(float2*)(state + (size_t)k * convDim) = h[0];
            if (t == st)  // shorter than d_conv − 1
                for (int s2 = 0; s2 < K - 1 - (en - st); s2++) *(float2*)(state + (size_t)s2 * convDim) = make_float2(0.f, 0.f);
        }
    }
    #define CONV_RUN_ARGS int L, int convDim, int K, int dSsm, int GN, int H, const void* __restrict__ zx, int zxHalf, int ld, \
            int xbcOffset, int dtOffset, const float* __restrict__ convW, const float* __restrict__ convB, int half, void* xOut, \
            void* bOut, void* cOut, float* __restrict__ dtOut, float* __restrict__ convState, const int* __restrict__ seqStart, \
            const int* __restrict__ seqEnd, const int* __restrict__ seqIndex
    #define CONV_RUN_PASS L, convDim, K, dSsm, GN, H, zx, zxHalf, ld, xbcOffset, dtOffset, convW, convB, half, xOut, bOut, cOut, dtOut, \
            convState, seqStart, seqEnd, seqIndex
    // A float32 zx (zxHalf = 0) and a 16-bit one (zxHalf = 1, `CUDAModel.zxHalf`): the host picks by zxHalf.
    extern "C" __global__ void __launch_bounds__(256) m_conv_prefill_run(CONV_RUN_ARGS) { conv_prefill_run<4, 8, 0>(CONV_RUN_PASS); }
    extern "C" __global__ void __launch_bounds__(256) m_conv_prefill_run_h(CONV_RUN_ARGS) { conv_prefill_run<4, 16, 1>(CONV_RUN_PASS); }

    // Decode's conv step of one channel of one row: the window [state, new input nv] and its SiLU (returned),
    // the state shifted by one (only the caller's thread touches this channel's window).
    __device__ __forceinline__ float conv_step_value(int r, int ch, float nv, int convDim, int dConv, const float* __restrict__ convW,
                                                     const float* __restrict__ convB, float* __restrict__ convState) {
        float* st = convState + (size_t)r * (dConv - 1) * convDim + ch;
        const float* w = convW + (size_t)ch * dConv;
        float acc = (convB ? convB[ch] : 0.f) + w[dConv - 1] * nv;
        for (int k = 0; k < dConv - 1; k++) acc += w[k] * st[(size_t)k * convDim];
        for (int k = 0; k < dConv - 2; k++) st[(size_t)k * convDim] = st[(size_t)(k + 1) * convDim];
        st[(size_t)(dConv - 2) * convDim] = nv;
        return silu(acc);
    }
    // The same, into xbc.
    __device__ __forceinline__ void conv_step_channel(int r, int ch, float nv, int convDim, int dConv, const float* __restrict__ convW,
                                                      const float* __restrict__ convB, float* __restrict__ convState,
                                                      float* __restrict__ xbc) {
        xbc[(size_t)r * convDim + ch] = conv_step_value(r, ch, nv, convDim, dConv, convW, convB, convState);
    }

    // Decode's conv step per (channel, row), for batches that take their projections from cuBLAS (smaller
    // ones do it in m_gemv's epilogue).
    extern "C" __global__ void m_conv_step(int convDim, int dConv, const float* __restrict__ zx, int ld, int xbcOffset,
                                           const float* __restrict__ convW, const float* __restrict__ convB,
                                           float* __restrict__ convState, float* __restrict__ xbc) {
        const int ch = blockIdx.x * 256 + threadIdx.x, r = blockIdx.y;
        pdl_wait();
        if (ch < convDim) conv_step_channel(r, ch, zx[(size_t)r * ld + xbcOffset + ch], convDim, dConv, convW, convB, convState, xbc);
    }

    // Decode's matrix-vector products for up to GB rows: Y[r][o] (+)= Σ_i W[o][i]·x̂[r][i] + bias[o], W (out, in)
    // in the weight type, read once for all rows with 16-byte loads, UU of them per row in flight per lane
    // (the kernel is bound by how many bytes are in flight). x̂ is made in shared memory first:
    //   mode 0: x;  mode 1: rmsnorm(x)·normW;  mode 2: the gated RMSNorm of x (y) with z, G groups (≤ 8).
    // A warp computes RPW output rows, a block 8·RPW rows at a time over as many tiles as it is given
    // (grid (about 2 blocks per SM, ⌈rows / GB⌉)); its first weights are loaded before waiting for the
    // previous kernel (pdl_wait). Measured on the H200 for mamba2-2.7b's in_proj / out_proj at batch 1:
    // 21 / 15 µs (2.5 / 1.8 TB/s); these variants were slower or no faster: 8-row tiles for the 2,560-row
    // out_proj (15.1 µs), 4-row tiles split along the input across warps (26 / 16 µs), tiles of 2 rows
    // shared by the whole block (47 / 22 µs), 8 loads per row kept in flight by refilling each slot as it
    // is used (37 / 16 µs). More rows (batch) than GB go to cuBLAS. With convState, the outputs that are conv inputs
    // (convOffset ..< convOffset + convDim) also take decode's conv step (as m_conv_step does).
    #define GB 4
    __device__ __forceinline__ float dot_w(uint4 w, const float* x) {
    #if ACT == 0
        const float4 x0 = *(const float4*)x;
        return __uint_as_float(w.x) * x0.x + __uint_as_float(w.y) * x0.y + __uint_as_float(w.z) * x0.z + __uint_as_float(w.w) * x0.w;
    #else
        const float4 x0 = ((const float4*)x)[0], x1 = ((const float4*)x)[1];
        return to_f(w.x & 0xffff) * x0.x + to_f(w.x >> 16) * x0.y + to_f(w.y & 0xffff) * x0.z + to_f(w.y >> 16) * x0.w
             + to_f(w.z & 0xffff) * x1.x + to_f(w.z >> 16) * x1.y + to_f(w.w & 0xffff) * x1.z + to_f(w.w >> 16) * x1.w;
    #endif
    }
    template <int RPW, int UU>
    __device__ __forceinline__ void gemv_body(
            int nrows, int in, int out, int mode, const float* __restrict__ x, int ldx, const float* __restrict__ normW, float eps,
            const float* __restrict__ z, int ldz, int G, int nbg, const act_t* __restrict__ W, const float* __restrict__ bias,
            float* __restrict__ Y, int ldy, int accumulate, int convOffset, int convDim, int dConv, const float* __restrict__ convW,
            const float* __restrict__ convB, float* __restrict__ convState, float* __restrict__ xbc) {
        extern __shared__ __align__(16) float xs[];  // [nr][in]
        __shared__ float ss[GB * 8];
        const int r0 = blockIdx.y * GB, nr = min(GB, nrows - r0);
        const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
        const int nv = in / VW, ntiles = (out + 8 * RPW - 1) / (8 * RPW);
        uint4 wv[RPW][UU];
        auto load = [&](int tile, int v0) {
            const int o0 = (tile * 8 + warp) * RPW;
            for (int j = 0; j < RPW; j++)
                for (int u = 0; u < UU; u++) {
                    const int v = v0 + 32 * u;
                    wv[j][u] = o0 + j < out && v < nv ? __ldg((const uint4*)(W + (size_t)(o0 + j) * in) + v) : make_uint4(0, 0, 0, 0);
                }
        };
        // The first weight loads fly while the previous kernel ends and x̂ is staged: they depend on neither.
        if (blockIdx.x < ntiles) load(blockIdx.x, lane);
        pdl_wait();
        // x̂ is staged with 16-byte loads, 8 per thread issued together: these kernels are latency-bound,
        // and a loop of dependent round trips to L2 here cost more than the weights' stream (in % 4 == 0,
        // and the row strides too, or the scalar loop below).
        const bool vec = (ldx & 3) == 0 && (mode != 2 || (ldz & 3) == 0);
        const int n4 = vec ? nr * in / 4 : 0;
        for (int base = tid; base < n4; base += 256 * 8) {
            float4 xv[8], zv[8];
            #pragma unroll
            for (int k = 0; k < 8; k++) {
                const int e4 = base + 256 * k;
                if (e4 < n4) {
                    const int b = e4 * 4 / in, i = e4 * 4 - b * in;
                    xv[k] = *(const float4*)(x + (size_t)(r0 + b) * ldx + i);
                    if (mode == 2 && !nbg) zv[k] = *(const float4*)(z + (size_t)(r0 + b) * ldz + i);
                }
            }
            #pragma unroll
            for (int k = 0; k < 8; k++) {
                const int e4 = base + 256 * k;
                if (e4 < n4) {
                    float4 v = xv[k];
                    if (mode == 2 && !nbg) { v.x *= silu(zv[k].x); v.y *= silu(zv[k].y); v.z *= silu(zv[k].z); v.w *= silu(zv[k].w); }
                    *(float4*)(xs + e4 * 4) = v;
                }
            }
        }
        if (!vec) {
            for (int e = tid; e < nr * in; e += 256) {
                const int b = e / in, i = e - b * in;
                float v = x[(size_t)(r0 + b) * ldx + i];
                if (mode == 2 && !nbg) v *= silu(z[(size_t)(r0 + b) * ldz + i]);
                xs[e] = v;
            }
        }
        __syncthreads();
        if (mode != 0) {
            const int groups = mode == 2 ? G : 1, gs = in / groups;
            __shared__ float red[8];
            for (int pair = 0; pair < nr * groups; pair++) {  // the whole block per (row, group)
                const float* v = xs + (pair / groups) * in + (pair % groups) * gs;
                float s = 0.f;
                for (int i = tid; i < gs; i += 256) s += v[i] * v[i];
                s = block_sum(s, red);
                if (tid == 0) ss[pair] = rsqrtf(s / gs + eps);
            }
            __syncthreads();
            const int nn4 = nr * in / 4;  // in % 4 == 0 always: normW rows are read 4 at a time
            for (int base = tid; base < nn4; base += 256 * 8) {
                float4 wv4[8];
                #pragma unroll
                for (int k = 0; k < 8; k++) {
                    const int e4 = base + 256 * k;
                    if (e4 < nn4) wv4[k] = *(const float4*)(normW + (e4 * 4) % in);
                }
                #pragma unroll
                for (int k = 0; k < 8; k++) {
                    const int e4 = base + 256 * k;
                    if (e4 < nn4) {
                        const int b = e4 * 4 / in, i = e4 * 4 - b * in;
                        const float sc = ss[b * groups + i / gs];  // a group holds whole runs of 4 (gs % 4 == 0)
                        float4 v = *(float4*)(xs + e4 * 4);
                        v.x *= sc * wv4[k].x; v.y *= sc * wv4[k].y; v.z *= sc * wv4[k].z; v.w *= sc * wv4[k].w;
                        if (mode == 2 && nbg) {
                            const float* zr = z + (size_t)(r0 + b) * ldz + i;
                            v.x *= silu(zr[0]); v.y *= silu(zr[1]); v.z *= silu(zr[2]); v.w *= silu(zr[3]);
                        }
                        *(float4*)(xs + e4 * 4) = v;
                    }
                }
            }
            __syncthreads();
        }
        // Row tiles (8 warps × RPW rows) in turn: x̂ is staged once per block, not once per tile.
        for (int tile = blockIdx.x; tile < ntiles; tile += gridDim.x) {
            const int o0 = (tile * 8 + warp) * RPW;
            float acc[RPW][GB];
            for (int j = 0; j < RPW; j++) for (int b = 0; b < GB; b++) acc[j][b] = 0.f;
            for (int v0 = lane; v0 < nv; v0 += 32 * UU) {
                uint4 cur[RPW][UU];
                for (int j = 0; j < RPW; j++) for (int u = 0; u < UU; u++) cur[j][u] = wv[j][u];
                // The next loads fly while these are used: this tile's next vectors, or the next tile's first.
                if (v0 + 32 * UU < nv) load(tile, v0 + 32 * UU);
                else if (tile + gridDim.x < ntiles) load(tile + gridDim.x, lane);
                for (int u = 0; u < UU; u++) {
                    const int v = v0 + 32 * u;
                    if (v >= nv) break;
                    for (int b = 0; b < GB; b++) {
                        if (b >= nr) break;
                        const float* xv = xs + b * in + v * VW;
                        for (int j = 0; j < RPW; j++) acc[j][b] += dot_w(cur[j][u], xv);
                    }
                }
            }
            for (int j = 0; j < RPW; j++) {
                const int o = o0 + j;
                for (int b = 0; b < GB; b++) {
                    if (b >= nr) break;
                    const float s = warp_sum(acc[j][b]);
                    if (lane == 0 && o < out) {
                        const int r = r0 + b;
                        float* dst = Y + (size_t)r * ldy + o;
                        const float val = (accumulate ? *dst : 0.f) + s + (bias ? bias[o] : 0.f);
                        *dst = val;
                        const int ch = o - convOffset;
                        if (convState && ch >= 0 && ch < convDim)  // the conv step of this channel, fused
                            conv_step_channel(r, ch, val, convDim, dConv, convW, convB, convState, xbc);
                    }
                }
            }
        }
    }
    extern "C" __global__ void __launch_bounds__(256, 2) m_gemv(
            int nrows, int in, int out, int mode, const float* __restrict__ x, int ldx, const float* __restrict__ normW, float eps,
            const float* __restrict__ z, int ldz, int G, int nbg, const act_t* __restrict__ W, const float* __restrict__ bias,
            float* __restrict__ Y, int ldy, int accumulate, int convOffset, int convDim, int dConv, const float* __restrict__ convW,
            const float* __restrict__ convB, float* __restrict__ convState, float* __restrict__ xbc) {
        gemv_body<2, 4>(nrows, in, out, mode, x, ldx, normW, eps, z, ldz, G, nbg, W, bias, Y, ldy, accumulate, convOffset, convDim,
                        dConv, convW, convB, convState, xbc);
    }

    // Greedy choice on the device: tokens[r] = argmax of row r (the lowest index among equals); with a
    // counter (graph decode) also history[(counter − 1)·rows + r] while under capacity.
    extern "C" __global__ void __launch_bounds__(1024) m_argmax(int V, const float* __restrict__ logits, int* __restrict__ tokens,
                                                               const int* counter, int* history, int capacity,
                                                               float* __restrict__ logprob) {
        __shared__ float bv[32];
        __shared__ int bi[32];
        __shared__ float red[32];
        const int r = blockIdx.x, lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
        pdl_wait();
        const float* row = logits + (size_t)r * V;
        float best = __int_as_float(0xff800000);  // −∞
        int idx = 0x7fffffff;
        for (int i = threadIdx.x; i < V; i += 1024) {
            const float v = row[i];
            if (v > best) { best = v; idx = i; }
        }
        for (int o = 16; o > 0; o >>= 1) {
            const float ov = __shfl_xor_sync(0xffffffffu, best, o);
            const int oi = __shfl_xor_sync(0xffffffffu, idx, o);
            if (ov > best || (ov == best && oi < idx)) { best = ov; idx = oi; }
        }
        if (lane == 0) { bv[warp] = best; bi[warp] = idx; }
        __syncthreads();
        if (threadIdx.x == 0) {
            for (int w = 1; w < 32; w++) if (bv[w] > best || (bv[w] == best && bi[w] < idx)) { best = bv[w]; idx = bi[w]; }
            tokens[r] = idx;
            if (counter && history) {
                const int s = *counter - 1;
                if (s >= 0 && s < capacity) history[(size_t)s * gridDim.x + r] = idx;
            }
            bv[0] = best;
        }
        // With `logprob`: the chosen token's log-probability, −log Σ exp(v − max) (the row is in L2 now).
        if (!logprob) return;
        __syncthreads();
        const float m = bv[0];
        float sum = 0.f;
        for (int i = threadIdx.x; i < V; i += 1024) sum += expf(row[i] - m);
        for (int o = 16; o > 0; o >>= 1) sum += __shfl_xor_sync(0xffffffffu, sum, o);
        if (lane == 0) red[warp] = sum;
        __syncthreads();
        if (threadIdx.x == 0) {
            float total = 0.f;
            for (int w = 0; w < 32; w++) total += red[w];
            logprob[r] = -logf(total);
        }
    }

    // Random weights on the device (benchmarks of released shapes without a checkpoint): normal(0, std)
    // from a counter-based hash (SplitMix64 of seed + index, Box–Muller), stored in the weight type.
    __device__ __forceinline__ unsigned long long mix64(unsigned long long z) {
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
        return z ^ (z >> 31);
    }
    extern "C" __global__ void m_fill_normal(size_t n, unsigned long long seed, float std, act_t* __restrict__ out) {
        for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
            const unsigned long long h = mix64(seed + 0x9e3779b97f4a7c15ull * (i + 1));
            const float u1 = ((h >> 40) + 1) * (1.f / 16777217.f), u2 = ((h >> 16) & 0xffffff) * (1.f / 16777216.f);
            out[i] = ST(std * sqrtf(-2.f * logf(u1)) * cospif(2.f * u2));
        }
    }
    """#
}
