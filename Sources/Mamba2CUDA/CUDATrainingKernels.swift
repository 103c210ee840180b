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
    /// Forward per layer: t_rmsnorm (copying the residual stream on) → in_proj → t_conv → SSD → t_gated_norm →
    /// out_proj (+ residual). Backward per layer (the conv, the SSD's chunk states and both norms' outputs
    /// recomputed from the saved residual, zx and y): out_proj dX → t_gated_norm_bwd → out_proj dW → SSD' →
    /// t_head_grads → t_conv_bwd → in_proj dX → t_rmsnorm_bwd → in_proj dW. Where rows allow, the norms run
    /// as `trainingNorms`' row kernels, whose backward remakes the forward's output on the way.
    /// Head: t_cross_entropy over chunks of rows. Optimizer: t_sumsq → t_adamw.
    static let training = activationType + #"""
    __device__ __forceinline__ float sigm(float v) { return 1.f / (1.f + expf(-v)); }
    // The conv's sigmoid: in bf16 the fast exponential and division (about 2 ulp, far below bf16's rounding;
    // the conv kernels were bound by their instructions), in the f32 checking mode the accurate ones.
    __device__ __forceinline__ float csigm(float v) {
    #if ACT == 1
        return __fdividef(1.f, 1.f + __expf(-v));
    #else
        return sigm(v);
    #endif
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

    // out (T, d) = x·r·w, r = 1/sqrt(mean(x²) + eps); a block per row; with copy, x copied there too.
    extern "C" __global__ void __launch_bounds__(256) t_rmsnorm(int d, float eps, const float* __restrict__ x, const float* __restrict__ w,
                                                                 act_t* __restrict__ out, float* __restrict__ copy) {
        __shared__ float red[16];
        const float* xr = x + (size_t)blockIdx.x * d;
        float ss = 0.f;
        for (int i = threadIdx.x; i < d; i += 256) ss += xr[i] * xr[i];
        const float r = rsqrtf(block_sum2(ss, 0.f, red).x / d + eps);
        for (int i = threadIdx.x; i < d; i += 256) {
            out[(size_t)blockIdx.x * d + i] = ST(xr[i] * r * w[i]);
            if (copy) copy[(size_t)blockIdx.x * d + i] = xr[i];
        }
    }

    // RMSNorm backward from g = d out (act), a warp per row, RB rows a block (r recomputed from x): dx += r·g·w − x·r³·Σ(g·w·x)/d
    // in place (the residual stream's gradient), its copy dxAct (act) when given (the next matrix product's
    // input), and dw += Σ_rows g·x·r, summed in shared memory (d floats) and added once per block.
    // (A block per row with block-wide reductions was latency-bound: 11 ms of a 1.3b step.)
    #define RB 16
    extern "C" __global__ void __launch_bounds__(256) t_rmsnorm_bwd(int T, int d, float eps, const float* __restrict__ x,
                                                                     const float* __restrict__ w, const act_t* __restrict__ g,
                                                                     float* __restrict__ dx, act_t* __restrict__ dxAct, float* __restrict__ dw) {
        extern __shared__ float dws[];
        for (int i = threadIdx.x; i < d; i += 256) dws[i] = 0.f;
        __syncthreads();
        const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
        const int t1 = min(T, (int)(blockIdx.x * RB + RB));
        for (int t = blockIdx.x * RB + warp; t < t1; t += 8) {
            const float* xr = x + (size_t)t * d;
            const act_t* gr = g + (size_t)t * d;
            float ss = 0.f, dot = 0.f;
            for (int i = lane; i < d; i += 32) { const float xv = xr[i]; ss += xv * xv; dot += LD(gr[i]) * w[i] * xv; }
            ss = warp_sum(ss); dot = warp_sum(dot);
            const float r = rsqrtf(ss / d + eps), k = r * r * r * dot / d;
            for (int i = lane; i < d; i += 32) {
                const size_t e = (size_t)t * d + i;
                const float xv = xr[i], gv = LD(gr[i]);
                const float v = dx[e] + r * gv * w[i] - xv * k;
                dx[e] = v;
                if (dxAct) dxAct[e] = ST(v);
                atomicAdd(dws + i, gv * xv * r);
            }
        }
        __syncthreads();
        for (int i = threadIdx.x; i < d; i += 256) atomicAdd(dw + i, dws[i]);
    }

    // The causal depthwise conv + SiLU of zx's xBC columns over each document, split into x (T, S), B, C
    // (T, GN), and dt (T, H) float32 copied from zx. A block takes 256 channels × CT tokens: it first stages
    // the inputs it needs (CT + K − 1 tokens) and the tokens' document starts in shared memory, every thread
    // issuing its loads unrolled (many in flight), then each thread slides over its channel's column keeping
    // the last 8 inputs in registers (win[j] = in[u − j]; taps wr[j] = w[K − 1 − j], zero past K ≤ 8); tap j
    // counts when u − j is in u's document. Grid (⌈T / CT⌉, ⌈(CD + H) / 256⌉); dynamic shared memory
    // (CT + 7)·256 act values + CT ints. (A thread per (token, channel), then a thread sliding over global
    // memory, were latency-bound: 0.26 and 0.15 ms a 1.3b layer.)
    // Both conv kernels are built for windows of KW = 4 (d_conv ≤ 4: every released model; half the registers
    // and instructions of a window of 8) and KW = 8 (d_conv ≤ 8); the tiles are laid out for 8 either way.
    #define CT 32
    // Whether the conv kernels may stage their tiles 8 values (16 bytes) a load: bf16, and every row start,
    // column offset and the x/B/C boundaries whole multiples of 8 values (every released shape). One 2-byte
    // load per value left the backward waiting on its loads for half its cycles at 1.3b.
    __device__ __forceinline__ bool conv_vec(int CD, int S, int GN, int E, int xbcOff) {
    #if ACT == 1
        return CD % 8 == 0 && S % 8 == 0 && GN % 8 == 0 && E % 8 == 0 && xbcOff % 8 == 0;
    #else
        return false;
    #endif
    }
    // Stages rows [u0, u0 + rows) of zx's xBC columns ch0 ..< ch0 + nc (zero outside [0, T) and past nc) into
    // tile[row][256].
    __device__ __forceinline__ void stage_zx(act_t* tile, int rows, int u0, int T, int E, int xbcOff, int ch0, int nc,
                                             const act_t* __restrict__ zx, bool vec) {
    #if ACT == 1
        if (vec) {
            #pragma unroll 4
            for (int e = threadIdx.x; e < rows * 32; e += 256) {
                const int row = e >> 5, col = (e & 31) * 8, u = u0 + row;
                uint4 v = make_uint4(0, 0, 0, 0);
                if (u >= 0 && u < T && col < nc) v = *(const uint4*)(zx + (size_t)u * E + xbcOff + ch0 + col);
                *(uint4*)(tile + row * 256 + col) = v;
            }
            return;
        }
    #endif
        #pragma unroll 8
        for (int e = threadIdx.x; e < rows * 256; e += 256) {
            const int row = e >> 8, col = e & 255, u = u0 + row;
            tile[e] = u >= 0 && u < T && col < nc ? zx[(size_t)u * E + xbcOff + ch0 + col] : ST(0.f);
        }
    }
    // The conv's forward over CT tokens t0 + r of a tile (tile[r][256], the thread's column), those before tEnd
    // written: the window of the last KW inputs shifts in registers (unrolled whole: the shifts become register
    // renames; a loop over u spent most of the kernel's instructions moving them); tap j counts when u − j is in
    // u's document (dss[r]: u's document start), or always when PLAIN.
    template <int KW, bool PLAIN>
    __device__ __forceinline__ void conv_rows(int t0, int tEnd, int K, const act_t* tile, const int* dss, const float* wr, float* win,
                                              float bias, act_t* __restrict__ out, int ld) {
        #pragma unroll
        for (int r = 0; r < CT; r++) {
            const int u = t0 + r;
            #pragma unroll
            for (int j = KW - 1; j > 0; j--) win[j] = win[j - 1];
            win[0] = LD(tile[r * 256 + threadIdx.x]);
            if (u < tEnd) {
                const int back = u - dss[r];
                float acc = bias;
                #pragma unroll
                for (int j = 0; j < KW; j++) if (PLAIN || j <= back) acc += wr[j] * win[j];
                out[(size_t)u * ld] = ST(acc * csigm(acc));
            }
        }
    }
    // A thread's channel over the block's tokens. PLAIN: every token of the tile is at least K − 1 tokens into
    // its document, so every tap counts and the per-tap document test goes (most tiles of packed training
    // batches: one compare and select per tap and token fewer; its share of the time was not measured apart).
    template <int KW, bool PLAIN>
    __device__ __forceinline__ void conv_fwd_column(int t0, int t1, int K, int ch, const act_t* zin, const int* dss,
                                                    const float* __restrict__ convW, const float* __restrict__ convB,
                                                    act_t* __restrict__ out, int ld) {
        float wr[KW], win[KW];
        #pragma unroll
        for (int j = 0; j < KW; j++) {
            wr[j] = j < K ? convW[ch * K + K - 1 - j] : 0.f;
            win[j] = j < 7 ? LD(zin[(6 - j) * 256 + threadIdx.x]) : 0.f;  // in[t0 − 1 − j]; the loop shifts before it reads
        }
        conv_rows<KW, PLAIN>(t0, t1, K, zin + 7 * 256, dss, wr, win, convB ? convB[ch] : 0.f, out, ld);
    }
    template <int KW>
    __device__ __forceinline__ void conv_fwd(int T, int CD, int K, int S, int GN, int H, int E, int xbcOff, int dtOff,
                                             const act_t* __restrict__ zx, const int* __restrict__ docStart,
                                             const float* __restrict__ convW, const float* __restrict__ convB,
                                             act_t* __restrict__ xo, act_t* __restrict__ bo, act_t* __restrict__ co,
                                             float* __restrict__ dt) {
        extern __shared__ __align__(16) unsigned char smem[];
        act_t* zin = (act_t*)smem;                       // [CT + 7][256]: token t0 − 7 + row
        int* dss = (int*)(zin + (CT + 7) * 256);         // [CT]
        const int ch0 = blockIdx.y * 256, ch = ch0 + threadIdx.x;
        const int t0 = blockIdx.x * CT, t1 = min(T, t0 + CT);
        const int nc = min(256, CD - ch0);               // channels of this block that are conv channels
        bool plain = false;
        if (nc > 0) {
            stage_zx(zin, CT + 7, t0 - 7, T, E, xbcOff, ch0, nc, zx, conv_vec(CD, S, GN, E, xbcOff));
            if (threadIdx.x < CT) dss[threadIdx.x] = t0 + threadIdx.x < T ? docStart[t0 + threadIdx.x] : 0;
            __syncthreads();
            plain = __syncthreads_and((int)threadIdx.x >= t1 - t0 || dss[threadIdx.x] <= t0 + (int)threadIdx.x - (K - 1));
        }
        if (ch < CD) {
            act_t* out = ch < S ? xo + ch : ch < S + GN ? bo + (ch - S) : co + (ch - S - GN);
            const int ld = ch < S ? S : GN;
            if (plain) conv_fwd_column<KW, true>(t0, t1, K, ch, zin, dss, convW, convB, out, ld);
            else conv_fwd_column<KW, false>(t0, t1, K, ch, zin, dss, convW, convB, out, ld);
        } else if (ch < CD + H) {
            for (int u = t0; u < t1; u++) dt[(size_t)u * H + ch - CD] = LD(zx[(size_t)u * E + dtOff + ch - CD]);
        }
    }

    // The conv's backward in one pass over the same tiles, CT outputs plus K − 1 tokens of halo staged with
    // their inputs, output gradients (from the SSD's dx, dB, dC) and document starts: per token u the
    // pre-activation (recomputed), dpre[u] = d out·silu'(pre); dW[ch, K − 1 − j] += dpre[u]·in[u − j] and
    // dBias += dpre[u] for u in the block's range; and the input's gradient (dzx's xBC columns)
    // d in[s] = Σ_j w[j]·dpre[s + K − 1 − j] over the outputs that see s (their document starts at or before s),
    // written once dpre is known up to s + K − 1. zx's dt columns of dzx come from the SSD's ddt (T, H).
    // Weight sums are added once per thread. Dynamic shared memory (2·CT + 14)·256 act values + (CT + 7) ints.
    // One token u of the backward for a thread's channel: the pre-activation (recomputed), dp = d out·silu'(pre)
    // into the window dpw (ds its document start into dsw), the weight and bias sums when acc, and the input
    // gradient of s = u − (K − 1) once dp is known up to u (when s ≥ s0): Σ_j w[j]·dp[s + K − 1 − j] over the
    // outputs whose document holds s.
    template <int KW, bool PLAIN>
    __device__ __forceinline__ void conv_bwd_token(int u, int T, int s0, int K, float xin, float go, int ds, const float* wr, const float* wf,
                                                  float* win, float* dpw, int* dsw, float* wacc, float& bacc, float bias, bool acc,
                                                  act_t* __restrict__ dzxc, int E) {
        #pragma unroll
        for (int j = KW - 1; j > 0; j--) { win[j] = win[j - 1]; dpw[j] = dpw[j - 1]; dsw[j] = dsw[j - 1]; }
        win[0] = xin; dsw[0] = ds;
        float dp = 0.f;
        if (u < T) {
            const int back = u - ds;
            float pre = bias;
            #pragma unroll
            for (int j = 0; j < KW; j++) if (PLAIN || j <= back) pre += wr[j] * win[j];
            const float sg = csigm(pre);
            dp = go * sg * (1.f + pre * (1.f - sg));
            if (acc) {
                bacc += dp;
                #pragma unroll
                for (int j = 0; j < KW; j++) if (PLAIN || j <= back) wacc[j] += dp * win[j];
            }
        }
        dpw[0] = dp;
        const int s = u - (K - 1);
        if (s >= s0 && s < T) {
            float gin = 0.f;
            #pragma unroll
            for (int j = 0; j < KW; j++) if (PLAIN || dsw[j] <= s) gin += wf[j] * dpw[j];
            dzxc[(size_t)s * E] = ST(gin);
        }
    }

    // A thread's channel over the block's tokens and halo; PLAIN as in the forward (every token of the tile
    // and its halo at least K − 1 tokens into its document: every tap counts).
    template <int KW, bool PLAIN>
    __device__ __forceinline__ void conv_bwd_column(int T, int t0, int t1, int K, int ch, int E, int xbcOff, const act_t* zin,
                                                    const act_t* gos, const int* dss, const float* __restrict__ convW,
                                                    const float* __restrict__ convB, act_t* __restrict__ dzx, float* __restrict__ dW,
                                                    float* __restrict__ dBias) {
        float wr[KW], wf[KW], win[KW], dpw[KW], wacc[KW];
        int dsw[KW];
        #pragma unroll
        for (int j = 0; j < KW; j++) {
            wr[j] = j < K ? convW[ch * K + K - 1 - j] : 0.f;
            wf[j] = j < K ? convW[ch * K + j] : 0.f;
            win[j] = j < 7 ? LD(zin[(6 - j) * 256 + threadIdx.x]) : 0.f;  // in[t0 − 1 − j]
            dpw[j] = 0.f; wacc[j] = 0.f; dsw[j] = 0x7fffffff;
        }
        const float bias = convB ? convB[ch] : 0.f;
        float bacc = 0.f;
        // unrolled whole as the forward's loop; rows past t1 + K − 1 do nothing
        #pragma unroll
        for (int row = 0; row < CT + KW - 1; row++) {
            const int u = t0 + row;
            if (u >= t1 + K - 1) break;
            conv_bwd_token<KW, PLAIN>(u, T, t0, K, LD(zin[(row + 7) * 256 + threadIdx.x]), LD(gos[row * 256 + threadIdx.x]), dss[row], wr, wf,
                                      win, dpw, dsw, wacc, bacc, bias, u < t1, dzx + xbcOff + ch, E);
        }
        #pragma unroll
        for (int j = 0; j < KW; j++) if (j < K) atomicAdd(dW + ch * K + K - 1 - j, wacc[j]);
        if (dBias) atomicAdd(dBias + ch, bacc);
    }
    template <int KW>
    __device__ __forceinline__ void conv_bwd(
            int T, int CD, int K, int S, int GN, int H, int E, int xbcOff, int dtOff, const act_t* __restrict__ zx,
            const int* __restrict__ docStart, const float* __restrict__ convW, const float* __restrict__ convB,
            const act_t* __restrict__ dxo, const act_t* __restrict__ dbo, const act_t* __restrict__ dco, const float* __restrict__ ddt,
            act_t* __restrict__ dzx, float* __restrict__ dW, float* __restrict__ dBias) {
        extern __shared__ __align__(16) unsigned char smem[];
        act_t* zin = (act_t*)smem;                       // [CT + 14][256]: token t0 − 7 + row
        act_t* gos = zin + (CT + 14) * 256;              // [CT + 7][256]: token t0 + row
        int* dss = (int*)(gos + (CT + 7) * 256);         // [CT + 7]
        const int ch0 = blockIdx.y * 256, ch = ch0 + threadIdx.x;
        const int t0 = blockIdx.x * CT, t1 = min(T, t0 + CT);
        const int nc = min(256, CD - ch0);
        bool plain = false;
        if (nc > 0) {
            const bool vec = conv_vec(CD, S, GN, E, xbcOff);
            stage_zx(zin, CT + 14, t0 - 7, T, E, xbcOff, ch0, nc, zx, vec);
    #if ACT == 1
            if (vec) {  // 8 channels never straddle x, B and C (S and GN are multiples of 8)
                #pragma unroll 4
                for (int e = threadIdx.x; e < (CT + 7) * 32; e += 256) {
                    const int row = e >> 5, col = (e & 31) * 8, u = t0 + row, c = ch0 + col;
                    uint4 v = make_uint4(0, 0, 0, 0);
                    if (u < T && col < nc)
                        v = *(const uint4*)(c < S ? dxo + (size_t)u * S + c : c < S + GN ? dbo + (size_t)u * GN + c - S : dco + (size_t)u * GN + c - S - GN);
                    *(uint4*)(gos + row * 256 + col) = v;
                }
            } else
    #endif
            {
                #pragma unroll 8
                for (int e = threadIdx.x; e < (CT + 7) * 256; e += 256) {
                    const int row = e >> 8, col = e & 255, u = t0 + row, c = ch0 + col;
                    act_t v = ST(0.f);
                    if (u < T && col < nc) v = c < S ? dxo[(size_t)u * S + c] : c < S + GN ? dbo[(size_t)u * GN + c - S] : dco[(size_t)u * GN + c - S - GN];
                    gos[e] = v;
                }
            }
            if (threadIdx.x < CT + 7) dss[threadIdx.x] = t0 + threadIdx.x < T ? docStart[t0 + threadIdx.x] : 0x7fffffff;
            __syncthreads();
            plain = __syncthreads_and((int)threadIdx.x >= t1 + K - 1 - t0 || dss[threadIdx.x] <= t0 + (int)threadIdx.x - (K - 1));
        }
        if (ch < CD) {
            if (plain) conv_bwd_column<KW, true>(T, t0, t1, K, ch, E, xbcOff, zin, gos, dss, convW, convB, dzx, dW, dBias);
            else conv_bwd_column<KW, false>(T, t0, t1, K, ch, E, xbcOff, zin, gos, dss, convW, convB, dzx, dW, dBias);
        } else if (ch < CD + H) {
            for (int u = t0; u < t1; u++) dzx[(size_t)u * E + dtOff + ch - CD] = ST(ddt[(size_t)u * H + ch - CD]);
        }
    }
    #define CONV_FWD_ARGS int T, int CD, int K, int S, int GN, int H, int E, int xbcOff, int dtOff, const act_t* __restrict__ zx, \
        const int* __restrict__ docStart, const float* __restrict__ convW, const float* __restrict__ convB, act_t* __restrict__ xo, \
        act_t* __restrict__ bo, act_t* __restrict__ co, float* __restrict__ dt
    #define CONV_BWD_ARGS int T, int CD, int K, int S, int GN, int H, int E, int xbcOff, int dtOff, const act_t* __restrict__ zx, \
        const int* __restrict__ docStart, const float* __restrict__ convW, const float* __restrict__ convB, const act_t* __restrict__ dxo, \
        const act_t* __restrict__ dbo, const act_t* __restrict__ dco, const float* __restrict__ ddt, act_t* __restrict__ dzx, \
        float* __restrict__ dW, float* __restrict__ dBias
    extern "C" __global__ void __launch_bounds__(256) t_conv4(CONV_FWD_ARGS) {
        conv_fwd<4>(T, CD, K, S, GN, H, E, xbcOff, dtOff, zx, docStart, convW, convB, xo, bo, co, dt);
    }
    extern "C" __global__ void __launch_bounds__(256) t_conv8(CONV_FWD_ARGS) {
        conv_fwd<8>(T, CD, K, S, GN, H, E, xbcOff, dtOff, zx, docStart, convW, convB, xo, bo, co, dt);
    }
    extern "C" __global__ void __launch_bounds__(256) t_conv_bwd4(CONV_BWD_ARGS) {
        conv_bwd<4>(T, CD, K, S, GN, H, E, xbcOff, dtOff, zx, docStart, convW, convB, dxo, dbo, dco, ddt, dzx, dW, dBias);
    }
    extern "C" __global__ void __launch_bounds__(256) t_conv_bwd8(CONV_BWD_ARGS) {
        conv_bwd<8>(T, CD, K, S, GN, H, E, xbcOff, dtOff, zx, docStart, convW, convB, dxo, dbo, dco, ddt, dzx, dW, dBias);
    }

    // Eight act values from 16 aligned bytes and back (the bf16 build's vector path of the gated norm).
    #if ACT == 1
    __device__ __forceinline__ void ld8(const u16* p, float* o) {
        const uint4 v = *(const uint4*)p;
        const u32 w[4] = {v.x, v.y, v.z, v.w};
        #pragma unroll
        for (int k = 0; k < 4; k++) { o[2 * k] = __uint_as_float(w[k] << 16); o[2 * k + 1] = __uint_as_float(w[k] & 0xffff0000u); }
    }
    __device__ __forceinline__ void st8(u16* p, const float* o) {
        u32 w[4];
        #pragma unroll
        for (int k = 0; k < 4; k++) w[k] = (u32)from_f(o[2 * k]) | ((u32)from_f(o[2 * k + 1]) << 16);
        *(uint4*)p = make_uint4(w[0], w[1], w[2], w[3]);
    }
    #endif
    __device__ __forceinline__ void ld8f(const float* p, float* o) {
        const float4 a = *(const float4*)p, b = *(const float4*)(p + 4);
        o[0] = a.x; o[1] = a.y; o[2] = a.z; o[3] = a.w; o[4] = b.x; o[5] = b.y; o[6] = b.z; o[7] = b.w;
    }

    // The gated RMSNorm (norm_before_gate = false): out (T, S) = v·r·w, v = y·silu(z), r per group of S / G
    // channels; z is zx's first S columns. A warp per token row, 8 rows a block; with vec (bf16, S, E and
    // the group size multiples of 8) each lane moves 8 values at a time in 16-byte loads (scalar 2-byte
    // loads left these kernels far from the memory's rate).
    extern "C" __global__ void __launch_bounds__(256) t_gated_norm(int T, int S, int G, float eps, const act_t* __restrict__ y,
                                                                    const act_t* __restrict__ zx, int E, const float* __restrict__ w,
                                                                    act_t* __restrict__ out, int vec) {
        const int lane = threadIdx.x & 31, t = blockIdx.x * 8 + (threadIdx.x >> 5);
        if (t >= T) return;
        const size_t ro = (size_t)t * S, zo = (size_t)t * E;
        const int gs = S / G;
        for (int q = 0; q < G; q++) {
            float ss = 0.f;
    #if ACT == 1
            if (vec) {
                for (int i = q * gs + lane * 8; i < (q + 1) * gs; i += 256) {
                    float yv[8], zv[8];
                    ld8(y + ro + i, yv); ld8(zx + zo + i, zv);
                    #pragma unroll
                    for (int k = 0; k < 8; k++) { const float v = yv[k] * zv[k] * sigm(zv[k]); ss += v * v; }
                }
                const float r = rsqrtf(warp_sum(ss) / gs + eps);
                for (int i = q * gs + lane * 8; i < (q + 1) * gs; i += 256) {
                    float yv[8], zv[8], wv[8], o[8];
                    ld8(y + ro + i, yv); ld8(zx + zo + i, zv); ld8f(w + i, wv);
                    #pragma unroll
                    for (int k = 0; k < 8; k++) o[k] = yv[k] * zv[k] * sigm(zv[k]) * r * wv[k];
                    st8(out + ro + i, o);
                }
                continue;
            }
    #endif
            for (int i = q * gs + lane; i < (q + 1) * gs; i += 32) {
                const float zv = LD(zx[zo + i]), v = LD(y[ro + i]) * zv * sigm(zv);
                ss += v * v;
            }
            const float r = rsqrtf(warp_sum(ss) / gs + eps);
            for (int i = q * gs + lane; i < (q + 1) * gs; i += 32) {
                const float zv = LD(zx[zo + i]), v = LD(y[ro + i]) * zv * sigm(zv);
                out[ro + i] = ST(v * r * w[i]);
            }
        }
    }

    // Its backward, from g = d out (T, S) act: dv = r·g·w − v·r³·Σ(g·w·v)/gs; dy = dv·silu(z) (the SSD's
    // output gradient), dz = dv·y·silu'(z) into dzx's z columns, dw += Σ g·v·r. A block takes GRB rows, a warp
    // GRB / 8 of them (rows base + warp, + 8, + 16, …). vec as in the forward; on it a warp first reduces each of
    // its rows (r, r³·Σ g·w·v / gs), then walks the columns once, 8 values a lane, over all its rows, summing
    // dw's parts in registers: one shared-memory atomic per column per warp instead of one per element (a row
    // at a time, those atomics stalled the kernel: half its cycles waited on them at 1.3b). The block's sums
    // go to dw once.
    #define GRB 32
    extern "C" __global__ void __launch_bounds__(256) t_gated_norm_bwd(
            int T, int S, int G, float eps, const act_t* __restrict__ y, const act_t* __restrict__ zx, int E, const float* __restrict__ w,
            const act_t* __restrict__ g, act_t* __restrict__ dy, act_t* __restrict__ dzx, float* __restrict__ dw, int vec) {
        extern __shared__ float dws[];
        for (int i = threadIdx.x; i < S; i += 256) dws[i] = 0.f;
        __syncthreads();
        const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
        const int gs = S / G;
        const int tb = blockIdx.x * GRB + warp;
    #if ACT == 1
        if (vec) {
            for (int q = 0; q < G; q++) {
                float r[GRB / 8], kk[GRB / 8];
                #pragma unroll
                for (int j = 0; j < GRB / 8; j++) {
                    const int t = tb + 8 * j;
                    r[j] = 0.f; kk[j] = 0.f;
                    if (t >= T) continue;  // the same for the whole warp
                    const size_t ro = (size_t)t * S, zo = (size_t)t * E;
                    float ss = 0.f, dot = 0.f;
                    for (int i = q * gs + lane * 8; i < (q + 1) * gs; i += 256) {
                        float yv[8], zv[8], gv[8], wv[8];
                        ld8(y + ro + i, yv); ld8(zx + zo + i, zv); ld8(g + ro + i, gv); ld8f(w + i, wv);
                        #pragma unroll
                        for (int k = 0; k < 8; k++) { const float v = yv[k] * zv[k] * sigm(zv[k]); ss += v * v; dot += gv[k] * wv[k] * v; }
                    }
                    ss = warp_sum(ss); dot = warp_sum(dot);
                    r[j] = rsqrtf(ss / gs + eps); kk[j] = r[j] * r[j] * r[j] * dot / gs;
                }
                for (int i = q * gs + lane * 8; i < (q + 1) * gs; i += 256) {
                    float wv[8], acc[8];
                    ld8f(w + i, wv);
                    #pragma unroll
                    for (int k = 0; k < 8; k++) acc[k] = 0.f;
                    #pragma unroll
                    for (int j = 0; j < GRB / 8; j++) {
                        const int t = tb + 8 * j;
                        if (t >= T) break;
                        const size_t ro = (size_t)t * S, zo = (size_t)t * E;
                        float yv[8], zv[8], gv[8], dyo[8], dzo[8];
                        ld8(y + ro + i, yv); ld8(zx + zo + i, zv); ld8(g + ro + i, gv);
                        #pragma unroll
                        for (int k = 0; k < 8; k++) {
                            const float sg = sigm(zv[k]), v = yv[k] * zv[k] * sg, dv = r[j] * gv[k] * wv[k] - v * kk[j];
                            dyo[k] = dv * zv[k] * sg;
                            dzo[k] = dv * yv[k] * sg * (1.f + zv[k] * (1.f - sg));
                            acc[k] += gv[k] * v * r[j];
                        }
                        st8(dy + ro + i, dyo); st8(dzx + zo + i, dzo);
                    }
                    #pragma unroll
                    for (int k = 0; k < 8; k++) atomicAdd(dws + i + k, acc[k]);
                }
            }
        } else
    #endif
        {
            const int t1 = min(T, (int)(blockIdx.x * GRB + GRB));
            for (int t = tb; t < t1; t += 8) {
                const size_t ro = (size_t)t * S, zo = (size_t)t * E;
                for (int q = 0; q < G; q++) {
                    float ss = 0.f, dot = 0.f;
                    for (int i = q * gs + lane; i < (q + 1) * gs; i += 32) {
                        const float zv = LD(zx[zo + i]), v = LD(y[ro + i]) * zv * sigm(zv);
                        ss += v * v; dot += LD(g[ro + i]) * w[i] * v;
                    }
                    ss = warp_sum(ss); dot = warp_sum(dot);
                    const float r = rsqrtf(ss / gs + eps), k = r * r * r * dot / gs;
                    for (int i = q * gs + lane; i < (q + 1) * gs; i += 32) {
                        const float zv = LD(zx[zo + i]), yv = LD(y[ro + i]), sg = sigm(zv), v = yv * zv * sg, gv = LD(g[ro + i]);
                        const float dv = r * gv * w[i] - v * k;
                        dy[ro + i] = ST(dv * zv * sg);
                        dzx[zo + i] = ST(dv * yv * sg * (1.f + zv * (1.f - sg)));
                        atomicAdd(dws + i, gv * v * r);
                    }
                }
            }
        }
        __syncthreads();
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
