import Mamba2
extension CUDAKernelSource {
    /// The training step's causal conv + SiLU and its backward as streaming kernels: a block owns 256 channels
    /// over a segment of consecutive tokens (as many blocks as the GPU holds at once) and walks it in tiles of
    /// SCT tokens, the next tile's inputs copied into shared memory (cp.async, 16 bytes a copy) while it
    /// works on this one, each thread's window of the last KW inputs (and, backward, of pre-activation
    /// gradients) carried in registers from tile to tile. Against `training`'s tile kernels (a block per
    /// 256 channels × 32 tokens): no halo re-read per tile, the weights loaded and their gradients added once
    /// per segment instead of once per tile, and loads overlapped with the arithmetic (ncu showed the tile
    /// backward waiting on its loads with a quarter of the memory's rate used: 0.17 ms a 1.3b layer).
    /// Taken where every row start, column offset and the x/B/C boundaries are whole multiples of 8 values
    /// (every released shape); otherwise the trainer runs `training`'s kernels, which stay as the reference.
    /// Appended after `training` and `trainingNorms` (cp16 and the act helpers come from there).
    ///
    /// Segment = tokens [s0, s1) of the flat (b·L) token rows, s1 = min(s0 + segment, T); docStart marks
    /// the documents (rows start documents), so a segment may cross rows. Tap j of token u counts when
    /// u − j is in u's document; a tile is PLAIN when all its tokens are at least K − 1 tokens into their
    /// documents (every tap counts: the per-tap test goes).
    static let trainingConv = #"""

    #define SCT CT  // conv_rows (in `training`) walks CT tokens
    __device__ __forceinline__ void cp16z(void* smem, const void* g, bool ok) {
        const unsigned a = (unsigned)__cvta_generic_to_shared(smem);
        asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" :: "r"(a), "l"(g), "r"(ok ? 16 : 0) : "memory");
    }
    __device__ __forceinline__ void cp_wait1() { asm volatile("cp.async.wait_group 1;\n" ::: "memory"); }
    // Copies rows [u0, u0 + SCT) of a tile's 256 columns (each 16-byte chunk's source from pick) into
    // tile[SCT][256], zeros past uEnd and past nc columns (safe: a valid global address for those).
    template <typename Pick>
    __device__ __forceinline__ void seg_stage(act_t* tile, int u0, int uEnd, int nc, const void* safe, Pick pick) {
        constexpr int CPR = 256 * (int)sizeof(act_t) / 16, VPC = 16 / (int)sizeof(act_t);  // chunks a row, values a chunk
        #pragma unroll 4
        for (int e = threadIdx.x; e < SCT * CPR; e += 256) {
            const int row = e / CPR, col = (e % CPR) * VPC, u = u0 + row;
            const bool ok = u < uEnd && col < nc;
            cp16z(tile + row * 256 + col, ok ? pick(u, col) : safe, ok);
        }
    }

    // The dt columns of this block's channel range (zx columns CD ..< CD + H, past the conv's) over the
    // segment, by every thread of the block (a thread per column and a serial walk over the segment's tokens
    // was latency-bound: 0.1 ms a 1.3b layer). Backward (grad): dzx's dt columns from ddt instead.
    __device__ __forceinline__ void seg_dt(int s0, int s1, int ch0, int CD, int H, int E, int dtOff, const act_t* __restrict__ zx,
                                           float* __restrict__ dt, const float* __restrict__ ddt, act_t* __restrict__ dzx, bool grad) {
        const int c0 = max(ch0, CD), c1 = min(ch0 + 256, CD + H), nd = c1 - c0;
        if (nd <= 0) return;
        const int n = (s1 - s0) * nd;
        #pragma unroll 4
        for (int i = threadIdx.x; i < n; i += 256) {
            const int u = s0 + i / nd, h = c0 - CD + i % nd;
            if (grad) dzx[(size_t)u * E + dtOff + h] = ST(ddt[(size_t)u * H + h]);
            else dt[(size_t)u * H + h] = LD(zx[(size_t)u * E + dtOff + h]);
        }
    }

    // Forward: x (T, S), B, C (T, GN) = silu(conv(zx's xBC columns)), dt (T, H) float32 from zx's dt columns.
    // Grid (segments, ⌈(CD + H) / 256⌉); dynamic shared memory 2·(SCT·256 act + SCT ints).
    template <int KW>
    __device__ __forceinline__ void seg_fwd(int T, int CD, int K, int S, int GN, int H, int E, int xbcOff, int dtOff, int segment,
                                            const act_t* __restrict__ zx, const int* __restrict__ docStart, const float* __restrict__ convW,
                                            const float* __restrict__ convB, act_t* __restrict__ xo, act_t* __restrict__ bo,
                                            act_t* __restrict__ co, float* __restrict__ dt) {
        extern __shared__ __align__(16) unsigned char smem[];
        act_t* tiles = (act_t*)smem;                                   // [2][SCT][256]
        int* dsb = (int*)(tiles + 2 * SCT * 256);                      // [2][SCT]
        const int ch0 = blockIdx.y * 256, ch = ch0 + threadIdx.x;
        const int s0 = blockIdx.x * segment, s1 = min(T, s0 + segment);
        if (s0 >= s1) return;
        const int nc = min(256, CD - ch0);
        seg_dt(s0, s1, ch0, CD, H, E, dtOff, zx, dt, nullptr, nullptr, false);
        if (nc <= 0) return;  // the whole block: a tile of dt columns only
        const act_t* zc = zx + xbcOff + ch0;
        auto pick = [&](int u, int col) -> const void* { return zc + (size_t)u * E + col; };
        const int ntiles = (s1 - s0 + SCT - 1) / SCT;
        float wr[KW], win[KW];
        #pragma unroll
        for (int j = 0; j < KW; j++) {
            wr[j] = ch < CD && j < K ? convW[ch * K + K - 1 - j] : 0.f;
            // in[s0 − 1 − j], the window before the segment (the loop shifts before it reads)
            win[j] = ch < CD && s0 - 1 - j >= 0 ? LD(zc[(size_t)(s0 - 1 - j) * E + threadIdx.x]) : 0.f;
        }
        const float bias = ch < CD && convB ? convB[ch] : 0.f;
        act_t* out = ch < S ? xo + ch : ch < S + GN ? bo + (ch - S) : co + (ch - S - GN);
        const int ld = ch < S ? S : GN;
        seg_stage(tiles, s0, s1, nc, zx, pick);
        if (threadIdx.x < SCT) dsb[threadIdx.x] = s0 + (int)threadIdx.x < s1 ? docStart[s0 + threadIdx.x] : 0;
        cp_commit();
        for (int k = 0; k < ntiles; k++) {
            const int t0 = s0 + k * SCT, nb = (k + 1) & 1;
            if (k + 1 < ntiles) {
                seg_stage(tiles + nb * SCT * 256, t0 + SCT, s1, nc, zx, pick);
                if (threadIdx.x < SCT) dsb[nb * SCT + threadIdx.x] = t0 + SCT + (int)threadIdx.x < s1 ? docStart[t0 + SCT + threadIdx.x] : 0;
            }
            cp_commit();
            cp_wait1();
            const act_t* tile = tiles + (k & 1) * SCT * 256;
            const int* dss = dsb + (k & 1) * SCT;
            const bool plain = __syncthreads_and((int)threadIdx.x >= min(SCT, s1 - t0) || dss[threadIdx.x] <= t0 + (int)threadIdx.x - (K - 1));
            if (ch < CD) {
                if (plain) conv_rows<KW, true>(t0, s1, K, tile, dss, wr, win, bias, out, ld);
                else conv_rows<KW, false>(t0, s1, K, tile, dss, wr, win, bias, out, ld);
            }
            __syncthreads();
        }
    }

    template <int KW, bool PLAIN>
    __device__ __forceinline__ void seg_bwd_rows(int t0, int rows, int T, int s0, int K, const act_t* tin, const act_t* tgo, const int* dss,
                                                 const float* wr, const float* wf, float* win, float* dpw, int* dsw, float* wacc, float& bacc,
                                                 float bias, act_t* __restrict__ dzxc, int E) {
        #pragma unroll
        for (int r = 0; r < SCT; r++) {
            if (r >= rows) break;
            conv_bwd_token<KW, PLAIN>(t0 + r, T, s0, K, LD(tin[r * 256 + threadIdx.x]), LD(tgo[r * 256 + threadIdx.x]), dss[r], wr, wf, win, dpw,
                                     dsw, wacc, bacc, bias, true, dzxc, E);
        }
    }

    // Backward: from the SSD's gradients of x, B, C (T, S / GN act) and dt (T, H float32): dzx's xBC columns
    // (the conv input's gradient) and dt columns, the conv's weight and bias gradients (added once per block).
    // The last K − 1 tokens past the segment are read directly: the inputs they feed belong to this segment.
    // Grid as the forward; dynamic shared memory 2·(2·SCT·256 act + SCT ints).
    template <int KW>
    __device__ __forceinline__ void seg_bwd(int T, int CD, int K, int S, int GN, int H, int E, int xbcOff, int dtOff, int segment,
                                            const act_t* __restrict__ zx, const int* __restrict__ docStart, const float* __restrict__ convW,
                                            const float* __restrict__ convB, const act_t* __restrict__ dxo, const act_t* __restrict__ dbo,
                                            const act_t* __restrict__ dco, const float* __restrict__ ddt, act_t* __restrict__ dzx,
                                            float* __restrict__ dW, float* __restrict__ dBias) {
        extern __shared__ __align__(16) unsigned char smem[];
        act_t* tiles = (act_t*)smem;                                   // [2][2][SCT][256]: inputs, output gradients
        int* dsb = (int*)(tiles + 4 * SCT * 256);                      // [2][SCT]
        const int ch0 = blockIdx.y * 256, ch = ch0 + threadIdx.x;
        const int s0 = blockIdx.x * segment, s1 = min(T, s0 + segment);
        if (s0 >= s1) return;
        const int nc = min(256, CD - ch0);
        seg_dt(s0, s1, ch0, CD, H, E, dtOff, nullptr, nullptr, ddt, dzx, true);
        if (nc <= 0) return;
        const act_t* zc = zx + xbcOff + ch0;
        auto pickIn = [&](int u, int col) -> const void* { return zc + (size_t)u * E + col; };
        auto pickGo = [&](int u, int col) -> const void* {
            const int c = ch0 + col;  // 8 channels never straddle x, B and C (S and GN are multiples of 8)
            return c < S ? dxo + (size_t)u * S + c : c < S + GN ? dbo + (size_t)u * GN + c - S : dco + (size_t)u * GN + c - S - GN;
        };
        auto goAt = [&](int u) -> float {
            return LD(ch < S ? dxo[(size_t)u * S + ch] : ch < S + GN ? dbo[(size_t)u * GN + ch - S] : dco[(size_t)u * GN + ch - S - GN]);
        };
        const int ntiles = (s1 - s0 + SCT - 1) / SCT;
        float wr[KW], wf[KW], win[KW], dpw[KW], wacc[KW];
        int dsw[KW];
        #pragma unroll
        for (int j = 0; j < KW; j++) {
            wr[j] = ch < CD && j < K ? convW[ch * K + K - 1 - j] : 0.f;
            wf[j] = ch < CD && j < K ? convW[ch * K + j] : 0.f;
            win[j] = ch < CD && s0 - 1 - j >= 0 ? LD(zc[(size_t)(s0 - 1 - j) * E + threadIdx.x]) : 0.f;
            dpw[j] = 0.f; wacc[j] = 0.f; dsw[j] = 0x7fffffff;
        }
        const float bias = ch < CD && convB ? convB[ch] : 0.f;
        float bacc = 0.f;
        act_t* dzxc = dzx + xbcOff + ch;
        seg_stage(tiles, s0, s1, nc, zx, pickIn);
        seg_stage(tiles + SCT * 256, s0, s1, nc, zx, pickGo);
        if (threadIdx.x < SCT) dsb[threadIdx.x] = s0 + (int)threadIdx.x < s1 ? docStart[s0 + threadIdx.x] : 0x7fffffff;
        cp_commit();
        bool prevPlain = true;
        for (int k = 0; k < ntiles; k++) {
            const int t0 = s0 + k * SCT, nb = (k + 1) & 1;
            if (k + 1 < ntiles) {
                seg_stage(tiles + nb * 2 * SCT * 256, t0 + SCT, s1, nc, zx, pickIn);
                seg_stage(tiles + (nb * 2 + 1) * SCT * 256, t0 + SCT, s1, nc, zx, pickGo);
                if (threadIdx.x < SCT) dsb[nb * SCT + threadIdx.x] = t0 + SCT + (int)threadIdx.x < s1 ? docStart[t0 + SCT + threadIdx.x] : 0x7fffffff;
            }
            cp_commit();
            cp_wait1();
            const act_t* tin = tiles + (k & 1) * 2 * SCT * 256;
            const act_t* tgo = tin + SCT * 256;
            const int* dss = dsb + (k & 1) * SCT;
            const int rows = min(SCT, s1 - t0);
            const bool deep = __syncthreads_and((int)threadIdx.x >= rows || dss[threadIdx.x] <= t0 + (int)threadIdx.x - (K - 1));
            // the input gradients at this tile's start read dp of the previous tile's last K − 1 tokens too
            const bool plain = deep && prevPlain;
            prevPlain = deep;
            if (ch < CD) {
                if (plain) seg_bwd_rows<KW, true>(t0, rows, T, s0, K, tin, tgo, dss, wr, wf, win, dpw, dsw, wacc, bacc, bias, dzxc, E);
                else seg_bwd_rows<KW, false>(t0, rows, T, s0, K, tin, tgo, dss, wr, wf, win, dpw, dsw, wacc, bacc, bias, dzxc, E);
            }
            __syncthreads();
        }
        if (ch < CD) {
            // the K − 1 tokens past the segment: their dp completes this segment's last input gradients
            for (int u = s1; u < s1 + K - 1; u++) {
                const bool in = u < T;
                conv_bwd_token<KW, false>(u, T, s0, K, in ? LD(zc[(size_t)u * E + threadIdx.x]) : 0.f, in ? goAt(u) : 0.f,
                                         in ? docStart[u] : 0x7fffffff, wr, wf, win, dpw, dsw, wacc, bacc, bias, false, dzxc, E);
            }
            #pragma unroll
            for (int j = 0; j < KW; j++) if (j < K) atomicAdd(dW + ch * K + K - 1 - j, wacc[j]);
            if (dBias) atomicAdd(dBias + ch, bacc);
        }
    }
    #define SEG_FWD_ARGS int T, int CD, int K, int S, int GN, int H, int E, int xbcOff, int dtOff, int segment, \
        const act_t* __restrict__ zx, const int* __restrict__ docStart, const float* __restrict__ convW, const float* __restrict__ convB, \
        act_t* __restrict__ xo, act_t* __restrict__ bo, act_t* __restrict__ co, float* __restrict__ dt
    #define SEG_BWD_ARGS int T, int CD, int K, int S, int GN, int H, int E, int xbcOff, int dtOff, int segment, \
        const act_t* __restrict__ zx, const int* __restrict__ docStart, const float* __restrict__ convW, const float* __restrict__ convB, \
        const act_t* __restrict__ dxo, const act_t* __restrict__ dbo, const act_t* __restrict__ dco, const float* __restrict__ ddt, \
        act_t* __restrict__ dzx, float* __restrict__ dW, float* __restrict__ dBias
    extern "C" __global__ void __launch_bounds__(256) t_conv_seg4(SEG_FWD_ARGS) {
        seg_fwd<4>(T, CD, K, S, GN, H, E, xbcOff, dtOff, segment, zx, docStart, convW, convB, xo, bo, co, dt);
    }
    extern "C" __global__ void __launch_bounds__(256) t_conv_seg8(SEG_FWD_ARGS) {
        seg_fwd<8>(T, CD, K, S, GN, H, E, xbcOff, dtOff, segment, zx, docStart, convW, convB, xo, bo, co, dt);
    }
    extern "C" __global__ void __launch_bounds__(256) t_conv_seg_bwd4(SEG_BWD_ARGS) {
        seg_bwd<4>(T, CD, K, S, GN, H, E, xbcOff, dtOff, segment, zx, docStart, convW, convB, dxo, dbo, dco, ddt, dzx, dW, dBias);
    }
    extern "C" __global__ void __launch_bounds__(256) t_conv_seg_bwd8(SEG_BWD_ARGS) {
        seg_bwd<8>(T, CD, K, S, GN, H, E, xbcOff, dtOff, segment, zx, docStart, convW, convB, dxo, dbo, dco, ddt, dzx, dW, dBias);
    }
    """#
}
