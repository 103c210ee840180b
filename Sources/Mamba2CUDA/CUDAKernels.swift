import Mamba2
/// CUDA C++ source of the GPU kernels, compiled at run time by NVRTC for the device's architecture.
enum CUDAKernelSource {
    /// 16-bit ↔ float32 on the device, put in front of the sources that use 16-bit values: to_f and
    /// from_f (round to nearest even) for fp16 when HALF_F16 is 1, bf16 when 0.
    static func halfConversions(f16: Bool) -> String {
        "#define HALF_F16 \(f16 ? 1 : 0)\n" + #"""
        typedef unsigned short u16;
        typedef unsigned int u32;
        __device__ __forceinline__ float to_f(u16 v) {
        #if HALF_F16
            float f; asm("{.reg .b16 h; mov.b16 h, %1; cvt.f32.f16 %0, h;}" : "=f"(f) : "h"(v)); return f;
        #else
            return __uint_as_float(((u32)v) << 16);
        #endif
        }
        __device__ __forceinline__ u16 from_f(float f) {
            u16 v;
        #if HALF_F16
            asm("cvt.rn.f16.f32 %0, %1;" : "=h"(v) : "f"(f));
        #else
            asm("cvt.rn.bf16.f32 %0, %1;" : "=h"(v) : "f"(f));
        #endif
            return v;
        }

        """#
    }
}

extension CUDAKernelSource {
    /// The chunked SSD forward in three kernels (float32, the cumulative decay cum in float64; a plain
    /// version: no tensor cores, no fusion; the tensor cores' reference). Layouts as the CPU's: x, z (b, L, H, P); dt (b, L, H) raw; B, C (b, L, G, N).
    ///   1. ssd_chunk_state: per (chunk, head, row) the dt transform, the cumulative decay, and the chunk's
    ///      own end state S_c = Σ_s exp(cum_last − cum_s)·dt_s·x_s⊗B_s.
    ///   2. ssd_state_passing: per (head, row) the recurrence over chunks, h_c = exp(cum_last,c)·h_{c−1} + S_c,
    ///      keeping each chunk's incoming state and the final state.
    ///   3. ssd_bmm: per (chunk, group, row) CB = C_c·B_cᵀ, once for all heads of the group.
    ///   4. ssd_chunk_scan: per (16-token tile, chunk, head, row) the intra-chunk masked product, the incoming
    ///      state's contribution, D and the gate; where yPre is given, also the output before the gate.
    static let ssdChunked = #"""
    #define TILE 16

    extern "C" __global__ void ssd_chunk_state(int L, int H, int P, int G, int N, int Q, const float* x, const float* dtRaw,
                                               const float* dtBias, const float* A, int softplus, float lo, float hi,
                                               const float* B, const int* seqStart, float* dtOut, double* cumOut, float* chunkStates,
                                               float* chunkDecay) {
        const int c = blockIdx.x, h = blockIdx.y, r = blockIdx.z;
        const int nchunks = gridDim.x;
        const int t0 = c * Q, q = min(Q, L - t0);
        const int g = h / (H / G);
        extern __shared__ float sh[];
        float* w = sh;  // Q weights exp(cum_last − cum_s)·dt_s
        if (threadIdx.x == 0) {
            // packed rows: the chunk's state is its last token's sequence's, carrying the incoming state only
            // when that sequence began before the chunk (or is the row's first)
            const int stLast = seqStart ? seqStart[(size_t)r * L + t0 + q - 1] : 0;
            double acc = 0.0;  // float64: a float32 cum loses the small differences of steep decays
            for (int t = 0; t < q; t++) {
                const float d = token_dt(dtRaw[((size_t)r * L + t0 + t) * H + h] + (dtBias ? dtBias[h] : 0.f), softplus,
                                         dt_clamps(lo, hi), lo, hi);
                acc += (double)d * A[h];
                dtOut[((size_t)r * H + h) * L + t0 + t] = d;
                cumOut[((size_t)r * H + h) * L + t0 + t] = acc;
                w[t] = d;
            }
            for (int t = 0; t < q; t++) {
                const double cs = cumOut[((size_t)r * H + h) * L + t0 + t];
                w[t] = t0 + t < stLast ? 0.f : w[t] * expf((float)fmin(acc - cs, 0.0));
            }
            chunkDecay[((size_t)r * H + h) * nchunks + c] = stLast < t0 || stLast == 0 ? expf((float)fmin(acc, 0.0)) : 0.f;
        }
        __syncthreads();
        float* S = chunkStates + (((size_t)r * H + h) * nchunks + c) * P * N;
        for (int e = threadIdx.x; e < P * N; e += blockDim.x) {
            const int p = e / N, n = e % N;
            float acc = 0.f;
            for (int s = 0; s < q; s++)
                acc += w[s] * x[(((size_t)r * L + t0 + s) * H + h) * P + p] * B[(((size_t)r * L + t0 + s) * G + g) * N + n];
            S[e] = acc;
        }
    }

    extern "C" __global__ void ssd_state_passing(int H, int P, int N, int nchunks, const float* chunkStates, const float* chunkDecay,
                                                 const float* initial, float* statesIn, float* finalStates) {
        const int h = blockIdx.x, r = blockIdx.y;
        for (int e = threadIdx.x; e < P * N; e += blockDim.x) {
            float prev = initial ? initial[((size_t)r * H + h) * P * N + e] : 0.f;
            for (int c = 0; c < nchunks; c++) {
                const size_t k = (((size_t)r * H + h) * nchunks + c) * P * N + e;
                statesIn[k] = prev;
                prev = chunkDecay[((size_t)r * H + h) * nchunks + c] * prev + chunkStates[k];
            }
            finalStates[((size_t)r * H + h) * P * N + e] = prev;
        }
    }

    extern "C" __global__ void ssd_bmm(int L, int G, int N, int Q, const float* B, const float* C, float* CB) {
        const int c = blockIdx.x, g = blockIdx.y, r = blockIdx.z;
        const int nchunks = gridDim.x;
        const int t0 = c * Q, q = min(Q, L - t0);
        float* out = CB + (((size_t)r * G + g) * nchunks + c) * Q * Q;
        for (int e = threadIdx.x; e < q * q; e += blockDim.x) {
            const int t = e / q, s = e % q;
            if (s > t) { out[t * Q + s] = 0.f; continue; }
            const float* ct = C + (((size_t)r * L + t0 + t) * G + g) * N;
            const float* bs = B + (((size_t)r * L + t0 + s) * G + g) * N;
            float dot = 0.f;
            for (int n = 0; n < N; n++) dot += ct[n] * bs[n];
            out[t * Q + s] = dot;
        }
    }

    extern "C" __global__ void ssd_chunk_scan(int L, int H, int P, int G, int N, int Q, const float* x, const float* z,
                                              const float* CB, const float* C, const float* D, int dPerChannel,
                                              const float* dtOut, const double* cumOut, const float* statesIn,
                                              const int* seqStart, float* y, float* yPre) {
        const int tiles = (Q + TILE - 1) / TILE;
        const int c = blockIdx.x / tiles, tile = blockIdx.x % tiles, h = blockIdx.y, r = blockIdx.z;
        const int nchunks = (L + Q - 1) / Q;
        const int t0 = c * Q, q = min(Q, L - t0);
        const int ta = tile * TILE;
        if (ta >= q) return;
        const int tb = min(ta + TILE, q);
        const int g = h / (H / G);
        extern __shared__ float M[];  // (TILE, Q): CB·exp(cum_t − cum_s)·dt_s, masked s ≤ t; then (N, P): h_inᵀ
        float* HT = M + TILE * Q;
        const double* cum = cumOut + ((size_t)r * H + h) * L + t0;
        const float* dt = dtOut + ((size_t)r * H + h) * L + t0;
        const float* cb = CB + (((size_t)r * G + g) * nchunks + c) * Q * Q;
        for (int e = threadIdx.x; e < (tb - ta) * q; e += blockDim.x) {
            const int t = ta + e / q, s = e % q;
            const bool same = !seqStart || t0 + s >= seqStart[(size_t)r * L + t0 + t];  // packed rows: s in t's sequence
            M[(t - ta) * Q + s] = s <= t && same ? cb[t * Q + s] * expf((float)fmin(cum[t] - cum[s], 0.0)) * dt[s] : 0.f;
        }
        // The chunk's incoming state, transposed into shared memory so that threads of consecutive p read
        // consecutive words.
        const float* hin = statesIn + (((size_t)r * H + h) * nchunks + c) * P * N;
        for (int e = threadIdx.x; e < P * N; e += blockDim.x) HT[(e % N) * P + e / N] = hin[e];
        __syncthreads();
        for (int e = threadIdx.x; e < (tb - ta) * P; e += blockDim.x) {
            const int t = ta + e / P, p = e % P;
            float acc = 0.f;
            for (int s = 0; s <= t; s++) acc += M[(t - ta) * Q + s] * x[(((size_t)r * L + t0 + s) * H + h) * P + p];
            const float* ct = C + (((size_t)r * L + t0 + t) * G + g) * N;
            float off = 0.f;
            for (int n = 0; n < N; n++) off += ct[n] * HT[n * P + p];
            const int st = seqStart ? seqStart[(size_t)r * L + t0 + t] : 0;
            if (st < t0 || st == 0) acc += expf((float)fmin(cum[t], 0.0)) * off;  // t's sequence began before the chunk
            const size_t i = (((size_t)r * L + t0 + t) * H + h) * P + p;
            if (D) acc += (dPerChannel ? D[h * P + p] : D[h]) * x[i];
            if (yPre) yPre[i] = acc;  // before the gate: the backward's gradient of z needs it
            if (z) { const float zv = z[i]; acc *= zv / (1.f + expf(-zv)); }
            y[i] = acc;
        }
    }
    """#
}

extension CUDAKernelSource {
    /// The state at the end of every sequence of packed rows, after the chunked forward has run (its dt,
    /// cumulative decay per chunk, incoming chunk states and final states), for the float32 and the
    /// tensor-core kernels alike: compiled after their source with SQ_ELEM (the type of x, B and the
    /// incoming chunk states: float, or u16 for 16-bit), SQ_F(v) (that type to float) and SQ_CUM (the type
    /// of the cumulative decays: double for the plain kernels, float for the tensor cores) defined.
    /// Grid (⌈P·N/256⌉, H, S), a thread per state element:
    ///   h_end = Σ_{s in the sequence's part of its last chunk} exp(cum_end − cum_s)·dt_s·x_s⊗B_s
    ///           + exp(cum_end)·h_in(chunk)   when the sequence began before that chunk (or at the row's start),
    /// h_in being the initial state itself in the row's first chunk (float32, not its 16-bit copy); a
    /// sequence that ends its row takes the row's final state.
    static let ssdSequenceStates = #"""
    extern "C" __global__ void ssd_sequence_states(
            int L, int H, int P, int G, int N, int Q, int nchunks, const int* __restrict__ seqRow,
            const int* __restrict__ seqBegin, const int* __restrict__ seqEnd, const SQ_ELEM* __restrict__ x,
            const SQ_ELEM* __restrict__ B, const float* __restrict__ dtOut, const SQ_CUM* __restrict__ cumOut,
            const SQ_ELEM* __restrict__ statesIn, const float* __restrict__ initial, const float* __restrict__ finalStates,
            float* __restrict__ out) {
        const int e = blockIdx.x * blockDim.x + threadIdx.x, h = blockIdx.y, k = blockIdx.z;
        if (e >= P * N) return;
        const int r = seqRow[k], begin = seqBegin[k], end = seqEnd[k], g = h / (H / G);
        const size_t o = ((size_t)k * H + h) * P * N + e, rh = (size_t)r * H + h;
        if (end == L) { out[o] = finalStates[rh * P * N + e]; return; }
        const int p = e / N, n = e % N, last = end - 1, c = last / Q, t0 = c * Q;
        const SQ_CUM* cum = cumOut + rh * L;
        const float* dt = dtOut + rh * L;
        const SQ_CUM cl = cum[last];
        float acc = 0.f;
        for (int s = max(begin, t0); s <= last; s++)
            acc += expf((float)fmin(cl - cum[s], (SQ_CUM)0)) * dt[s] * SQ_F(x[(((size_t)r * L + s) * H + h) * P + p])
                 * SQ_F(B[(((size_t)r * L + s) * G + g) * N + n]);
        if (begin < t0 || begin == 0) {
            const float hin = c == 0 ? (initial ? initial[rh * P * N + e] : 0.f) : SQ_F(statesIn[(rh * nchunks + c) * P * N + e]);
            acc += expf((float)fmin(cl, (SQ_CUM)0)) * hin;
        }
        out[o] = acc;
    }
    """#
}
