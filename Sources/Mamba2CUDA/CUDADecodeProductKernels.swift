extension CUDAKernelSource {
    /// Decode's own product for 2–16 rows of 16-bit weights (appended to the model module after `decodeStream`,
    /// whose bulk copies, mbarriers and m16n8k16 product it uses): a candidate beside cuBLAS's algorithms when
    /// decode's products are tuned (`CUDADecodeProducts.swift`), taken where it times faster.
    ///
    /// Why a product of our own: cuBLAS's kernels wait for the kernel before them to complete before they read a
    /// byte, and at decode's shapes that boundary costs about as much as the product's tail (letting them in early,
    /// wrongly, saved ~8.6 µs of 2.7b's 55 µs layer at 16 rows: `results/gpu-decode-b16-boundaries.txt` §4). The
    /// weights do not depend on the kernel before, so this product requests its first stages of them before
    /// `griddepcontrol.wait`, and only X waits.
    static let decodeProduct = #"""
    // Y[s][r][o] (+)= Σ_{k ∈ slice s} W[o][k]·X[r][k] for r < nr ≤ 16; slice s the inputs [s·KL, (s + 1)·KL),
    // KL = in / slices, its partial products nr · out values apart (with one slice, Y (nr, out) itself).
    // A block per multiprocessor takes a balanced range [o0, o1) of its slice's rows of W, 8 rows a stage.
    //   1. Stages stream through a ring of S in shared memory, a row of W (KL inputs, one bulk copy) at a time,
    //      their bytes counted on the stage's mbarrier; rows KL·2 + 64 bytes apart, so a quarter-warp's 16-byte
    //      loads (two rows, 64 bytes each) fall in distinct banks. Stages 0 … S − 2 are requested before
    //      griddepcontrol.wait: W does not depend on the previous kernel.
    //   2. After the wait each of the 16 warps loads its k-steps of 32 inputs (w, w + 16, …; at most XMAX) of
    //      X's 16 rows into registers once: the m16n8k16 A fragments, X as the 16 rows of M and a stage's 8 rows
    //      of W as the 8 columns of N. A thread takes 16 contiguous bytes (8 inputs, for its quad lane t) of X's
    //      rows g and g + 8 and of W's row g (the product sums over k in any order, so A's and B's k order only
    //      have to agree).
    //   3. Per stage each warp multiplies its k-steps into 16 × 8 partial sums, the 16 warps' partials meet in
    //      shared memory (two buffers, alternate stages), and one thread per (row, output) adds them in order
    //      and writes Y; the slot a stage leaves takes stage q + S.
    // X's rows past nr are zeros; a stage's rows past o1 are never copied and what their stale shared memory
    // holds reaches only outputs that are not written (a column of B reaches only its own outputs).
    // ds_mbar_wait that traps (an error the host reports) instead of hanging if the stage never lands: 2^26
    // tries are seconds, against microseconds a stage.
    __device__ __forceinline__ void dp_wait(unsigned bar, unsigned parity) {
        for (unsigned i = 0;; i++) {
            unsigned ok;
            asm volatile("{\n .reg .pred p;\n mbarrier.try_wait.parity.shared::cta.b64 p, [%1], %2;\n selp.u32 %0, 1, 0, p;\n}\n"
                         : "=r"(ok) : "r"(bar), "r"(parity) : "memory");
            if (ok) return;
            if (i == (1u << 26)) __trap();
        }
    }
    #define DP_WARPS 16
    #define DP_XMAX 10
    extern "C" __global__ void __launch_bounds__(DP_WARPS * 32, 1) m_decode_product(
            int nr, int in, int out, int slices, int S, const act_t* __restrict__ X, const act_t* __restrict__ W,
            float* __restrict__ Y, int accumulate) {
    #if ACT != 0 && SM90
        extern __shared__ __align__(128) unsigned char dp_smem[];
        __shared__ __align__(8) unsigned long long full[16];    // stage landed, one per ring slot
        __shared__ __align__(16) float red[2][DP_WARPS][128];   // a stage's partial sums by warp (alternate stages)
        const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5, g = lane >> 2, t = lane & 3;
        const int bps = gridDim.x / slices, s = blockIdx.x / bps, jb = blockIdx.x - s * bps;
        const int o0 = (int)((long long)out * jb / bps), o1 = (int)((long long)out * (jb + 1) / bps);
        const int KL = in / slices, ROW = KL * 2 + 64, nstage = (o1 - o0 + 7) / 8;
        const act_t* Wb = W + (size_t)o0 * in + (size_t)s * KL;  // the block's first row at its slice
        // Stage q's rows (threads 0 … 7, a row each); thread 0 first expects the stage's bytes.
        auto issue = [&](int q) {
            if (q >= nstage || tid >= 8) return;
            const int rows = min(8, o1 - o0 - 8 * q);
            const unsigned bar = smem_addr(&full[q % S]);
            if (tid == 0) ds_mbar_expect(bar, (unsigned)(rows * KL * 2));
            if (tid < rows)
                ds_bulk(smem_addr(dp_smem + ((size_t)(q % S) * 8 + tid) * ROW), Wb + (size_t)(8 * q + tid) * in, KL * 2, bar);
        };
        if (tid == 0) {
            for (int i = 0; i < S; i++) ds_mbar_init(smem_addr(&full[i]));
            asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory");
        }
        __syncthreads();  // the barriers' initialization seen by the threads that copy
        for (int q = 0; q < S - 1; q++) issue(q);
        pdl_wait();       // X is the previous kernel's output
        const int ksteps = KL / 32;
        uint4 xlo[DP_XMAX], xhi[DP_XMAX];
        const act_t* Xb = X + (size_t)s * KL + 8 * t;
        #pragma unroll
        for (int i = 0; i < DP_XMAX; i++) {
            const int k = warp + i * DP_WARPS;
            xlo[i] = k < ksteps && g < nr ? __ldcg((const uint4*)(Xb + (size_t)g * in + k * 32)) : make_uint4(0, 0, 0, 0);
            xhi[i] = k < ksteps && g + 8 < nr ? __ldcg((const uint4*)(Xb + (size_t)(g + 8) * in + k * 32)) : make_uint4(0, 0, 0, 0);
        }
        float* Ys = Y + (size_t)s * nr * out;
        for (int q = 0; q < nstage; q++) {
            // Stage q + S − 1 into the slot stage q − 1 left (every warp passed the barrier after it; at q = 0 the
            // last slot, unused so far), stage q − 1's reads before the copies' writes.
            if (tid < 8) asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
            issue(q + S - 1);
            dp_wait(smem_addr(&full[q % S]), (q / S) & 1);  // stage q has landed
            const unsigned char* wrow = dp_smem + ((size_t)(q % S) * 8 + g) * ROW + t * 16;
            float acc[4] = {0.f, 0.f, 0.f, 0.f};
            #pragma unroll
            for (int i = 0; i < DP_XMAX; i++) {
                const int k = warp + i * DP_WARPS;
                if (k < ksteps) {
                    const uint4 bv = *(const uint4*)(wrow + k * 64);
                    const u32 a1[4] = {xlo[i].x, xhi[i].x, xlo[i].y, xhi[i].y}, a2[4] = {xlo[i].z, xhi[i].z, xlo[i].w, xhi[i].w};
                    const u32 b1[2] = {bv.x, bv.y}, b2[2] = {bv.z, bv.w};
                    mma16816(acc, a1, b1);
                    mma16816(acc, a2, b2);
                }
            }
            // acc: rows g (0, 1) and g + 8 (2, 3), outputs 2t and 2t + 1 of the stage.
            *(float4*)&red[q & 1][warp][lane * 4] = make_float4(acc[0], acc[1], acc[2], acc[3]);
            __syncthreads();
            const int r = tid >> 3, oc = tid & 7, o = o0 + 8 * q + oc;
            if (r < nr && o < o1) {
                const int idx = ((r & 7) * 4 + (oc >> 1)) * 4 + (r >> 3) * 2 + (oc & 1);
                float v = 0.f;
                #pragma unroll
                for (int w = 0; w < DP_WARPS; w++) v += red[q & 1][w][idx];
                float* dst = Ys + (size_t)r * out + o;
                *dst = accumulate ? __ldcg(dst) + v : v;
            }
        }
    #endif
    }

    """#
}
