import Mamba2
extension CUDAKernelSource {
    /// The chunked SSD backward in plain float32 (no tensor cores): the reference the fast backward is
    /// checked against, after the float64 CPU recurrence. It runs after the plain forward
    /// (`ssdChunked`), whose dt, chunk-local cumulative decay cum, C·Bᵀ, chunk decays and incoming chunk
    /// states it reads; layouts as there. Per chunk of Q tokens, with dY' the gradient of the output
    /// before the gate, g = dLoss/d(state leaving the chunk), h_in the state entering it,
    /// E[t,s] = exp(cum_t − cum_s) (s ≤ t, same sequence), M = CB ∘ E ∘ dt_s,
    /// e_t = exp(cum_t) where t takes h_in (else 0) and w_s = exp(cum_last − cum_s)·dt_s (s in the
    /// chunk's last sequence, else 0):
    ///   1. ssd_bwd_gate: dY' = dY·silu(z), dz = dY·y'·silu'(z), dx = D·dY' (the skip).
    ///   2. ssd_bwd_dstates_out (chunk, head, row): dH_c = Σ_t e_t·dY'_t ⊗ C_t (P×N), h_in's gradient from
    ///      the chunk's own outputs.
    ///   3. ssd_bwd_state_passing (head, row): backwards over chunks, g_{c−1} = dH_c + decay_c·g_c, starting
    ///      at the final state's gradient; the initial state's gradient is dH_0 + decay_0·g_0; and
    ///      d decay_c = ⟨g_c, h_in,c⟩.
    ///   4. ssd_bwd_chunk (chunk, head, row):
    ///        dM = dY'·Xᵀ;  dCB = dM ∘ E ∘ dt_s;  Z = dM ∘ CB ∘ E
    ///        dX += Mᵀ·dY' + w ∘ (B·gᵀ)
    ///        dC_h = dCB·B + e ∘ (dY'·h_in)           dB_h = dCBᵀ·C + w ∘ (X·g)
    ///        dcum_t = Σ_s Z[t,s]·dt_s − dt_t·Σ_t' Z[t',t] + e_t·⟨dY'_t, h_in·C_t⟩ − w_t·dw_t,
    ///        dcum_last += Σ_t w_t·dw_t + d decay·decay,   dw_t = ⟨x_t, g·B_t⟩
    ///        d dt_t = Σ_t' Z[t',t] + dw_t·exp(cum_last − cum_t) + A·Σ_{k≥t} dcum_k;  dA = Σ_t dt_t·Σ_{k≥t} dcum_k
    ///      B and C gradients are written per head (H, b·L, N) and summed over each group's heads in step 6.
    ///   5. ssd_bwd_dt: through the clamp, softplus and dt_bias to the raw dt.
    ///   6. ssd_bwd_heads (head): dt_bias, A and D gradients summed over tokens (float64 sums);
    ///      ssd_bwd_groups: B and C summed over the heads of a group.
    static let ssdBackward = #"""
    __device__ inline float sigmoid_(float v) { return 1.f / (1.f + expf(-v)); }

    // The sum of v over the block (blockDim.x = 256), in every thread.
    __device__ double block_sum(double v, double* red) {
        red[threadIdx.x] = v;
        __syncthreads();
        for (int o = 128; o > 0; o >>= 1) {
            if (threadIdx.x < o) red[threadIdx.x] += red[threadIdx.x + o];
            __syncthreads();
        }
        const double s = red[0];
        __syncthreads();
        return s;
    }

    extern "C" __global__ void ssd_bwd_gate(long long n, int H, int P, const float* dY, const float* z, const float* yPre,
                                            const float* D, int dPerChannel, float* dYp, float* dz, float* dX) {
        const long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
        if (i >= n) return;
        const int p = (int)(i % P), h = (int)((i / P) % H);
        float g = dY[i];
        if (z) {
            const float zv = z[i], sig = sigmoid_(zv);
            dz[i] = g * yPre[i] * sig * (1.f + zv * (1.f - sig));
            g *= zv * sig;
        }
        dYp[i] = g;
        dX[i] = D ? (dPerChannel ? D[h * P + p] : D[h]) * g : 0.f;
    }

    extern "C" __global__ void ssd_bwd_dstates_out(int L, int H, int P, int G, int N, int Q, const float* dYp, const float* C,
                                                   const double* cumOut, const int* seqStart, float* dHout) {
        const int c = blockIdx.x, h = blockIdx.y, r = blockIdx.z, nchunks = gridDim.x;
        const int t0 = c * Q, q = min(Q, L - t0), g = h / (H / G);
        extern __shared__ float eS[];  // [Q] e_t
        for (int t = threadIdx.x; t < q; t += blockDim.x) {
            const int st = seqStart ? seqStart[(size_t)r * L + t0 + t] : 0;
            eS[t] = st < t0 || st == 0 ? expf((float)fmin(cumOut[((size_t)r * H + h) * L + t0 + t], 0.0)) : 0.f;
        }
        __syncthreads();
        for (int e = threadIdx.x; e < P * N; e += blockDim.x) {
            const int p = e / N, n = e % N;
            float acc = 0.f;
            for (int t = 0; t < q; t++)
                acc += eS[t] * dYp[(((size_t)r * L + t0 + t) * H + h) * P + p] * C[(((size_t)r * L + t0 + t) * G + g) * N + n];
            dHout[(((size_t)r * H + h) * nchunks + c) * P * N + e] = acc;
        }
    }

    extern "C" __global__ void ssd_bwd_state_passing(int H, int P, int N, int nchunks, const float* chunkDecay, const float* statesIn,
                                                     const float* dHout, const float* gradFinal, float* dStates, float* ddecay,
                                                     float* gInit) {
        const int h = blockIdx.x, r = blockIdx.y;
        const size_t base = ((size_t)r * H + h) * nchunks, PN = (size_t)P * N;
        __shared__ double red[256];
        // every thread reads back only what it wrote itself: no barrier between the chunks but the sum's
        for (int e = threadIdx.x; e < P * N; e += blockDim.x)
            dStates[(base + nchunks - 1) * PN + e] = gradFinal ? gradFinal[((size_t)r * H + h) * PN + e] : 0.f;
        for (int c = nchunks - 1; c >= 0; c--) {
            const float a = chunkDecay[base + c];
            double part = 0.0;
            for (int e = threadIdx.x; e < P * N; e += blockDim.x) {
                const float g = dStates[(base + c) * PN + e];
                part += (double)g * statesIn[(base + c) * PN + e];
                const float v = dHout[(base + c) * PN + e] + a * g;
                if (c > 0) dStates[(base + c - 1) * PN + e] = v;
                else if (gInit) gInit[((size_t)r * H + h) * PN + e] = v;
            }
            const double s = block_sum(part, red);
            if (threadIdx.x == 0) ddecay[base + c] = (float)s;
        }
    }

    extern "C" __global__ void ssd_bwd_chunk(int L, int H, int P, int G, int N, int Q, const float* x, const float* dYp,
                                             const float* B, const float* C, const float* CB, const float* A, const float* dtOut,
                                             const double* cumOut, const float* statesIn, const float* dStates,
                                             const float* chunkDecay, const float* ddecay, const int* seqStart,
                                             float* dCBbuf, double* Zbuf, float* dX, float* dBh, float* dCh, double* gdt,
                                             double* dApart) {
        const int c = blockIdx.x, h = blockIdx.y, r = blockIdx.z, nchunks = gridDim.x;
        const int t0 = c * Q, q = min(Q, L - t0), g = h / (H / G);
        const size_t rh = (size_t)r * H + h, tokens = (size_t)gridDim.z * L, PN = (size_t)P * N;
        // The per-token gradients are float64 sums: their parts are large and cancel in the reverse
        // cumulative sum (dA is ~1e3 times smaller than them with steep decays).
        extern __shared__ double shd[];
        double* cumS = shd;        // [Q] cum_t (float64, as the forward keeps it)
        double* dcumS = cumS + Q;  // [Q] dcum_t
        double* ddtS = dcumS + Q;  // [Q] d dt_t, before the cumulative-sum part
        double* lastS = ddtS + Q;  // [Q] w_t·dw_t, summed into dcum_last
        float* dtS = (float*)(lastS + Q);  // [Q] dt_t
        float* wS = dtS + Q;       // [Q] w_t
        float* eS = wS + Q;        // [Q] e_t
        int* stS = (int*)(eS + Q); // [Q] where t's sequence starts (row position)
        const double* cum = cumOut + rh * L + t0;
        const float* dt = dtOut + rh * L + t0;
        const int stLast = seqStart ? seqStart[(size_t)r * L + t0 + q - 1] : 0;
        for (int t = threadIdx.x; t < q; t += blockDim.x) {
            const int st = seqStart ? seqStart[(size_t)r * L + t0 + t] : 0;
            cumS[t] = cum[t];
            dtS[t] = dt[t];
            stS[t] = st;
            eS[t] = st < t0 || st == 0 ? expf((float)fmin(cum[t], 0.0)) : 0.f;
            wS[t] = t0 + t >= stLast ? expf((float)fmin(cum[q - 1] - cum[t], 0.0)) * dt[t] : 0.f;
        }
        __syncthreads();
        const float* hin = statesIn + (rh * nchunks + c) * PN;
        const float* gS = dStates + (rh * nchunks + c) * PN;
        const float* cb = CB + (((size_t)r * G + g) * nchunks + c) * Q * Q;
        float* dcb = dCBbuf + (rh * nchunks + c) * Q * Q;
        double* zb = Zbuf + (rh * nchunks + c) * Q * Q;
    #define XI(t, p) ((((size_t)r * L + t0 + (t)) * H + h) * P + (p))
    #define BI(t, n) ((((size_t)r * L + t0 + (t)) * G + g) * N + (n))
    #define HI(t, n) (((size_t)h * tokens + (size_t)r * L + t0 + (t)) * N + (n))
        // 1. dM = dY'·Xᵀ on the mask; dCB and Z from it
        for (int e = threadIdx.x; e < q * q; e += blockDim.x) {
            const int t = e / q, s = e % q;
            float vcb = 0.f;
            double vz = 0.0;
            if (s <= t && t0 + s >= stS[t]) {
                double dm = 0.0;
                for (int p = 0; p < P; p++) dm += (double)dYp[XI(t, p)] * x[XI(s, p)];
                const double E = exp(fmin(cumS[t] - cumS[s], 0.0));
                vcb = (float)(dm * E * dtS[s]);
                vz = dm * cb[t * Q + s] * E;
            }
            dcb[t * Q + s] = vcb;
            zb[t * Q + s] = vz;
        }
        __syncthreads();
        // 2. dX
        for (int e = threadIdx.x; e < q * P; e += blockDim.x) {
            const int s = e / P, p = e % P;
            float acc = 0.f;
            for (int t = s; t < q; t++)
                if (t0 + s >= stS[t]) acc += cb[t * Q + s] * expf((float)fmin(cumS[t] - cumS[s], 0.0)) * dtS[s] * dYp[XI(t, p)];
            if (wS[s] != 0.f) {
                float bg = 0.f;
                for (int n = 0; n < N; n++) bg += B[BI(s, n)] * gS[p * N + n];
                acc += wS[s] * bg;
            }
            dX[XI(s, p)] += acc;
        }
        // 3. dC and dB of this head
        for (int e = threadIdx.x; e < q * N; e += blockDim.x) {
            const int t = e / N, n = e % N;
            float accC = 0.f, accB = 0.f;
            for (int s = 0; s <= t; s++) accC += dcb[t * Q + s] * B[BI(s, n)];
            if (eS[t] != 0.f) {
                float v = 0.f;
                for (int p = 0; p < P; p++) v += dYp[XI(t, p)] * hin[p * N + n];
                accC += eS[t] * v;
            }
            for (int u = t; u < q; u++) accB += dcb[u * Q + t] * C[BI(u, n)];
            if (wS[t] != 0.f) {
                float v = 0.f;
                for (int p = 0; p < P; p++) v += x[XI(t, p)] * gS[p * N + n];
                accB += wS[t] * v;
            }
            dCh[HI(t, n)] = accC;
            dBh[HI(t, n)] = accB;
        }
        // 4. the per-token gradients of cum and dt
        for (int t = threadIdx.x; t < q; t += blockDim.x) {
            double zrow = 0.0, zcol = 0.0;
            for (int s = 0; s <= t; s++) zrow += zb[t * Q + s] * dtS[s];
            for (int u = t; u < q; u++) zcol += zb[u * Q + t];
            double off = 0.0;
            if (eS[t] != 0.f) {
                for (int p = 0; p < P; p++) {
                    double yo = 0.0;
                    for (int n = 0; n < N; n++) yo += (double)C[BI(t, n)] * hin[p * N + n];
                    off += dYp[XI(t, p)] * yo;
                }
                off *= exp(fmin(cumS[t], 0.0));
            }
            double dw = 0.0, el = 0.0;
            if (t0 + t >= stLast) {
                el = exp(fmin(cumS[q - 1] - cumS[t], 0.0));
                for (int p = 0; p < P; p++) {
                    double bg = 0.0;
                    for (int n = 0; n < N; n++) bg += (double)B[BI(t, n)] * gS[p * N + n];
                    dw += x[XI(t, p)] * bg;
                }
            }
            const double w = el * dtS[t];
            dcumS[t] = zrow - zcol * dtS[t] + off - dw * w;
            ddtS[t] = zcol + dw * el;
            lastS[t] = dw * w;
        }
        __syncthreads();
        // 5. the reverse cumulative sum: cum_t = Σ_{k≤t} dt_k·A
        if (threadIdx.x == 0) {
            double extra = (double)ddecay[rh * nchunks + c] * chunkDecay[rh * nchunks + c];
            for (int t = 0; t < q; t++) extra += lastS[t];
            double run = extra, dA = 0.0;
            for (int t = q - 1; t >= 0; t--) {
                run += dcumS[t];
                gdt[rh * L + t0 + t] = ddtS[t] + run * A[h];
                dA += run * dtS[t];
            }
            dApart[rh * nchunks + c] = dA;
        }
    #undef XI
    #undef BI
    #undef HI
    }

    // A thread per (token, head): d raw dt from d dt (layout (b, H, L) → (b, L, H)), in float32 and (for the
    // dt_bias sum, whose terms cancel) float64.
    extern "C" __global__ void ssd_bwd_dt(int b, int L, int H, const float* dtRaw, const float* dtBias, int softplus, float lo,
                                          float hi, const double* gdt, float* gRaw, double* gRaw64) {
        const long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
        if (i >= (long long)b * L * H) return;
        const int h = (int)(i % H);
        const long long tok = i / H, r = tok / L, t = tok % L;
        float u = dtRaw[i] + (dtBias ? dtBias[h] : 0.f);
        double gu = gdt[((size_t)r * H + h) * L + t];
        if (softplus) { gu *= u <= 20.f ? 1.0 / (1.0 + exp(-(double)u)) : 1.0; u = dt_softplus(u); }
        if (dt_clamps(lo, hi) && (u < lo || u > hi)) gu = 0.0;
        gRaw[i] = (float)gu;
        gRaw64[i] = gu;
    }

    // A block per head: dt_bias, A and D gradients as float64 sums over all tokens.
    extern "C" __global__ void ssd_bwd_heads(int b, int L, int H, int P, int nchunks, const double* gRaw, const double* dApart,
                                             const float* dYp, const float* x, int hasD, int dPerChannel, float* dBias, float* dA,
                                             float* dD) {
        const int h = blockIdx.x;
        __shared__ double red[256];
        const long long tokens = (long long)b * L;
        double s = 0.0;
        for (long long t = threadIdx.x; t < tokens; t += blockDim.x) s += gRaw[t * H + h];
        s = block_sum(s, red);
        if (threadIdx.x == 0) dBias[h] = (float)s;
        s = 0.0;
        for (int i = threadIdx.x; i < b * nchunks; i += blockDim.x) s += dApart[((size_t)(i / nchunks) * H + h) * nchunks + i % nchunks];
        s = block_sum(s, red);
        if (threadIdx.x == 0) dA[h] = (float)s;
        if (!hasD) return;
        for (int p = 0; p < (dPerChannel ? P : 1); p++) {
            s = 0.0;
            for (long long e = threadIdx.x; e < tokens * (dPerChannel ? 1 : P); e += blockDim.x) {
                const long long t = dPerChannel ? e : e / P;
                const int pp = dPerChannel ? p : (int)(e % P);
                const size_t i = ((size_t)t * H + h) * P + pp;
                s += (double)dYp[i] * x[i];
            }
            s = block_sum(s, red);
            if (threadIdx.x == 0) dD[dPerChannel ? h * P + p : h] = (float)s;
        }
    }

    // A thread per (token, group, n): the group's heads' B and C gradients summed.
    extern "C" __global__ void ssd_bwd_groups(long long tokens, int H, int G, int N, const float* dBh, const float* dCh,
                                              float* dB, float* dC) {
        const long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
        if (i >= tokens * G * N) return;
        const int n = (int)(i % N), g = (int)((i / N) % G);
        const long long t = i / ((long long)G * N);
        const int hpg = H / G;
        float sb = 0.f, sc = 0.f;
        for (int h = g * hpg; h < (g + 1) * hpg; h++) {
            sb += dBh[((size_t)h * tokens + t) * N + n];
            sc += dCh[((size_t)h * tokens + t) * N + n];
        }
        dB[i] = sb;
        dC[i] = sc;
    }
    """#
}
