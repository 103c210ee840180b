import Mamba2
extension CUDAKernelSource {
    /// Decode's streaming kernels for bf16 weights and up to 16 rows (appended to the model module; the
    /// plain `m_gemv` path stays for float32 weights, fp16, groups > 1 and unaligned shapes, and as their
    /// reference in the self-test).
    ///
    /// Hand-over: a product's input reaches it already multiplied by its norm's weight, in the activation
    /// type, xh[r][k] = ST(v[k]·w[k]), where v is the un-normalized input (the residual stream for the block
    /// norm and the final norm; y·silu(z), or y with norm_before_gate, for the gated norm), together with the
    /// producer's partial sums of v² in ssq[r][slot], one per producer block in a fixed order. The consumer
    /// scales its dot products by rsqrt(Σ ssq / in + eps) per row: RMSNorm's scale is one number per row
    /// (per group: hence G = 1 only) and commutes with the product. So no product re-reads float32
    /// activations or reduces them in every block (at 16 rows that was 8 MB of L2 reads per block), and
    /// the only change in the arithmetic is where bf16 rounds (before the scale instead of after).
    ///
    /// Per token: m_embed (with the hand-over) → per layer [m_gemv_tc (in_proj, conv step in its epilogue) → m_ssd_step →
    /// m_gemv_tc (out_proj into the residual, handing over to the next norm)] → m_gemv_tc (head).
    static let decodeStream = "\n#define MMA_F16 (ACT == 2)\n" + tensorCoreHelpers + decodeStreamKernels
    static let decodeStreamKernels = #"""
    // The tensor memory accelerator's 1-D bulk copies (sm_90): one thread moves a row segment global →
    // shared, its completion counted in bytes on an mbarrier that the consumers wait on with a phase parity.
    // (Per-thread cp.async of 16 bytes capped the products at about 2.4 TB/s however deep the ring: the
    // requests a multiprocessor tracks ran out before the bytes in flight did.) Compiled for sm_90 and
    // later only: before it, the kernels that use them (the streaming products, the persistent decode) are
    // empty and the host never launches them (`streams(rows:)`, `persistentFits`), and programmatic
    // dependent launch is off.
    __device__ __forceinline__ void ds_mbar_init(unsigned bar) {
    #if SM90
        asm volatile("mbarrier.init.shared::cta.b64 [%0], 1;\n" :: "r"(bar) : "memory");
    #endif
    }
    __device__ __forceinline__ void ds_mbar_expect(unsigned bar, unsigned bytes) {
    #if SM90
        asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;\n" :: "r"(bar), "r"(bytes) : "memory");
    #endif
    }
    __device__ __forceinline__ void ds_bulk(unsigned dst, const void* src, unsigned bytes, unsigned bar) {
    #if SM90
        asm volatile("cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1], %2, [%3];\n"
                     :: "r"(dst), "l"(src), "r"(bytes), "r"(bar) : "memory");
    #endif
    }
    __device__ __forceinline__ void ds_mbar_wait(unsigned bar, unsigned parity) {
    #if SM90
        asm volatile("{\n .reg .pred p;\n DS_WAIT:\n mbarrier.try_wait.parity.shared::cta.b64 p, [%0], %1;\n @!p bra DS_WAIT;\n}\n"
                     :: "r"(bar), "r"(parity) : "memory");
    #endif
    }
    // Programmatic dependent launch with the next kernel let in first: it may then become resident (and
    // stream its weights) while this one waits and runs. Safe whenever it is let in: its own wait still
    // waits for this grid to complete.
    __device__ __forceinline__ void pdl_early() {
    #if SM90
        asm volatile("griddepcontrol.launch_dependents;" :::);
        asm volatile("griddepcontrol.wait;" ::: "memory");
    #endif
    }
    // The decode state's 16-bit form is bfloat16 whatever the activation type (as mamba_ssm keeps it in
    // the model's dtype, bf16 for the released checkpoints): round to nearest even.
    __device__ __forceinline__ float ds_bf(u16 v) { return __uint_as_float((u32)v << 16); }
    __device__ __forceinline__ u16 ds_to_bf(float f) {
        u16 v;
        asm("cvt.rn.bf16.f32 %0, %1;" : "=h"(v) : "f"(f));
        return v;
    }

    // Two values rounded as ds_to_bf, packed (lo in the low half) by one instruction.
    __device__ __forceinline__ u32 ds_to_bf2(float lo, float hi) {
        u32 v;
        asm("cvt.rn.bf16x2.f32 %0, %1, %2;" : "=r"(v) : "f"(hi), "f"(lo));
        return v;
    }

    // dst[i] = bf16(src[i]): prefill's float32 final states into a bf16 decode state.
    extern "C" __global__ void m_to_bf16(size_t n, const float* __restrict__ src, u16* __restrict__ dst) {
        for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) dst[i] = ds_to_bf(src[i]);
    }

    // The warp sums of CPW values a lane (CPW a power of two ≤ 32) by halving exchanges: at distance 16 a lane
    // keeps half its values and adds its partner's share of them, and so on, until each holds one value, then
    // plain exchanges for the distances left. Channel i's total ends in lanes i·32/CPW .. (i + 1)·32/CPW − 1.
    // Each channel's sum is added in warp_sum's tree (pairs 16 apart, then 8, ...; an addition is commutative),
    // so the totals are bit for bit warp_sum's, in CPW − 1 + 5 − log2(CPW) shuffles instead of 5·CPW.
    template <int CPW>
    __device__ __forceinline__ float warp_sums_halving(float (&v)[CPW]) {
        const int lane = threadIdx.x & 31;
        // Constant loop bounds (a level's count of values as a condition), so that both loops unroll and v
        // stays in registers (with the bound h itself, 16 values went to the stack).
        #pragma unroll
        for (int level = 0; (CPW >> level) > 1; level++) {
            const int h = CPW >> (level + 1), m = 16 >> level;
            const bool up = lane & m;
            #pragma unroll
            for (int i = 0; i < CPW / 2; i++) {
                if (i >= h) break;
                const float send = up ? v[i] : v[i + h], keep = up ? v[i + h] : v[i];
                v[i] = keep + __shfl_xor_sync(0xffffffffu, send, m);
            }
        }
        float r = v[0];
        #pragma unroll
        for (int m = 32 / CPW / 2; m >= 1; m >>= 1) r += __shfl_xor_sync(0xffffffffu, r, m);
        return r;
    }
    // Decode's SSD step (every decode path): a block per (CPW·8 channels of a head, row), a warp per CPW
    // channels whose states it loads together (CPW × N/32 values per lane in flight: the step is bound by
    // the bytes a multiprocessor has in flight, so a bf16 state needs as many values in flight as a float32
    // one to go twice as fast), lanes along N:
    //   h ← exp(dt·A)·h + dt·x_p·B,  y_p = h·C + D·x_p,  dt = softplus(dt_raw + dt_bias) clamped to [lo, hi];
    // the state float32 (sh = 0) or bf16 (sh = 1; y from the unrounded h, as mamba_ssm's state update).
    // With y, y (rows, d_ssm) float32 for the gated norm; with xh, the hand-over to the streaming out_proj:
    // v = y·silu(z) (nbg = 0) or y (nbg = 1), xh = ST(v·w·[silu(z) if nbg]), the block's Σ v² into
    // ssq[r][blockIdx.x]. NPL = N/32 when fixed at compile time, else 0 (from N: any N ≤ 256 and any P,
    // lanes past N and channels past P masked).
    // PAIRS: a lane takes N's values two at a time (n = 2·lane + 64·j + {0, 1}: 8-byte float32 or 4-byte
    // bf16 loads and stores, twice the bytes per instruction; NPL even).
    //
    // Where a warp's activations come from: x(i) loads xbc's value i, z(i) zx's, after gate() (which waits
    // until they are likely written; nothing here). SsdSrcPlain reads float32 through L2 (__ldcg: a kernel may
    // read what an earlier one wrote with PDL); the persistent decode's SsdSrcTagged (polls = true) loads
    // tagged words, ready once their writer's tag is there.
    // A poller's pause before its next try (spins: the tries so far): 32, 64, 128, then 256 ns, so that readers
    // waiting on another block do not crowd L2, whose queues are full of weight copies; a writer that never came
    // traps after seconds instead of hanging the process.
    __device__ __forceinline__ void poll_pause(unsigned spins) {
        if (spins > (1u << 24)) asm volatile("trap;");
        __nanosleep(32u << min(spins, 3u));
    }
    struct SsdSrcPlain {
        typedef float word;
        static constexpr bool polls = false;
        __device__ __forceinline__ void gate() const {}
        const float* xr; const float* zr;
        __device__ __forceinline__ word x(int i) const { return __ldcg(xr + i); }
        __device__ __forceinline__ word z(int i) const { return __ldcg(zr + i); }
    };
    // One warp's part: CPW channels p0.. of head h of row r, its activations from `src` (SsdSrcPlain, or the
    // persistent decode's tagged words): returns y of channel p0 + lane in lanes < CPW (with z's value in zc).
    template <int CPW, int NPL, int PAIRS, class Src>
    __device__ __forceinline__ float ssd_step_y(
            const Src& src, int r, int h, int p0, int H, int P, int N, int G, int dSsm, int dtOffset,
            const float* __restrict__ dtBias, const float* __restrict__ A, float lo, float hi,
            const float* __restrict__ D, int dPerChannel, void* __restrict__ state, int sh, bool wantZ, float& zc) {
        constexpr int MAXK = NPL > 0 ? NPL : 8;
        const int lane = threadIdx.x & 31, npl = NPL > 0 ? NPL : (N + 31) / 32;
        const int g = h / (H / G);
        const int bOff = dSsm + g * N, cOff = dSsm + G * N + g * N;
        const size_t base = (((size_t)r * H + h) * P + p0) * N;
        float s[CPW][MAXK];
        auto nof = [&](int k) { return PAIRS ? 2 * lane + (k & 1) + 64 * (k >> 1) : lane + 32 * k; };  // lane's k-th n
        #pragma unroll
        for (int i = 0; i < CPW; i++)
            #pragma unroll
            for (int k = 0; k < MAXK; k++) {
                if (PAIRS) {  // NPL fixed and N = 32·NPL: no masks
                    if (k & 1) continue;
                    const size_t e = base + (size_t)i * N + nof(k);
                    if (sh) { const u32 v = *(const u32*)((const u16*)state + e); s[i][k] = ds_bf(v & 0xffffu); s[i][k + 1] = ds_bf(v >> 16); }
                    else { const float2 v = *(const float2*)((const float*)state + e); s[i][k] = v.x; s[i][k + 1] = v.y; }
                    continue;
                }
                s[i][k] = 0.f;
                if (k < npl && lane + 32 * k < N && p0 + i < P) {
                    const size_t e = base + (size_t)i * N + lane + 32 * k;
                    s[i][k] = sh ? ds_bf(((const u16*)state)[e]) : ((const float*)state)[e];
                }
            }
        // Every other load issued with the state's, before any is used: the step is a chain of round trips
        // otherwise (x per channel inside the loop below cost 2.7b's step 7.3 µs against 4.1).
        float bv[MAXK], cv[MAXK], xin[CPW], zcv = 0.f, dtRaw;
        // The head's dt bias and A and this lane's D loaded with the state, before the gate: loaded after the
        // activations they were one more round trip through L2, which in the persistent decode costs about as
        // much as the activations' own (~2.4 µs at 2.7b under the stream of weight copies).
        const float dtB = dtBias[h], aH = A[h];
        const float dMine = lane < CPW && p0 + lane < P && D ? (dPerChannel ? D[h * P + p0 + lane] : D[h]) : 0.f;
        src.gate();  // the persistent decode: until its inputs are likely there (the state's loads are in flight)
        if constexpr (!Src::polls) {
            #pragma unroll
            for (int k = 0; k < MAXK; k++) {
                const bool ok = k < npl && nof(k) < N;
                bv[k] = ok ? src.x(bOff + nof(k)) : 0.f;
                cv[k] = ok ? src.x(cOff + nof(k)) : 0.f;
            }
            #pragma unroll
            for (int i = 0; i < CPW; i++) {
                const bool ok = p0 + i < P;
                xin[i] = ok ? src.x(h * P + p0 + i) : 0.f;
            }
            zcv = lane < CPW && p0 + lane < P && wantZ ? src.z(h * P + p0 + lane) : 0.f;
            dtRaw = src.z(dtOffset + h);
        } else {
            // Words that poll: lane i < CPW takes channel p0 + i's x (the others by shuffles: 8 words a lane
            // fewer, which the persistent kernel's 168 registers need); words not yet written are issued
            // again, together, until all are.
            typedef typename Src::word W;
            W bw[MAXK], cw[MAXK], xw = src.none(), zw = src.none(), dw = src.none();
            #pragma unroll
            for (int k = 0; k < MAXK; k++) bw[k] = cw[k] = src.none();
            const bool mineP = lane < CPW && p0 + lane < P;
            for (unsigned spins = 0;; spins++) {
                const bool first = spins == 0;
                bool all = true;
                #pragma unroll
                for (int k = 0; k < MAXK; k++) {
                    if (!(k < npl && nof(k) < N)) continue;
                    if (first || !src.ready(bw[k])) bw[k] = src.x(bOff + nof(k));
                    if (first || !src.ready(cw[k])) cw[k] = src.x(cOff + nof(k));
                }
                if (mineP && (first || !src.ready(xw))) xw = src.x(h * P + p0 + lane);
                if (mineP && wantZ && (first || !src.ready(zw))) zw = src.z(h * P + p0 + lane);
                if (first || !src.ready(dw)) dw = src.z(dtOffset + h);
                #pragma unroll
                for (int k = 0; k < MAXK; k++) all = all && src.ready(bw[k]) && src.ready(cw[k]);
                if (all && src.ready(xw) && src.ready(zw) && src.ready(dw)) break;
                poll_pause(spins);  // rarely here: src.gate() waited
            }
            #pragma unroll
            for (int k = 0; k < MAXK; k++) { bv[k] = src.val(bw[k]); cv[k] = src.val(cw[k]); }
            const float xm = src.val(xw);
            #pragma unroll
            for (int i = 0; i < CPW; i++) {
                xin[i] = __shfl_sync(0xffffffffu, xm, i);
            }
            zcv = src.val(zw);
            dtRaw = src.val(dw);
        }
        zc = zcv;
        const float dt = token_dt(dtRaw + dtB, 1, true, lo, hi), decay = expf(dt * aH);
        // Every channel's sum of h·C over N first (acc[i], this lane's share), then all CPW sums reduced over
        // the warp together (warp_sums_halving): a warp_sum per channel made 16 channels a chain of 80 shuffles.
        float acc[CPW];
        #pragma unroll
        for (int i = 0; i < CPW; i++) {
            acc[i] = 0.f;
            if (p0 + i >= P) continue;  // the same for the whole warp
            const float xp = xin[i], dx = dt * xp;
            #pragma unroll
            for (int k = 0; k < MAXK; k++) if (k < npl && nof(k) < N) {
                const float v = decay * s[i][k] + dx * bv[k];
                s[i][k] = v;
                acc[i] += v * cv[k];
                if (PAIRS) {
                    if (!(k & 1)) continue;  // stored with its pair below
                    const size_t e = base + (size_t)i * N + nof(k - 1);
                    if (sh) *(u32*)((u16*)state + e) = ds_to_bf2(s[i][k - 1], v);
                    else *(float2*)((float*)state + e) = make_float2(s[i][k - 1], v);
                    continue;
                }
                const size_t e = base + (size_t)i * N + lane + 32 * k;
                if (sh) ((u16*)state)[e] = ds_to_bf(v); else ((float*)state)[e] = v;
            }
        }
        // Lane i < CPW keeps channel p0 + i's y.
        const float total = __shfl_sync(0xffffffffu, warp_sums_halving<CPW>(acc), lane * (32 / CPW) & 31);
        float mine = 0.f;
        #pragma unroll
        for (int i = 0; i < CPW; i++) if (lane == i) mine = total + dMine * xin[i];
        return mine;
    }
    // ssd_step_y from float32 activations (xbc, zx: rows of convDim and ld values). With y, y (rows, d_ssm)
    // float32 for the gated norm; with xh, the hand-over to the streaming out_proj: v = y·silu(z) (nbg = 0)
    // or y (nbg = 1), xh = ST(v·w·[silu(z) if nbg]). Returns this lane's share of Σ v² (0 without xh).
    template <int CPW, int NPL, int PAIRS>
    __device__ __forceinline__ float ssd_step_warp(
            int r, int h, int p0, int H, int P, int N, int G, int dSsm, int convDim, const float* xbc, const float* zx,
            int ld, int dtOffset, const float* __restrict__ dtBias, const float* __restrict__ A, float lo, float hi,
            const float* __restrict__ D, int dPerChannel, void* __restrict__ state, int sh, float* __restrict__ yOut,
            const float* __restrict__ gateW, int nbg, act_t* __restrict__ xh) {
        const int lane = threadIdx.x & 31;
        const SsdSrcPlain src = {xbc + (size_t)r * convDim, zx + (size_t)r * ld};
        float zc;
        const float mine = ssd_step_y<CPW, NPL, PAIRS>(src, r, h, p0, H, P, N, G, dSsm, dtOffset, dtBias, A, lo, hi, D, dPerChannel,
                                                       state, sh, xh != nullptr, zc);
        const int c = h * P + p0 + lane;
        const bool owner = lane < CPW && p0 + lane < P;
        if (yOut && owner) yOut[(size_t)r * dSsm + c] = mine;
        if (!xh || !owner) return 0.f;
        const float sz = silu(zc);
        const float v = nbg ? mine : mine * sz;
        xh[(size_t)r * dSsm + c] = ST(v * gateW[c] * (nbg ? sz : 1.f));
        return v * v;
    }
    // The same warp's state lines fetched into L2 ahead of the step (the persistent decode issues this at the
    // layer's start: the state does not depend on the phases before the step).
    __device__ __forceinline__ void ssd_state_prefetch(int r, int h, int p0, int cpw, int H, int P, int N, const void* state, int sh) {
        const int lane = threadIdx.x & 31;
        const size_t bytes = (size_t)min(cpw, P - p0) * N * (sh ? 2 : 4);
        const char* base = (const char*)state + (((size_t)r * H + h) * P + p0) * N * (sh ? 2 : 4);
        for (size_t o = (size_t)lane * 128; o < bytes; o += 32 * 128) asm volatile("prefetch.global.L2 [%0];" :: "l"(base + o));
    }
    template <int CPW, int NPL, int PAIRS>
    __device__ __forceinline__ void ssd_step_body(
            int H, int P, int N, int G, int dSsm, int convDim, const float* __restrict__ xbc, const float* __restrict__ zx,
            int ld, int dtOffset, const float* __restrict__ dtBias, const float* __restrict__ A, float lo, float hi,
            const float* __restrict__ D, int dPerChannel, void* __restrict__ state, int sh, float* __restrict__ yOut,
            const float* __restrict__ gateW, int nbg, act_t* __restrict__ xh, float* __restrict__ ssq) {
        __shared__ float red[8];
        const int warps = blockDim.x >> 5, per = (P + warps * CPW - 1) / (warps * CPW), h = blockIdx.x / per, r = blockIdx.y;
        const int warp = threadIdx.x >> 5, p0 = (blockIdx.x % per) * warps * CPW + warp * CPW;
        pdl_early();
        float sq = ssd_step_warp<CPW, NPL, PAIRS>(r, h, p0, H, P, N, G, dSsm, convDim, xbc, zx, ld, dtOffset, dtBias, A, lo, hi, D,
                                                   dPerChannel, state, sh, yOut, gateW, nbg, xh);
        if (!xh) return;
        sq = block_sum(sq, red);
        if (threadIdx.x == 0) ssq[(size_t)r * gridDim.x + blockIdx.x] = sq;
    }
    #define SSD_STEP_ARGS int H, int P, int N, int G, int dSsm, int convDim, const float* __restrict__ xbc, const float* __restrict__ zx, \
            int ld, int dtOffset, const float* __restrict__ dtBias, const float* __restrict__ A, float lo, float hi, \
            const float* __restrict__ D, int dPerChannel, void* __restrict__ state, int sh, float* __restrict__ yOut, \
            const float* __restrict__ gateW, int nbg, act_t* __restrict__ xh, float* __restrict__ ssq
    #define SSD_STEP_PASS H, P, N, G, dSsm, convDim, xbc, zx, ld, dtOffset, dtBias, A, lo, hi, D, dPerChannel, state, sh, yOut, gateW, nbg, xh, ssq
    // Any N up to 256 and any P: 4 channels a warp.
    extern "C" __global__ void __launch_bounds__(256) m_ssd_step(SSD_STEP_ARGS) { ssd_step_body<4, 0, 0>(SSD_STEP_PASS); }
    // The released models' N = 128 with P % 64 == 0: 8 channels a warp, 32 state values per lane in flight,
    // in pairs.
    extern "C" __global__ void __launch_bounds__(256) m_ssd_step_n128(SSD_STEP_ARGS) { ssd_step_body<8, 4, 1>(SSD_STEP_PASS); }

    // Decode's SSD step of a bf16 state at N = 128 and P % 64 == 0 on the per-layer paths (`CUDAModel.ssdStepRing`):
    // the same arithmetic as m_ssd_step_n128 (its reference in the self-test, bit for bit), its work as items
    // (row, head, 64 channels), whose 64 × 128 state values are contiguous. There a block an item makes each
    // multiprocessor a few rounds of load, compute, store, each waiting out the memory's latency (2.7b's 16
    // rows: 18.6–18.8 µs for 21 MB read). Here blocks stay resident and take items in turn: thread 0
    // bulk-copies item j + S's state into a ring of S stages in shared memory while item j is computed, and
    // each item's other inputs (B, C, x, z, dt; L2 hits) are loaded an item ahead (16 rows: 13.5 µs).
    // 4 warps of 16 channels, lanes along N in pairs (n = 2·lane + 64·j + {0, 1}). y into yOut, or the
    // hand-over (xh, and ssq: a slot an item, or with ssqPerWarp a slot a warp, `CUDAModel.ssqSlotsSSM`). A float32 state stays on m_ssd_step_n128
    // (`CUDAModel.ssdStepRing`).
    // Lane i < 16 of a warp holds its channel c0 + i's x and D (the other lanes take x by shuffles as they need it):
    // with all 16 of each in every lane, twice over (this item's and the next's), the kernel took 204 registers a
    // thread and only 2 blocks fitted a multiprocessor (8 warps to hide every wait).
    struct RingSmalls { float bv[4], cv[4], x, d, zc, u; };
    extern "C" __global__ void __launch_bounds__(128, 4) m_ssd_step_ring_bf16(
            int items, int H, int P, int G, int dSsm, int convDim, const float* __restrict__ xbc, const float* __restrict__ zx,
            int ld, int dtOffset, const float* __restrict__ dtBias, const float* __restrict__ A, float lo, float hi,
            const float* __restrict__ D, int dPerChannel, void* __restrict__ state, float* __restrict__ yOut,
            const float* __restrict__ gateW, int nbg, act_t* __restrict__ xh, float* __restrict__ ssq, int S, int ssqPerWarp) {
    #if SM90
        constexpr int N = 128, ITEM = 64 * N * 2;  // an item's state bytes (bf16)
        extern __shared__ __align__(128) unsigned char ring[];  // [S][ITEM]
        __shared__ __align__(8) unsigned long long full[8];
        __shared__ float red[4];
        const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
        const int per = P / 64, slots = H * per;
        const int mine = (items - (int)blockIdx.x + (int)gridDim.x - 1) / (int)gridDim.x;  // items blockIdx.x + j·gridDim.x
        auto itemOf = [&](int j) { return (int)blockIdx.x + j * (int)gridDim.x; };
        auto issue = [&](int j) {  // thread 0: item j's state into stage j % S
            if (j >= mine) return;
            const unsigned bar = smem_addr(&full[j % S]);
            ds_mbar_expect(bar, ITEM);
            ds_bulk(smem_addr(ring + (size_t)(j % S) * ITEM), (const unsigned char*)state + (size_t)itemOf(j) * ITEM, ITEM, bar);
        };
        if (tid == 0) {
            for (int i = 0; i < S; i++) ds_mbar_init(smem_addr(&full[i]));
            asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory");
        }
        // The first copies wait for the previous kernel too: with every kernel letting the next one in early, a
        // chain of them may be resident at once, so nothing here proves this layer's last step has finished
        // writing the state (weights, which nothing writes, are the only reads issued before the wait).
        pdl_early();
        if (tid == 0) for (int j = 0; j < S; j++) issue(j);
        __syncthreads();  // the barriers' initialization seen by all
        auto nof = [&](int k) { return 2 * lane + (k & 1) + 64 * (k >> 1); };
        auto load = [&](int j, RingSmalls& m) {
            const int it = itemOf(j), r = it / slots, slot = it % slots, h = slot / per, c0 = h * P + (slot % per) * 64 + warp * 16;
            const float* xr = xbc + (size_t)r * convDim;
            const float* zr = zx + (size_t)r * ld;
            const int g = h / (H / G);
            #pragma unroll
            for (int k = 0; k < 4; k++) { m.bv[k] = __ldcg(xr + dSsm + g * N + nof(k)); m.cv[k] = __ldcg(xr + dSsm + G * N + g * N + nof(k)); }
            m.x = lane < 16 ? __ldcg(xr + c0 + lane) : 0.f;
            m.d = lane < 16 && D ? (dPerChannel ? D[c0 + lane] : D[h]) : 0.f;
            m.zc = lane < 16 && xh ? __ldcg(zr + c0 + lane) : 0.f;
            m.u = __ldcg(zr + dtOffset + h) + dtBias[h];
        };
        RingSmalls cur, next;
        if (mine > 0) load(0, cur);
        for (int j = 0; j < mine; j++) {
            if (j + 1 < mine) load(j + 1, next);
            const int it = itemOf(j), r = it / slots, slot = it % slots, h = slot / per, c0 = h * P + (slot % per) * 64 + warp * 16;
            const float dt = token_dt(cur.u, 1, true, lo, hi), decay = expf(dt * A[h]);
            ds_mbar_wait(smem_addr(&full[j % S]), (j / S) & 1);
            const unsigned char* st = ring + (size_t)(j % S) * ITEM + (size_t)warp * 16 * N * 2;
            unsigned char* out = (unsigned char*)state + (size_t)it * ITEM + (size_t)warp * 16 * N * 2;
            float acc[16];
            #pragma unroll
            for (int i = 0; i < 16; i++) {
                const float dx = dt * __shfl_sync(0xffffffffu, cur.x, i);
                float sv[4];
                #pragma unroll
                for (int k = 0; k < 4; k += 2) {
                    const size_t e = (size_t)i * N + nof(k);
                    const u32 v = *(const u32*)(st + e * 2);
                    sv[k] = ds_bf(v & 0xffffu); sv[k + 1] = ds_bf(v >> 16);
                }
                acc[i] = 0.f;
                #pragma unroll
                for (int k = 0; k < 4; k++) {
                    const float v = decay * sv[k] + dx * cur.bv[k];
                    sv[k] = v;
                    acc[i] += v * cur.cv[k];
                }
                #pragma unroll
                for (int k = 0; k < 4; k += 2) {
                    const size_t e = (size_t)i * N + nof(k);
                    *(u32*)(out + e * 2) = ds_to_bf2(sv[k], sv[k + 1]);
                }
            }
            const float total = __shfl_sync(0xffffffffu, warp_sums_halving<16>(acc), lane * 2 & 31);
            const float y = lane < 16 ? total + cur.d * cur.x : 0.f;
            if (yOut && lane < 16) yOut[(size_t)r * dSsm + c0 + lane] = y;
            if (xh) {
                float sq = 0.f;
                if (lane < 16) {
                    const float sz = silu(cur.zc), v = nbg ? y : y * sz;
                    xh[(size_t)r * dSsm + c0 + lane] = ST(v * gateW[c0 + lane] * (nbg ? sz : 1.f));
                    sq = v * v;
                }
                if (ssqPerWarp) {  // a partial sum a warp (4 an item): no block sum's two barriers in every item
                    sq = warp_sum(sq);
                    if (lane == 0) ssq[((size_t)r * slots + slot) * 4 + warp] = sq;
                } else {
                    sq = block_sum(sq, red);
                    if (tid == 0) ssq[(size_t)r * slots + slot] = sq;
                }
            }
            __syncthreads();  // every warp is done with stage j % S, which takes item j + S
            if (tid == 0) {
                asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");  // those reads before the copy's writes
                issue(j + S);
            }
            cur = next;
        }
    #endif
    }

    // Decode's matrix products for bf16 weights and up to 16 rows on tensor cores, the weights streamed once:
    //   Y[r][o] (+)= inv[r]·Σ_k W[o][k]·xh[r][k] + bias[o],  inv[r] = rsqrt(Σ_slots ssq[r] / in + eps).
    // A block per SM owns a balanced range of W's rows (all rows of the batch, so a weight is read once)
    // and streams it in stages of 16 rows × 256 columns (8 KB) through a ring of S stages in shared memory
    // (bulk copies, a row segment each). The first S − 1 stages are requested before waiting for the previous kernel: weights do not
    // depend on it, so memory stays busy across the kernel boundary and while xh is staged. In a stage each
    // warp multiplies its 32 columns with two m16n8k16 products per 8 batch rows (weights as A, xh as B);
    // a thread takes its A and B values as 16 contiguous bytes (columns 8c..8c+7 for its chunk c): the
    // product sums over k in any order, so the fragments' k order only has to agree between A and B.
    // Stage rows lie 576 bytes apart, so that a quarter-warp's loads (two rows, 64 bytes each) hit distinct banks.
    // At a tile's end the 8 warps' partial sums meet in shared memory and one thread per (output, row) adds
    // them in order, applies inv, bias, the residual (accumulate), the conv step (outputs that are conv
    // inputs, as m_conv_step), and with nextW hands the result on to the next norm: xhOut = ST(Y·nextW) and
    // the tile's Σ Y² into ssqOut[r][blockIdx.x·tilesPerBlock + tile] (a block's unused slots get 0).
    template <int S>
    __device__ __forceinline__ void gemv_tc_body(
            int nr, int in, int out, const act_t* __restrict__ xh, const float* __restrict__ ssq, int nslots, float eps,
            const act_t* __restrict__ W, const float* __restrict__ bias, float* __restrict__ Y, int ldy, int accumulate,
            int convOffset, int convDim, int dConv, const float* __restrict__ convW, const float* __restrict__ convB,
            float* __restrict__ convState, float* __restrict__ xbc, const float* __restrict__ nextW, act_t* __restrict__ xhOut,
            float* __restrict__ ssqOut, int tilesPerBlock, int KS) {
    #if ACT != 0 && SM90
        const int ROW = KS * 2 + 64;  // a stage row's bytes in shared memory: 64 bytes of padding spread the banks
        extern __shared__ __align__(128) unsigned char ds_smem_buf[];
        unsigned char* ring = ds_smem_buf;                           // [S][16][ROW bytes]
        act_t* xs = (act_t*)(ds_smem_buf + S * 16 * ROW);            // [nr][in + 32]
        __shared__ float red[8][16][17];                             // [warp][output][row]
        __shared__ float inv[16], ssp[8][16];
        __shared__ __align__(8) unsigned long long bars[S];          // a stage landed (one per ring slot)
        const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5, g = lane >> 2, t = lane & 3;
        const int ldx = in + 32;
        const int o0 = (int)((long long)out * blockIdx.x / gridDim.x), o1 = (int)((long long)out * (blockIdx.x + 1) / gridDim.x);
        const int ntile = (o1 - o0 + 15) / 16, nks = in / KS, nstage = ntile * nks;
        // Lanes 0..15 of warp 0 request stage q, a row each, of its tile's rows that exist (rows past o1 are
        // not copied: their outputs are not kept, and a row of A reaches only its own outputs). The
        // barrier's byte count may see a copy land before lane 0 expects it: it counts below zero until then.
        auto issue = [&](int q) {
            if (tid >= 16 || q >= nstage) return;
            const int tile = q / nks, ks = q - tile * nks, rows = min(16, o1 - o0 - tile * 16);
            const unsigned bar = smem_addr(&bars[q % S]), dst = smem_addr(ring + (q % S) * 16 * ROW);
            if (tid == 0) ds_mbar_expect(bar, rows * KS * 2);
            if (tid < rows) ds_bulk(dst + tid * ROW, W + (size_t)(o0 + tile * 16 + tid) * in + ks * KS, KS * 2, bar);
        };
        if (tid == 0) {
            for (int i = 0; i < S; i++) ds_mbar_init(smem_addr(&bars[i]));
            asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory");
        }
        for (int q = 0; q < S - 1; q++) issue(q);
        pdl_wait();
        // xh (nr rows of `in`) into shared memory, 8 loads of 16 bytes in flight per thread.
        const int cpr = in / 8, nch = nr * cpr;
        for (int b0 = tid; b0 < nch; b0 += 256 * 8) {
            uint4 v[8];
            #pragma unroll
            for (int k = 0; k < 8; k++) { const int c = b0 + 256 * k; if (c < nch) v[k] = __ldcg((const uint4*)(xh + (size_t)(c / cpr) * in) + c % cpr); }
            #pragma unroll
            for (int k = 0; k < 8; k++) { const int c = b0 + 256 * k; if (c < nch) *(uint4*)(xs + (c / cpr) * ldx + (c % cpr) * 8) = v[k]; }
        }
        for (int b = warp; b < nr; b += 8) {  // each row's scale, its partial sums added in a fixed order
            float s = 0.f;
            for (int i = lane; i < nslots; i += 32) s += __ldcg(ssq + (size_t)b * nslots + i);
            s = warp_sum(s);
            if (lane == 0) inv[b] = rsqrtf(s / in + eps);
        }
        __syncthreads();  // xs, inv and the barriers' initialization seen by all
        const int NT = nr > 8 ? 2 : 1;
        const int ch = warp * 4 + t;  // this thread's 16-byte chunk of a stage row
        float acc[2][4] = {{0.f, 0.f, 0.f, 0.f}, {0.f, 0.f, 0.f, 0.f}};
        for (int q = 0; q < nstage; q++) {
            ds_mbar_wait(smem_addr(&bars[q % S]), (q / S) & 1);  // stage q has landed
            __syncthreads();  // and every thread is done with stage q − 1, whose slot takes q + S − 1
            if (tid < 16) asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");  // those reads before the copy's writes
            issue(q + S - 1);
            const int tile = q / nks, ks = q - tile * nks;
            const unsigned char* slot = ring + (q % S) * 16 * ROW;
            for (int c0 = 0; c0 < KS / 8; c0 += 32) {  // 256 columns at a time: 32 per warp
                const uint4 lo = *(const uint4*)(slot + g * ROW + (c0 + ch) * 16);
                const uint4 hi = *(const uint4*)(slot + (g + 8) * ROW + (c0 + ch) * 16);
                const u32 a1[4] = {lo.x, hi.x, lo.y, hi.y}, a2[4] = {lo.z, hi.z, lo.w, hi.w};
                #pragma unroll
                for (int j = 0; j < 2; j++) {
                    if (j < NT) {
                        const int n = j * 8 + g;
                        const uint4 bv = n < nr ? *(const uint4*)(xs + n * ldx + ks * KS + (c0 + ch) * 8) : make_uint4(0, 0, 0, 0);
                        const u32 b1[2] = {bv.x, bv.y}, b2[2] = {bv.z, bv.w};
                        mma16816(acc[j], a1, b1);
                        mma16816(acc[j], a2, b2);
                    }
                }
            }
            if (ks == nks - 1) {  // the tile's end: the warps' sums meet
                #pragma unroll
                for (int j = 0; j < 2; j++) {
                    if (j < NT) {
                        red[warp][g][j * 8 + 2 * t] = acc[j][0]; red[warp][g][j * 8 + 2 * t + 1] = acc[j][1];
                        red[warp][g + 8][j * 8 + 2 * t] = acc[j][2]; red[warp][g + 8][j * 8 + 2 * t + 1] = acc[j][3];
                    }
                    acc[j][0] = acc[j][1] = acc[j][2] = acc[j][3] = 0.f;
                }
                __syncthreads();
                const int ol = tid >> 4, b = tid & 15, o = o0 + tile * 16 + ol;
                float sq = 0.f;
                if (b < nr && o < o1) {
                    float s = 0.f;
                    #pragma unroll
                    for (int w = 0; w < 8; w++) s += red[w][ol][b];
                    float* dst = Y + (size_t)b * ldy + o;
                    const float val = (accumulate ? __ldcg(dst) : 0.f) + s * inv[b] + (bias ? bias[o] : 0.f);
                    *dst = val;
                    const int c = o - convOffset;
                    if (convState && c >= 0 && c < convDim) conv_step_channel(b, c, val, convDim, dConv, convW, convB, convState, xbc);
                    if (nextW) { xhOut[(size_t)b * out + o] = ST(val * nextW[o]); sq = val * val; }
                }
                if (nextW) {
                    sq += __shfl_xor_sync(0xffffffffu, sq, 16);  // lanes l and l ^ 16 hold the same row
                    if (lane < 16) ssp[warp][lane] = sq;
                    __syncthreads();
                    if (tid < nr) {
                        float s = 0.f;
                        for (int w = 0; w < 8; w++) s += ssp[w][tid];
                        ssqOut[(size_t)tid * gridDim.x * tilesPerBlock + blockIdx.x * tilesPerBlock + tile] = s;
                    }
                }
            }
        }
        if (nextW && tid < nr)
            for (int j = ntile; j < tilesPerBlock; j++) ssqOut[(size_t)tid * gridDim.x * tilesPerBlock + blockIdx.x * tilesPerBlock + j] = 0.f;
    #endif
    }
    #define DS_GEMV_ARGS int nr, int in, int out, const act_t* __restrict__ xh, const float* __restrict__ ssq, int nslots, float eps, \
            const act_t* __restrict__ W, const float* __restrict__ bias, float* __restrict__ Y, int ldy, int accumulate, int convOffset, \
            int convDim, int dConv, const float* __restrict__ convW, const float* __restrict__ convB, float* __restrict__ convState, \
            float* __restrict__ xbc, const float* __restrict__ nextW, act_t* __restrict__ xhOut, float* __restrict__ ssqOut, int tilesPerBlock, int KS
    #define DS_GEMV_PASS nr, in, out, xh, ssq, nslots, eps, W, bias, Y, ldy, accumulate, convOffset, convDim, dConv, convW, convB, convState, \
            xbc, nextW, xhOut, ssqOut, tilesPerBlock, KS
    // Ring depths: the deepest that fits beside the staged rows is launched.
    extern "C" __global__ void __launch_bounds__(256, 1) m_gemv_tc2(DS_GEMV_ARGS) { gemv_tc_body<2>(DS_GEMV_PASS); }
    extern "C" __global__ void __launch_bounds__(256, 1) m_gemv_tc3(DS_GEMV_ARGS) { gemv_tc_body<3>(DS_GEMV_PASS); }
    extern "C" __global__ void __launch_bounds__(256, 1) m_gemv_tc4(DS_GEMV_ARGS) { gemv_tc_body<4>(DS_GEMV_PASS); }
    extern "C" __global__ void __launch_bounds__(256, 1) m_gemv_tc6(DS_GEMV_ARGS) { gemv_tc_body<6>(DS_GEMV_PASS); }

    """#
}
