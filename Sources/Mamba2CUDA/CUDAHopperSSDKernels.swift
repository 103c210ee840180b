import Mamba2
extension CUDAKernelSource {
    /// The chunk states and the chunk scan on Hopper's warp-group products (`ssd_wg_state`, `ssd_wg_scan`; sm_90a):
    /// the same work, grids, arguments and results as `ssd_tc_state` and `ssd_tc_scan` (ssdTensorCore's steps 1 and
    /// 3), with their products on `wgmma` instead of `mma.sync`. Compiled in the tensor-core module after
    /// `ssdTensorCore`, whose helpers they share (dt and the weights, M's fragments, the output's epilogue); on other
    /// architectures their bodies are empty and the host never launches them.
    ///
    /// Why: the warp kernels are bound by issue and latency (`results/gpu-ssd-ncu-stalls.txt`): every warp loads its
    /// operands' fragments with `ldmatrix` and issues an `mma` per 16×8×16, and the scan's 8 warps meet at two block
    /// barriers per head, each building M's fragments for half of Y's columns (so every fragment is built twice). Here
    /// a block's warp groups (4 in the scan, 2 in the states) take their heads in turn and never wait for each other
    /// after the chunk's C·Bᵀ: each group's `wgmma` reads C, B, X and h_in straight from shared memory, one
    /// instruction per 64×64×16 (64×N×16 for the states), asynchronously, each fragment of M is built once, and each
    /// group copies its heads' inputs with `cp.async` (the scan: one stage a group, while the other groups compute;
    /// the states: two stages a group).
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
    ///   4. D·x, the gate, the 16-bit output (`unit_store_y`); the stage then takes the group's next head.
    /// The states, per block: B, dt and the weights as ssd_tc_state; then per head of group w its staged X scaled by
    /// w in place, S = (w∘X)ᵀ·B in QC/16 products, stored in the 16-bit type 16 bytes a lane (`quad_transpose`).
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
    // The 128 threads of warp group wg meet (named barrier 1 + wg; 0 is __syncthreads').
    __device__ __forceinline__ void wg_sync(int wg) { asm volatile("bar.sync %0, 128;" :: "r"(1 + wg) : "memory"); }

    // A head's X of the chunk (rows from row offset rl) into [QC][64] swizzled, rows past the row's end q zero-filled,
    // by a warp group's 128 threads (wt).
    __device__ __forceinline__ void wg_fetch_x(unsigned xs, const u16* __restrict__ x, size_t rl, int H, int h, int q, int wt) {
        for (int e = wt; e < QC * 8; e += 128) {
            const int t = e >> 3, piece = e & 7;
            cp16(xs + sw128(t, piece), t < q ? x + ((rl + t) * H + h) * PH + piece * 8 : x, t < q ? 16 : 0);
        }
    }

    // A warp group's stage: X [QC][64] and h_in [NS/64][PH][64] swizzled, then cum and dt of the head's chunk.
    #define WG_STAGE (QC * 128 + PH * NS * 2 + 2 * QC * 4)
    // One head's inputs into a stage, by the group's 128 threads (wt): X (rows past the row's end q zero-filled),
    // h_in, and cum and dt of its q tokens.
    __device__ __forceinline__ void wg_fetch_head(unsigned stage, const u16* __restrict__ x, const u16* __restrict__ statesIn,
                                                  const float* __restrict__ cumOut, const float* __restrict__ dtOut, int L, int H,
                                                  int nchunks, int r, int c, int t0, int q, int h, int wt) {
        wg_fetch_x(stage, x, (size_t)r * L + t0, H, h, q, wt);
        const u16* hin = statesIn + (((size_t)r * H + h) * nchunks + c) * PH * NS;
        const unsigned hs = stage + QC * 128;
        for (int e = wt; e < PH * NS / 8; e += 128) {
            const int p = e * 8 / NS, n = e * 8 % NS;
            cp16(hs + (n >> 6) * PH * 128 + sw128(p, (n & 63) >> 3), hin + e * 8, 16);
        }
        const unsigned cs = hs + PH * NS * 2;
        const size_t f = ((size_t)r * H + h) * L + t0;
        if (wt < q) { cp4(cs + wt * 4, cumOut + f + wt); cp4(cs + (QC + wt) * 4, dtOut + f + wt); }
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
            const int* __restrict__ seqStart, u16* __restrict__ y, u16* __restrict__ yPre) {
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
        auto fetch = [&](int i) { wg_fetch_head(sa(stage), x, statesIn, cumOut, dtOut, L, H, nchunks, r, c, t0, q, head(i), wt); };
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

    // The chunk states on warp-group products (ssd_wg_state): ssd_tc_state's work, grid and arguments. The block's
    // prologue is the same (B, dt of its heads, then per head the cumulative decay and the weights w); then the two
    // warp groups take alternate heads, each with two stages of X copied ahead (cp.async), scales its stage by w in
    // place and multiplies (w∘X)ᵀ·B with one wgmma a k-step (64 × N × 16), reading both from shared memory.
    extern "C" __global__ void __launch_bounds__(256, 2) ssd_wg_state(
            int L, int H, int G, int nchunks, int hb, const u16* __restrict__ x, const float* __restrict__ dtRaw,
            const float* __restrict__ dtBias, const float* __restrict__ A, int softplus, float lo, float hi,
            const u16* __restrict__ B, const int* __restrict__ seqStart, float* __restrict__ dtOut, float* __restrict__ cumOut,
            u16* __restrict__ states, float* __restrict__ chunkDecay) {
    #if defined(__CUDA_ARCH_FEAT_SM90_ALL)
        const int hpg = H / G, nhb = hpg / hb;
        const int c = blockIdx.x, r = blockIdx.y, g = blockIdx.z / nhb, h0 = g * hpg + (blockIdx.z % nhb) * hb;
        const int t0 = c * QC, q = min(QC, L - t0);
        const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5, wg = warp >> 2, wi = warp & 3, wt = tid & 127;
        const int stLast = seqStart ? seqStart[(size_t)r * L + t0 + q - 1] : 0;
        const bool carries = stLast < t0 || stLast == 0;
        extern __shared__ __align__(16) unsigned char smemRaw[];
        WG_SHARED(smemRaw)
        unsigned char* Bw = sm;                              // [NS/64][QC][64] swizzled: B of the chunk
        unsigned char* stages = Bw + QC * NS * 2;            // [2 groups][2 stages][QC][64] swizzled: X, then w∘X
        float* wAll = (float*)(stages + 4 * QC * 128);       // [hb][QC]: dt, then w
        const size_t rl = (size_t)r * L + t0;
        const int nh = (hb - wg + 1) / 2;
        auto stage = [&](int i) { return stages + (wg * 2 + (i & 1)) * QC * 128; };
        auto head = [&](int i) { return h0 + wg + 2 * i; };
        if (nh > 0) { wg_fetch_x(sa(stage(0)), x, rl, H, head(0), q, wt); cp_commit(); }
        if (nh > 1) { wg_fetch_x(sa(stage(1)), x, rl, H, head(1), q, wt); cp_commit(); }
        for (int e = tid; e < QC * NS / 8; e += 256) {
            const int t = e / (NS / 8), n8 = e % (NS / 8);
            uint4 v = make_uint4(0, 0, 0, 0);
            if (t < q) v = *(const uint4*)(B + ((rl + t) * G + g) * NS + n8 * 8);
            *(uint4*)(Bw + (n8 >> 3) * QC * 128 + sw128(t, n8 & 7)) = v;
        }
        chunk_dt(wAll, dtRaw, dtBias, softplus, lo, hi, rl, H, h0, hb, q, tid, 256);
        __syncthreads();
        chunk_weights(wAll, A, dtOut, cumOut, chunkDecay, L, H, nchunks, r, c, t0, q, h0, hb, stLast, carries, warp, lane);
        fence_async_smem();  // B, for the tensor cores
        __syncthreads();     // w of every head is ready
        // Stage i scaled by its head's w in place, by the group, and fenced for the tensor cores. The proxy fence also
        // waits for the thread's outstanding stores, so each stage after the first is made ready before, not after, a
        // head's states are stored.
        auto scale_stage = [&](int i) {
            unsigned char* xs = stage(i);
            const float* w = wAll + (head(i) - h0) * QC;
            for (int e = wt; e < QC * 8; e += 128) {
                uint4* v = (uint4*)(xs + sw128(e >> 3, e & 7));
                *v = scale8(*v, w[e >> 3]);
            }
            fence_async_smem();
        };
        if (nh > 0) {
            if (nh > 1) cp_wait<1>(); else cp_wait<0>();
            wg_sync(wg);  // head 0's stage has landed
            scale_stage(0);
        }
        for (int i = 0; i < nh; i++) {
            const int h = head(i);
            unsigned char* Xw = stage(i);
            wg_sync(wg);  // stage i is scaled
            float acc[NS / 2];
            for (int k = 0; k < NS / 2; k++) acc[k] = 0.f;
            wg_fence();
            #pragma unroll
            for (int ks = 0; ks < QC / 16; ks++)
                wg_mma_state(acc, wg_desc(sa(Xw + ks * 16 * 128), 1024, 1024), wg_desc(sa(Bw + ks * 16 * 128), QC * 128, 1024));
            wg_commit();
            wg_wait0();
            if (i + 1 < nh) cp_wait<0>();
            wg_sync(wg);  // the group is done with stage i, and stage i + 1 has landed
            if (i + 2 < nh) { wg_fetch_x(sa(stage(i)), x, rl, H, head(i + 2), q, wt); cp_commit(); }
            if (i + 1 < nh) scale_stage(i + 1);
            // S (P×N, 16-bit): row p = 16·wi + lane/4 (+ 8), the pairs at columns 8j + 2·(lane % 4), stored 16 bytes
            // a lane (quad_transpose)
            u16* S = states + (((size_t)r * H + h) * nchunks + c) * PH * NS;
            const int p = wi * 16 + (lane >> 2);
            #pragma unroll
            for (int j = 0; j < NS / 8; j += 4) {
                const int n = (j + (lane & 3)) * 8;
                *(uint4*)(S + p * NS + n) = quad_transpose(pack2(acc[4 * j], acc[4 * j + 1]), pack2(acc[4 * j + 4], acc[4 * j + 5]),
                                                           pack2(acc[4 * j + 8], acc[4 * j + 9]), pack2(acc[4 * j + 12], acc[4 * j + 13]), lane);
                *(uint4*)(S + (p + 8) * NS + n) = quad_transpose(pack2(acc[4 * j + 2], acc[4 * j + 3]), pack2(acc[4 * j + 6], acc[4 * j + 7]),
                                                                 pack2(acc[4 * j + 10], acc[4 * j + 11]), pack2(acc[4 * j + 14], acc[4 * j + 15]), lane);
            }
        }
    #endif
    }
    #endif
    """#

    /// Dynamic shared memory of ssd_wg_state for a state size (bytes; N = 64 or 128): B, 4 stages of X, the weights of
    /// up to `CUDATensorCoreSSD.maxHeadsPerBlock` heads, 1 KB of alignment.
    static func hopperStateShared(stateSize N: Int) -> Int {
        let Q = 128
        return Q * N * 2 + 4 * Q * 128 + CUDATensorCoreSSD.maxHeadsPerBlock * Q * 4 + 1024
    }

    /// ssd_wg_scan's warp groups a block (its WG_GROUPS), each with one stage.
    static let hopperScanGroups = 4

    /// Dynamic shared memory of ssd_wg_scan for a state size (bytes; N = 64 or 128): C·Bᵀ, C, the groups' stages,
    /// their factors and the sequence starts, 1 KB of alignment.
    static func hopperScanShared(stateSize N: Int) -> Int {
        let (Q, P, pad) = (128, 64, 8)
        let stage = Q * 128 + P * N * 2 + 2 * Q * 4
        return Q * (Q + pad) * 2 + Q * N * 2 + hopperScanGroups * stage + (hopperScanGroups * 6 + 1) * Q * 4 + 1024
    }
}
