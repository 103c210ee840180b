import Mamba2
extension CUDAKernelSource {
    /// The chunked SSD forward on tensor cores, for 16-bit inputs (bf16 or fp16; fp32 accumulation).
    ///
    /// Compiled after `halfConversions`, per element type and state size with these macros prepended:
    /// ELEM_F16 (0: bf16, 1: fp16), NS (N, a multiple of 32), PH (P = 64), QC (the chunk, 128). Layouts as the CPU's: x, z, y
    /// (b, L, H, P) 16-bit; dt (b, L, H) float32 raw; B, C (b, L, G, N) 16-bit; A, D, dt_bias float32.
    /// Products are `mma.sync.m16n8k16` (inputs 16-bit, accumulators float32), operands staged in shared
    /// memory. One block handles one chunk of one group for `hb` of its heads, so B, C and C·Bᵀ are loaded
    /// and computed once for those heads:
    ///   1. ssd_tc_state (chunk, row, group): per head the dt transform and the cumulative decay (a
    ///      block scan), written for step 3, and the chunk's own end state S_c = (w∘X)ᵀ·B (P×N),
    ///      w_s = exp(cum_last − cum_s)·dt_s, accumulated in float32 and stored in the 16-bit type (the
    ///      chunk states are as large as x at N = 128: half their bytes for one rounding more).
    ///   2. ssd_tc_passing (P·N/256, head, row): h ← exp(cum_last)·h + S_c over the chunks in float32,
    ///      writing the state entering each chunk in the 16-bit type (step 3 multiplies it in that type)
    ///      and the final state in float32.
    ///   3. ssd_tc_scan (chunk, row, group): CB = C·Bᵀ once, kept in the 16-bit type (one rounding more
    ///      than the reference, whose float32 C·Bᵀ is rounded once after the decay: y's error in bf16 went
    ///      from 2.1e-3 to 2.5e-3, for half the shared memory, so that two blocks share an SM at N = 128
    ///      and N = 128 ran 1.23× faster), then per head
    ///      Y = e^{cum_t}·(C·h_inᵀ) + (CB ∘ exp(cum_t − cum_s) ∘ dt_s, s ≤ t)·X + D·x, gated by silu(z).
    ///      The decayed CB is made in registers, fragment by fragment; left of the diagonal tile its decay is
    ///      split at the tile's last token e, exp(cum_t − cum_e)·[exp(cum_e − cum_s)·dt_s] (both ≤ 1), and on
    ///      the diagonal at its first token b, exp(cum_t − cum_b)·[exp(cum_b − cum_s)·dt_s] (the second under
    ///      e^64·dt_s where the tile's decay is under 64; steeper tiles take each factor exactly), so a
    ///      fragment costs 2 exponentials instead of 8; e^{cum_t} scales C·h_inᵀ's rows after the product
    ///      instead of C's before it (the scan went from 0.86 to 0.55 ms at N = 128, 65,536 tokens).
    /// Packed rows (seqStart non-null, `CUDAPackedRows`): M is masked to s in t's sequence, a row takes
    /// h_in only when its sequence began before the chunk (or is the row's first), and a chunk's state is
    /// that of its last token's sequence, passed on only under the same condition (its chunkDecay is 0
    /// otherwise); `ssd_sequence_states` then gives every sequence's end state.
    /// Blocks of steps 1 and 3 take `hb` heads of a group each (grid z = groups × heads per group / hb),
    /// so that long single sequences still fill the GPU. Their 16-bit outputs (Y; the chunk states at N = 128) leave
    /// the accumulators through `quad_transpose`, 16 bytes a lane, whole sectors for L2.
    static let ssdTensorCore = #"""
    // The scan's work units (ssd_tc_scan and ssd_tc_fused): a warp computes Y for two units of 16 rows by CW
    // columns, balanced: rows of m-tile `warp` for the first half of the columns and rows of m-tile 7 − warp for
    // the second (the intra-chunk work of an m-tile grows with it); each m-tile's fragments are then built twice.
    // A warp per m-tile for all columns (fragments built once, warps unbalanced) measured 1–3% slower on the H200
    // (benchmarks/results/gpu-ssd-scan-units.md).
    #define CW (PH / 2)
    #define NTU (CW / 8)
    __device__ __forceinline__ int scan_unit_row(int u, int warp) { return (u == 0 ? warp : QC / 16 - 1 - warp) * 16; }

    // acc += C·h_inᵀ for the unit at (um0, n0): C [QC][LDN], h_in [PH][LDN] in shared memory.
    __device__ __forceinline__ void unit_state_in(float (*acc)[4], const u16* Cs, const u16* Hs, int um0, int n0, int lane) {
        for (int k0 = 0; k0 < NS; k0 += 16) {
            u32 af[4];
            loadA(af, Cs, LDN, um0, k0, lane);
            for (int j = 0; j < NTU; j += 2) {
                u32 bf[4];
                loadB2(bf, Hs, LDN, k0, n0 + j * 8, lane);
                mma16816(acc[j], af, bf);
                mma16816(acc[j + 1], af, bf + 2);
            }
        }
    }

    // e^x for a decay (x ≤ 0; vS's is at most e^64, where flushing cannot apply): ex2.approx.ftz, a multiply and one MUFU.
    // __expf's ex2 without ftz adds a range test and a rescale (four more instructions a call) to return results
    // under 2^-126 as subnormals; a decay that small leaves nothing of its term in a sum of 16-bit products, so
    // they flush to zero here. (The scan made some 21 exponentials a warp a head: ~4 % of its instructions.)
    __device__ __forceinline__ float exp_decay(float x) {
        float r;
        asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(r) : "f"(x * 1.4426950408889634f));
        return r;
    }

    // The per-row factors of M's fragments for rows ur = um0 + lane/4 and ur + 8: cum_t, and where packed the
    // start of t's sequence.
    struct FragRows { int ur; float ct0, ct1; int st0, st1; };
    __device__ __forceinline__ FragRows frag_rows(const float* cumS, const int* stS, bool packed, int um0, int lane) {
        const int ur = um0 + (lane >> 2);
        return {ur, cumS[ur], cumS[ur + 8], packed ? stS[ur] : 0, packed ? stS[ur + 8] : 0};
    }

    // The A fragment of M = CB ∘ exp(cum_t − cum_s) ∘ dt_s for the k-tile at k0: element (t, s) of fragment row
    // t ∈ {ur, ur + 8}, columns s ∈ {s0, s0 + 1, s0 + 8, s0 + 9}, from CB and the decay × dt of each element
    // (w<row><column pair>), masked to the row's sequence where packed. The layout is mma.m16n8k16's A fragment,
    // which is also a warp's share of wgmma's A taken from registers.
    __device__ __forceinline__ void m_fragment(u32* af, const u16* CBs, const FragRows& r, bool packed, int k0, int lane,
                                               float2 w00, float2 w01, float2 w10, float2 w11) {
        const int ur = r.ur, s0 = k0 + (lane & 3) * 2;
        const float2 c00 = unpack2(*(const u32*)(CBs + ur * LDQ + s0)), c01 = unpack2(*(const u32*)(CBs + ur * LDQ + s0 + 8));
        const float2 c10 = unpack2(*(const u32*)(CBs + (ur + 8) * LDQ + s0)), c11 = unpack2(*(const u32*)(CBs + (ur + 8) * LDQ + s0 + 8));
        if (packed) {  // tokens of an earlier sequence are masked
            if (s0 < r.st0) w00.x = 0.f;
            if (s0 + 1 < r.st0) w00.y = 0.f;
            if (s0 + 8 < r.st0) w01.x = 0.f;
            if (s0 + 9 < r.st0) w01.y = 0.f;
            if (s0 < r.st1) w10.x = 0.f;
            if (s0 + 1 < r.st1) w10.y = 0.f;
            if (s0 + 8 < r.st1) w11.x = 0.f;
            if (s0 + 9 < r.st1) w11.y = 0.f;
        }
        af[0] = pack2(c00.x * w00.x, c00.y * w00.y); af[1] = pack2(c10.x * w10.x, c10.y * w10.y);
        af[2] = pack2(c01.x * w01.x, c01.y * w01.y); af[3] = pack2(c11.x * w11.x, c11.y * w11.y);
    }

    // M's fragment for a k-tile left of the diagonal tile (k0 < the rows' tile): exp(cum_t − cum_s) =
    // exp(cum_t − cum_e)·exp(cum_e − cum_s), e the tile's last token; both factors ≤ 1 since cum never increases,
    // so neither overflows, and the second (times dt_s) is wS, made once per head.
    __device__ __forceinline__ void m_fragment_left(u32* af, const u16* CBs, const float* cumS, const float* wS, const FragRows& r,
                                                    bool packed, int k0, int lane) {
        const int s0 = k0 + (lane & 3) * 2;
        const float ce = cumS[k0 + 15];
        const float a0 = exp_decay(r.ct0 - ce), a1 = exp_decay(r.ct1 - ce);
        const float2 wa = *(const float2*)(wS + s0), wb = *(const float2*)(wS + s0 + 8);
        m_fragment(af, CBs, r, packed, k0, lane, make_float2(wa.x * a0, wa.y * a0), make_float2(wb.x * a0, wb.y * a0),
                   make_float2(wa.x * a1, wa.y * a1), make_float2(wb.x * a1, wb.y * a1));
    }

    // M's fragment for the diagonal tile (k0 = the rows' own tile), masked s ≤ t.
    __device__ __forceinline__ void m_fragment_diagonal(u32* af, const u16* CBs, const float* cumS, const float* dtS, const float* vS,
                                                        const FragRows& r, bool packed, int k0, int lane) {
        const int ur = r.ur, s0 = k0 + (lane & 3) * 2;
        if (cumS[k0] - cumS[k0 + 15] < 64.f) {
            // its decay split at its first token b: exp(cum_t − cum_b) ≤ 1 times vS = exp(cum_b − cum_s)·dt_s, which
            // stays under e^64·dt_s in such a tile
            const float cb = cumS[k0];
            const float a0 = exp_decay(r.ct0 - cb), a1 = exp_decay(r.ct1 - cb);
            const float2 va = *(const float2*)(vS + s0), vb = *(const float2*)(vS + s0 + 8);
            m_fragment(af, CBs, r, packed, k0, lane, make_float2(s0 <= ur ? va.x * a0 : 0.f, s0 + 1 <= ur ? va.y * a0 : 0.f),
                       make_float2(s0 + 8 <= ur ? vb.x * a0 : 0.f, s0 + 9 <= ur ? vb.y * a0 : 0.f),
                       make_float2(s0 <= ur + 8 ? va.x * a1 : 0.f, s0 + 1 <= ur + 8 ? va.y * a1 : 0.f),
                       make_float2(s0 + 8 <= ur + 8 ? vb.x * a1 : 0.f, s0 + 9 <= ur + 8 ? vb.y * a1 : 0.f));
        } else {
            // a steeper decay: each factor exact
            auto f = [&](int t, float ct, int s) { return s <= t ? exp_decay(fminf(ct - cumS[s], 0.f)) * dtS[s] : 0.f; };
            m_fragment(af, CBs, r, packed, k0, lane, make_float2(f(ur, r.ct0, s0), f(ur, r.ct0, s0 + 1)),
                       make_float2(f(ur, r.ct0, s0 + 8), f(ur, r.ct0, s0 + 9)),
                       make_float2(f(ur + 8, r.ct1, s0), f(ur + 8, r.ct1, s0 + 1)), make_float2(f(ur + 8, r.ct1, s0 + 8), f(ur + 8, r.ct1, s0 + 9)));
        }
    }

    // acc += M·X for the unit at (um0, n0), M = CB ∘ exp(cum_t − cum_s) ∘ dt_s (s ≤ t, same sequence where
    // `packed`), the A fragment of M made in registers. cumS, dtS, wS, vS, stS: the per-token factors (see ssd_tc_scan).
    __device__ __forceinline__ void unit_intra(float (*acc)[4], const u16* CBs, const u16* Xs, const float* cumS, const float* dtS,
                                               const float* wS, const float* vS, const int* stS, bool packed, int um0, int n0, int lane) {
        const FragRows r = frag_rows(cumS, stS, packed, um0, lane);
        auto times_x = [&](const u32* af, int k0) {
            for (int j = 0; j < NTU; j += 2) {
                u32 bf[4];
                loadB2T(bf, Xs, LDP, k0, n0 + j * 8, lane);
                mma16816(acc[j], af, bf);
                mma16816(acc[j + 1], af, bf + 2);
            }
        };
        // The tiles left of the diagonal, two at a time (their chains of loads, exponentials and products are
        // independent).
        #pragma unroll 2
        for (int k0 = 0; k0 < um0; k0 += 16) {
            u32 af[4];
            m_fragment_left(af, CBs, cumS, wS, r, packed, k0, lane);
            times_x(af, k0);
        }
        u32 af[4];
        m_fragment_diagonal(af, CBs, cumS, dtS, vS, r, packed, um0, lane);
        times_x(af, um0);
    }

    // D·x, the gate and the 16-bit output of the unit at (um0, n0): tokens from row offset rl (row·L + t0), q of them.
    // xAt(t, p): x of token t, channels p and p + 1, as two 16-bit values (the kernel's layout of X in shared memory).
    // Stored 16 bytes a lane after quad_transpose; every lane of the warp calls it (rows past q are not stored).
    template <int NT = NTU, class XAt>
    __device__ __forceinline__ void unit_store_y(float (*acc)[4], XAt xAt, const float* __restrict__ D, int dPerChannel, float dHead,
                                                 const u16* __restrict__ z, u16* __restrict__ y, u16* __restrict__ yPre, size_t rl,
                                                 int H, int h, int q, int um0, int n0, int lane) {
        static_assert(NT % 4 == 0, "whole quads of segments");
        const int ur = um0 + (lane >> 2);
        if (!z && !yPre && !(D && dPerChannel)) {
            // What the forward runs without a gate (the model gates in its norm): y = acc + D·x only. Apart, so that
            // no segment pays for the gate's and the per-channel D's branches and loads, or for the pre-gate copy:
            // they were 10 of its 16 instructions, a sixth of the scan's (ncu, N = 64).
            const float dh = D ? dHead : 0.f;
            for (int half = 0; half < 2; half++) {
                const int t = ur + half * 8;
                const size_t row = ((rl + t) * H + h) * PH + n0;
                u32 yv[NT];
                #pragma unroll
                for (int j = 0; j < NT; j++) {
                    float y0 = acc[j][half * 2], y1 = acc[j][half * 2 + 1];
                    if (D) {
                        const float2 xv = unpack2(xAt(t, n0 + j * 8 + (lane & 3) * 2));
                        y0 += dh * xv.x;
                        y1 += dh * xv.y;
                    }
                    yv[j] = pack2(y0, y1);
                }
                #pragma unroll
                for (int j0 = 0; j0 < NT; j0 += 4) {
                    const uint4 v = quad_transpose(yv[j0], yv[j0 + 1], yv[j0 + 2], yv[j0 + 3], lane);
                    if (t < q) *(uint4*)(y + row + (j0 + (lane & 3)) * 8) = v;
                }
            }
            return;
        }
        for (int half = 0; half < 2; half++) {
            const int t = ur + half * 8;
            const bool live = t < q;
            const size_t row = ((rl + t) * H + h) * PH + n0;
            u32 yv[NT], pv[NT];
            #pragma unroll
            for (int j = 0; j < NT; j++) {
                float y0 = acc[j][half * 2], y1 = acc[j][half * 2 + 1];
                if (D) {
                    const float2 xv = unpack2(xAt(t, n0 + j * 8 + (lane & 3) * 2));
                    if (dPerChannel) {
                        const float2 d = *(const float2*)(D + h * PH + n0 + j * 8 + (lane & 3) * 2);
                        y0 += d.x * xv.x;
                        y1 += d.y * xv.y;
                    } else {
                        y0 += dHead * xv.x;
                        y1 += dHead * xv.y;
                    }
                }
                pv[j] = pack2(y0, y1);  // before the gate, for the backward's dz
                if (z && live) {
                    const float2 zv = unpack2(*(const u32*)(z + row + j * 8 + (lane & 3) * 2));
                    y0 *= zv.x / (1.f + __expf(-zv.x));
                    y1 *= zv.y / (1.f + __expf(-zv.y));
                }
                yv[j] = pack2(y0, y1);
            }
            #pragma unroll
            for (int j0 = 0; j0 < NT; j0 += 4) {
                const size_t at = row + (j0 + (lane & 3)) * 8;
                const uint4 s = quad_transpose(yv[j0], yv[j0 + 1], yv[j0 + 2], yv[j0 + 3], lane);
                if (live) *(uint4*)(y + at) = s;
                if (yPre) {
                    const uint4 sp = quad_transpose(pv[j0], pv[j0 + 1], pv[j0 + 2], pv[j0 + 3], lane);
                    if (live) *(uint4*)(yPre + at) = sp;
                }
            }
        }
    }

    // Y of work unit u of a warp: the incoming state, C·h_inᵀ, each row scaled by exp(cum_t) (eS: or 0), then M·X
    // within the chunk, D·x, the gate and the 16-bit output (ssd_tc_scan's and ssd_tc_fused's last step).
    __device__ __forceinline__ void unit_y(int u, int warp, int lane, const u16* CBs, const u16* Cs, const u16* Hs, const u16* Xs,
                                           const float* cumS, const float* dtS, const float* wS, const float* vS, const float* eS,
                                           const int* stS, bool packed, const float* __restrict__ D, int dPerChannel, float dHead,
                                           const u16* __restrict__ z, u16* __restrict__ y, u16* __restrict__ yPre, size_t rl, int H, int h, int q) {
        const int um0 = scan_unit_row(u, warp), ur = um0 + (lane >> 2), n0 = u * CW;
        float acc[NTU][4];
        for (int j = 0; j < NTU; j++) acc[j][0] = acc[j][1] = acc[j][2] = acc[j][3] = 0.f;
        unit_state_in(acc, Cs, Hs, um0, n0, lane);
        const float e0 = eS[ur], e1 = eS[ur + 8];
        for (int j = 0; j < NTU; j++) { acc[j][0] *= e0; acc[j][1] *= e0; acc[j][2] *= e1; acc[j][3] *= e1; }
        unit_intra(acc, CBs, Xs, cumS, dtS, wS, vS, stS, packed, um0, n0, lane);
        unit_store_y(acc, [&](int t, int p) { return *(const u32*)(Xs + t * LDP + p); }, D, dPerChannel, dHead, z, y, yPre, rl, H, h, q, um0, n0, lane);
    }

    // The head's X of the chunk (QC × PH, 16-bit, zeros past the row's end q) into registers, XR 16-byte pieces a
    // thread (tid < 256): rl = row·L + t0, the kernels' "next head's X, fetched while this head computes".
    #define XR (QC * PH / 8 / 256)
    __device__ __forceinline__ void fetch_head_x(uint4* xr, const u16* __restrict__ x, size_t rl, int H, int h, int q, int tid) {
        for (int k = 0; k < XR; k++) {
            const int e = tid + k * 256, t = e / (PH / 8), p8 = (e % (PH / 8)) * 8;
            xr[k] = t < q ? *(const uint4*)(x + ((rl + t) * H + h) * PH + p8) : make_uint4(0, 0, 0, 0);
        }
    }

    // Token t's factors of a head into shared memory (ssd_tc_scan and ssd_wg_scan): cr = cum_t, dr = dt_t, ce and cb the cum at the end and start of
    // t's 16-token tile (past the row's end, cum holds its last value and dt is 0), st where t's sequence starts.
    __device__ __forceinline__ void scan_factors(float* cumS, float* dtS, float* wS, float* vS, float* eS, float cr, float dr,
                                                 float ce, float cb, int st, int t0, int t) {
        cumS[t] = cr;
        dtS[t] = dr;
        wS[t] = exp_decay(fminf(ce - cr, 0.f)) * dr;
        vS[t] = exp_decay(fminf(fmaxf(cb - cr, 0.f), 64.f)) * dr;  // read only where the tile's decay is under 64
        eS[t] = st < t0 || st == 0 ? exp_decay(fminf(cr, 0.f)) : 0.f;
    }

    // dt of the chunk's tokens (q of them, from row offset rl = row·L + t0) for heads h0 … h0 + hb − 1 into
    // dtAll[hh][QC], 0 past the row's end: bias, softplus, clamp. Heads fastest, so the loads are contiguous;
    // threads tid, tid + nthreads, ….
    __device__ __forceinline__ void chunk_dt(float* dtAll, const float* __restrict__ dtRaw, const float* __restrict__ dtBias,
                                             int softplus, float lo, float hi, size_t rl, int H, int h0, int hb, int q, int tid, int nthreads) {
        const bool clamp = dt_clamps(lo, hi);
        for (int e = tid; e < hb * QC; e += nthreads) {
            const int t = e / hb, hh = e % hb, h = h0 + hh;
            dtAll[hh * QC + t] = t < q ? token_dt(dtRaw[(rl + t) * H + h] + (dtBias ? dtBias[h] : 0.f), softplus, clamp, lo, hi) : 0.f;
        }
    }

    // One warp's cumulative decay of a head over the chunk: the lane's tokens 4·lane … 4·lane + 3 of dRow (dt)
    // into d, their cum_t = Σ_{s ≤ t} dt_s·a into cum (a shuffle scan of the lane totals); returns the chunk's total.
    __device__ __forceinline__ float warp_chunk_cum(const float* dRow, float a, int lane, float* d, float* cum) {
        float run = 0.f;
        for (int i = 0; i < 4; i++) { d[i] = dRow[lane * 4 + i]; run += d[i] * a; cum[i] = run; }
        float incl = run;
        for (int o = 1; o < 32; o <<= 1) { const float u = __shfl_up_sync(0xffffffffu, incl, o); if (lane >= o) incl += u; }
        for (int i = 0; i < 4; i++) cum[i] += incl - run;
        return __shfl_sync(0xffffffffu, incl, 31);
    }

    // One head's step after its dt, by one warp: from dt (in w[QC]) the cumulative decay (A = a), written with dt for
    // the scan, and the chunk-state weights w_s = exp(cum_last − cum_s)·dt_s in place of dt (0 for tokens before
    // stLast, the start of the chunk's last sequence); returns cum_last, whose exponential is the chunk's decay.
    // Shared by ssd_tc_state (chunk_weights) and ssd_wg_chain, whose dt, cum and decays the backward reads: the same
    // float32 sums in both.
    __device__ __forceinline__ float head_chunk_weights(float* w, float a, float* __restrict__ dtOut, float* __restrict__ cumOut,
                                                        int L, int H, int r, int t0, int q, int h, int stLast, int lane) {
        float d[4], v[4];
        const float total = warp_chunk_cum(w, a, lane, d, v);
        for (int i = 0; i < 4; i++) {
            const int t = lane * 4 + i;
            const float cum = v[i];
            if (t < q) {
                dtOut[((size_t)r * H + h) * L + t0 + t] = d[i];
                cumOut[((size_t)r * H + h) * L + t0 + t] = cum;
            }
            w[t] = t < q && t0 + t >= stLast ? expf(fminf(total - cum, 0.f)) * d[i] : 0.f;
        }
        return total;
    }

    // The state kernels' per-head step after chunk_dt, one warp per head (8 warps), dt in wAll[hh][QC]: the weights,
    // and the chunk's decay (0 where it does not carry the incoming state).
    __device__ __forceinline__ void chunk_weights(float* wAll, const float* __restrict__ A, float* __restrict__ dtOut, float* __restrict__ cumOut,
                                                  float* __restrict__ chunkDecay, int L, int H, int nchunks, int r, int c, int t0, int q,
                                                  int h0, int hb, int stLast, bool carries, int warp, int lane) {
        for (int hh = warp; hh < hb; hh += 8) {
            const int h = h0 + hh;
            const float total = head_chunk_weights(wAll + hh * QC, A[h], dtOut, cumOut, L, H, r, t0, q, h, stLast, lane);
            if (lane == 0) chunkDecay[((size_t)r * H + h) * nchunks + c] = carries ? expf(fminf(total, 0.f)) : 0.f;
        }
    }

    extern "C" __global__ void __launch_bounds__(256, 2) ssd_tc_state(
            int L, int H, int G, int nchunks, int hb, const u16* __restrict__ x, const float* __restrict__ dtRaw,
            const float* __restrict__ dtBias, const float* __restrict__ A, int softplus, float lo, float hi,
            const u16* __restrict__ B, const int* __restrict__ seqStart, float* __restrict__ dtOut, float* __restrict__ cumOut,
            u16* __restrict__ states, float* __restrict__ chunkDecay) {
        const int hpg = H / G, nhb = hpg / hb;
        const int c = blockIdx.x, r = blockIdx.y, g = blockIdx.z / nhb, h0 = g * hpg + (blockIdx.z % nhb) * hb;
        const int t0 = c * QC, q = min(QC, L - t0);
        const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
        // Packed rows: the chunk's state is that of its last token's sequence (tokens before that sequence's
        // start are left out), and it carries the incoming state only when that sequence began before the
        // chunk (or is the row's first, which owns the initial state).
        const int stLast = seqStart ? seqStart[(size_t)r * L + t0 + q - 1] : 0;
        const bool carries = stLast < t0 || stLast == 0;
        extern __shared__ __align__(16) unsigned char smem[];
        u16* Bs = (u16*)smem;             // [QC][LDN]: B of the chunk
        u16* Xw = Bs + QC * LDN;          // [QC][LDP]: w∘X of the head
        float* wAll = (float*)(Xw + QC * LDP);  // [hb][QC]: dt, then w_s = exp(cum_last − cum_s)·dt_s
        for (int e = tid; e < QC * NS / 8; e += 256) {
            const int t = e / (NS / 8), n8 = (e % (NS / 8)) * 8;
            uint4 v = make_uint4(0, 0, 0, 0);
            if (t < q) v = *(const uint4*)(B + (((size_t)r * L + t0 + t) * G + g) * NS + n8);
            *(uint4*)(Bs + t * LDN + n8) = v;
        }
        uint4 xr[XR];  // the next head's X, fetched while this head computes
        auto fetch = [&](int h) { fetch_head_x(xr, x, (size_t)r * L + t0, H, h, q, tid); };
        fetch(h0);
        // dt for all of the block's heads at once ...
        chunk_dt(wAll, dtRaw, dtBias, softplus, lo, hi, (size_t)r * L + t0, H, h0, hb, q, tid, 256);
        __syncthreads();
        // ... then one warp per head: the cumulative decay, written for the scan kernel, and the chunk-state weights w.
        chunk_weights(wAll, A, dtOut, cumOut, chunkDecay, L, H, nchunks, r, c, t0, q, h0, hb, stLast, carries, warp, lane);
        for (int h = h0; h < h0 + hb; h++) {
            const float* w = wAll + (h - h0) * QC;
            __syncthreads();  // w is ready / the previous head is done with Xw
            for (int k = 0; k < XR; k++) {
                const int e = tid + k * 256, t = e / (PH / 8), p8 = (e % (PH / 8)) * 8;
                *(uint4*)(Xw + t * LDP + p8) = scale8(xr[k], w[t]);
            }
            if (h + 1 < h0 + hb) fetch(h + 1);
            __syncthreads();
            u16* S = states + (((size_t)r * H + h) * nchunks + c) * PH * NS;
            chunk_outer(Xw, Bs, S, warp, lane);
        }
    }

    // A thread per pair of state elements (4-byte loads and stores of the 16-bit states, a warp's 128 bytes contiguous).
    extern "C" __global__ void __launch_bounds__(256) ssd_tc_passing(
            int H, int nchunks, const u16* __restrict__ states, const float* __restrict__ chunkDecay,
            const float* __restrict__ initial, float* __restrict__ finalStates, u16* __restrict__ statesIn) {
        const int e = (blockIdx.x * 256 + threadIdx.x) * 2, h = blockIdx.y, r = blockIdx.z;
        const size_t base = ((size_t)r * H + h) * nchunks;
        float2 prev = initial ? *(const float2*)(initial + ((size_t)r * H + h) * PH * NS + e) : make_float2(0.f, 0.f);
        int c = 0;
        if (nchunks >= 16) {
            // batch c + 16's loads issued before batch c's chain: one row of 65,536 tokens at N = 64 is 256 blocks, too
            // few to hide the loads' latency otherwise (results/gpu-ssd-stores.txt)
            u32 s[16];
            float a[16];
            #pragma unroll
            for (int i = 0; i < 16; i++) { s[i] = *(const u32*)(states + (base + i) * PH * NS + e); a[i] = chunkDecay[base + i]; }
            for (; c + 16 <= nchunks; c += 16) {
                u32 sn[16];
                float an[16];
                const bool more = c + 32 <= nchunks;
                #pragma unroll
                for (int i = 0; i < 16; i++) if (more) { sn[i] = *(const u32*)(states + (base + c + 16 + i) * PH * NS + e); an[i] = chunkDecay[base + c + 16 + i]; }
                #pragma unroll
                for (int i = 0; i < 16; i++) {
                    *(u32*)(statesIn + (base + c + i) * PH * NS + e) = pack2(prev.x, prev.y);
                    const float2 v = unpack2(s[i]);
                    prev = make_float2(a[i] * prev.x + v.x, a[i] * prev.y + v.y);
                }
                // (after the last batch, !more, the copies are never read: unconditional, as measured; guarded, the
                // compiler made other code)
                #pragma unroll
                for (int i = 0; i < 16; i++) { s[i] = sn[i]; a[i] = an[i]; }
            }
        }
        for (; c < nchunks; c++) {
            const float2 v = unpack2(*(const u32*)(states + (base + c) * PH * NS + e));
            *(u32*)(statesIn + (base + c) * PH * NS + e) = pack2(prev.x, prev.y);
            const float a = chunkDecay[base + c];
            prev = make_float2(a * prev.x + v.x, a * prev.y + v.y);
        }
        *(float2*)(finalStates + ((size_t)r * H + h) * PH * NS + e) = prev;
    }

    extern "C" __global__ void __launch_bounds__(256, 2) ssd_tc_scan(
            int L, int H, int G, int nchunks, int hb, const u16* __restrict__ x, const u16* __restrict__ z,
            const u16* __restrict__ B, const u16* __restrict__ C, const float* __restrict__ D, int dPerChannel,
            const float* __restrict__ dtOut, const float* __restrict__ cumOut, const u16* __restrict__ statesIn,
            const int* __restrict__ seqStart, u16* __restrict__ y, u16* __restrict__ yPre) {
        const int hpg = H / G, nhb = hpg / hb;
        const int c = blockIdx.x, r = blockIdx.y, g = blockIdx.z / nhb, h0 = g * hpg + (blockIdx.z % nhb) * hb;
        const int t0 = c * QC, q = min(QC, L - t0);
        const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
        const bool packed = seqStart != nullptr;
        extern __shared__ __align__(16) unsigned char smem[];
        u16* CBs = (u16*)smem;                     // [QC][LDQ]: C·Bᵀ in the 16-bit type
        u16* Cs = CBs + QC * LDQ;                  // [QC][LDN]
        u16* Bs = Cs + QC * LDN;                   // [QC][LDN]: B, until C·Bᵀ is made; then the same room holds
        u16* Xs = Bs;                              //   [QC][LDP]: X of the head
        u16* Hs = Xs + QC * LDP;                   //   [PH][LDN]: its incoming state
        float* cumS = (float*)(Bs + (QC * LDN > QC * LDP + PH * LDN ? QC * LDN : QC * LDP + PH * LDN));  // [QC] cum_t
        float* dtS = cumS + QC;                    // [QC] dt_s
        float* wS = dtS + QC;                      // [QC] exp(cum_e − cum_s)·dt_s, e the last token of s's 16-token tile
        float* vS = wS + QC;                       // [QC] exp(cum_b − cum_s)·dt_s, b the first token of s's tile (≤ e^64·dt_s)
        float* eS = vS + QC;                       // [QC] exp(cum_t) where t takes the incoming state, else 0
        int* stS = (int*)(eS + QC);                // [QC] where t's sequence starts, relative to the chunk
        load_chunk_bc(B, C, Bs, Cs, (size_t)r * L + t0, G, g, q, tid);
        // Where each token's sequence starts (row positions; 0 for rows of one sequence). A token takes the
        // chunk's incoming state when its sequence began before the chunk, or is the row's first.
        const int st = packed && tid < q ? seqStart[(size_t)r * L + t0 + tid] : 0;
        if (tid < QC) stS[tid] = st - t0;
        // The next head's X, incoming state and per-token factors are fetched into registers while this head computes.
        constexpr int HR = PH * NS / 8 / 256;
        uint4 xr[XR];
        uint4 hr[HR];
        float cr = 0.f, dr = 0.f, ce = 0.f, cb = 0.f;  // cum_t, dt_t, cum at the end and start of t's tile
        auto fetch = [&](int h) {
            fetch_head_x(xr, x, (size_t)r * L + t0, H, h, q, tid);
            const u16* hin = statesIn + (((size_t)r * H + h) * nchunks + c) * PH * NS;
            for (int k = 0; k < HR; k++) hr[k] = *(const uint4*)(hin + (tid + k * 256) * 8);
            if (tid < QC) {  // loads only: the factors are made when they are stored, after this head's work
                // past the row's end, cum holds its last value (so the tile factors below stay ≤ 1) and dt is 0
                const float* cum = cumOut + ((size_t)r * H + h) * L + t0;
                cr = cum[min(tid, q - 1)];
                ce = cum[min(tid | 15, q - 1)];
                cb = cum[min(tid & ~15, q - 1)];
                dr = tid < q ? dtOut[((size_t)r * H + h) * L + t0 + tid] : 0.f;
            }
        };
        fetch(h0);
        __syncthreads();
        chunk_cb(Cs, Bs, CBs, warp, lane);
        for (int h = h0; h < h0 + hb; h++) {
            __syncthreads();  // C·Bᵀ is complete / the previous head is done with Xs, Hs and the factors
            for (int k = 0; k < XR; k++) {
                const int e = tid + k * 256, t = e / (PH / 8), p8 = (e % (PH / 8)) * 8;
                *(uint4*)(Xs + t * LDP + p8) = xr[k];
            }
            for (int k = 0; k < HR; k++) {
                const int e8 = (tid + k * 256) * 8, p = e8 / NS, n = e8 % NS;
                *(uint4*)(Hs + p * LDN + n) = hr[k];
            }
            if (tid < QC) scan_factors(cumS, dtS, wS, vS, eS, cr, dr, ce, cb, st, t0, tid);
            if (h + 1 < h0 + hb) fetch(h + 1);
            __syncthreads();
            // Two work units per warp (scan_unit_row)
            const float dHead = D && !dPerChannel ? D[h] : 0.f;
            for (int u = 0; u < 2; u++)
                unit_y(u, warp, lane, CBs, Cs, Hs, Xs, cumS, dtS, wS, vS, eS, stS, packed, D, dPerChannel, dHead, z, y, yPre,
                       (size_t)r * L + t0, H, h, q);
        }
    }
    """#

    /// D (16×8, float32) += A (16×16) · B (16×8) on tensor cores, inputs fp16 where MMA_F16 is set, else bf16,
    /// and a generic pointer's shared-memory address (the tensor-core SSD's and decode's streaming products).
    static let tensorCoreHelpers = #"""
    __device__ __forceinline__ unsigned smem_addr(const void* p) {
        unsigned a;
        asm("{ .reg .u64 t; cvta.to.shared.u64 t, %1; cvt.u32.u64 %0, t; }" : "=r"(a) : "l"(p));
        return a;
    }
    __device__ __forceinline__ void mma16816(float* d, const u32* a, const u32* b) {
    #if MMA_F16
        asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};"
            : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]) : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
    #else
        asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};"
            : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]) : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
    #endif
    }

    """#
    /// What the tensor-core kernels share (forward and backward), compiled after `halfConversions` with NS,
    /// PH, QC and ELEM_F16 defined: the padded shared-memory strides, 16-bit packing, the m16n8k16 product,
    /// ldmatrix fragment loads, and the chunk's outer product (w∘X)ᵀ·B.
    static let tensorCoreCommon = tensorCoreCommonHead + "\n#define MMA_F16 ELEM_F16\n" + tensorCoreHelpers + tensorCoreCommonTail
    static let tensorCoreCommonHead = #"""
    #define PAD 8
    #define LDN (NS + PAD)
    #define LDP (PH + PAD)
    #define LDQ (QC + PAD)

    // Two floats as one register of two 16-bit values (lo in the low half): one instruction.
    __device__ __forceinline__ u32 pack2(float lo, float hi) {
        u32 v;
    #if ELEM_F16
        asm("cvt.rn.f16x2.f32 %0, %1, %2;" : "=r"(v) : "f"(hi), "f"(lo));
    #else
        asm("cvt.rn.bf16x2.f32 %0, %1, %2;" : "=r"(v) : "f"(hi), "f"(lo));
    #endif
        return v;
    }
    // One register of two 16-bit values as two floats (low half first).
    __device__ __forceinline__ float2 unpack2(u32 v) {
    #if ELEM_F16
        return make_float2(to_f((u16)(v & 0xffffu)), to_f((u16)(v >> 16)));
    #else
        return make_float2(__uint_as_float(v << 16), __uint_as_float(v & 0xffff0000u));
    #endif
    }
    // A quad's 4×4 transpose (lanes 4i … 4i + 3 of a warp, a = lane % 4): lane a holds v[k], the 16-bit pair at
    // columns 8(j0 + k) + 2a of the quad's row for k = 0 … 3 (mma's and wgmma's accumulator layout); afterwards it
    // holds segment j0 + a whole (columns 8(j0 + a) … + 7, 16 bytes in order), which it stores with one 16-byte store.
    // Why: the pairs stored as they lie write 16 bytes of each row per instruction, half a 32-byte sector, so L2 sees
    // every sector twice and four times the requests; the kernels' L2 throughput, not DRAM, is their busiest unit
    // (ncu, results/gpu-ssd-stores.txt). Two exchanges: lanes a ^ 1 swap halves of each pair of segments, then a ^ 2.
    __device__ __forceinline__ uint4 quad_transpose(u32 v0, u32 v1, u32 v2, u32 v3, int lane) {
        const bool a0 = lane & 1, a1 = lane & 2;
        const u32 x0 = __shfl_xor_sync(0xffffffffu, a0 ? v0 : v1, 1), x1 = __shfl_xor_sync(0xffffffffu, a0 ? v2 : v3, 1);
        const u32 r0 = a0 ? x0 : v0, r1 = a0 ? v1 : x0, r2 = a0 ? x1 : v2, r3 = a0 ? v3 : x1;
        const u32 y0 = __shfl_xor_sync(0xffffffffu, a1 ? r0 : r2, 2), y1 = __shfl_xor_sync(0xffffffffu, a1 ? r1 : r3, 2);
        return make_uint4(a1 ? y0 : r0, a1 ? y1 : r1, a1 ? r2 : y0, a1 ? r3 : y1);
    }
    """#
    static let tensorCoreCommonTail = #"""

    // Four 8×8 16-bit matrices: lane i gives the address of row (i % 8) of matrix i / 8.
    __device__ __forceinline__ void ldsm4(u32* r, const u16* rowAddress) {
        asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];"
            : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3]) : "r"(smem_addr(rowAddress)));
    }
    // The same, each matrix transposed.
    __device__ __forceinline__ void ldsm4t(u32* r, const u16* rowAddress) {
        asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];"
            : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3]) : "r"(smem_addr(rowAddress)));
    }
    // A fragment (16×16 at (m0, k0)) of a row-major [m][ld] array: rows are M, columns K.
    __device__ __forceinline__ void loadA(u32* a, const u16* base, int ld, int m0, int k0, int lane) {
        const int m = lane >> 3, i = lane & 7;
        ldsm4(a, base + (m0 + i + (m & 1) * 8) * ld + k0 + (m >> 1) * 8);
    }
    // B fragments of two adjacent n-tiles (K×16 at (k0, n0)) from an [n][ld] array: each N column's K values contiguous.
    __device__ __forceinline__ void loadB2(u32* b, const u16* base, int ld, int k0, int n0, int lane) {
        const int m = lane >> 3, i = lane & 7;
        ldsm4(b, base + (n0 + i + (m >> 1) * 8) * ld + k0 + (m & 1) * 8);
    }
    // B fragments of two adjacent n-tiles (K×16 at (k0, n0)) from a row-major [k][ld] array.
    __device__ __forceinline__ void loadB2T(u32* b, const u16* base, int ld, int k0, int n0, int lane) {
        const int m = lane >> 3, i = lane & 7;
        ldsm4t(b, base + (k0 + i + (m & 1) * 8) * ld + n0 + (m >> 1) * 8);
    }
    // The A fragment of Sᵀ (16×16 at (m0, k0) of Sᵀ) from S stored row-major [k][ld].
    __device__ __forceinline__ void loadAT(u32* a, const u16* base, int ld, int m0, int k0, int lane) {
        const int m = lane >> 3, i = lane & 7;
        ldsm4t(a, base + (k0 + i + (m >> 1) * 8) * ld + m0 + (m & 1) * 8);
    }
    // 8 16-bit values (16 bytes) scaled by f.
    __device__ __forceinline__ uint4 scale8(uint4 v, float f) {
        const float2 a = unpack2(v.x), b = unpack2(v.y), c = unpack2(v.z), d = unpack2(v.w);
        return make_uint4(pack2(a.x * f, a.y * f), pack2(b.x * f, b.y * f), pack2(c.x * f, c.y * f), pack2(d.x * f, d.y * f));
    }

    // The chunk's C and B rows (QC × NS, group g, tokens from row offset rl) into shared memory, zeros past q.
    __device__ __forceinline__ void load_chunk_bc(const u16* __restrict__ B, const u16* __restrict__ C, u16* Bs, u16* Cs,
                                                  size_t rl, int G, int g, int q, int tid) {
        for (int e = tid; e < QC * NS / 8; e += 256) {
            const int t = e / (NS / 8), n8 = (e % (NS / 8)) * 8;
            uint4 cv = make_uint4(0, 0, 0, 0), bv = cv;
            if (t < q) {
                const size_t i = ((rl + t) * G + g) * NS + n8;
                cv = *(const uint4*)(C + i);
                bv = *(const uint4*)(B + i);
            }
            *(uint4*)(Cs + t * LDN + n8) = cv;
            *(uint4*)(Bs + t * LDN + n8) = bv;
        }
    }

    // CB (QC×QC, 16-bit) = C·Bᵀ from Cs and Bs: warp → 16 rows, the tiles on and below the diagonal (those above
    // are never read).
    __device__ __forceinline__ void chunk_cb(const u16* Cs, const u16* Bs, u16* CBs, int warp, int lane) {
        const int m0 = warp * 16;
        u32 af[NS / 16][4];
        for (int k = 0; k < NS / 16; k++) loadA(af[k], Cs, LDN, m0, k * 16, lane);
        for (int n0 = 0; n0 < m0 + 16; n0 += 16) {
            float acc[2][4] = {{0.f, 0.f, 0.f, 0.f}, {0.f, 0.f, 0.f, 0.f}};
            for (int k = 0; k < NS / 16; k++) {
                u32 bf[4];
                loadB2(bf, Bs, LDN, k * 16, n0, lane);
                mma16816(acc[0], af[k], bf);
                mma16816(acc[1], af[k], bf + 2);
            }
            const int t = m0 + (lane >> 2);
            for (int j = 0; j < 2; j++) {
                const int s = n0 + j * 8 + (lane & 3) * 2;
                *(u32*)(CBs + t * LDQ + s) = pack2(acc[j][0], acc[j][1]);
                *(u32*)(CBs + (t + 8) * LDQ + s) = pack2(acc[j][2], acc[j][3]);
            }
        }
    }

    #if NS % 64 == 0
    // S (PH×NS) = (w∘X)ᵀ (PH×QC) · B (QC×NS) into float32 registers: warp → two m-tiles (32 rows: warp % 2) × a
    // quarter of the n-tiles (warp / 2), so each k-step loads 2 A and NT/2 B fragment pairs for 2·NT products (at
    // N = 128, 4 ldmatrix per 8 mma instead of 5 with a warp per m-tile: 0.32 → 0.29 ms for 65,536 tokens).
    // Element acc[i][j][k] is S's (m0 + 16i + lane/4 + 8·(k/2), (nbase + j)·8 + 2·(lane % 4) + k % 2).
    __device__ __forceinline__ void chunk_outer_acc(const u16* Xw, const u16* Bs, float (*acc)[NS / 32][4], int warp, int lane) {
        constexpr int NT = NS / 32;
        const int m0 = (warp & 1) * 32, nbase = (warp >> 1) * NT;
        for (int i = 0; i < 2; i++) for (int j = 0; j < NT; j++) acc[i][j][0] = acc[i][j][1] = acc[i][j][2] = acc[i][j][3] = 0.f;
        for (int k0 = 0; k0 < QC; k0 += 16) {
            u32 a0[4], a1[4];
            loadAT(a0, Xw, LDP, m0, k0, lane);
            loadAT(a1, Xw, LDP, m0 + 16, k0, lane);
            for (int j = 0; j < NT; j += 2) {
                u32 bf[4];
                loadB2T(bf, Bs, LDN, k0, (nbase + j) * 8, lane);
                mma16816(acc[0][j], a0, bf);
                mma16816(acc[0][j + 1], a0, bf + 2);
                mma16816(acc[1][j], a1, bf);
                mma16816(acc[1][j + 1], a1, bf + 2);
            }
        }
    }
    #endif

    // S (PH×NS, 16-bit, row-major) = Xwᵀ·Bs: Xw [QC][LDP] and Bs [QC][LDN] in shared memory, the block's 8 warps
    // each taking a share of S's tiles (the chunk state of the forward, the state gradient of the backward).
    __device__ __forceinline__ void chunk_outer(const u16* Xw, const u16* Bs, u16* S, int warp, int lane) {
    #if NS % 64 == 0
        constexpr int NT = NS / 32;
        const int m0 = (warp & 1) * 32, nbase = (warp >> 1) * NT;
        float acc[2][NT][4];
        chunk_outer_acc(Xw, Bs, acc, warp, lane);
        for (int i = 0; i < 2; i++) {
            const int p = m0 + i * 16 + (lane >> 2);
    #if NS % 128 == 0
            // whole quads of segments: 16 bytes a lane (quad_transpose)
            for (int j = 0; j < NT; j += 4) {
                const int n = (nbase + j + (lane & 3)) * 8;
                *(uint4*)(S + p * NS + n) = quad_transpose(pack2(acc[i][j][0], acc[i][j][1]), pack2(acc[i][j + 1][0], acc[i][j + 1][1]),
                                                           pack2(acc[i][j + 2][0], acc[i][j + 2][1]), pack2(acc[i][j + 3][0], acc[i][j + 3][1]), lane);
                *(uint4*)(S + (p + 8) * NS + n) = quad_transpose(pack2(acc[i][j][2], acc[i][j][3]), pack2(acc[i][j + 1][2], acc[i][j + 1][3]),
                                                                 pack2(acc[i][j + 2][2], acc[i][j + 2][3]), pack2(acc[i][j + 3][2], acc[i][j + 3][3]), lane);
            }
    #else
            for (int j = 0; j < NT; j++) {
                const int n = (nbase + j) * 8 + (lane & 3) * 2;
                *(u32*)(S + p * NS + n) = pack2(acc[i][j][0], acc[i][j][1]);
                *(u32*)(S + (p + 8) * NS + n) = pack2(acc[i][j][2], acc[i][j][3]);
            }
    #endif
        }
    #else
        // N = 32 or 96 (a quarter of the n-tiles is not a whole pair): warp → m-tile (warp % 4), half of the n-tiles (warp / 4).
        constexpr int NT = NS / 16;
        const int m0 = (warp & 3) * 16, nbase = (warp >> 2) * NT;
        float acc[NT][4];
        for (int j = 0; j < NT; j++) acc[j][0] = acc[j][1] = acc[j][2] = acc[j][3] = 0.f;
        for (int k0 = 0; k0 < QC; k0 += 16) {
            u32 af[4];
            loadAT(af, Xw, LDP, m0, k0, lane);
            for (int j = 0; j < NT; j += 2) {
                u32 bf[4];
                loadB2T(bf, Bs, LDN, k0, (nbase + j) * 8, lane);
                mma16816(acc[j], af, bf);
                mma16816(acc[j + 1], af, bf + 2);
            }
        }
        const int p = m0 + (lane >> 2);
        for (int j = 0; j < NT; j++) {
            const int n = (nbase + j) * 8 + (lane & 3) * 2;
            *(u32*)(S + p * NS + n) = pack2(acc[j][0], acc[j][1]);
            *(u32*)(S + (p + 8) * NS + n) = pack2(acc[j][2], acc[j][3]);
        }
    #endif
    }

    """#

    /// Dynamic shared memory of ssd_tc_state and ssd_tc_scan for a state size (bytes).
    static func tensorCoreShared(stateSize N: Int) -> (state: Int, scan: Int) {
        let maxHeadsPerBlock = CUDATensorCoreSSD.maxHeadsPerBlock
        let (Q, P, pad) = (128, 64, 8)
        let ldp = P + pad, ldn = N + pad
        let state = (Q * ldn + Q * ldp) * 2 + maxHeadsPerBlock * Q * 4
        let scan = Q * (Q + pad) * 2 + (Q * ldn + max(Q * ldn, Q * ldp + P * ldn)) * 2 + 6 * Q * 4
        return (state, scan)
    }
}
