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
    // A block per multiprocessor takes a balanced range [o0, o1) of its slice's rows of W, in groups of 8 rows.
    // Glossary: SEG = KL / 8 a warp's inputs, u a group of 8 rows, S the slots of a warp's ring.
    //   1. Each of the 8 warps owns a segment of SEG inputs and a ring of S slots of its own: a slot holds a
    //      group's 8 rows of that segment (lanes 0–7 copy a row each, the bytes counted on the slot's mbarrier),
    //      rows SEG·2 + 64 bytes apart so that a quarter-warp's 16-byte loads (two rows) fall in distinct banks.
    //      The first S groups are requested before griddepcontrol.wait: W does not depend on the previous kernel.
    //   2. After the wait a warp loads its segment of X's 16 rows into registers once: the m16n8k16 A fragments,
    //      X as the 16 rows of M and a group's 8 rows of W as the 8 columns of N. A thread takes 16 contiguous
    //      bytes (8 inputs, for its quad lane t) of X's rows g and g + 8 and of W's row g (the product sums over
    //      k in any order, so A's and B's k order only have to agree).
    //   3. A warp multiplies each group as it lands (even and odd k-steps on two accumulators, two short chains),
    //      leaves its 16 × 8 partial sums in shared memory and refills the slot: no block barrier per group, so
    //      the warps' work overlaps the copies. After the last group the 8 warps' partials meet once, in order,
    //      and one thread per (row, output) writes Y.
    // X's rows past nr are zeros; a group's rows past o1 are never copied and what their stale shared memory
    // holds reaches only outputs that are not written (a column of B reaches only its own outputs).
    __device__ __forceinline__ void dp_wait(unsigned bar, unsigned parity) {
        for (unsigned i = 0;; i++) {
            unsigned ok;
            asm volatile("{\n .reg .pred p;\n mbarrier.try_wait.parity.shared::cta.b64 p, [%1], %2;\n selp.u32 %0, 1, 0, p;\n}\n"
                         : "=r"(ok) : "r"(bar), "r"(parity) : "memory");
            if (ok) return;
            if (i == (1u << 26)) __trap();
        }
    }
    #define DP_WARPS 8
    #define DP_XMAX 10
    extern "C" __global__ void __launch_bounds__(DP_WARPS * 32, 1) m_decode_product(
            int nr, int in, int out, int slices, int S, const act_t* __restrict__ X, const act_t* __restrict__ W,
            float* __restrict__ Y, int accumulate) {
    #if ACT != 0 && SM90
        extern __shared__ __align__(128) unsigned char dp_smem[];
        __shared__ __align__(8) unsigned long long full[DP_WARPS * 16];  // a slot landed, 16 at most a warp
        const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5, g = lane >> 2, t = lane & 3;
        const int bps = gridDim.x / slices, s = blockIdx.x / bps, jb = blockIdx.x - s * bps;
        const int o0 = (int)((long long)out * jb / bps), o1 = (int)((long long)out * (jb + 1) / bps), R = o1 - o0, ng = (R + 7) / 8;
        const int KL = in / slices, SEG = KL / DP_WARPS, PITCH = SEG * 2 + 64, ksteps = SEG / 32;
        unsigned char* ring = dp_smem + (size_t)warp * S * 8 * PITCH;                  // this warp's [S][8][PITCH]
        float* red = (float*)(dp_smem + (size_t)DP_WARPS * S * 8 * PITCH);             // [ng][DP_WARPS][128]
        unsigned long long* wfull = full + warp * 16;
        const act_t* Wseg = W + (size_t)o0 * in + (size_t)s * KL + (size_t)warp * SEG;  // the block's first row, this segment
        // Group u's rows of this warp's segment into slot u % S (lanes 0–7, a row each; lane 0 first expects the bytes).
        auto issue = [&](int u) {
            if (u >= ng || lane >= 8) return;
            const int rows = min(8, R - 8 * u);
            const unsigned bar = smem_addr(&wfull[u % S]);
            if (lane == 0) ds_mbar_expect(bar, (unsigned)(rows * SEG * 2));
            if (lane < rows)
                ds_bulk(smem_addr(ring + ((size_t)(u % S) * 8 + lane) * PITCH), Wseg + (size_t)(8 * u + lane) * in, SEG * 2, bar);
        };
        if (lane == 0) {
            for (int i = 0; i < S; i++) ds_mbar_init(smem_addr(&wfull[i]));
            asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory");
        }
        __syncwarp();  // the warp's barriers initialized before its lanes copy
        for (int u = 0; u < S; u++) issue(u);
        pdl_wait();    // X is the previous kernel's output
        uint4 xlo[DP_XMAX], xhi[DP_XMAX];
        const act_t* Xb = X + (size_t)s * KL + (size_t)warp * SEG + 8 * t;
        #pragma unroll
        for (int i = 0; i < DP_XMAX; i++) {
            xlo[i] = i < ksteps && g < nr ? __ldcg((const uint4*)(Xb + (size_t)g * in + i * 32)) : make_uint4(0, 0, 0, 0);
            xhi[i] = i < ksteps && g + 8 < nr ? __ldcg((const uint4*)(Xb + (size_t)(g + 8) * in + i * 32)) : make_uint4(0, 0, 0, 0);
        }
        for (int u = 0; u < ng; u++) {
            dp_wait(smem_addr(&wfull[u % S]), (u / S) & 1);  // group u has landed
            const unsigned char* wrow = ring + ((size_t)(u % S) * 8 + g) * PITCH + t * 16;
            float acc[2][4] = {{0.f, 0.f, 0.f, 0.f}, {0.f, 0.f, 0.f, 0.f}};
            #pragma unroll
            for (int i = 0; i < DP_XMAX; i++) {
                if (i < ksteps) {
                    const uint4 bv = *(const uint4*)(wrow + i * 64);
                    const u32 a1[4] = {xlo[i].x, xhi[i].x, xlo[i].y, xhi[i].y}, a2[4] = {xlo[i].z, xhi[i].z, xlo[i].w, xhi[i].w};
                    const u32 b1[2] = {bv.x, bv.y}, b2[2] = {bv.z, bv.w};
                    mma16816(acc[i & 1], a1, b1);
                    mma16816(acc[i & 1], a2, b2);
                }
            }
            // acc: rows g (0, 1) and g + 8 (2, 3), outputs 2t and 2t + 1 of the group.
            *(float4*)(red + ((size_t)u * DP_WARPS + warp) * 128 + lane * 4) =
                make_float4(acc[0][0] + acc[1][0], acc[0][1] + acc[1][1], acc[0][2] + acc[1][2], acc[0][3] + acc[1][3]);
            __syncwarp();  // every lane is done with the slot
            if (lane < 8) asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");  // those reads before the copies' writes
            issue(u + S);
        }
        __syncthreads();  // every warp's partial sums
        float* Ys = Y + (size_t)s * nr * out;
        for (int e = tid; e < nr * R; e += blockDim.x) {
            const int r = e / R, ol = e - r * R, u = ol >> 3, oc = ol & 7;
            const int idx = ((r & 7) * 4 + (oc >> 1)) * 4 + (r >> 3) * 2 + (oc & 1);
            float v = 0.f;
            #pragma unroll
            for (int w = 0; w < DP_WARPS; w++) v += red[((size_t)u * DP_WARPS + w) * 128 + idx];
            float* dst = Ys + (size_t)r * out + o0 + ol;
            *dst = accumulate ? __ldcg(dst) + v : v;
        }
    #endif
    }

    """#
}
