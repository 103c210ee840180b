import Mamba2
extension CUDAKernelSource {
    /// The SSD forward on Hopper's warp-group products (sm_90a): `ssd_wg_chain`, the chunk states with the state
    /// passing fused into them (the state carried from chunk to chunk in the tensor cores' accumulators), then
    /// `ssd_wg_scan`, ssd_tc_scan's work on `wgmma`; where one long row's chunks are split into ranges to fill the
    /// card, `ssd_range_states` (or `ssd_segment_passing`) hands each range its incoming state. Results as the mma
    /// three kernels' (ssdTensorCore's steps 1–3, their reference in the self-test) but for the order of float32 sums
    /// and one 16-bit rounding fewer (the chunks' own states are never stored). Compiled in the tensor-core module
    /// after `ssdTensorCore`, whose helpers they share (dt and the weights, M's fragments, the output's epilogue); on
    /// other architectures the wgmma kernels' bodies are empty and the host never launches them.
    ///
    /// Why: the warp kernels are bound by issue and latency (`results/gpu-ssd-ncu-stalls.txt`): every warp loads its
    /// operands' fragments with `ldmatrix` and issues an `mma` per 16×8×16, and the scan's 8 warps meet at two block
    /// barriers per head, each building M's fragments for half of Y's columns (so every fragment is built twice). Here
    /// a block's warp groups (4 in the scan) take their heads in turn and never wait for each other after the chunk's
    /// C·Bᵀ: each group's `wgmma` reads C, B, X and h_in straight from shared memory, one instruction per 64×64×16
    /// (64×N×16 for the states), asynchronously, each fragment of M is built once, and each group copies its heads'
    /// inputs with `cp.async` (the scan: one stage a group, while the other groups compute; the chain: two stages).
    /// And the three-kernel design made two more passes over chunk states as large as x (N = 128): the states kernel
    /// wrote each chunk's own state, the passing read it back and wrote the incoming states; the chain writes only
    /// the incoming states (results/gpu-ssd-chain.txt).
    ///
    /// Shared memory in wgmma's 128-byte-swizzled layout (rows of 64 16-bit values at a 128-byte stride, the 16-byte
    /// piece j of row r at piece j ^ (r % 8); wider rows split into regions of 64 columns), checked against the CPU by
    /// `benchmarks/probes/wgmma_layout_probe.cu`: C and B as [N/64][QC][64] (K-major for C·Bᵀ and C·h_inᵀ, MN-major
    /// for (w∘X)ᵀ·B), X as [QC][64] (read transposed: MN-major), h_in as [N/64][PH][64]. C·Bᵀ stays in the padded
    /// row-major layout of the warp scan, since M's fragments are built from it in registers.
    ///
    /// The scan, per block (a chunk of a row, `hb` heads of a group):
    ///   1. C·Bᵀ once: its three 64×64 blocks on and below the diagonal, one a group (right of those is never read);
    ///   2. per head of group w: its factors from the staged cum and dt; then for the top rows (0–63), then the bottom
    ///      rows (64–127), all 64 columns: C·h_inᵀ (N/16 products), each row scaled by e^{cum_t};
    ///   3. + M·X: each warp builds its 16 rows' fragments of M (left of its diagonal tile, the diagonal, zeros right
    ///      of it) while C·h_inᵀ runs, and the group multiplies them, from registers, by X;
    ///   4. D·x, the gate where there is one, the 16-bit output (`unit_store_y`, whose ungated path the model's forward
    ///      takes); the stage then takes the group's next head.
    ///   With ranges (ssd_wg_chain's plan), h_in of a chunk past its row's first range is local to its range; the
    ///   scan adds α_c·H_k (ssd_range_states) to the staged h_in before step 2.
    static let ssdHopper = #"""
    #if NS % 64 == 0
    #if defined(__CUDA_ARCH_FEAT_SM90_ALL)
    #if ELEM_F16
    #define WG_TYPE "f16"
    #else
    #define WG_TYPE "bf16"
    #endif
    // WG_SHARED(raw): the block's dynamic shared memory from its first 1,024-byte boundary (the swizzle's), `sm`, and
    // `sa(p)`, the shared-memory address of a pointer into it (descriptors, cp.async destinations). At N = 64 that is an
    // offset from one conversion of the block's base; at N = 128 each pointer is converted (cvta.to.shared) where it is
    // used. Measured both ways on the H200 (same binary, two rounds, results/gpu-ssd-stores.txt): offsets made the N = 64
    // scan 3 % faster and the N = 128 one 2 % slower (a register more live through a kernel already at its 128), the
    // state kernel the same either way. A macro, not a function: a function compiled to other code than was measured.
    #if NS == 64
    #define WG_SHARED(raw) \
        unsigned char* sm = raw + ((1024u - (smem_addr(raw) & 1023u)) & 1023u); \
        const unsigned smS = smem_addr(sm); \
        auto sa = [&](const void* p) { return smS + (unsigned)((const unsigned char*)p - sm); };
    #else
    #define WG_SHARED(raw) \
        unsigned char* sm = raw + ((1024u - (smem_addr(raw) & 1023u)) & 1023u); \
        auto sa = [&](const void* p) { return smem_addr(p); };
    #endif
    // Byte offset of 16-byte piece `piece` (8 values) of row r in a 128-byte-swizzled region.
    __device__ __forceinline__ int sw128(int r, int piece) { return r * 128 + ((piece ^ (r & 7)) << 4); }
    // A shared-memory matrix descriptor, 128-byte swizzle. K-major operands: sbo = 1024 (the next 8 rows), lbo unused;
    // MN-major: lbo = the next 64 columns' region, sbo = 1024 (the next 8 rows of K).
    __device__ __forceinline__ unsigned long long wg_desc(unsigned s, unsigned lbo, unsigned sbo) {
        return (unsigned long long)((s & 0x3FFFF) >> 4) | ((unsigned long long)(lbo >> 4) << 16)
             | ((unsigned long long)(sbo >> 4) << 32) | (1ull << 62);
    }
    __device__ __forceinline__ void wg_fence() { asm volatile("wgmma.fence.sync.aligned;" ::: "memory"); }
    __device__ __forceinline__ void wg_commit() { asm volatile("wgmma.commit_group.sync.aligned;" ::: "memory"); }
    __device__ __forceinline__ void wg_wait0() { asm volatile("wgmma.wait_group.sync.aligned 0;" ::: "memory"); }
    // Generic-proxy stores to shared memory made visible to the tensor cores' reads (each writing thread, before the barrier).
    __device__ __forceinline__ void fence_async_smem() { asm volatile("fence.proxy.async.shared::cta;" ::: "memory"); }

    #define WG_ACC16(d) "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), \
        "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15])
    #define WG_R32 "{%0,%1,%2,%3,%4,%5,%6,%7,%8,%9,%10,%11,%12,%13,%14,%15,%16,%17,%18,%19,%20,%21,%22,%23,%24,%25,%26,%27,%28,%29,%30,%31}"
    // d (64×64) += A·B, A from registers, B MN-major in shared memory.
    __device__ __forceinline__ void wg_mma_n64_rs(float* d, const u32* a, unsigned long long b) {
        asm volatile("wgmma.mma_async.sync.aligned.m64n64k16.f32." WG_TYPE "." WG_TYPE " " WG_R32 ", {%32,%33,%34,%35}, %36, 1, 1, 1, 1;"
                     : WG_ACC16(d), WG_ACC16((d + 16)) : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(b));
    }
    // d (64×NS) += Aᵀ·B: A and B MN-major in shared memory (the chunk state's (w∘X)ᵀ·B; B's 64-column regions
    // QC·128 bytes apart).
    __device__ __forceinline__ void wg_mma_state(float* d, unsigned long long a, unsigned long long b) {
    #if NS == 128
        asm volatile("wgmma.mma_async.sync.aligned.m64n128k16.f32." WG_TYPE "." WG_TYPE " "
                     "{%0,%1,%2,%3,%4,%5,%6,%7,%8,%9,%10,%11,%12,%13,%14,%15,%16,%17,%18,%19,%20,%21,%22,%23,%24,%25,%26,%27,%28,%29,%30,%31,"
                     "%32,%33,%34,%35,%36,%37,%38,%39,%40,%41,%42,%43,%44,%45,%46,%47,%48,%49,%50,%51,%52,%53,%54,%55,%56,%57,%58,%59,%60,%61,%62,%63},"
                     " %64, %65, 1, 1, 1, 1, 1;"
                     : WG_ACC16(d), WG_ACC16((d + 16)), WG_ACC16((d + 32)), WG_ACC16((d + 48)) : "l"(a), "l"(b));
    #else
        asm volatile("wgmma.mma_async.sync.aligned.m64n64k16.f32." WG_TYPE "." WG_TYPE " " WG_R32 ", %32, %33, 1, 1, 1, 1, 1;"
                     : WG_ACC16(d), WG_ACC16((d + 16)) : "l"(a), "l"(b));
    #endif
    }
    // d (64×64) += A·B, both K-major in shared memory.
    __device__ __forceinline__ void wg_mma_n64_ss(float* d, unsigned long long a, unsigned long long b) {
        asm volatile("wgmma.mma_async.sync.aligned.m64n64k16.f32." WG_TYPE "." WG_TYPE " " WG_R32 ", %32, %33, 1, 1, 1, 0, 0;"
                     : WG_ACC16(d), WG_ACC16((d + 16)) : "l"(a), "l"(b));
    }

    // M's fragment of k-tile ks for a warp whose rows are in tile `diag` (0-based, 16 rows a tile).
    __device__ __forceinline__ void m_fragment_at(u32* af, int ks, int diag, const u16* CBs, const float* cumS, const float* dtS,
                                                  const float* wS, const float* vS, const FragRows& r, bool packed, int lane) {
        if (ks < diag) m_fragment_left(af, CBs, cumS, wS, r, packed, ks * 16, lane);
        else if (ks == diag) m_fragment_diagonal(af, CBs, cumS, dtS, vS, r, packed, ks * 16, lane);
        else af[0] = af[1] = af[2] = af[3] = 0u;
    }


    // cp.async of 16 bytes, zero-filled past `bytes` (0 or 16), and of 4 bytes.
    __device__ __forceinline__ void cp16(unsigned dst, const void* src, int bytes) {
        asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;" :: "r"(dst), "l"(src), "r"(bytes) : "memory");
    }
    __device__ __forceinline__ void cp4(unsigned dst, const void* src) {
        asm volatile("cp.async.ca.shared.global [%0], [%1], 4;" :: "r"(dst), "l"(src) : "memory");
    }
    __device__ __forceinline__ void cp_commit() { asm volatile("cp.async.commit_group;" ::: "memory"); }
    template <int N> __device__ __forceinline__ void cp_wait() { asm volatile("cp.async.wait_group %0;" :: "n"(N) : "memory"); }
    // v + a·h for 8 16-bit values each, a (both halves) rounded to the 16-bit type: one packed fma a pair, its sum
    // rounded once. (A float32 form, unpacking and packing, took the same time: the scan's cost for the ranges'
    // hand-over is the latency of H_k's loads, not this arithmetic; results/gpu-ssd-chain.txt, run 2.)
    __device__ __forceinline__ uint4 axpy8(uint4 v, u32 a2, uint4 h) {
        uint4 o;
    #if ELEM_F16
        #define AXPY_FMA "fma.rn.f16x2 %0, %1, %2, %3;"
    #else
        #define AXPY_FMA "fma.rn.bf16x2 %0, %1, %2, %3;"
    #endif
        asm(AXPY_FMA : "=r"(o.x) : "r"(a2), "r"(h.x), "r"(v.x));
        asm(AXPY_FMA : "=r"(o.y) : "r"(a2), "r"(h.y), "r"(v.y));
        asm(AXPY_FMA : "=r"(o.z) : "r"(a2), "r"(h.z), "r"(v.z));
        asm(AXPY_FMA : "=r"(o.w) : "r"(a2), "r"(h.w), "r"(v.w));
        #undef AXPY_FMA
        return o;
    }
    // The 128 threads of warp group wg meet (named barrier 1 + wg; 0 is __syncthreads').
    __device__ __forceinline__ void wg_sync(int wg) { asm volatile("bar.sync %0, 128;" :: "r"(1 + wg) : "memory"); }

    // A head's X of the chunk (rows from row offset rl) into [QC][64] swizzled, rows past the row's end q zero-filled,
    // by a warp group's 128 threads (wt). Thread wt copies piece wt % 8 (16 bytes) of rows wt / 8 + 16i: one source
    // address stepped by 16 rows and one destination stepped by 16 rows of 128 bytes (the swizzle depends on the row
    // mod 8, the same for all of them). Recomputing both from (row, piece) each time took ~190 of the scan's 2,090
    // instructions a warp a head (ncu, N = 64).
    __device__ __forceinline__ void wg_fetch_x(unsigned xs, const u16* __restrict__ x, size_t rl, int H, int h, int q, int wt) {
        const int t0 = wt >> 3, piece = wt & 7;
        const u16* src = x + ((rl + t0) * H + h) * PH + piece * 8;
        const size_t step = (size_t)16 * H * PH;
        const unsigned dst = xs + sw128(t0, piece);
        #pragma unroll
        for (int i = 0; i < QC / 16; i++) {
            const bool in = t0 + 16 * i < q;
            cp16(dst + i * 16 * 128, in ? src + i * step : x, in ? 16 : 0);
        }
    }

    // Whether a ranged chunk's H_k is copied into the stage with h_in, so that its latency is the stage's: at N = 64,
    // where there is room (the scan 2-3 % faster at 16,384 and 65,536 tokens a row on the H200, results/gpu-ssd-chain.txt
    // E); at N = 128 the scan loads H_k once the stage has landed.
    #define WG_STAGE_HK (NS == 64)
    // A warp group's stage: X [QC][64] and h_in [NS/64][PH][64] swizzled, then cum and dt of the head's chunk, then
    // (WG_STAGE_HK) H_k [PH·NS] as it lies in memory.
    #define WG_STAGE (QC * 128 + PH * NS * 2 + 2 * QC * 4 + (WG_STAGE_HK ? PH * NS * 2 : 0))
    // One head's inputs into a stage, by the group's 128 threads (wt): X (rows past the row's end q zero-filled),
    // h_in, cum and dt of its q tokens, and where WG_STAGE_HK and hk (a ranged chunk's H_k) is given, H_k.
    __device__ __forceinline__ void wg_fetch_head(unsigned stage, const u16* __restrict__ x, const u16* __restrict__ statesIn,
                                                  const float* __restrict__ cumOut, const float* __restrict__ dtOut, int L, int H,
                                                  int nchunks, int r, int c, int t0, int q, int h, int wt, const u16* __restrict__ hk) {
        wg_fetch_x(stage, x, (size_t)r * L + t0, H, h, q, wt);
        const u16* hin = statesIn + (((size_t)r * H + h) * nchunks + c) * PH * NS;
        const unsigned hs = stage + QC * 128;
        #pragma unroll
        for (int k = 0; k < PH * NS / 8 / 128; k++) {
            const int e = wt + 128 * k, p = e * 8 / NS, n = e * 8 % NS;
            cp16(hs + (n >> 6) * PH * 128 + sw128(p, (n & 63) >> 3), hin + e * 8, 16);
        }
        const unsigned cs = hs + PH * NS * 2;
        const size_t f = ((size_t)r * H + h) * L + t0;
        if (wt < q) { cp4(cs + wt * 4, cumOut + f + wt); cp4(cs + (QC + wt) * 4, dtOut + f + wt); }
    #if WG_STAGE_HK
        if (hk) for (int e = wt; e < PH * NS / 8; e += 128) cp16(cs + 2 * QC * 4 + e * 16, hk + e * 8, 16);
    #endif
        cp_commit();
    }
    #endif

    // The scan's warp groups a block (CUDAKernelSource.hopperScanGroups), each with one stage: 4 groups give the 16
    // warps a multiprocessor its latency needs (ncu of a form with 2 groups of two stages each: 8 warps, each issuing
    // every 5.9 cycles, 0.47 ms against the warp scan's 0.41), and leave room for one stage a group.
    #define WG_GROUPS \#(hopperScanGroups)
    // Bytes of dynamic shared memory (CUDAKernelSource.hopperScanShared): C·Bᵀ, C, the groups' stages (B's room,
    // until C·Bᵀ is made, is the last group's stage), each group's per-token factors, the sequence starts, and 1 KB to
    // align the start to the swizzle's 1024 bytes.
    #define WG_CB_BYTES (QC * LDQ * 2)

    extern "C" __global__ void __launch_bounds__(128 * WG_GROUPS, 1) ssd_wg_scan(
            int L, int H, int G, int nchunks, int hb, const u16* __restrict__ x, const u16* __restrict__ z,
            const u16* __restrict__ B, const u16* __restrict__ C, const float* __restrict__ D, int dPerChannel,
            const float* __restrict__ dtOut, const float* __restrict__ cumOut, const u16* __restrict__ statesIn,
            const int* __restrict__ seqStart, u16* __restrict__ y, u16* __restrict__ yPre, int rangeLength, int ranges,
            const u16* __restrict__ rangeStates, const float* __restrict__ alpha) {
    #if defined(__CUDA_ARCH_FEAT_SM90_ALL)
        constexpr int NTHREADS = 128 * WG_GROUPS;
        const int hpg = H / G, nhb = hpg / hb;
        const int c = blockIdx.x, r = blockIdx.y, g = blockIdx.z / nhb, h0 = g * hpg + (blockIdx.z % nhb) * hb;
        const int t0 = c * QC, q = min(QC, L - t0);
        const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5, wg = warp >> 2, wi = warp & 3, wt = tid & 127;
        const bool packed = seqStart != nullptr;
        extern __shared__ __align__(16) unsigned char smemRaw[];
        WG_SHARED(smemRaw)
        u16* CBs = (u16*)sm;                                  // [QC][LDQ]: C·Bᵀ in the 16-bit type
        unsigned char* Cw = sm + WG_CB_BYTES;                 // [NS/64][QC][64] swizzled: C
        unsigned char* stages = Cw + QC * NS * 2;             // [groups][WG_STAGE]
        unsigned char* stage = stages + wg * WG_STAGE;        // this group's: X, h_in, cum and dt of its head
        unsigned char* Bw = stages + (WG_GROUPS - 1) * WG_STAGE;  // B ([NS/64][QC][64] swizzled) in the last group's stage, until C·Bᵀ is made
        float* fac = (float*)(stages + WG_GROUPS * WG_STAGE) + wg * 6 * QC;  // this group's per-token factors, as ssd_tc_scan's
        float* cumS = fac;
        float* dtS = fac + QC;
        float* wS = fac + 2 * QC;
        float* vS = fac + 3 * QC;
        float* eS = fac + 4 * QC;
        int* stS = (int*)(stages + WG_GROUPS * WG_STAGE) + WG_GROUPS * 6 * QC;  // [QC] shared by the groups
        const size_t rl = (size_t)r * L + t0;
        // Group wg takes heads h0 + wg, h0 + wg + WG_GROUPS, …; the first into its stage now (the last group's once
        // B has left it).
        const int nh = (hb - wg + WG_GROUPS - 1) / WG_GROUPS;
        const bool holdsB = wg == WG_GROUPS - 1;
        auto head = [&](int i) { return h0 + wg + WG_GROUPS * i; };
        // Where ssd_wg_chain left h_in local to the chunk's range k > 0 (rangeLength > 0): the range's incoming state
        // H_k, added to the staged h_in as α_c·H_k; with WG_STAGE_HK H_k comes with the stage, and α_c is loaded then.
        const bool ranged = rangeLength > 0 && c >= rangeLength;
        auto rangeState = [&](int h) { return rangeStates + (((size_t)r * H + h) * ranges + c / rangeLength) * PH * NS; };
        float alNext = 0.f;
        auto fetch = [&](int i) {
            wg_fetch_head(sa(stage), x, statesIn, cumOut, dtOut, L, H, nchunks, r, c, t0, q, head(i), wt,
                          WG_STAGE_HK && ranged ? rangeState(head(i)) : nullptr);
            if (WG_STAGE_HK && ranged) alNext = alpha[((size_t)r * H + head(i)) * nchunks + c];
        };
        if (nh > 0 && !holdsB) fetch(0);
        for (int e = tid; e < QC * NS / 8; e += NTHREADS) {
            const int t = e / (NS / 8), n8 = e % (NS / 8);
            uint4 cv = make_uint4(0, 0, 0, 0), bv = cv;
            if (t < q) {
                const size_t i = ((rl + t) * G + g) * NS + n8 * 8;
                cv = *(const uint4*)(C + i);
                bv = *(const uint4*)(B + i);
            }
            const int off = (n8 >> 3) * QC * 128 + sw128(t, n8 & 7);
            *(uint4*)(Cw + off) = cv;
            *(uint4*)(Bw + off) = bv;
        }
        const int st = packed && wt < q ? seqStart[rl + wt] : 0;
        if (tid < QC) stS[tid] = st - t0;
        fence_async_smem();
        __syncthreads();
        // 1. C·Bᵀ: its three 64×64 blocks on and below the diagonal (rows m, columns j ≤ m; right of those is never
        //    read), one a group.
        for (int task = wg; task < 3; task += WG_GROUPS) {
            const int m = task == 0 ? 0 : 1, j = task == 2 ? 1 : 0;
            float acc[32];
            for (int i = 0; i < 32; i++) acc[i] = 0.f;
            wg_fence();
            for (int k = 0; k < NS / 16; k++) {
                const int kr = (k >> 2) * QC * 128 + (k & 3) * 32;
                wg_mma_n64_ss(acc, wg_desc(sa(Cw + kr + m * 64 * 128), 16, 1024), wg_desc(sa(Bw + kr + j * 64 * 128), 16, 1024));
            }
            wg_commit();
            wg_wait0();
            const int t = m * 64 + wi * 16 + (lane >> 2);
            for (int jj = 0; jj < 8; jj++) {
                const int s = j * 64 + jj * 8 + (lane & 3) * 2;
                *(u32*)(CBs + t * LDQ + s) = pack2(acc[4 * jj], acc[4 * jj + 1]);
                *(u32*)(CBs + (t + 8) * LDQ + s) = pack2(acc[4 * jj + 2], acc[4 * jj + 3]);
            }
        }
        __syncthreads();  // C·Bᵀ is complete, and B's room free
        if (nh > 0 && holdsB) fetch(0);
        for (int i = 0; i < nh; i++) {
            const int h = head(i);
            const float dHead = D && !dPerChannel ? D[h] : 0.f;
            unsigned char* Xw = stage;
            unsigned char* Hw = Xw + QC * 128;
            const float* rc = (const float*)(Hw + PH * NS * 2);
            cp_wait<0>();  // the stage of head i has landed
            if (ranged) {
                // on the thread's own pieces of the stage (the copies above are its own)
    #if WG_STAGE_HK
                const u32 al = pack2(alNext, alNext);
                const unsigned char* hks = Hw + PH * NS * 2 + 2 * QC * 4;
    #else
                const float a = alpha[((size_t)r * H + h) * nchunks + c];
                const u32 al = pack2(a, a);
                const u16* hk = rangeState(h);
    #endif
                #pragma unroll
                for (int k = 0; k < PH * NS / 8 / 128; k++) {
                    const int e = wt + 128 * k, p = e * 8 / NS, n = e * 8 % NS;
                    uint4* v = (uint4*)(Hw + (n >> 6) * PH * 128 + sw128(p, (n & 63) >> 3));
    #if WG_STAGE_HK
                    *v = axpy8(*v, al, *(const uint4*)(hks + e * 16));
    #else
                    *v = axpy8(*v, al, *(const uint4*)(hk + e * 8));
    #endif
                }
            }
            fence_async_smem();
            wg_sync(wg);  // every thread's share of it / the group is done with the previous head's factors
            {
                const int t = wt, last = q - 1;
                scan_factors(cumS, dtS, wS, vS, eS, rc[min(t, last)], t < q ? rc[QC + t] : 0.f, rc[min(t | 15, last)], rc[min(t & ~15, last)],
                             st, t0, t);
            }
            wg_sync(wg);
            const auto xAt = [&](int t, int p) { return *(const u32*)(Xw + sw128(t, p >> 3) + (p & 7) * 2); };
            // The top rows (0-63), then the bottom rows (64-127), all 64 columns:
            #pragma unroll
            for (int half = 0; half < 2; half++) {
                const int m0 = half * 64;
                // 2. C·h_inᵀ (N/16 products from shared memory) ...
                float acc[32];
                for (int k = 0; k < 32; k++) acc[k] = 0.f;
                wg_fence();
                for (int k = 0; k < NS / 16; k++) {
                    const int kc = (k >> 2) * QC * 128 + (k & 3) * 32, kh = (k >> 2) * PH * 128 + (k & 3) * 32;
                    wg_mma_n64_ss(acc, wg_desc(sa(Cw + kc + m0 * 128), 16, 1024), wg_desc(sa(Hw + kh), 16, 1024));
                }
                wg_commit();
                // 3. ... while the warps build M's fragments of these rows; each row's sum scaled by e^{cum_t}, then M·X.
                const FragRows rr = frag_rows(cumS, stS, packed, m0 + wi * 16, lane);
                u32 f[8][4];
                #pragma unroll
                for (int ks = 0; ks < 4 * (half + 1); ks++) m_fragment_at(f[ks], ks, 4 * half + wi, CBs, cumS, dtS, wS, vS, rr, packed, lane);
                wg_wait0();
                const int ur = m0 + wi * 16 + (lane >> 2);
                const float e0 = eS[ur], e1 = eS[ur + 8];
                for (int j = 0; j < 8; j++) { acc[4 * j] *= e0; acc[4 * j + 1] *= e0; acc[4 * j + 2] *= e1; acc[4 * j + 3] *= e1; }
                wg_fence();
                #pragma unroll
                for (int ks = 0; ks < 4 * (half + 1); ks++) wg_mma_n64_rs(acc, f[ks], wg_desc(sa(Xw + ks * 16 * 128), 1024, 1024));
                wg_commit();
                wg_wait0();
                // 4. D·x, the gate, the 16-bit output.
                unit_store_y<8>((float (*)[4])acc, xAt, D, dPerChannel, dHead, z, y, yPre, rl, H, h, q, m0 + wi * 16, 0, lane);
            }
            wg_sync(wg);  // the group is done with the stage and the factors
            if (i + 1 < nh) fetch(i + 1);
        }
    #endif
    }

    // The chunk states with the state passing fused into them (ssd_wg_chain): a warp group per head walks a range
    // of chunks in order with the head's state h (P×N, float32) in its wgmma accumulators. Per chunk it stores h as
    // the chunk's incoming state (16-bit, the scan's h_in), then h ← decay_c·h + (w∘X_c)ᵀ·B_c: the accumulators are
    // scaled by the chunk's decay and the chunk's product accumulates onto them. So the chunk's own state S_c never
    // goes to memory and no passing kernel reads it back (the three-kernel path wrote S_c and the passing read it and
    // wrote h_in: two passes over states as large as x / 2 at N = 64, as x at N = 128).
    //
    // Grid (ranges, row, group × heads per group / hc), 128·hc threads: the block's hc warp groups take hc heads of a
    // group, sharing B; each range is segLen chunks. Where rows × heads are too few to fill the card (long single
    // sequences) the chunks are split into ranges: range k > 0 starts from a zero state, its h_in are local to it, and
    // the range's incoming state, decayed (α_c·H_k), is added to them by the scan (after ssd_range_states) or in memory
    // (ssd_segment_passing), which also write the final states. The range's end state (float32) goes to `ends`
    // [row][H][ranges][P][N] (the final states themselves with one range).
    //
    // Per chunk i (two stages: chunk i + 1's X, B and raw dt are copied, cp.async, while chunk i computes):
    //   1. dt (bias, softplus, clamp), one token a thread; then, by the group's first warp, the cumulative decay, written
    //      for the scan with dt and the chunk's decay, and the weights w_t = exp(cum_last − cum_t)·dt_t (0 before the
    //      start of the chunk's last sequence, where rows are packed), as ssd_tc_state's chunk_weights makes them;
    //   2. the stage's X scaled by w in place (w∘X), fenced for the tensor cores;
    //   3. h stored as h_in (16-bit, 16 bytes a lane through quad_transpose); h ← decay·h + (w∘X)ᵀ·B, one wgmma a
    //      k-step (64 × N × 16) from shared memory.
    #define CH_GROUPS_MAX \#(chainGroupsMax)
    extern "C" __global__ void __launch_bounds__(128 * CH_GROUPS_MAX, 1) ssd_wg_chain(
            int L, int H, int G, int nchunks, int hc, int segLen, int segs, const u16* __restrict__ x,
            const float* __restrict__ dtRaw, const float* __restrict__ dtBias, const float* __restrict__ A, int softplus,
            float lo, float hi, const u16* __restrict__ B, const int* __restrict__ seqStart, const float* __restrict__ initial,
            float* __restrict__ dtOut, float* __restrict__ cumOut, float* __restrict__ chunkDecay, u16* __restrict__ statesIn,
            float* __restrict__ ends) {
    #if defined(__CUDA_ARCH_FEAT_SM90_ALL)
        const int hpg = H / G, nhb = hpg / hc;
        const int k = blockIdx.x, r = blockIdx.y, g = blockIdx.z / nhb;
        const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5, wg = warp >> 2, wi = warp & 3, wt = tid & 127;
        const int nthreads = 128 * hc, h = g * hpg + (blockIdx.z % nhb) * hc + wg;
        const int c0 = k * segLen, n = min(segLen, nchunks - c0);
        extern __shared__ __align__(16) unsigned char smemRaw[];
        WG_SHARED(smemRaw)
        unsigned char* Bst = sm;                                          // [2][NS/64][QC][64] swizzled: B, two stages
        unsigned char* Xst = Bst + 2 * QC * NS * 2 + wg * 2 * QC * 128;   // the group's [2][QC][64] swizzled: X, then w∘X
        float* fl = (float*)(Bst + 2 * QC * NS * 2 + hc * 2 * QC * 128);
        float* dtSt = fl + wg * 3 * QC;                                   // the group's [2][QC]: raw dt, two stages
        float* wS = dtSt + 2 * QC;                                        // the group's [QC]: w
        float* red = fl + hc * 3 * QC + wg * 4;                           // the group's chunk decay (of [4])
        auto fetch = [&](int i) {
            const int t0 = (c0 + i) * QC, q = min(QC, L - t0), s = i & 1;
            const size_t rl = (size_t)r * L + t0;
            wg_fetch_x(sa(Xst + s * QC * 128), x, rl, H, h, q, wt);
            const unsigned bs = sa(Bst + s * QC * NS * 2);
            for (int e = tid; e < QC * NS / 8; e += nthreads) {
                const int t = e / (NS / 8), n8 = e % (NS / 8);
                cp16(bs + (n8 >> 3) * QC * 128 + sw128(t, n8 & 7), t < q ? B + ((rl + t) * G + g) * NS + n8 * 8 : B, t < q ? 16 : 0);
            }
            if (wt < q) cp4(sa(dtSt + s * QC + wt), dtRaw + (rl + wt) * H + h);
            cp_commit();
        };
        fetch(0);
        const float a = A[h], bias = dtBias ? dtBias[h] : 0.f;
        const bool clamp = dt_clamps(lo, hi);
        // h: row p = 16·wi + lane/4 (+ 8), the pairs at columns 8j + 2·(lane % 4) (wgmma's accumulator layout)
        const int p = wi * 16 + (lane >> 2);
        float acc[NS / 2];
        for (int j = 0; j < NS / 2; j++) acc[j] = 0.f;
        if (k == 0 && initial) {
            const float* I = initial + ((size_t)r * H + h) * PH * NS;
            for (int j = 0; j < NS / 8; j++) {
                const int nn = j * 8 + (lane & 3) * 2;
                const float2 u = *(const float2*)(I + p * NS + nn), v = *(const float2*)(I + (p + 8) * NS + nn);
                acc[4 * j] = u.x; acc[4 * j + 1] = u.y; acc[4 * j + 2] = v.x; acc[4 * j + 3] = v.y;
            }
        }
        for (int i = 0; i < n; i++) {
            const int c = c0 + i, t0 = c * QC, q = min(QC, L - t0), s = i & 1, t = wt;
            const size_t rl = (size_t)r * L + t0;
            cp_wait<0>();
            __syncthreads();  // chunk i's stage has landed (every thread's copies); every group is done with chunk i − 1's
            if (i + 1 < n) fetch(i + 1);
            // 1. dt, one token a thread; then the cumulative decay and the weights by the group's first warp, as
            //    ssd_tc_state's chunk_weights makes them (the same float32 sums: the backward reads them)
            wS[t] = t < q ? token_dt(dtSt[s * QC + t] + bias, softplus, clamp, lo, hi) : 0.f;
            wg_sync(wg);  // dt of the chunk is complete
            if (wi == 0) {
                const int stLast = seqStart ? seqStart[rl + q - 1] : 0;
                const bool carries = stLast < t0 || stLast == 0;
                const float total = head_chunk_weights(wS, a, dtOut, cumOut, L, H, r, t0, q, h, stLast, lane);
                const float decay = carries ? expf(fminf(total, 0.f)) : 0.f;
                if (lane == 0) { chunkDecay[((size_t)r * H + h) * nchunks + c] = decay; red[0] = decay; }
            }
            wg_sync(wg);  // w and the chunk's decay are in shared memory
            const float decay = red[0];
            // 2. w∘X in place, for the tensor cores
            unsigned char* Xs = Xst + s * QC * 128;
            for (int e = wt; e < QC * 8; e += 128) {
                uint4* v = (uint4*)(Xs + sw128(e >> 3, e & 7));
                *v = scale8(*v, wS[e >> 3]);
            }
            fence_async_smem();
            // 3. h as the chunk's h_in, in the 16-bit type, 16 bytes a lane (quad_transpose) ...
            u16* S = statesIn + (((size_t)r * H + h) * nchunks + c) * PH * NS;
            #pragma unroll
            for (int j = 0; j < NS / 8; j += 4) {
                const int nn = (j + (lane & 3)) * 8;
                *(uint4*)(S + p * NS + nn) = quad_transpose(pack2(acc[4 * j], acc[4 * j + 1]), pack2(acc[4 * j + 4], acc[4 * j + 5]),
                                                            pack2(acc[4 * j + 8], acc[4 * j + 9]), pack2(acc[4 * j + 12], acc[4 * j + 13]), lane);
                *(uint4*)(S + (p + 8) * NS + nn) = quad_transpose(pack2(acc[4 * j + 2], acc[4 * j + 3]), pack2(acc[4 * j + 6], acc[4 * j + 7]),
                                                                  pack2(acc[4 * j + 10], acc[4 * j + 11]), pack2(acc[4 * j + 14], acc[4 * j + 15]), lane);
            }
            // ... then h ← decay·h + (w∘X)ᵀ·B
            #pragma unroll
            for (int j = 0; j < NS / 2; j++) acc[j] *= decay;
            wg_sync(wg);  // every thread's w∘X is in shared memory
            wg_fence();
            #pragma unroll
            for (int ks = 0; ks < QC / 16; ks++)
                wg_mma_state(acc, wg_desc(sa(Xs + ks * 16 * 128), 1024, 1024), wg_desc(sa(Bst + s * QC * NS * 2 + ks * 16 * 128), QC * 128, 1024));
            wg_commit();
            wg_wait0();
        }
        // The range's end state in float32
        float* E = ends + (((size_t)r * H + h) * segs + k) * PH * NS;
        for (int j = 0; j < NS / 8; j++) {
            const int nn = j * 8 + (lane & 3) * 2;
            *(float2*)(E + p * NS + nn) = make_float2(acc[4 * j], acc[4 * j + 1]);
            *(float2*)(E + (p + 8) * NS + nn) = make_float2(acc[4 * j + 2], acc[4 * j + 3]);
        }
    #endif
    }

    // The ranges' hand-over after ssd_wg_chain with more than one range of chunks, in one of two forms. Both start
    // from H_1 = range 0's end state and go H_{k+1} = A_k·H_k + T_k (T_k range k's own end state, A_k the product of
    // its chunk decays); the last H is the final state. Chunk c of range k > 0 then needs h_in(c) = local(c) + α_c·H_k,
    // α_c the product of the range's decays before c:
    //  - ssd_segment_passing (a thread per pair of state elements, as ssd_tc_passing) adds it to every such chunk's
    //    stored h_in, for the readers of h_in other than the scan (the backward; packed rows' sequence states);
    //  - ssd_range_states writes only H_k (16-bit) and α_c, which ssd_wg_scan adds to its staged h_in (rangeLength > 0):
    //    the chunk states make no second round trip through memory.
    // Both walk H_k with these two: a thread's pair of state elements e of range k's end state T_k (ends, float32), and
    // one step of the recurrence.
    __device__ __forceinline__ float2 range_end(const float* __restrict__ ends, size_t eb, int k, int e) {
        return *(const float2*)(ends + (eb + k) * PH * NS + e);
    }
    __device__ __forceinline__ float2 range_step(float2 hk, float ak, float2 tk) { return make_float2(ak * hk.x + tk.x, ak * hk.y + tk.y); }
    extern "C" __global__ void __launch_bounds__(256) ssd_segment_passing(
            int H, int nchunks, int segLen, int segs, const float* __restrict__ ends, const float* __restrict__ chunkDecay,
            float* __restrict__ finalStates, u16* __restrict__ statesIn) {
        const int e = (blockIdx.x * 256 + threadIdx.x) * 2, h = blockIdx.y, r = blockIdx.z;
        const size_t base = ((size_t)r * H + h) * nchunks, eb = ((size_t)r * H + h) * segs;
        float2 hk = range_end(ends, eb, 0, e);
        for (int k = 1; k < segs; k++) {
            const int c1 = min((k + 1) * segLen, nchunks);
            float al = 1.f;
            for (int c = k * segLen; c < c1; c += 8) {
                // the batch's loads before its chain
                u32 v[8];
                float dc[8];
                #pragma unroll
                for (int i = 0; i < 8; i++) if (c + i < c1) { v[i] = *(const u32*)(statesIn + (base + c + i) * PH * NS + e); dc[i] = chunkDecay[base + c + i]; }
                #pragma unroll
                for (int i = 0; i < 8; i++) if (c + i < c1) {
                    const float2 u = unpack2(v[i]);
                    *(u32*)(statesIn + (base + c + i) * PH * NS + e) = pack2(u.x + al * hk.x, u.y + al * hk.y);
                    al *= dc[i];
                }
            }
            hk = range_step(hk, al, range_end(ends, eb, k, e));
        }
        *(float2*)(finalStates + ((size_t)r * H + h) * PH * NS + e) = hk;
    }

    // Grid (P·N/512, head, row), 256 threads, a pair of state elements each; blocks with blockIdx.x = 0 also write α.
    // The ranges' decays A_k go through shared memory, RANGE_TILE ranges at a time.
    #define RANGE_TILE 1024
    extern "C" __global__ void __launch_bounds__(256) ssd_range_states(
            int H, int nchunks, int segLen, int segs, const float* __restrict__ ends, const float* __restrict__ chunkDecay,
            float* __restrict__ finalStates, u16* __restrict__ rangeStates, float* __restrict__ alpha) {
        __shared__ float decays[RANGE_TILE];
        const int e = (blockIdx.x * 256 + threadIdx.x) * 2, h = blockIdx.y, r = blockIdx.z;
        const size_t base = ((size_t)r * H + h) * nchunks, eb = ((size_t)r * H + h) * segs;
        float2 hk = range_end(ends, eb, 0, e);
        for (int k0 = 1; k0 < segs; k0 += RANGE_TILE) {
            const int k1 = min(k0 + RANGE_TILE, segs);
            __syncthreads();  // the previous tile's decays are read
            for (int k = k0 + threadIdx.x; k < k1; k += 256) {
                float al = 1.f;
                for (int c = k * segLen; c < min((k + 1) * segLen, nchunks); c++) {
                    if (blockIdx.x == 0) alpha[base + c] = al;
                    al *= chunkDecay[base + c];
                }
                decays[k - k0] = al;
            }
            __syncthreads();
            for (int k = k0; k < k1; k++) {
                *(u32*)(rangeStates + (eb + k) * PH * NS + e) = pack2(hk.x, hk.y);
                const float al = decays[k - k0];
                hk = range_step(hk, al, range_end(ends, eb, k, e));
            }
        }
        *(float2*)(finalStates + ((size_t)r * H + h) * PH * NS + e) = hk;
    }
    #endif
    """#

    /// Dynamic shared memory of ssd_wg_chain for a state size (bytes; N = 64 or 128), for its largest blocks
    /// (`chainGroupsMax` warp groups): two stages of B, two of X a group, a group's raw dt (two stages), w and warp
    /// sums, 1 KB of alignment.
    static func hopperChainShared(stateSize N: Int, groups: Int = chainGroupsMax) -> Int {
        let Q = 128
        return 2 * Q * N * 2 + groups * 2 * Q * 128 + (groups * 3 * Q + 16) * 4 + 1024
    }

    /// ssd_wg_chain's largest blocks, in warp groups (heads): its CH_GROUPS_MAX.
    static let chainGroupsMax = 4

    /// ssd_wg_scan's warp groups a block (its WG_GROUPS), each with one stage.
    static let hopperScanGroups = 4

    /// Dynamic shared memory of ssd_wg_scan for a state size (bytes; N = 64 or 128): C·Bᵀ, C, the groups' stages (at
    /// N = 64 with room for a ranged chunk's H_k: its WG_STAGE_HK), their factors and the sequence starts, 1 KB of
    /// alignment.
    static func hopperScanShared(stateSize N: Int) -> Int {
        let (Q, P, pad) = (128, 64, 8)
        let stage = Q * 128 + P * N * 2 + 2 * Q * 4 + (N == 64 ? P * N * 2 : 0)
        return Q * (Q + pad) * 2 + Q * N * 2 + hopperScanGroups * stage + (hopperScanGroups * 6 + 1) * Q * 4 + 1024
    }
}
