extension CUDAKernelSource {
    /// The chunked SSD forward in one kernel (`ssd_tc_fused`): the chunk states never make the round trip
    /// through device memory that the three kernels of `ssdTensorCore` give them (written by the state kernel,
    /// read and written again by the passing, read by the scan), and x is read once instead of twice. Compiled
    /// in the same module, after it, so it shares its helpers and macros (NS = 64 or 128, PH = 64, QC = 128).
    ///
    /// A block of 512 threads takes one chunk of one row for `hb` heads of a group (C, B and C·Bᵀ loaded and made
    /// once for them) and splits them between two groups of 8 warps, each with its own barrier, so that one
    /// group's look-back waits overlap the other's products. Per head, a group computes:
    ///   1. the chunk's own state S_c = (w∘X)ᵀ·B (P×N, float32 in registers, rounded to the 16-bit type as the
    ///      state kernel stores it), published for the chunks after it (the "aggregate");
    ///   2. the state entering the chunk by a decoupled look-back (Merrill & Garland's single-pass scan): walking
    ///      back from chunk c − 1, a chunk whose state after it is published ends the walk, and a chunk that has
    ///      only its aggregate adds it, decayed, and passes on: h_in = S_{c−1} + a_{c−1}·S_{c−2} + … ;
    ///   3. the state after the chunk, a_c·h_in + S_c (a_c = exp(cum_last)), published in float32 (the
    ///      "inclusive" state; the last chunk writes it as the row's final state instead);
    ///   4. Y = e^{cum_t}·C·h_inᵀ + M·X, D·x, the gate, the 16-bit output (the scan's `unit_*` steps).
    /// Each warp owns a fixed slice of the P×N state (that of `chunk_outer_acc`) in every chunk, so the look-back
    /// runs per warp, on its own flags: a flag word per (row, head, chunk, warp) holds the status (0 none yet,
    /// 1 aggregate, 2 inclusive) in its high half and the chunk's decay in its low half, written with a release
    /// after the warp's stores (`__syncwarp`, then lane 0), read with an acquire by every lane. The flags and the
    /// ticket counter before them are zeroed before each launch. Blocks take their work from a ticket (an
    /// atomic counter), heads fastest, then rows, then chunks, so a block waits only on blocks that got their
    /// tickets earlier and are running or done: no deadlock whatever order the hardware starts blocks in.
    /// The float32 sums of the look-back run in an order that depends on timing, so results can differ between
    /// runs by float32 rounding (then by one 16-bit rounding of h_in where that tips it), never by more.
    /// Shared memory: w∘X and h_in share their room; one block a multiprocessor (214 KB at N = 128, 32 heads).
    /// Not for packed rows (the three kernels take those).
    /// Measured against the three kernels (benchmarks/results/gpu-ssd-fused.txt), this form and three before it:
    /// 8 warps a block, 32 heads, one block a multiprocessor; 8 warps, 2 or 4 heads, two blocks a multiprocessor;
    /// and the look-back's first step taken before S where chunk c − 1's state was already there (slower).
    static let ssdFused = #"""
    #if NS % 64 == 0
    // A published flag word: status in the high half, the chunk's decay in the low half.
    __device__ __forceinline__ unsigned long long lb_poll(const unsigned long long* f) {
        unsigned long long v;
        for (;;) {
            asm volatile("ld.acquire.gpu.global.u64 %0, [%1];" : "=l"(v) : "l"(f) : "memory");
            if (v >> 32) return v;
            __nanosleep(20);
        }
    }
    __device__ __forceinline__ void lb_publish(unsigned long long* f, unsigned status, float decay) {
        const unsigned long long v = ((unsigned long long)status << 32) | __float_as_uint(decay);
        asm volatile("st.release.gpu.global.u64 [%0], %1;" :: "l"(f), "l"(v) : "memory");
    }

    // The 256 threads of warp group grp (0 or 1) meet (named barrier 1 + grp; 0 is __syncthreads').
    __device__ __forceinline__ void group_sync(int grp) { asm volatile("bar.sync %0, 256;" :: "r"(1 + grp) : "memory"); }

    // hin += coef · a published inclusive state slice (float32, the warp's layout).
    __device__ __forceinline__ void lb_add_inclusive(float (*hin)[NS / 32][4], const float* src, float coef, int lane) {
        constexpr int NT = NS / 32;
        for (int i = 0; i < 2; i++) for (int j = 0; j < NT; j++) {
            const float4 v = __ldcg((const float4*)(src + ((i * NT + j) * 32 + lane) * 4));
            hin[i][j][0] += coef * v.x; hin[i][j][1] += coef * v.y; hin[i][j][2] += coef * v.z; hin[i][j][3] += coef * v.w;
        }
    }

    // 512 threads: two groups of 8 warps, each on its own heads with its own barrier (ids 1 and 2), sharing
    // C, B and C·Bᵀ; one block a multiprocessor (registers capped at 128).
    extern "C" __global__ void __launch_bounds__(512, 1) ssd_tc_fused(
            int b, int L, int H, int G, int nchunks, int hb, const u16* __restrict__ x, const float* __restrict__ dtRaw,
            const float* __restrict__ dtBias, const float* __restrict__ A, int softplus, float lo, float hi,
            const u16* __restrict__ B, const u16* __restrict__ C, const float* __restrict__ D, int dPerChannel,
            const u16* __restrict__ z, const float* __restrict__ initial, float* __restrict__ finalStates,
            u16* aggregates, float* inclusive, unsigned long long* flags, u16* __restrict__ y) {
        constexpr int NT = NS / 32;                 // n-tiles of a warp's state slice
        constexpr int SLICE = PH * NS / 8;          // elements of a warp's slice
        const int hpg = H / G, nhb = hpg / hb;
        const int tid = threadIdx.x, lane = tid & 31, grp = tid >> 8, gtid = tid & 255, warp = (tid >> 5) & 7;
        __shared__ int ticketS;
        if (tid == 0) ticketS = (int)atomicAdd((unsigned*)flags, 1u);  // word 0: the ticket counter
        __syncthreads();
        const int nz = G * nhb, ticket = ticketS, zb = ticket % nz, r = (ticket / nz) % b, c = ticket / (nz * b);
        const int g = zb / nhb, h0 = g * hpg + (zb % nhb) * hb;
        const int t0 = c * QC, q = min(QC, L - t0);
        const bool last = c == nchunks - 1;
        unsigned long long* flag = flags + 1;       // [b][H][nchunks][8]
        extern __shared__ __align__(16) unsigned char smem[];
        u16* CBs = (u16*)smem;                      // [QC][LDQ]: C·Bᵀ in the 16-bit type
        u16* Cs = CBs + QC * LDQ;                   // [QC][LDN]
        u16* Bs = Cs + QC * LDN;                    // [QC][LDN]
        u16* Xs = Bs + QC * LDN + grp * 2 * QC * LDP;  // [QC][LDP]: X of the group's head
        u16* Xw = Xs + QC * LDP;                    // [QC][LDP]: w∘X of the head, until its state is made; then
        u16* Hs = Xw;                               //   [PH][LDN]: the state entering the chunk
        float* dtAll = (float*)(Bs + QC * LDN + 4 * QC * LDP);  // [hb][QC] dt_t of each head
        float* cumAll = dtAll + hb * QC;            // [hb][QC] cum_t (past the row's end: its last value)
        float* wS = cumAll + hb * QC + grp * 3 * QC;  // [QC] the group's head's tile factors for the scan's M
        float* vS = wS + QC;
        float* eS = vS + QC;                        // [QC] exp(cum_t)
        if (grp == 0) load_chunk_bc(B, C, Bs, Cs, (size_t)r * L + t0, G, g, q, gtid);
        uint4 xr[XR];  // the group's next head's X, fetched while this head computes
        auto fetch = [&](int h) { fetch_head_x(xr, x, (size_t)r * L + t0, H, h, q, gtid); };
        if (grp < hb) fetch(h0 + grp);
        if (grp == 1) chunk_dt(dtAll, dtRaw, dtBias, softplus, lo, hi, (size_t)r * L + t0, H, h0, hb, q, gtid, 256);
        __syncthreads();
        if (grp == 0) chunk_cb(Cs, Bs, CBs, warp, lane);
        else for (int hh = warp; hh < hb; hh += 8) {  // a warp per head: the cumulative decay
            float d[4], v[4];
            warp_chunk_cum(dtAll + hh * QC, A[h0 + hh], lane, d, v);
            for (int i = 0; i < 4; i++) cumAll[hh * QC + lane * 4 + i] = v[i];
        }
        // This warp's slice of the state: rows m0 + 16i + lane/4 (+ 8), columns (nbase + j)·8 + 2·(lane % 4) (+ 1).
        const int m0 = (warp & 1) * 32, nbase = (warp >> 1) * NT;
        __syncthreads();  // C·Bᵀ and cum are ready
        for (int hh = grp; hh < hb; hh += 2) {
            const int h = h0 + hh;
            group_sync(grp);  // the group's previous head is done with Xs, Xw, Hs and the factors
            const float* cumS = cumAll + hh * QC;  // the head's cum_t and dt_t
            const float* dtS = dtAll + hh * QC;
            const float total = cumS[QC - 1];
            for (int k = 0; k < XR; k++) {  // X, and w∘X with the state's weights w_t = exp(cum_last − cum_t)·dt_t
                const int e = gtid + k * 256, t = e / (PH / 8), p8 = (e % (PH / 8)) * 8;
                *(uint4*)(Xs + t * LDP + p8) = xr[k];
                *(uint4*)(Xw + t * LDP + p8) = scale8(xr[k], t < q ? expf(fminf(total - cumS[t], 0.f)) * dtS[t] : 0.f);
            }
            if (gtid < QC) {
                const float cr = cumS[gtid], dr = dtS[gtid], ce = cumS[gtid | 15], cb = cumS[gtid & ~15];
                wS[gtid] = __expf(fminf(ce - cr, 0.f)) * dr;
                vS[gtid] = __expf(fminf(fmaxf(cb - cr, 0.f), 64.f)) * dr;  // read only where the tile's decay is under 64
                eS[gtid] = __expf(fminf(cr, 0.f));
            }
            const float decay = expf(fminf(total, 0.f));  // the chunk's: exp(cum_last)
            if (hh + 2 < hb) fetch(h + 2);
            group_sync(grp);
            const size_t slot = ((size_t)r * H + h) * nchunks;  // + chunk: this head's flags and slices
            // 1. the chunk's own state, rounded to the 16-bit type, published unless no chunk follows
            u32 sp[2][NT][2];
            {
                float s[2][NT][4];
                chunk_outer_acc(Xw, Bs, s, warp, lane);
                for (int i = 0; i < 2; i++) for (int j = 0; j < NT; j++) { sp[i][j][0] = pack2(s[i][j][0], s[i][j][1]); sp[i][j][1] = pack2(s[i][j][2], s[i][j][3]); }
            }
            if (!last) {
                u16* dst = aggregates + (slot + c) * PH * NS + warp * SLICE;
                for (int i = 0; i < 2; i++) for (int j = 0; j < NT; j += 2)
                    __stcg((uint4*)(dst + ((i * NT + j) / 2 * 32 + lane) * 8), make_uint4(sp[i][j][0], sp[i][j][1], sp[i][j + 1][0], sp[i][j + 1][1]));
                __syncwarp();  // the warp's stores, then one release of them all
                if (lane == 0) lb_publish(flag + (slot + c) * 8 + warp, 1, decay);
            }
            group_sync(grp);  // every warp of the group is done with Xw, whose room h_in takes
            // 2. the state entering the chunk (this warp's slice), by look-back
            float hin[2][NT][4];
            for (int i = 0; i < 2; i++) for (int j = 0; j < NT; j++) hin[i][j][0] = hin[i][j][1] = hin[i][j][2] = hin[i][j][3] = 0.f;
            {
                float coef = 1.f;
                int j = c - 1;
                for (; j >= 0 && coef != 0.f; j--) {
                    const unsigned long long f = lb_poll(flag + (slot + j) * 8 + warp);
                    if ((f >> 32) == 2) { lb_add_inclusive(hin, inclusive + (slot + j) * PH * NS + warp * SLICE, coef, lane); break; }
                    const u16* src = aggregates + (slot + j) * PH * NS + warp * SLICE;
                    for (int i = 0; i < 2; i++) for (int jj = 0; jj < NT; jj += 2) {
                        const uint4 v = __ldcg((const uint4*)(src + ((i * NT + jj) / 2 * 32 + lane) * 8));
                        const float2 a = unpack2(v.x), bb = unpack2(v.y), cc = unpack2(v.z), dd = unpack2(v.w);
                        hin[i][jj][0] += coef * a.x; hin[i][jj][1] += coef * a.y; hin[i][jj][2] += coef * bb.x; hin[i][jj][3] += coef * bb.y;
                        hin[i][jj + 1][0] += coef * cc.x; hin[i][jj + 1][1] += coef * cc.y; hin[i][jj + 1][2] += coef * dd.x; hin[i][jj + 1][3] += coef * dd.y;
                    }
                    coef *= __uint_as_float((unsigned)f);
                }
                if (j < 0 && initial && coef != 0.f) {  // the walk reached the row's start: its initial state
                    const float* src = initial + ((size_t)r * H + h) * PH * NS;
                    for (int i = 0; i < 2; i++) for (int jj = 0; jj < NT; jj++) {
                        const int p = m0 + i * 16 + (lane >> 2), n = (nbase + jj) * 8 + (lane & 3) * 2;
                        const float2 v0 = *(const float2*)(src + p * NS + n), v1 = *(const float2*)(src + (p + 8) * NS + n);
                        hin[i][jj][0] += coef * v0.x; hin[i][jj][1] += coef * v0.y; hin[i][jj][2] += coef * v1.x; hin[i][jj][3] += coef * v1.y;
                    }
                }
            }
            // 3. the state after the chunk: published, or the row's final state
            {
                float o[2][NT][4];
                for (int i = 0; i < 2; i++) for (int j = 0; j < NT; j++) {
                    const float2 s0 = unpack2(sp[i][j][0]), s1 = unpack2(sp[i][j][1]);
                    o[i][j][0] = decay * hin[i][j][0] + s0.x; o[i][j][1] = decay * hin[i][j][1] + s0.y;
                    o[i][j][2] = decay * hin[i][j][2] + s1.x; o[i][j][3] = decay * hin[i][j][3] + s1.y;
                }
                if (!last) {
                    float* dst = inclusive + (slot + c) * PH * NS + warp * SLICE;
                    for (int i = 0; i < 2; i++) for (int j = 0; j < NT; j++)
                        __stcg((float4*)(dst + ((i * NT + j) * 32 + lane) * 4), make_float4(o[i][j][0], o[i][j][1], o[i][j][2], o[i][j][3]));
                    __syncwarp();
                    if (lane == 0) lb_publish(flag + (slot + c) * 8 + warp, 2, decay);
                } else {
                    float* dst = finalStates + ((size_t)r * H + h) * PH * NS;
                    for (int i = 0; i < 2; i++) for (int j = 0; j < NT; j++) {
                        const int p = m0 + i * 16 + (lane >> 2), n = (nbase + j) * 8 + (lane & 3) * 2;
                        *(float2*)(dst + p * NS + n) = make_float2(o[i][j][0], o[i][j][1]);
                        *(float2*)(dst + (p + 8) * NS + n) = make_float2(o[i][j][2], o[i][j][3]);
                    }
                }
            }
            for (int i = 0; i < 2; i++) for (int j = 0; j < NT; j++) {  // h_in in the 16-bit type, for C·h_inᵀ
                const int p = m0 + i * 16 + (lane >> 2), n = (nbase + j) * 8 + (lane & 3) * 2;
                *(u32*)(Hs + p * LDN + n) = pack2(hin[i][j][0], hin[i][j][1]);
                *(u32*)(Hs + (p + 8) * LDN + n) = pack2(hin[i][j][2], hin[i][j][3]);
            }
            group_sync(grp);
            // 4. Y = e^{cum_t}·C·h_inᵀ + M·X (as the scan), then D·x, the gate, the output
            const float dHead = D && !dPerChannel ? D[h] : 0.f;
            #pragma unroll
            for (int u = 0; u < 2; u++)
                unit_y(u, warp, lane, CBs, Cs, Hs, Xs, cumS, dtS, wS, vS, eS, nullptr, false, D, dPerChannel, dHead, z, y, nullptr,
                       (size_t)r * L + t0, H, h, q);
        }
    }
    #endif
    """#

    /// Dynamic shared memory of ssd_tc_fused for a state size and heads per block (bytes).
    static func fusedSSDShared(stateSize N: Int, headsPerBlock hb: Int) -> Int {
        let (Q, P, pad) = (128, 64, 8)
        let ldq = Q + pad, ldn = N + pad, ldp = P + pad
        return (Q * ldq + 2 * Q * ldn + 4 * Q * ldp) * 2 + 2 * hb * Q * 4 + 6 * Q * 4
    }
}
