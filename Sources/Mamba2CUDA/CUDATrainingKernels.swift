import Mamba2
extension CUDAKernelSource {
    /// The training step's kernels besides the matrix products (cuBLAS) and the SSD (its own kernels),
    /// compiled after `halfConversions` with ACT prepended: 0 float32 (the checking mode: every activation
    /// float32), 1 bf16 (mixed precision: the matrix products' inputs, zx, x/B/C, the SSD's output and the
    /// gradients that feed matrix products are bf16; the residual stream, norms' statistics, dt, weight
    /// gradients, master weights and the optimizer are float32).
    ///
    /// Glossary: T = b·L token rows; d = d_model; S = d_ssm; E = in_proj size, zx = [z (S) | xBC (CD) | dt (H)];
    /// CD = conv_dim = S + 2·G·N; K = d_conv; docStart[t] = the flat index of the first token of t's document
    /// (never before its row's start): the conv's taps and the SSD's state stop there.
    ///
    /// Forward per layer: t_rmsnorm → in_proj → t_conv → SSD → t_gated_norm → out_proj (+ residual).
    /// Backward per layer (the conv, the SSD forward and both norms recomputed from the saved residual and zx):
    /// out_proj' → t_gated_norm_bwd → SSD' → t_head_grads → t_conv_bwd_pre → t_conv_bwd_in → in_proj' →
    /// t_rmsnorm_bwd. Head: t_cross_entropy over chunks of rows. Optimizer: t_sumsq → t_adamw.
    static let training = #"""
    #if ACT == 0
    typedef float act_t;
    __device__ __forceinline__ float LD(float v) { return v; }
    __device__ __forceinline__ float ST(float f) { return f; }
    #else
    typedef u16 act_t;
    __device__ __forceinline__ float LD(u16 v) { return to_f(v); }
    __device__ __forceinline__ u16 ST(float f) { return from_f(f); }
    #endif
    __device__ __forceinline__ float sigm(float v) { return 1.f / (1.f + expf(-v)); }
    __device__ __forceinline__ float warp_sum(float v) {
        for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
        return v;
    }
    // Sums of two values over a block of 256 threads (red: 16 floats).
    __device__ float2 block_sum2(float a, float b, float* red) {
        const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
        a = warp_sum(a); b = warp_sum(b);
        if (lane == 0) { red[warp] = a; red[8 + warp] = b; }
        __syncthreads();
        float2 s = make_float2(0.f, 0.f);
        for (int w = 0; w < 8; w++) { s.x += red[w]; s.y += red[8 + w]; }
        __syncthreads();
        return s;
    }

    // resid (T, d) = E[tokens] from the float32 master embedding.
    extern "C" __global__ void t_embed(int d, const int* __restrict__ tokens, const float* __restrict__ E, float* __restrict__ resid) {
        const size_t t = blockIdx.x, tok = tokens[t];
        for (int i = threadIdx.x; i < d; i += blockDim.x) resid[t * d + i] = E[tok * d + i];
    }

    // The embedding's gradient: dE[tokens[t]] += dresid[t] (rows of repeated tokens meet in atomics).
    extern "C" __global__ void t_embed_bwd(int d, const int* __restrict__ tokens, const float* __restrict__ dresid, float* __restrict__ dE) {
        const size_t t = blockIdx.x, tok = tokens[t];
        for (int i = threadIdx.x; i < d; i += blockDim.x) atomicAdd(dE + tok * d + i, dresid[t * d + i]);
    }

    // out (T, d) = x·r·w, r = 1/sqrt(mean(x²) + eps); a block per row.
    extern "C" __global__ void __launch_bounds__(256) t_rmsnorm(int d, float eps, const float* __restrict__ x, const float* __restrict__ w,
                                                                 act_t* __restrict__ out) {
        __shared__ float red[16];
        const float* xr = x + (size_t)blockIdx.x * d;
        float ss = 0.f;
        for (int i = threadIdx.x; i < d; i += 256) ss += xr[i] * xr[i];
        const float r = rsqrtf(block_sum2(ss, 0.f, red).x / d + eps);
        for (int i = threadIdx.x; i < d; i += 256) out[(size_t)blockIdx.x * d + i] = ST(xr[i] * r * w[i]);
    }

    // RMSNorm backward over RB rows a block (r recomputed from x): dx += r·g·w − x·r³·Σ(g·w·x)/d in place
    // (the residual stream's gradient), its copy dxAct (act) when given (the next matrix product's input),
    // and dw += Σ_rows g·x·r, summed in shared memory (d floats) and added once per block.
    #define RB 32
    extern "C" __global__ void __launch_bounds__(256) t_rmsnorm_bwd(int T, int d, float eps, const float* __restrict__ x,
                                                                     const float* __restrict__ w, const float* __restrict__ g,
                                                                     float* __restrict__ dx, act_t* __restrict__ dxAct, float* __restrict__ dw) {
        extern __shared__ float dws[];
        __shared__ float red[16];
        for (int i = threadIdx.x; i < d; i += 256) dws[i] = 0.f;
        const int t1 = min(T, (int)(blockIdx.x * RB + RB));
        for (int t = blockIdx.x * RB; t < t1; t++) {
            const float* xr = x + (size_t)t * d;
            const float* gr = g + (size_t)t * d;
            float ss = 0.f, dot = 0.f;
            for (int i = threadIdx.x; i < d; i += 256) { ss += xr[i] * xr[i]; dot += gr[i] * w[i] * xr[i]; }
            const float2 s = block_sum2(ss, dot, red);
            const float r = rsqrtf(s.x / d + eps), k = r * r * r * s.y / d;
            for (int i = threadIdx.x; i < d; i += 256) {
                const size_t e = (size_t)t * d + i;
                const float v = dx[e] + r * gr[i] * w[i] - xr[i] * k;
                dx[e] = v;
                if (dxAct) dxAct[e] = ST(v);
                dws[i] += gr[i] * xr[i] * r;
            }
        }
        __syncthreads();
        for (int i = threadIdx.x; i < d; i += 256) atomicAdd(dw + i, dws[i]);
    }

    // The causal depthwise conv + SiLU of zx's xBC columns over each document, split into x (T, S), B, C
    // (T, GN), and dt (T, H) float32 copied from zx. Grid (T, ⌈(CD + H) / 256⌉).
    extern "C" __global__ void __launch_bounds__(256) t_conv(int CD, int K, int S, int GN, int H, int E, int xbcOff, int dtOff,
                                                              const act_t* __restrict__ zx, const int* __restrict__ docStart,
                                                              const float* __restrict__ convW, const float* __restrict__ convB,
                                                              act_t* __restrict__ xo, act_t* __restrict__ bo, act_t* __restrict__ co,
                                                              float* __restrict__ dt) {
        const size_t t = blockIdx.x;
        const int ch = blockIdx.y * 256 + threadIdx.x;
        if (ch < CD) {
            const long long ds = docStart[t];
            float acc = convB ? convB[ch] : 0.f;
            for (int k = 0; k < K; k++) {
                const long long s = (long long)t - (K - 1) + k;
                if (s >= ds) acc += convW[ch * K + k] * LD(zx[(size_t)s * E + xbcOff + ch]);
            }
            const float v = acc * sigm(acc);
            if (ch < S) xo[t * S + ch] = ST(v);
            else if (ch < S + GN) bo[t * GN + ch - S] = ST(v);
            else co[t * GN + ch - S - GN] = ST(v);
        } else if (ch < CD + H) {
            dt[t * H + ch - CD] = LD(zx[t * E + dtOff + ch - CD]);
        }
    }

    // The conv's backward, first half: dpre (T, CD) float32 = d out·silu'(pre) (pre recomputed), d out taken
    // from the SSD's dx, dB, dC; and zx's dt columns of dzx from the SSD's ddt (T, H). Grid as t_conv.
    extern "C" __global__ void __launch_bounds__(256) t_conv_bwd_pre(
            int CD, int K, int S, int GN, int H, int E, int xbcOff, int dtOff, const act_t* __restrict__ zx, const int* __restrict__ docStart,
            const float* __restrict__ convW, const float* __restrict__ convB, const act_t* __restrict__ dxo, const act_t* __restrict__ dbo,
            const act_t* __restrict__ dco, const float* __restrict__ ddt, float* __restrict__ dpre, act_t* __restrict__ dzx) {
        const size_t t = blockIdx.x;
        const int ch = blockIdx.y * 256 + threadIdx.x;
        if (ch < CD) {
            const long long ds = docStart[t];
            float acc = convB ? convB[ch] : 0.f;
            for (int k = 0; k < K; k++) {
                const long long s = (long long)t - (K - 1) + k;
                if (s >= ds) acc += convW[ch * K + k] * LD(zx[(size_t)s * E + xbcOff + ch]);
            }
            const float go = ch < S ? LD(dxo[t * S + ch]) : ch < S + GN ? LD(dbo[t * GN + ch - S]) : LD(dco[t * GN + ch - S - GN]);
            const float sg = sigm(acc);
            dpre[t * CD + ch] = go * sg * (1.f + acc * (1.f - sg));
        } else if (ch < CD + H) {
            dzx[t * E + dtOff + ch - CD] = ST(ddt[t * H + ch - CD]);
        }
    }

    // The conv's backward, second half, CT tokens × 256 channels a block: the input's gradient (zx's xBC
    // columns of dzx) d in[s] = Σ_k w[k]·dpre[s + K − 1 − k] over the outputs that see s (same document),
    // dW[ch, k] += Σ_t dpre[t]·in[t − (K − 1) + k] and dBias[ch] += Σ_t dpre[t], added once per block.
    // Grid (⌈T / CT⌉, ⌈CD / 256⌉); K ≤ 8.
    #define CT 64
    extern "C" __global__ void __launch_bounds__(256) t_conv_bwd_in(
            int T, int CD, int K, int E, int xbcOff, const act_t* __restrict__ zx, const int* __restrict__ docStart,
            const float* __restrict__ convW, const float* __restrict__ dpre, act_t* __restrict__ dzx, float* __restrict__ dW,
            float* __restrict__ dBias) {
        const int ch = blockIdx.y * 256 + threadIdx.x;
        if (ch >= CD) return;
        float wacc[8] = {0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f}, bacc = 0.f;
        const int s1 = min(T, (int)(blockIdx.x * CT + CT));
        for (int s = blockIdx.x * CT; s < s1; s++) {
            float gin = 0.f;
            for (int k = 0; k < K; k++) {
                const int t = s + K - 1 - k;
                if (t < T && docStart[t] <= s) gin += convW[ch * K + k] * dpre[(size_t)t * CD + ch];
            }
            dzx[(size_t)s * E + xbcOff + ch] = ST(gin);
            const float dp = dpre[(size_t)s * CD + ch];
            bacc += dp;
            const int ds = docStart[s];
            #pragma unroll
            for (int k = 0; k < 8; k++) {
                const int src = s - (K - 1) + k;
                if (k < K && src >= ds) wacc[k] += dp * LD(zx[(size_t)src * E + xbcOff + ch]);
            }
        }
        for (int k = 0; k < K && k < 8; k++) atomicAdd(dW + ch * K + k, wacc[k]);
        if (dBias) atomicAdd(dBias + ch, bacc);
    }

    // The gated RMSNorm (norm_before_gate = false): out (T, S) = v·r·w, v = y·silu(z), r per group of S / G
    // channels; z is zx's first S columns. A block per token.
    extern "C" __global__ void __launch_bounds__(256) t_gated_norm(int S, int G, float eps, const act_t* __restrict__ y,
                                                                    const act_t* __restrict__ zx, int E, const float* __restrict__ w,
                                                                    act_t* __restrict__ out) {
        __shared__ float red[16];
        const size_t t = blockIdx.x;
        const int gs = S / G;
        for (int g = 0; g < G; g++) {
            float ss = 0.f;
            for (int i = g * gs + threadIdx.x; i < (g + 1) * gs; i += 256) {
                const float zv = LD(zx[t * E + i]), v = LD(y[t * S + i]) * zv * sigm(zv);
                ss += v * v;
            }
            const float r = rsqrtf(block_sum2(ss, 0.f, red).x / gs + eps);
            for (int i = g * gs + threadIdx.x; i < (g + 1) * gs; i += 256) {
                const float zv = LD(zx[t * E + i]), v = LD(y[t * S + i]) * zv * sigm(zv);
                out[t * S + i] = ST(v * r * w[i]);
            }
        }
    }

    // Its backward over RB tokens a block, from g = d out (T, S) float32: dv = r·g·w − v·r³·Σ(g·w·v)/gs;
    // dy = dv·silu(z) (the SSD's output gradient), dz = dv·y·silu'(z) into dzx's z columns, dw += Σ g·v·r.
    extern "C" __global__ void __launch_bounds__(256) t_gated_norm_bwd(
            int T, int S, int G, float eps, const act_t* __restrict__ y, const act_t* __restrict__ zx, int E, const float* __restrict__ w,
            const float* __restrict__ g, act_t* __restrict__ dy, act_t* __restrict__ dzx, float* __restrict__ dw) {
        extern __shared__ float dws[];
        __shared__ float red[16];
        for (int i = threadIdx.x; i < S; i += 256) dws[i] = 0.f;
        const int gs = S / G;
        const int t1 = min(T, (int)(blockIdx.x * RB + RB));
        for (int t = blockIdx.x * RB; t < t1; t++) {
            const size_t ro = (size_t)t * S, zo = (size_t)t * E;
            for (int q = 0; q < G; q++) {
                float ss = 0.f, dot = 0.f;
                for (int i = q * gs + threadIdx.x; i < (q + 1) * gs; i += 256) {
                    const float zv = LD(zx[zo + i]), v = LD(y[ro + i]) * zv * sigm(zv);
                    ss += v * v; dot += g[ro + i] * w[i] * v;
                }
                const float2 s = block_sum2(ss, dot, red);
                const float r = rsqrtf(s.x / gs + eps), k = r * r * r * s.y / gs;
                for (int i = q * gs + threadIdx.x; i < (q + 1) * gs; i += 256) {
                    const float zv = LD(zx[zo + i]), yv = LD(y[ro + i]), sg = sigm(zv), v = yv * zv * sg;
                    const float dv = r * g[ro + i] * w[i] - v * k;
                    dy[ro + i] = ST(dv * zv * sg);
                    dzx[zo + i] = ST(dv * yv * sg * (1.f + zv * (1.f - sg)));
                    dws[i] += g[ro + i] * v * r;
                }
            }
        }
        __syncthreads();  // with several groups a column's sum was made by another thread than reads it here
        for (int i = threadIdx.x; i < S; i += 256) atomicAdd(dw + i, dws[i]);
    }

    // Cross-entropy of one row of logits (float32, V columns) a block: −log softmax at its target (−1: no
    // target) added to lossSum (float64); with dlogits, d loss/d logits = (softmax − onehot)·scale (zeros
    // for a row without target).
    __device__ __forceinline__ float2 lse_merge(float2 a, float2 b) {  // (max, Σ exp(x − max))
        if (a.x == -__int_as_float(0x7f800000)) return b;
        if (b.x == -__int_as_float(0x7f800000)) return a;
        const float m = fmaxf(a.x, b.x);
        return make_float2(m, a.y * expf(a.x - m) + b.y * expf(b.x - m));
    }
    extern "C" __global__ void __launch_bounds__(256) t_cross_entropy(int V, const float* __restrict__ logits, const int* __restrict__ target,
                                                                       float scale, double* __restrict__ lossSum, act_t* __restrict__ dlogits) {
        __shared__ float2 part[8];
        const size_t row = blockIdx.x;
        const int tg = target[row];
        const float* x = logits + row * V;
        act_t* dl = dlogits ? dlogits + row * V : nullptr;
        if (tg < 0) {
            if (dl) for (int v = threadIdx.x; v < V; v += 256) dl[v] = ST(0.f);
            return;
        }
        float2 a = make_float2(-__int_as_float(0x7f800000), 0.f);
        for (int v = threadIdx.x; v < V; v += 256) a = lse_merge(a, make_float2(x[v], 1.f));
        for (int o = 16; o > 0; o >>= 1) a = lse_merge(a, make_float2(__shfl_xor_sync(0xffffffffu, a.x, o), __shfl_xor_sync(0xffffffffu, a.y, o)));
        if ((threadIdx.x & 31) == 0) part[threadIdx.x >> 5] = a;
        __syncthreads();
        float2 s = part[0];
        for (int w = 1; w < 8; w++) s = lse_merge(s, part[w]);
        if (threadIdx.x == 0) atomicAdd(lossSum, (double)(logf(s.y) + s.x - x[tg]));
        if (dl) {
            const float inv = scale / s.y;
            for (int v = threadIdx.x; v < V; v += 256) dl[v] = ST(expf(x[v] - s.x) * inv - (v == tg ? scale : 0.f));
        }
    }

    // A = −exp(A_log) for every layer's heads.
    extern "C" __global__ void t_neg_exp(int n, const float* __restrict__ aLog, float* __restrict__ A) {
        const int i = blockIdx.x * blockDim.x + threadIdx.x;
        if (i < n) A[i] = -expf(aLog[i]);
    }

    // The SSD's per-head gradients into the parameters' gradients: A_log (dA·A, since A = −exp(A_log)),
    // dt_bias, and D (nD values: H, or S when D has the head dimension).
    extern "C" __global__ void t_head_grads(int H, int nD, const float* __restrict__ dA, const float* __restrict__ A, float* __restrict__ gAlog,
                                            const float* __restrict__ dBias, float* __restrict__ gBias, const float* __restrict__ dD,
                                            float* __restrict__ gD) {
        for (int i = threadIdx.x; i < H; i += blockDim.x) { gAlog[i] += dA[i] * A[i]; gBias[i] += dBias[i]; }
        for (int i = threadIdx.x; i < nD; i += blockDim.x) gD[i] += dD[i];
    }

    // Σ g² over n values, in float64, added to out.
    extern "C" __global__ void __launch_bounds__(256) t_sumsq(long long n, const float* __restrict__ g, double* __restrict__ out) {
        __shared__ double red[8];
        double s = 0.0;
        for (long long i = blockIdx.x * 256LL + threadIdx.x; i < n; i += (long long)gridDim.x * 256) s += (double)g[i] * g[i];
        for (int o = 16; o > 0; o >>= 1) s += __shfl_xor_sync(0xffffffffu, s, o);
        if ((threadIdx.x & 31) == 0) red[threadIdx.x >> 5] = s;
        __syncthreads();
        if (threadIdx.x == 0) {
            double t = 0.0;
            for (int w = 0; w < 8; w++) t += red[w];
            atomicAdd(out, t);
        }
    }

    // AdamW over the flat float32 parameters, of which the first nDecay take weight decay. The gradient is
    // the accumulated sum times gradScale (1 / batches), clipped to clipNorm by the global norm from sumsq
    // (Σ of the summed gradients' squares); mirror (when given) receives the new values in act (the matrix
    // products' copy of the weights).
    extern "C" __global__ void __launch_bounds__(256) t_adamw(
            long long n, long long nDecay, float* __restrict__ p, const float* __restrict__ g, float* __restrict__ m, float* __restrict__ v,
            act_t* __restrict__ mirror, float lr, float b1, float b2, float eps, float wd, float bc1, float bc2, float gradScale,
            float clipNorm, const double* __restrict__ sumsq) {
        const float norm = (float)sqrt(*sumsq) * gradScale;
        const float s = gradScale * (clipNorm > 0.f && norm > clipNorm ? clipNorm / norm : 1.f);
        for (long long i = blockIdx.x * 256LL + threadIdx.x; i < n; i += (long long)gridDim.x * 256) {
            const float gi = g[i] * s;
            const float mm = b1 * m[i] + (1.f - b1) * gi, vv = b2 * v[i] + (1.f - b2) * gi * gi;
            float pi = p[i];
            pi -= lr * ((i < nDecay ? wd : 0.f) * pi + (mm / bc1) / (sqrtf(vv / bc2) + eps));
            m[i] = mm; v[i] = vv; p[i] = pi;
            if (mirror) mirror[i] = ST(pi);
        }
    }

    // out[i] = std·N(0, 1) from a hash of (seed, i): random matrices drawn on the device (benchmarks).
    __device__ __forceinline__ unsigned long long mix64(unsigned long long z) {
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
        return z ^ (z >> 31);
    }
    extern "C" __global__ void t_fill_normal(long long n, unsigned long long seed, float std, float* __restrict__ out) {
        for (long long i = blockIdx.x * 256LL + threadIdx.x; i < n; i += (long long)gridDim.x * 256) {
            const unsigned long long h = mix64(seed + 0x9e3779b97f4a7c15ull * (i + 1));
            const float u1 = ((h >> 40) + 1) * (1.f / 16777217.f), u2 = ((h >> 16) & 0xffffff) * (1.f / 16777216.f);
            out[i] = std * sqrtf(-2.f * logf(u1)) * cospif(2.f * u2);
        }
    }

    // dst = src in act (the 16-bit mirror of the weights after an upload).
    extern "C" __global__ void t_to_act(long long n, const float* __restrict__ src, act_t* __restrict__ dst) {
        for (long long i = blockIdx.x * 256LL + threadIdx.x; i < n; i += (long long)gridDim.x * 256) dst[i] = ST(src[i]);
    }
    """#
}
