import Mamba2
extension CUDAKernelSource {
    /// The chunked SSD backward on tensor cores, for 16-bit inputs (fp32 accumulation), after the
    /// tensor-core forward of the same inputs, whose dt, chunk-local cumulative decay cum (float32, (b, H, L)),
    /// chunk decays and incoming chunk states h_in (16-bit) it reads. Compiled after `halfConversions` and
    /// `tensorCoreCommon` (NS, PH = 64, QC = 128, ELEM_F16). Names as in `ssdBackward` (the plain float32
    /// backward, its reference): dY' the output gradient before the gate, g_c = dLoss/d(state leaving chunk c),
    /// E[t,s] = exp(cum_t − cum_s) (s ≤ t, same sequence), M = CB ∘ E ∘ dt_s, e_t = exp(cum_t) where t takes
    /// h_in, w_s = exp(cum_last − cum_s)·dt_s for s in the chunk's last sequence.
    ///   0. ssd_tc_bwd_gate (with z): dY' = dY·silu(z), dz = dY·y'·silu'(z) (y' saved by the forward).
    ///   1. ssd_tc_bwd_dstates (chunk, row, head blocks): dH_c = (e∘dY')ᵀ·C per head, the forward's
    ///      chunk-state product with dY' for X and C for B (`chunk_outer`), 16-bit, scaled by exp(−cum_0) so that
    ///      steep decays stay in fp16's range (the scale exp(cum_0) beside it, float32).
    ///   2. ssd_tc_bwd_passing (P·N/512, head, row): g_{c−1} = dH_c + decay_c·g_c backwards in float32 (dH_c unscaled),
    ///      writing each g_c in 16-bit (divided by a bound on its size, gScale, for the same reason) and per-warp
    ///      parts of d decay_c = ⟨g_c, h_in,c⟩; the initial
    ///      state's gradient in float32.
    ///   3. ssd_tc_bwd_chunk (chunk, row, group × hsplit; the group's heads in hsplit parts, each part's dCB
    ///      written apart, so that short inputs (few chunks) still fill the GPU):
    ///        dM = dY'·Xᵀ per 16×16 tile; Σ_heads dM∘E∘dt_s (the group's dCB) kept in registers across heads;
    ///        Z = dM∘CB∘E summed by rows and columns for the cum and dt gradients;
    ///        M = CB∘E∘dt_s made beside dM, tile by tile, into shared memory (16-bit);
    ///        dX = w∘(B·gᵀ) + Mᵀ·dY' + D·dY', Mᵀ's fragments by transposing loads of M;
    ///        dw_s = ⟨x_s, (B·gᵀ)_s⟩; D's gradient per chunk.
    ///   4. ssd_tc_bwd_dbc (chunk × group × {dC, dB} × parts of N of 64 or 32, row): the head parts' dCB summed;
    ///      dC = dCB·B + Σ_h e∘(dY'_h·h_in,h),
    ///      dB = dCBᵀ·C + Σ_h w∘(X_h·g_h), float32 across heads, 16-bit out; and the cum gradient of the
    ///      incoming state's part, e_t·⟨C_t, (dY'·h_in)_t⟩.
    ///   5. ssd_tc_bwd_finish (chunk, row, head): dcum per token, its reverse cumulative sum into dt and A,
    ///      dt's chain through the clamp, softplus and dt_bias; A and dt_bias gradients per chunk.
    ///   6. ssd_tc_bwd_heads (head): the per-chunk A, dt_bias and D gradients summed (float64).
    static let ssdTensorCoreBackward = #"""
    #define DPARTS 4  // D's per-chunk gradient in this many planes (quarters of the chunk), `CUDATensorCoreSSDBackward.dPartPlanes`
    __device__ __forceinline__ float sigm(float v) { return 1.f / (1.f + __expf(-v)); }

    extern "C" __global__ void ssd_tc_bwd_gate(long long n2, const u16* __restrict__ dY, const u16* __restrict__ z,
                                               const u16* __restrict__ yPre, u16* __restrict__ dYp, u16* __restrict__ dz) {
        const long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;  // a pair of elements
        if (i >= n2) return;
        const float2 g = unpack2(((const u32*)dY)[i]), zv = unpack2(((const u32*)z)[i]), yp = unpack2(((const u32*)yPre)[i]);
        const float s0 = sigm(zv.x), s1 = sigm(zv.y);
        ((u32*)dz)[i] = pack2(g.x * yp.x * s0 * (1.f + zv.x * (1.f - s0)), g.y * yp.y * s1 * (1.f + zv.y * (1.f - s1)));
        ((u32*)dYp)[i] = pack2(g.x * zv.x * s0, g.y * zv.y * s1);
    }

    extern "C" __global__ void __launch_bounds__(256, 2) ssd_tc_bwd_dstates(
            int L, int H, int G, int nchunks, int hb, const u16* __restrict__ dY, const u16* __restrict__ C,
            const float* __restrict__ cumOut, const int* __restrict__ seqStart, u16* __restrict__ dHout, float* __restrict__ dHscale) {
        const int hpg = H / G, nhb = hpg / hb;
        const int c = blockIdx.x, r = blockIdx.y, g = blockIdx.z / nhb, h0 = g * hpg + (blockIdx.z % nhb) * hb;
        const int t0 = c * QC, q = min(QC, L - t0);
        const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
        extern __shared__ __align__(16) unsigned char smem[];
        u16* Cs = (u16*)smem;         // [QC][LDN]
        u16* Ys = Cs + QC * LDN;      // [QC][LDP]: e∘dY' of the head
        float* eS = (float*)(Ys + QC * LDP);  // [QC]
        __shared__ float mS;                  // the head's cum at the chunk's first token (e's scale)
        for (int e = tid; e < QC * NS / 8; e += 256) {
            const int t = e / (NS / 8), n8 = (e % (NS / 8)) * 8;
            uint4 v = make_uint4(0, 0, 0, 0);
            if (t < q) v = *(const uint4*)(C + (((size_t)r * L + t0 + t) * G + g) * NS + n8);
            *(uint4*)(Cs + t * LDN + n8) = v;
        }
        const int st = seqStart && tid < q ? seqStart[(size_t)r * L + t0 + tid] : 0;
        // The next head's dY' and e are fetched into registers while this head's product runs (as the
        // forward's chunk-state kernel does with X): the loads no longer wait behind the barrier.
        constexpr int YR = QC * PH / 8 / 256;
        uint4 yr[YR];
        float er = 0.f;
        auto fetch = [&](int h) {
            for (int k = 0; k < YR; k++) {
                const int e = tid + k * 256, t = e / (PH / 8), p8 = (e % (PH / 8)) * 8;
                yr[k] = t < q ? *(const uint4*)(dY + (((size_t)r * L + t0 + t) * H + h) * PH + p8) : make_uint4(0, 0, 0, 0);
            }
            if (tid < QC) er = cumOut[((size_t)r * H + h) * L + t0 + min(tid, q - 1)];  // a load only: e is made at the store
        };
        fetch(h0);
        for (int h = h0; h < h0 + hb; h++) {
            __syncthreads();  // the previous head is done with Ys and eS
            // e_t = exp(cum_t) is taken over the tokens of the sequence the chunk began in, whose cum falls from
            // the first token on: the product is made of e_t·exp(−cum_0) ≤ 1 and dH stored in 16-bit divided by
            // exp(cum_0), which the passing kernel multiplies back in float32. (Stored as it is, with steep decays
            // e fell below fp16's range, 6e-8, within a token or two and so did dH: the initial state's gradient
            // came out zero or subnormal-rounded.)
            if (tid == 0) {
                const float m = q > 0 && (st < t0 || st == 0) ? fminf(er, 0.f) : 0.f;
                mS = m;
                dHscale[((size_t)r * H + h) * nchunks + c] = __expf(m);
            }
            __syncthreads();
            if (tid < QC) eS[tid] = tid < q && (st < t0 || st == 0) ? __expf(fminf(er - mS, 0.f)) : 0.f;
            __syncthreads();
            for (int k = 0; k < YR; k++) {
                const int e = tid + k * 256, t = e / (PH / 8), p8 = (e % (PH / 8)) * 8;
                *(uint4*)(Ys + t * LDP + p8) = scale8(yr[k], eS[t]);
            }
            if (h + 1 < h0 + hb) fetch(h + 1);
            __syncthreads();
            chunk_outer(Ys, Cs, dHout + (((size_t)r * H + h) * nchunks + c) * PH * NS, warp, lane);
        }
    }

    extern "C" __global__ void __launch_bounds__(256) ssd_tc_bwd_passing(
            int H, int nchunks, const u16* __restrict__ dHout, const float* __restrict__ dHscale, const float* __restrict__ chunkDecay,
            const u16* __restrict__ statesIn, const float* __restrict__ gradFinal, u16* __restrict__ dStates, float* __restrict__ gScale,
            float* __restrict__ ddecayPart, float* __restrict__ gInit) {
        const int e = (blockIdx.x * 256 + threadIdx.x) * 2, h = blockIdx.y, r = blockIdx.z;
        const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, parts = gridDim.x * 8;
        const size_t base = ((size_t)r * H + h) * nchunks, PN = (size_t)PH * NS;
        float2 g = gradFinal ? *(const float2*)(gradFinal + ((size_t)r * H + h) * PN + e) : make_float2(0.f, 0.f);
        // g_c is stored in 16-bit divided by sc, a bound on its size that every block computes alike from the
        // chunks' scalars (|g_{c−1}| ≤ ds_c·|dH_c/ds_c| + a_c·|g_c|): with steep decays g shrinks below fp16's
        // range from chunk to chunk as dH does; its consumers multiply sc back in float32.
        float sc = 1.f;
        auto step = [&](int c, u32 hraw, u32 draw, float a, float ds) {
            const float inv = 1.f / sc;
            *(u32*)(dStates + (base + c) * PN + e) = pack2(g.x * inv, g.y * inv);
            if (blockIdx.x == 0 && threadIdx.x == 0) gScale[base + c] = sc;
            const float2 hv = unpack2(hraw);
            float part = g.x * hv.x + g.y * hv.y;
            for (int o = 16; o > 0; o >>= 1) part += __shfl_xor_sync(0xffffffffu, part, o);
            if (lane == 0) ddecayPart[(base + c) * parts + blockIdx.x * 8 + warp] = part;
            const float2 dh = unpack2(draw);  // dH_c / ds (ds = exp(cum at the chunk's first token))
            g = make_float2(dh.x * ds + a * g.x, dh.y * ds + a * g.y);
            sc = fmaxf(ds, a * sc);
            if (!(sc > 0.f)) sc = 1.f;  // everything underflowed float32 too: g is 0 or nearly, any scale holds it
        };
        int c = nchunks - 1;
        for (; c >= 15; c -= 16) {  // loads first: they do not depend on the running gradient
            u32 hv[16], dh[16];
            float a[16], ds[16];
            for (int i = 0; i < 16; i++) {
                hv[i] = *(const u32*)(statesIn + (base + c - i) * PN + e);
                dh[i] = *(const u32*)(dHout + (base + c - i) * PN + e);
                a[i] = chunkDecay[base + c - i];
                ds[i] = dHscale[base + c - i];
            }
            for (int i = 0; i < 16; i++) step(c - i, hv[i], dh[i], a[i], ds[i]);
        }
        for (; c >= 0; c--)
            step(c, *(const u32*)(statesIn + (base + c) * PN + e), *(const u32*)(dHout + (base + c) * PN + e), chunkDecay[base + c],
                 dHscale[base + c]);
        if (gInit) *(float2*)(gInit + ((size_t)r * H + h) * PN + e) = g;
    }

    extern "C" __global__ void __launch_bounds__(256, 1) ssd_tc_bwd_chunk(
            int L, int H, int G, int nchunks, const u16* __restrict__ x, const u16* __restrict__ dY,
            const u16* __restrict__ B, const u16* __restrict__ C, const float* __restrict__ D, int dPerChannel,
            const float* __restrict__ dtOut, const float* __restrict__ cumOut, const u16* __restrict__ dStates,
            const float* __restrict__ gScale, const int* __restrict__ seqStart, u16* __restrict__ dX, u16* __restrict__ dCBsum, float* __restrict__ dcumP,
            float* __restrict__ ddtP, float* __restrict__ wdw, float* __restrict__ Dpart, int hsplit) {
        const int hpg = H / G, hpp = hpg / hsplit;
        const int c = blockIdx.x, r = blockIdx.y, g = blockIdx.z / hsplit, part = blockIdx.z % hsplit;
        const int h0 = g * hpg + part * hpp, h1 = h0 + hpp;  // this block's heads
        const int t0 = c * QC, q = min(QC, L - t0);
        const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
        extern __shared__ __align__(16) unsigned char smem[];
        u16* CBs = (u16*)smem;            // [QC][LDQ] C·Bᵀ
        u16* Ms = CBs + QC * LDQ;         // [QC][LDQ] M = CB ∘ E ∘ dt_s of the head (tiles on and below the diagonal)
        u16* Bs = Ms + QC * LDQ;          // [QC][LDN]
        u16* Cs = Bs + QC * LDN;          // [QC][LDN]
        u16* Xs = Cs + QC * LDN;          // [QC][LDP] X of the head
        u16* Ys = Xs + QC * LDP;          // [QC][LDP] dY' of the head
        u16* Gs = Ys + QC * LDP;          // [PH][LDN] g of the head (rows p)
        float* cumS = (float*)(Gs + PH * LDN);  // [QC]
        float* dtS = cumS + QC;           // [QC]
        float* wS = dtS + QC;             // [QC] w_s
        float* elS = wS + QC;             // [QC] exp(cum_last − cum_s) where s is in the last sequence
        float* zrowW = elS + QC;          // [2][QC] per half of a pair's tiles: Σ_s Z[t,s]·dt_s
        float* zcolW = zrowW + 2 * QC;    // [8][QC] per warp: Σ_t Z[t,s]
        float* dwW = zcolW + 8 * QC;      // [2][QC] per column half: dw_s
        int* stS = (int*)(dwW + 2 * QC);  // [QC] where t's sequence starts, relative to the chunk
        load_chunk_bc(B, C, Bs, Cs, (size_t)r * L + t0, G, g, q, tid);
        if (tid < QC) stS[tid] = (seqStart && tid < q ? seqStart[(size_t)r * L + t0 + tid] : 0) - t0;
        const int stLast = (seqStart ? seqStart[(size_t)r * L + t0 + q - 1] : 0) - t0;
        __syncthreads();
        chunk_cb(Cs, Bs, CBs, warp, lane);
        // The lower triangle's 36 tiles in four pairs of m-tiles (pi, 7 − pi), 9 tiles a pair; warp w takes pair
        // pi = w % 4, tiles 0–4 of it when w < 4 and 5–8 when w ≥ 4 (pair tile i is (pi, i) for i ≤ pi, else
        // (7 − pi, i − pi − 1)), so every warp does 4 or 5 tiles and keeps their part of the group's dCB.
        const int pi = warp & 3, hf = warp >> 2, tiles = hf == 0 ? 5 : 4;
        float dcb[5][2][4];
        #pragma unroll
        for (int i = 0; i < 5; i++) for (int j = 0; j < 2; j++) dcb[i][j][0] = dcb[i][j][1] = dcb[i][j][2] = dcb[i][j][3] = 0.f;
        const size_t rL = (size_t)r * L + t0;
        // The next head's X, dY', g and per-token factors are fetched into registers while this head computes.
        constexpr int XR = QC * PH / 8 / 256, GR = PH * NS / 8 / 256;
        uint4 xr[XR], yr[XR], gr[GR];
        float crr = 0.f, clr = 0.f, drr = 0.f;
        auto fetch = [&](int h) {
            const size_t rh = (size_t)r * H + h;
            for (int k = 0; k < XR; k++) {
                const int e = tid + k * 256, t = e / (PH / 8), p8 = (e % (PH / 8)) * 8;
                xr[k] = yr[k] = make_uint4(0, 0, 0, 0);
                if (t < q) {
                    xr[k] = *(const uint4*)(x + ((rL + t) * H + h) * PH + p8);
                    yr[k] = *(const uint4*)(dY + ((rL + t) * H + h) * PH + p8);
                }
            }
            const u16* gsrc = dStates + (rh * nchunks + c) * PH * NS;
            for (int k = 0; k < GR; k++) gr[k] = *(const uint4*)(gsrc + (tid + k * 256) * 8);
            if (tid < QC) {
                // past the row's end: cum holds its last value and dt is 0 (so every factor stays finite)
                const float* cum = cumOut + rh * L + t0;
                crr = cum[min(tid, q - 1)];
                clr = cum[q - 1];
                drr = tid < q ? dtOut[rh * L + t0 + tid] : 0.f;
            }
        };
        fetch(h0);
        for (int h = h0; h < h1; h++) {
            const size_t rh = (size_t)r * H + h;
            __syncthreads();  // C·Bᵀ is made / the previous head is done with the shared arrays
            for (int k = 0; k < XR; k++) {
                const int e = tid + k * 256, t = e / (PH / 8), p8 = (e % (PH / 8)) * 8;
                *(uint4*)(Xs + t * LDP + p8) = xr[k];
                *(uint4*)(Ys + t * LDP + p8) = yr[k];
            }
            for (int k = 0; k < GR; k++) {
                const int e8 = (tid + k * 256) * 8, p = e8 / NS, n = e8 % NS;
                *(uint4*)(Gs + p * LDN + n) = gr[k];
            }
            if (tid < QC) {
                cumS[tid] = crr;
                dtS[tid] = drr;
                const float el = tid < q && tid >= stLast ? __expf(fminf(clr - crr, 0.f)) : 0.f;
                elS[tid] = el;
                wS[tid] = el * drr;
            }
            if (h + 1 < h1) fetch(h + 1);
            for (int k = lane; k < QC; k += 32) zcolW[warp * QC + k] = 0.f;
            __syncthreads();
            // (a) dM = dY'·Xᵀ tile by tile; dCB summed over heads; Z's row and column sums
            float zA0 = 0.f, zA1 = 0.f, zB0 = 0.f, zB1 = 0.f;  // Z's row sums: m-tile pi / 7 − pi, rows r0/r1
            #pragma unroll
            for (int ii = 0; ii < 5; ii++) {
                if (ii >= tiles) break;
                const int i = hf * 5 + ii;
                const bool first = i <= pi;
                const int mt = first ? pi : 7 - pi, kt = first ? i : i - pi - 1;
                float acc[2][4] = {{0.f, 0.f, 0.f, 0.f}, {0.f, 0.f, 0.f, 0.f}};
                for (int k0 = 0; k0 < PH; k0 += 16) {
                    u32 af[4], bf[4];
                    loadA(af, Ys, LDP, mt * 16, k0, lane);
                    loadB2(bf, Xs, LDP, k0, kt * 16, lane);
                    mma16816(acc[0], af, bf);
                    mma16816(acc[1], af, bf + 2);
                }
                // element e of n-tile j: row t = tr0 (e < 2) or tr0 + 8, column s = s0 + (e & 1); the row values
                // once per tile, the column values and C·Bᵀ as pairs
                float col[2][2] = {{0.f, 0.f}, {0.f, 0.f}};
                const int tr0 = mt * 16 + (lane >> 2);
                const float ctr[2] = {cumS[tr0], cumS[tr0 + 8]};
                const int str[2] = {stS[tr0], stS[tr0 + 8]};
                #pragma unroll
                for (int j = 0; j < 2; j++) {
                    const int s0 = kt * 16 + j * 8 + (lane & 3) * 2;
                    const float2 cs = *(const float2*)(cumS + s0), ds = *(const float2*)(dtS + s0);
                    const float2 cbr[2] = {unpack2(*(const u32*)(CBs + tr0 * LDQ + s0)), unpack2(*(const u32*)(CBs + (tr0 + 8) * LDQ + s0))};
                    float m[4];
                    #pragma unroll
                    for (int e = 0; e < 4; e++) {
                        const int t = tr0 + (e >> 1) * 8, s = s0 + (e & 1);
                        const float csv = (e & 1) ? cs.y : cs.x, dsv = (e & 1) ? ds.y : ds.x;
                        const float cb = (e & 1) ? cbr[e >> 1].y : cbr[e >> 1].x;
                        m[e] = 0.f;
                        if (s <= t && s >= str[e >> 1]) {
                            const float E = __expf(fminf(ctr[e >> 1] - csv, 0.f)), dm = acc[j][e];
                            m[e] = cb * E * dsv;
                            dcb[ii][j][e] += dm * E * dsv;
                            const float Z = dm * cb * E;
                            const float zd = Z * dsv;
                            if (first) { if (e < 2) zA0 += zd; else zA1 += zd; } else { if (e < 2) zB0 += zd; else zB1 += zd; }
                            col[j][e & 1] += Z;
                        }
                    }
                    *(u32*)(Ms + tr0 * LDQ + s0) = pack2(m[0], m[1]);
                    *(u32*)(Ms + (tr0 + 8) * LDQ + s0) = pack2(m[2], m[3]);
                }
                for (int j = 0; j < 2; j++) {
                    for (int k = 0; k < 2; k++) {
                        float v = col[j][k];
                        v += __shfl_xor_sync(0xffffffffu, v, 4);
                        v += __shfl_xor_sync(0xffffffffu, v, 8);
                        v += __shfl_xor_sync(0xffffffffu, v, 16);
                        if (lane < 4) zcolW[warp * QC + kt * 16 + j * 8 + lane * 2 + k] += v;
                    }
                }
            }
            {   // every row of the pair's two m-tiles gets this warp's part (0 where it had no tile of that m-tile)
                const float zs[4] = {zA0, zA1, zB0, zB1};
                #pragma unroll
                for (int k = 0; k < 4; k++) {
                    float v = zs[k];
                    v += __shfl_xor_sync(0xffffffffu, v, 1);
                    v += __shfl_xor_sync(0xffffffffu, v, 2);
                    if ((lane & 3) == 0) zrowW[hf * QC + (k < 2 ? pi : 7 - pi) * 16 + (lane >> 2) + (k & 1) * 8] = v;
                }
            }
            __syncthreads();  // M is complete
            // (b) dX = w∘(B·gᵀ) + Mᵀ·dY' + D·dY', in two units per warp (rows of m-tile w, columns 0–31; rows of
            // m-tile 7 − w, columns 32–63); dw_s = ⟨x_s, (B·gᵀ)_s⟩ per column half.
            for (int u = 0; u < 2; u++) {
                const int ms = u == 0 ? warp : 7 - warp, n0 = u * 32, sr = ms * 16 + (lane >> 2);
                float acc[4][4];
                for (int j = 0; j < 4; j++) acc[j][0] = acc[j][1] = acc[j][2] = acc[j][3] = 0.f;
                for (int k0 = 0; k0 < NS; k0 += 16) {
                    u32 af[4];
                    loadA(af, Bs, LDN, ms * 16, k0, lane);
                    for (int j = 0; j < 4; j += 2) {
                        u32 bf[4];
                        loadB2(bf, Gs, LDN, k0, n0 + j * 8, lane);
                        mma16816(acc[j], af, bf);
                        mma16816(acc[j + 1], af, bf + 2);
                    }
                }
                const float gs = gScale[rh * nchunks + c];  // g was stored divided by it
                for (int j = 0; j < 4; j++) { acc[j][0] *= gs; acc[j][1] *= gs; acc[j][2] *= gs; acc[j][3] *= gs; }
                float d0 = 0.f, d1 = 0.f;
                for (int j = 0; j < 4; j++) {
                    const int p = n0 + j * 8 + (lane & 3) * 2;
                    const float2 x0 = unpack2(*(const u32*)(Xs + sr * LDP + p)), x1 = unpack2(*(const u32*)(Xs + (sr + 8) * LDP + p));
                    d0 += acc[j][0] * x0.x + acc[j][1] * x0.y;
                    d1 += acc[j][2] * x1.x + acc[j][3] * x1.y;
                }
                d0 += __shfl_xor_sync(0xffffffffu, d0, 1); d0 += __shfl_xor_sync(0xffffffffu, d0, 2);
                d1 += __shfl_xor_sync(0xffffffffu, d1, 1); d1 += __shfl_xor_sync(0xffffffffu, d1, 2);
                if ((lane & 3) == 0) { dwW[u * QC + sr] = d0; dwW[u * QC + sr + 8] = d1; }
                const float w0 = wS[sr], w1 = wS[sr + 8];
                for (int j = 0; j < 4; j++) { acc[j][0] *= w0; acc[j][1] *= w0; acc[j][2] *= w1; acc[j][3] *= w1; }
                for (int kt = ms; kt < QC / 16; kt++) {
                    u32 af[4];
                    loadAT(af, Ms, LDQ, ms * 16, kt * 16, lane);  // Mᵀ: rows s, columns t
                    for (int j = 0; j < 4; j += 2) {
                        u32 bf[4];
                        loadB2T(bf, Ys, LDP, kt * 16, n0 + j * 8, lane);
                        mma16816(acc[j], af, bf);
                        mma16816(acc[j + 1], af, bf + 2);
                    }
                }
                for (int half = 0; half < 2; half++) {
                    const int s = sr + half * 8;
                    if (s >= q) continue;
                    for (int j = 0; j < 4; j++) {
                        const int p = n0 + j * 8 + (lane & 3) * 2;
                        float v0 = acc[j][half * 2], v1 = acc[j][half * 2 + 1];
                        if (D) {
                            const float2 dy = unpack2(*(const u32*)(Ys + s * LDP + p));
                            const float2 dd = dPerChannel ? *(const float2*)(D + h * PH + p) : make_float2(D[h], D[h]);
                            v0 += dd.x * dy.x;
                            v1 += dd.y * dy.y;
                        }
                        *(u32*)(dX + ((rL + s) * H + h) * PH + p) = pack2(v0, v1);
                    }
                }
            }
            __syncthreads();  // Z's sums and dw are complete
            if (tid < q) {
                float zc = 0.f;
                for (int w = 0; w < 8; w++) zc += zcolW[w * QC + tid];
                const float dw = dwW[tid] + dwW[QC + tid];
                const size_t o = rh * L + t0 + tid;
                dcumP[o] = zrowW[tid] + zrowW[QC + tid] - zc * dtS[tid] - dw * wS[tid];
                ddtP[o] = zc + dw * elS[tid];
                wdw[o] = dw * wS[tid];
            } else if (D && tid >= QC) {  // (not the threads from q to QC of a short chunk)
                // warps 4–7: D's gradient Σ_t dY'·x per channel pair over a quarter of the chunk each (plane
                // qt of DPARTS), so that the block waits 32 tokens' products here instead of 128 (2 warps in
                // series over the whole chunk cost the kernel 10–15% before)
                const int u = tid - QC, p = (u & 31) * 2, qt = u >> 5;
                float s0 = 0.f, s1 = 0.f;
                for (int t = qt * 32; t < min(q, qt * 32 + 32); t++) {
                    const float2 yv = unpack2(*(const u32*)(Ys + t * LDP + p)), xv = unpack2(*(const u32*)(Xs + t * LDP + p));
                    s0 += yv.x * xv.x;
                    s1 += yv.y * xv.y;
                }
                *(float2*)(Dpart + ((((size_t)r * nchunks + c) * DPARTS + qt) * H + h) * PH + p) = make_float2(s0, s1);
            }
        }
        // this part's share of the group's dCB (16-bit), the tiles on and below the diagonal
        u16* out = dCBsum + ((((size_t)r * G + g) * hsplit + part) * nchunks + c) * QC * QC;
        #pragma unroll
        for (int ii = 0; ii < 5; ii++) {
            if (ii >= tiles) break;
            const int i = hf * 5 + ii;
            const bool first = i <= pi;
            const int mt = first ? pi : 7 - pi, kt = first ? i : i - pi - 1;
            const int t = mt * 16 + (lane >> 2);
            for (int j = 0; j < 2; j++) {
                const int s = kt * 16 + j * 8 + (lane & 3) * 2;
                *(u32*)(out + t * QC + s) = pack2(dcb[ii][j][0], dcb[ii][j][1]);
                *(u32*)(out + (t + 8) * QC + s) = pack2(dcb[ii][j][2], dcb[ii][j][3]);
            }
        }
    }

    // dB/dC blocks take N in NSPLIT parts of NH columns (64, or 32 where 64 does not divide N)
    #define NSPLIT ((NS % 64 == 0) ? NS / 64 : NS / 32)
    #define NH (NS / NSPLIT)
    #define LDH (NH + PAD)
    extern "C" __global__ void __launch_bounds__(256, 2) ssd_tc_bwd_dbc(
            int L, int H, int G, int nchunks, const u16* __restrict__ x, const u16* __restrict__ dY,
            const u16* __restrict__ B, const u16* __restrict__ C, const float* __restrict__ dtOut,
            const float* __restrict__ cumOut, const u16* __restrict__ statesIn, const u16* __restrict__ dStates,
            const float* __restrict__ gScale, const u16* __restrict__ dCBsum, const int* __restrict__ seqStart, u16* __restrict__ dB, u16* __restrict__ dC,
            float* __restrict__ offP, int hsplit) {
        const int hpg = H / G;
        // x = chunk × (group, {dC, dB}, part of N) with the parts fastest: the blocks of one chunk run side by
        // side, so the second read of dY', X, h_in and g by another part of N comes from L2, not from memory.
        const int parts = G * 2 * NSPLIT, zi = blockIdx.x % parts;
        const int c = blockIdx.x / parts, r = blockIdx.y, g = zi / (2 * NSPLIT), isB = zi % (2 * NSPLIT) / NSPLIT,
                  half = zi % NSPLIT;
        const int t0 = c * QC, q = min(QC, L - t0);
        const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
        const size_t rL = (size_t)r * L + t0;
        extern __shared__ __align__(16) unsigned char smem[];
        u16* Ks = (u16*)smem;             // [QC][LDQ] the group's dCB
        u16* Os = Ks + QC * LDQ;          // [QC][LDH] B (for dC) or C (for dB), this half of N
        u16* Cs = Os + QC * LDH;          // [QC][LDH] C, this half (for the cum gradient of dC blocks)
        u16* Vs = Cs + QC * LDH;          // [QC][LDP] dY' (dC) or X (dB) of the head
        u16* Ss = Vs + QC * LDP;          // [PH][LDH] h_in (dC) or g (dB) of the head, this half
        float* fS = (float*)(Ss + PH * LDH);  // [QC] e_t (dC) or w_s (dB)
        const u16* kin = dCBsum + (((size_t)r * G + g) * hsplit * nchunks + c) * QC * QC;
        for (int e = tid; e < QC * QC / 8; e += 256) {
            const int t = e / (QC / 8), s8 = (e % (QC / 8)) * 8;
            // only tiles on and below the diagonal were written; the head parts' planes summed in float32
            uint4 v = make_uint4(0, 0, 0, 0);
            if (s8 / 16 <= t / 16) {
                v = *(const uint4*)(kin + t * QC + s8);
                if (hsplit > 1) {
                    float2 a[4] = {unpack2(v.x), unpack2(v.y), unpack2(v.z), unpack2(v.w)};
                    for (int k = 1; k < hsplit; k++) {
                        const uint4 u = *(const uint4*)(kin + (size_t)k * nchunks * QC * QC + t * QC + s8);
                        const float2 b[4] = {unpack2(u.x), unpack2(u.y), unpack2(u.z), unpack2(u.w)};
                        for (int i = 0; i < 4; i++) { a[i].x += b[i].x; a[i].y += b[i].y; }
                    }
                    v = make_uint4(pack2(a[0].x, a[0].y), pack2(a[1].x, a[1].y), pack2(a[2].x, a[2].y), pack2(a[3].x, a[3].y));
                }
            }
            *(uint4*)(Ks + t * LDQ + s8) = v;
        }
        for (int e = tid; e < QC * NH / 8; e += 256) {
            const int t = e / (NH / 8), n8 = (e % (NH / 8)) * 8;
            uint4 bv = make_uint4(0, 0, 0, 0), cv = bv;
            if (t < q) {
                const size_t i = ((rL + t) * G + g) * NS + half * NH + n8;
                bv = *(const uint4*)(B + i);
                cv = *(const uint4*)(C + i);
            }
            *(uint4*)(Os + t * LDH + n8) = isB ? cv : bv;
            *(uint4*)(Cs + t * LDH + n8) = cv;
        }
        const int st = seqStart && tid < q ? seqStart[rL + tid] : 0;
        const int stLast = seqStart ? seqStart[rL + q - 1] : 0;
        __syncthreads();
        constexpr int NT = NH / 8;
        const int m0 = warp * 16, rr = m0 + (lane >> 2);
        float acc[NT][4];
        for (int j = 0; j < NT; j++) acc[j][0] = acc[j][1] = acc[j][2] = acc[j][3] = 0.f;
        // the intra-chunk part: dC = dCB·B over s ≤ t (tiles left of and on the diagonal), dB = dCBᵀ·C over t ≥ s
        for (int kt = isB ? warp : 0; kt <= (isB ? QC / 16 - 1 : warp); kt++) {
            u32 af[4];
            if (isB) loadAT(af, Ks, LDQ, m0, kt * 16, lane);
            else loadA(af, Ks, LDQ, m0, kt * 16, lane);
            for (int j = 0; j < NT; j += 2) {
                u32 bf[4];
                loadB2T(bf, Os, LDH, kt * 16, j * 8, lane);
                mma16816(acc[j], af, bf);
                mma16816(acc[j + 1], af, bf + 2);
            }
        }
        // The next head's operands and factors are fetched into registers while this head computes.
        constexpr int VR = QC * PH / 8 / 256, SR = (PH * NH / 8 + 255) / 256;
        uint4 vr[VR], sr[SR];
        float cr = 0.f, cl = 0.f, dr = 0.f, gs = 1.f;  // the token's cum (and dt), the chunk's last cum, g's scale
        const u16* vsrc = isB ? x : dY;
        auto fetch = [&](int h) {
            const size_t rh = (size_t)r * H + h;
            for (int k = 0; k < VR; k++) {
                const int e = tid + k * 256, t = e / (PH / 8), p8 = (e % (PH / 8)) * 8;
                vr[k] = t < q ? *(const uint4*)(vsrc + ((rL + t) * H + h) * PH + p8) : make_uint4(0, 0, 0, 0);
            }
            const u16* ssrc = (isB ? dStates : statesIn) + (rh * nchunks + c) * PH * NS + half * NH;
            for (int k = 0; k < SR; k++) {
                const int e = tid + k * 256, p = e / (NH / 8), n8 = (e % (NH / 8)) * 8;
                if (e < PH * NH / 8) sr[k] = *(const uint4*)(ssrc + p * NS + n8);
            }
            if (tid < QC) {  // loads only: the factor is made at the store, a head later, so they are not waited for here
                const float* cum = cumOut + rh * L + t0;
                cr = cum[min(tid, q - 1)];
                if (isB) { cl = cum[q - 1]; dr = tid < q ? dtOut[rh * L + t0 + tid] : 0.f; gs = gScale[rh * nchunks + c]; }
            }
        };
        fetch(g * hpg);
        for (int h = g * hpg; h < (g + 1) * hpg; h++) {
            const size_t rh = (size_t)r * H + h;
            __syncthreads();  // the previous head is done with Vs, Ss and fS
            for (int k = 0; k < VR; k++) {
                const int e = tid + k * 256, t = e / (PH / 8), p8 = (e % (PH / 8)) * 8;
                *(uint4*)(Vs + t * LDP + p8) = vr[k];
            }
            for (int k = 0; k < SR; k++) {
                const int e = tid + k * 256, p = e / (NH / 8), n8 = (e % (NH / 8)) * 8;
                if (e < PH * NH / 8) *(uint4*)(Ss + p * LDH + n8) = sr[k];
            }
            if (tid < QC) {
                float f = 0.f;
                if (tid < q) {
                    if (isB) f = t0 + tid >= stLast ? __expf(fminf(cl - cr, 0.f)) * dr * gs : 0.f;  // g stored divided by gs
                    else f = st < t0 || st == 0 ? __expf(fminf(cr, 0.f)) : 0.f;
                }
                fS[tid] = f;
            }
            if (h + 1 < (g + 1) * hpg) fetch(h + 1);
            __syncthreads();
            float v[NT][4];
            for (int j = 0; j < NT; j++) v[j][0] = v[j][1] = v[j][2] = v[j][3] = 0.f;
            for (int k0 = 0; k0 < PH; k0 += 16) {
                u32 af[4];
                loadA(af, Vs, LDP, m0, k0, lane);
                for (int j = 0; j < NT; j += 2) {
                    u32 bf[4];
                    loadB2T(bf, Ss, LDH, k0, j * 8, lane);
                    mma16816(v[j], af, bf);
                    mma16816(v[j + 1], af, bf + 2);
                }
            }
            const float f0 = fS[rr], f1 = fS[rr + 8];
            if (!isB) {  // the incoming state's part of dcum: e_t·⟨C_t, (dY'·h_in)_t⟩, this half of N
                float o0 = 0.f, o1 = 0.f;
                for (int j = 0; j < NT; j++) {
                    const int n = j * 8 + (lane & 3) * 2;
                    const float2 c0 = unpack2(*(const u32*)(Cs + rr * LDH + n)), c1 = unpack2(*(const u32*)(Cs + (rr + 8) * LDH + n));
                    o0 += v[j][0] * c0.x + v[j][1] * c0.y;
                    o1 += v[j][2] * c1.x + v[j][3] * c1.y;
                }
                o0 += __shfl_xor_sync(0xffffffffu, o0, 1); o0 += __shfl_xor_sync(0xffffffffu, o0, 2);
                o1 += __shfl_xor_sync(0xffffffffu, o1, 1); o1 += __shfl_xor_sync(0xffffffffu, o1, 2);
                if ((lane & 3) == 0) {
                    const size_t plane = (size_t)half * gridDim.y * H * L;
                    if (rr < q) offP[plane + rh * L + t0 + rr] = f0 * o0;
                    if (rr + 8 < q) offP[plane + rh * L + t0 + rr + 8] = f1 * o1;
                }
            }
            for (int j = 0; j < NT; j++) { acc[j][0] += f0 * v[j][0]; acc[j][1] += f0 * v[j][1]; acc[j][2] += f1 * v[j][2]; acc[j][3] += f1 * v[j][3]; }
        }
        u16* out = isB ? dB : dC;
        for (int k = 0; k < 2; k++) {
            const int t = rr + k * 8;
            if (t >= q) continue;
            for (int j = 0; j < NT; j++)
                *(u32*)(out + ((rL + t) * G + g) * NS + half * NH + j * 8 + (lane & 3) * 2) = pack2(acc[j][k * 2], acc[j][k * 2 + 1]);
        }
    }

    // The sum of v over the block of QC = 128 threads, in every thread.
    __device__ __forceinline__ double sum128(double v, double* red) {
        for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
        __syncthreads();
        if ((threadIdx.x & 31) == 0) red[threadIdx.x >> 5] = v;
        __syncthreads();
        return red[0] + red[1] + red[2] + red[3];
    }

    // A thread per token; the reverse cumulative sum of dcum is a shuffle scan within each warp plus the
    // warps after it (float64: its terms cancel).
    extern "C" __global__ void __launch_bounds__(QC) ssd_tc_bwd_finish(
            int L, int H, int nchunks, int parts, const float* __restrict__ dtRaw, const float* __restrict__ dtBias,
            const float* __restrict__ A, int softplus, float lo, float hi, const float* __restrict__ dtOut,
            const float* __restrict__ chunkDecay, const float* __restrict__ ddecayPart, const float* __restrict__ dcumP,
            const float* __restrict__ ddtP, const float* __restrict__ wdw, const float* __restrict__ offP,
            float* __restrict__ gRaw, float* __restrict__ dApart, float* __restrict__ dBiasPart) {
        const int c = blockIdx.x, r = blockIdx.y, h = blockIdx.z, t = threadIdx.x, lane = t & 31, warp = t >> 5;
        const int t0 = c * QC, q = min(QC, L - t0);
        const size_t rh = (size_t)r * H + h, i = rh * L + t0 + t, plane = (size_t)gridDim.y * H * L;
        __shared__ double red[4], tot[4];
        double dc = 0.0, wd = 0.0, dd = 0.0;
        float dtv = 0.f;
        if (t < q) {
            dc = dcumP[i];
            for (int k = 0; k < NSPLIT; k++) dc += offP[k * plane + i];
            dd = ddtP[i]; dtv = dtOut[i]; wd = wdw[i];
        }
        double dd0 = 0.0;
        for (int k = t; k < parts; k += QC) dd0 += ddecayPart[(rh * nchunks + c) * parts + k];
        // dcum_last gains Σ w·dw and d decay·decay
        const double wsum = sum128(wd, red), ddecay = sum128(dd0, red);
        const double extra = wsum + ddecay * chunkDecay[rh * nchunks + c];
        double run = dc;  // suffix sum within the warp
        for (int o = 1; o < 32; o <<= 1) {
            const double n = __shfl_down_sync(0xffffffffu, run, o);
            if (lane + o < 32) run += n;
        }
        if (lane == 0) tot[warp] = run;
        __syncthreads();
        for (int w = warp + 1; w < 4; w++) run += tot[w];
        run += extra;
        const float a = A[h];
        dd += run * a;
        const double dA = sum128(t < q ? run * dtv : 0.0, red);
        if (t == 0) dApart[rh * nchunks + c] = (float)dA;
        float gu = 0.f;
        if (t < q) {
            const size_t j = ((size_t)r * L + t0 + t) * H + h;
            float u = dtRaw[j] + (dtBias ? dtBias[h] : 0.f);
            gu = (float)dd;
            // the clamp's mask from the forward's own dt (dt_softplus): __expf's softplus could put a dt on the
            // other side of lo or hi than the forward did
            if (softplus) { gu *= u <= 20.f ? sigm(u) : 1.f; u = dt_softplus(u); }
            if (dt_clamps(lo, hi) && (u < lo || u > hi)) gu = 0.f;
            gRaw[j] = gu;
        }
        const double sb = sum128(gu, red);
        if (t == 0) dBiasPart[rh * nchunks + c] = (float)sb;
    }

    extern "C" __global__ void __launch_bounds__(256) ssd_tc_bwd_heads(int b, int H, int nchunks, const float* __restrict__ dApart,
                                                const float* __restrict__ dBiasPart, const float* __restrict__ Dpart, int dPerChannel,
                                                float* __restrict__ dA, float* __restrict__ dBias, float* __restrict__ dD) {
        const int h = blockIdx.x, t = threadIdx.x;  // 256 threads
        __shared__ double red[256];
        auto total = [&](double v) -> double {  // the block's sum, in every thread
            __syncthreads();  // every thread has read the previous total
            red[t] = v;
            __syncthreads();
            for (int o = 128; o > 0; o >>= 1) { if (t < o) red[t] += red[t + o]; __syncthreads(); }
            return red[0];
        };
        double sa = 0.0, sb = 0.0;
        for (int i = t; i < b * nchunks; i += 256) {
            const size_t k = ((size_t)(i / nchunks) * H + h) * nchunks + i % nchunks;
            sa += dApart[k];
            sb += dBiasPart[k];
        }
        sa = total(sa);
        if (t == 0) dA[h] = (float)sa;
        sb = total(sb);
        if (t == 0) dBias[h] = (float)sb;
        if (!Dpart) return;
        double sd = 0.0;  // channel t % 64, every fourth plane from t / 64
        for (int i = t >> 6; i < b * nchunks * DPARTS; i += 4) sd += Dpart[((size_t)i * H + h) * PH + (t & 63)];
        if (dPerChannel) {
            __syncthreads();
            red[t] = sd;
            __syncthreads();
            if (t < PH) dD[h * PH + t] = (float)(red[t] + red[t + 64] + red[t + 128] + red[t + 192]);
            return;
        }
        sd = total(sd);
        if (t == 0) dD[h] = (float)sd;
    }
    """#

    /// Dynamic shared memory of the tensor-core backward's kernels for a state size (bytes).
    static func tensorCoreBackwardShared(stateSize N: Int) -> (dstates: Int, chunk: Int, dbc: Int) {
        let (Q, P, pad) = (128, 64, 8)
        let ldp = P + pad, ldn = N + pad, ldq = Q + pad, ldh = CUDATensorCoreSSDBackward.splitWidth(stateSize: N) + pad
        let dstates = (Q * ldn + Q * ldp) * 2 + Q * 4
        let chunk = (2 * Q * ldq + 2 * Q * ldn + 2 * Q * ldp + P * ldn) * 2 + (4 * Q + 2 * Q + 8 * Q + 2 * Q) * 4 + Q * 4
        let dbc = (Q * ldq + 2 * Q * ldh + Q * ldp + P * ldh) * 2 + Q * 4
        return (dstates, chunk, dbc)
    }
}
