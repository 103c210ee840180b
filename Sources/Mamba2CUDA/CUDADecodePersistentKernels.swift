import Mamba2
extension CUDAKernelSource {
    /// Decode of one row as one persistent kernel (bf16 weights, one norm group, sm_90; appended to the model
    /// module after `decodeStream`, whose bulk copies, SSD step and hand-overs it uses). Faster than the
    /// per-layer kernels at every released size, 130m–2.7b (`CUDAModel.persistentLayerBytes`).
    ///
    /// Why: as a chain of short kernels (in_proj, SSD step, out_proj per layer) 2.7b's products read their
    /// weights at 1.8–2.6 TB/s against the head's 4.2: each kernel loses microseconds to its ramp, its
    /// tail and the boundary, and nothing streams weights meanwhile. Weights do not depend on the
    /// activations, so here one block per multiprocessor runs every layer, and a producer warp
    /// streams the block's share of every matrix, in the order they are used, through a ring of shared
    /// memory: across phase boundaries, hand-overs and the SSD step, the copies stay in flight.
    ///
    /// Per layer (a job is whole rows of one matrix, so one contiguous bulk copy; blocks claim jobs from a
    /// counter per phase, so a multiprocessor that streams faster takes more of them):
    ///   A. in_proj: x̂ (the residual × the norm's weight, bf16: the embedding's xhModel at layer 0, else the
    ///      tagged words of the last out_proj) staged in shared memory once every block's sum of squares is
    ///      there; a consumer warp per job (its rows · x̂ · inv, inv = rsqrt(Σ ssq / d + eps)), + bias: z and dt
    ///      handed over as tagged words, the conv inputs through the conv step (conv_step_value), tagged too.
    ///      Each job counted (in_proj's finished jobs, a hint for the SSD step's start).
    ///   B. SSD step: a warp per (head, CPW channels) (`ssd_step_y`, its activations from the tagged words once
    ///      in_proj's count is complete), handing y·silu(z) × the gate norm's weight over in bf16 pairs, with the
    ///      block's Σ v².
    ///   C. out_proj: x̂ = the gated y, staged once every block's Σ v² is there; the products added into the
    ///      residual (+ bias), handed over to the next norm (the next layer's, or norm_f): the residual and
    ///      ST(residual · w) in pairs, with the block's Σ residual². The last layer leaves the residual in
    ///      `residual` for the head.
    /// The head follows as m_gemv (one long product it already streams at 3–4 TB/s: inside this kernel the
    /// 130m head took 37.6 µs against its 25.2).
    ///
    /// The ring: 8 · spw slots of `slotBytes`, a "full" mbarrier each (the producer's expected bytes, the
    /// copy's completion) and an "empty" one (the consuming warp's arrival). Job q (counted across the whole
    /// kernel in the producer's order) is consumed by warp q % 8 in that warp's spw slots in turn. (A ring
    /// shared by all warps let a warp two uses ahead pass a slot's parity wait on stale weights.) Each
    /// phase ends with a marker job (no rows) for each warp.
    ///
    /// The hand-overs (pd_word, below) replace grid barriers: every value a block reads that another block
    /// wrote in this launch carries the tag of its layer and launch. All blocks are resident (one per
    /// multiprocessor, asked for by the host from the occupancy), so a block waiting for another's words
    /// cannot wait forever. Why one buffer of each suffices (no word is overwritten before all its readers
    /// read it): a block writes layer l + 1's words only after it has seen every block's sum of squares of an
    /// earlier phase, which each block writes after its own reads of layer l's. `pbar` holds the launch count
    /// (word 0), a counter per phase's claims and one of in_proj's finished jobs a layer, zeroed once when the
    /// states are allocated: each grows by a known amount per launch, so none is reset between tokens.
    static let decodePersistent = #"""
    // Pointers of one layer (13 × 8 bytes, as CUDAModel.preparePersistent writes them).
    struct PersistentLayer {
        const act_t* inProj; const float* inProjBias; const float* convW; const float* convB; float* convState;
        const float* dtBias; const float* A; const float* D; void* state; const float* gateNorm;
        const act_t* outProj; const float* outProjBias; const float* nextNorm;
    };
    // What a row's epilogue needs, loaded before its product (`jobs`).
    struct PDRow { float v[9]; };
    #define PD_CONSUMERS 256
    #define PD_JOB_ROWS 8
    #define PD_MAX_SLOTS 16

    __device__ __forceinline__ void pd_consumers_sync() { asm volatile("bar.sync 1, 256;" ::: "memory"); }
    __device__ __forceinline__ unsigned pd_ld_relaxed(const unsigned* p) {
        unsigned v;
        asm volatile("ld.relaxed.gpu.global.u32 %0, [%1];" : "=r"(v) : "l"(p));
        return v;
    }
    // The hand-overs between blocks are tagged words (pd_word): a 32-bit value (a float, or two bf16) in the low
    // half and, in the high half, the tag of the layer that wrote it (pd_tag: launches so far × layers + layer + 1),
    // stored and loaded as one aligned 64-bit access, which is single-copy atomic: a reader that sees its tag sees
    // the value written with it. Both are .relaxed.gpu (served by L2, never a stale L1 line), and nothing else is
    // ordered by them: every value another block wrote in this launch is read through its own tag.
    // Why: in place of a grid barrier (every block's release, then a poll, then the loads of what it guarded:
    // three round trips through L2, each 1.5–3 µs under the stream of weight copies) a reader issues the loads of
    // what it needs at once and issues again only those not yet written. 2.7b, H200, whole step at one row, same
    // run (temporary builds): 2,228–2,232 µs with the grid barriers, 1,754 with none at all (wrong results). With
    // the tagged words (results/gpu-decode-tagged-handovers.txt): 2.7b 2,020–2,029 µs against 2,233–2,236, 1.3b
    // 1,203 against 1,223, 130m 331 against 353.
    typedef unsigned long long pd_word;
    // The tagged hand-overs, kernel parameters (an address held in registers across the layer loop spilled):
    // hoxhM (d_model / 2: the next norm's input, bf16 pairs), hossqM (a block's Σ residual²), hozx (in_proj's
    // outputs z and dt, at their places in zx), hoxbc (the conv step's outputs), hoxhS (d_ssm / 2: the gated y,
    // bf16 pairs), hossqS (a block's Σ v²), hores (d_model: the residual, float32); zeroed with the states.
    #define PD_HAND_OVERS pd_word* hoxhM, pd_word* hossqM, pd_word* hozx, pd_word* hoxbc, pd_word* hoxhS, pd_word* hossqS, pd_word* hores
    __device__ __forceinline__ void pd_put(pd_word* p, u32 v, u32 tag) {
        asm volatile("st.relaxed.gpu.global.b64 [%0], %1;" :: "l"(p), "l"(((pd_word)tag << 32) | v) : "memory");
    }
    __device__ __forceinline__ pd_word pd_get(const pd_word* p) {
        pd_word w;
        asm volatile("ld.relaxed.gpu.global.b64 %0, [%1];" : "=l"(w) : "l"(p));
        return w;
    }
    __device__ __forceinline__ bool pd_has(pd_word w, u32 tag) { return (u32)(w >> 32) == tag; }
    // Two activations rounded as ST, packed (lo in the low half) for a tagged word.
    __device__ __forceinline__ u32 pd_pair(float lo, float hi) { return (u32)ST(lo) | ((u32)ST(hi) << 16); }
    // The tag of layer l of launch `epoch` (never 0, what the buffers hold when zeroed, for 2^32 − 1 layers).
    __device__ __forceinline__ u32 pd_tag(unsigned epoch, int nLayer, int l) {
        return (u32)(((unsigned long long)epoch * nLayer + l) % 0xffffffffull) + 1u;
    }
    // The SSD step's activations from the tagged words in_proj's epilogue wrote (ssd_step_y).
    struct SsdSrcTagged {
        typedef pd_word word;
        static constexpr bool polls = true;
        const pd_word* xr; const pd_word* zr; u32 tag;
        // in_proj's count of finished jobs and the count at which this layer's are all done: lane 0 waits for it,
        // backing off, before the warp loads its words (a word that is not there yet is loaded again). Polling
        // the words themselves instead, every warp of the grid re-reading its 18 words a lane back to back, made
        // 2.7b's step 2,488 µs against 2,230 with grid barriers: the readers crowded L2, whose queues are full of
        // weight copies already.
        const unsigned* done; unsigned target;
        __device__ __forceinline__ void gate() const {
            if ((threadIdx.x & 31) == 0) {
                for (unsigned spins = 0; (int)(pd_ld_relaxed(done) - target) < 0; spins++) poll_pause(spins);
            }
            __syncwarp();
        }
        __device__ __forceinline__ word x(int i) const { return pd_get(xr + i); }
        __device__ __forceinline__ word z(int i) const { return pd_get(zr + i); }
        __device__ __forceinline__ word none() const { return (pd_word)tag << 32; }
        __device__ __forceinline__ bool ready(word w) const { return pd_has(w, tag); }
        __device__ __forceinline__ float val(word w) const { return __uint_as_float((u32)w); }
    };
    // The consumers' sum of v (one value a thread) into the tagged word *dst, the warps added in order (red: 8 floats).
    __device__ __forceinline__ void pd_block_total(float v, float* red, pd_word* dst, u32 tag) {
        v = warp_sum(v);
        if ((threadIdx.x & 31) == 0) red[threadIdx.x >> 5] = v;
        pd_consumers_sync();
        if (threadIdx.x == 0) { float t = 0.f; for (int w = 0; w < 8; w++) t += red[w]; pd_put(dst, __float_as_uint(t), tag); }
    }
    __device__ __forceinline__ void pd_mbar_arrive(unsigned bar) {
        asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];\n" :: "r"(bar) : "memory");
    }

    // A job's rows lie `pd_stride(in)` bytes apart in its slot (each its own bulk copy): ≡ 64 (mod 128), so
    // that the 8 lanes of a quarter-warp, reading 64 bytes of each of two rows, hit distinct banks.
    __device__ __forceinline__ int pd_stride(int in) { return (in * 2 + 127) / 128 * 128 + 64; }

    // A job's dot products: the rows of one job (nj ≤ 8, `in` % 32 == 0) against x̂ (in, bf16 in shared memory)
    // by one warp on tensor cores (m16n8k16 products, float32 sums), in one of two layouts. Each returns row
    // `lane`'s sum in lane `lane` (lanes < nj). The kernel takes pd_job_dot_pairs for inputs of at least
    // `pairsFrom` values (CUDAModel.persistentPairsFrom), pd_job_dot_row for shorter ones.
    //
    // pd_job_dot_pairs: two rows at a time, every value of A a weight. For rows j, j + 1, A's row s (s < 8) is
    // row j's chunk s of each 256 k (32 values: columns 256i + 32s + …), A's row 8 + s is row j + 1's, and B's
    // column s is x̂'s chunk s. Of D only the diagonal is wanted, D[s][s] and D[8 + s][s] (rows j and j + 1
    // over chunk s), and Σ_s of it is the rows' dot products: a k step covers 256 values of both rows, where
    // pd_job_dot_row's covers 32. A lane (g = lane / 4, t = lane % 4) reads 16 contiguous bytes of chunk g
    // (8 values of k) of each row and of x̂ for two products: the products sum over k in any order, so k only
    // has to be permuted alike in A and B (values 0–1 and 2–3 play logical k 2t, 2t + 1 and 2t + 8, 2t + 9 of
    // the first product, 4–7 of the second). A quarter-warp reads 128 contiguous bytes of a row: no bank
    // conflicts. D[s][s] sits in lane (s, s / 2), in c0 or c1 by s's parity, D[8 + s][s] in c2 or c3; the 8
    // rows' values are then summed over the warp by halving exchanges (9 shuffles), leaving row g's total in
    // lanes 4g..4g+3.
    // Why: with pd_job_dot_row, 2.7b's out_proj jobs (2 rows × 5,120) were chains of 160 dependent k steps
    // (~6.5 µs a job), and a layer's products took 26 µs of its 41 (leaving the products out: 2,938 → 1,927
    // µs a step, same run). Whole step, same run, two rounds (µs, row / pairs for every input): 2.7b 2,872 /
    // 2,494, 1.3b 1,418 / 1,347, 780m 1,049 / 1,041, 370m 755 / 802, 130m 355 / 384: the pairs' fixed cost
    // (the diagonal's shuffles) loses on short inputs, whose jobs are a few k steps either way.
    // NP pairs of rows (NP = ⌈nj / 2⌉, a template argument, so that no branch splits a k step): every load of
    // step i + 1 is issued before step i's products, so that one step's shared-memory latency hides behind the
    // previous step's products instead of sitting in front of each pair's. Measured on the H200 against the
    // loop with a branch per pair and no loads ahead (bench --profile, same run, two rounds, whole step at one
    // row): 2.7b 2,276–2,277 µs against 2,477–2,479 (a job's products: in_proj's 5 rows 1.44 µs against 2.69,
    // out_proj's 2 rows 1.79 against 2.53), 1.3b 1,399–1,400 against 1,443–1,444. Two sets of sums for
    // single pairs (chains of half the length) gained nothing (2,298–2,300 against 2,305–2,307).
    template <int NP>
    __device__ __forceinline__ void pd_dot_pairs_np(const unsigned char* slot, const act_t* xs, int in, int nj, float (&v)[8]) {
    #if ACT == 1
        const int lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3, stride = pd_stride(in);
        const int steps = (in + 255) / 256, nchunk = in / 32;
        float d[NP][2][4] = {};  // [pair][product][fragment]
        uint4 x, w[NP][2];
        // Step i's fragments: chunk 8i + g of x̂ and of each row (zero past the input or the job's rows).
        auto load = [&](int i, uint4& xo, uint4 (&wo)[NP][2]) {
            const int ck = i * 8 + g;
            const bool ok = ck < nchunk;
            const size_t off = (size_t)ck * 64 + t * 16;
            xo = ok ? *(const uint4*)((const unsigned char*)xs + off) : make_uint4(0, 0, 0, 0);
            #pragma unroll
            for (int p = 0; p < NP; p++) {
                wo[p][0] = ok ? *(const uint4*)(slot + (size_t)(2 * p) * stride + off) : make_uint4(0, 0, 0, 0);
                wo[p][1] = ok && 2 * p + 1 < nj ? *(const uint4*)(slot + (size_t)(2 * p + 1) * stride + off) : make_uint4(0, 0, 0, 0);
            }
        };
        load(0, x, w);
        for (int i = 0; i < steps; i++) {
            uint4 xn, wn[NP][2];
            load(i + 1, xn, wn);  // past the last step nothing is read (ck ≥ nchunk)
            const u32 b1[2] = {x.x, x.y}, b2[2] = {x.z, x.w};
            #pragma unroll
            for (int p = 0; p < NP; p++) {
                const u32 a1[4] = {w[p][0].x, w[p][1].x, w[p][0].y, w[p][1].y}, a2[4] = {w[p][0].z, w[p][1].z, w[p][0].w, w[p][1].w};
                mma16816(d[p][0], a1, b1);
                mma16816(d[p][1], a2, b2);
            }
            x = xn;
            #pragma unroll
            for (int p = 0; p < NP; p++) { w[p][0] = wn[p][0]; w[p][1] = wn[p][1]; }
        }
        // This lane's diagonal values (zero off the diagonal): rows 2p (c0/c1) and 2p + 1 (c2/c3).
        const bool diag = t == (g >> 1), odd = g & 1;
        #pragma unroll
        for (int p = 0; p < 4; p++) {
            if (p < NP) {
                v[2 * p] = diag ? (odd ? d[p][0][1] + d[p][1][1] : d[p][0][0] + d[p][1][0]) : 0.f;
                v[2 * p + 1] = diag ? (odd ? d[p][0][3] + d[p][1][3] : d[p][0][2] + d[p][1][2]) : 0.f;
            } else {
                v[2 * p] = v[2 * p + 1] = 0.f;
            }
        }
    #endif
    }

    __device__ __forceinline__ float pd_job_dot_pairs(const unsigned char* slot, const act_t* xs, int in, int nj) {
    #if ACT == 1
        const int lane = threadIdx.x & 31;
        float v[8];
        switch ((nj + 1) / 2) {
            case 1: pd_dot_pairs_np<1>(slot, xs, in, nj, v); break;
            case 2: pd_dot_pairs_np<2>(slot, xs, in, nj, v); break;
            case 3: pd_dot_pairs_np<3>(slot, xs, in, nj, v); break;
            default: pd_dot_pairs_np<4>(slot, xs, in, nj, v); break;
        }
        // Halving exchanges: after xor 16, 8, 4 a lane holds one row's partial (row g, lane bits 4..2), summed
        // over the 8 lanes that differ in those bits; xor 1 and 2 add the rest.
        #pragma unroll
        for (int h = 4, m = 16; h >= 1; h >>= 1, m >>= 1) {
            const bool up = lane & m;
            #pragma unroll
            for (int i = 0; i < h; i++) {
                const float send = up ? v[i] : v[i + h], keep = up ? v[i + h] : v[i];
                v[i] = keep + __shfl_xor_sync(0xffffffffu, send, m);
            }
        }
        float r = v[0];
        r += __shfl_xor_sync(0xffffffffu, r, 1);
        r += __shfl_xor_sync(0xffffffffu, r, 2);
        return __shfl_sync(0xffffffffu, r, (lane & 7) * 4);
    #else
        return 0.f;
    #endif
    }

    // pd_job_dot_row: the weight rows as B's 8 columns and x̂ as A's row 0 (rows 1–15 zero). A lane reads 16
    // contiguous bytes of row g, 8 values of k, for two products (k permuted alike in A and B as above).
    __device__ __forceinline__ float pd_job_dot_row(const unsigned char* slot, const act_t* xs, int in, int nj) {
    #if ACT == 1
        const int lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3, stride = pd_stride(in);
        const bool rowOk = g < nj, xOk = g == 0;
        const unsigned char* row = slot + (size_t)g * stride + t * 16;
        const act_t* xr = xs + t * 8;
        // Four accumulators: consecutive products do not wait on each other's results (a chain of products
        // is bound by the tensor core's latency, not its rate).
        float d[4][4] = {};
        const int steps = in / 32;  // in % 64 == 0 is not required: an odd last step adds zero weights
        // Unrolled 4 times (8 steps of 32 k): 2.7b's whole step 2,762 µs against 2,840 unrolled twice, 2,750 at 8.
        #pragma unroll 4
        for (int st = 0; st < steps; st += 2) {
            #pragma unroll
            for (int h = 0; h < 2; h++) {
                const bool ok = st + h < steps;
                const uint4 w = rowOk && ok ? *(const uint4*)(row + (st + h) * 64) : make_uint4(0, 0, 0, 0);
                const uint4 x = xOk && ok ? *(const uint4*)(xr + (st + h) * 32) : make_uint4(0, 0, 0, 0);
                const u32 a1[4] = {x.x, 0u, x.y, 0u}, a2[4] = {x.z, 0u, x.w, 0u};
                const u32 b1[2] = {w.x, w.y}, b2[2] = {w.z, w.w};
                mma16816(d[2 * h], a1, b1);
                mma16816(d[2 * h + 1], a2, b2);
            }
        }
        // Lanes 0..3 hold rows 2t, 2t + 1 (row 0 of D); row j goes to lane j.
        const float r0 = (d[0][0] + d[1][0]) + (d[2][0] + d[3][0]), r1 = (d[0][1] + d[1][1]) + (d[2][1] + d[3][1]);
        const float s0 = __shfl_sync(0xffffffffu, r0, lane >> 1), s1 = __shfl_sync(0xffffffffu, r1, lane >> 1);
        return (lane & 1) ? s1 : s0;
    #else
        return 0.f;
    #endif
    }

    // x̂ (`in` values, bf16) into shared memory and its row's norm scale rsqrt(Σ ssq[0..nslots) / in + eps).
    __device__ __forceinline__ float pd_stage(act_t* xs, const act_t* xh, int in, const float* ssq, int nslots, float eps,
                                              float* scale) {
        const int tid = threadIdx.x, n16 = in / 8;
        for (int c = tid; c < n16; c += PD_CONSUMERS) ((uint4*)xs)[c] = __ldcg((const uint4*)xh + c);
        if (tid < 32) {  // up to 256 slots (the host keeps to CUDAModel.persistentMaxBlocks), every load issued before the first is used
            float v[8];
            #pragma unroll
            for (int k = 0; k < 8; k++) v[k] = tid + 32 * k < nslots ? __ldcg(ssq + tid + 32 * k) : 0.f;
            float s = 0.f;
            #pragma unroll
            for (int k = 0; k < 8; k++) s += v[k];
            s = warp_sum(s);
            if (tid == 0) *scale = rsqrtf(s / in + eps);
        }
        pd_consumers_sync();
        return *scale;
    }

    // pd_stage from tagged words (`tag`): x̂'s bf16 pairs (in / 2 words; thread t takes words t + 256j) and the
    // nslots ≤ 256 sums of squares (warp 0 also takes slots t + 32k), every word a thread takes issued at once;
    // those not there yet issued again, together, after a pause, until all are: one round trip after the last
    // writer. (Warp 0 waiting for the sums first, then every thread loading x̂, took a round trip more: the
    // whole step at 130m 368 µs against 353 with grid barriers, same run.)
    #define PD_STAGE_WORDS 16
    __device__ __forceinline__ float pd_stage_tagged(act_t* xs, const pd_word* xh, int in, const pd_word* ssq, int nslots, float eps,
                                                     float* scale, u32 tag) {
        const int tid = threadIdx.x, nw = in / 2;
        const bool sums = tid < 32;
        float s = 0.f;
        for (int c0 = 0; c0 < nw; c0 += PD_CONSUMERS * PD_STAGE_WORDS) {  // the sums with the first words
            pd_word w[PD_STAGE_WORDS], v[8];
            auto xat = [&](int j) { return c0 + tid + PD_CONSUMERS * j; };
            auto sat = [&](int k) { return tid + 32 * k; };
            const bool withSums = sums && c0 == 0;
            #pragma unroll
            for (int j = 0; j < PD_STAGE_WORDS; j++) w[j] = xat(j) < nw ? pd_get(xh + xat(j)) : (pd_word)tag << 32;
            #pragma unroll
            for (int k = 0; k < 8; k++) v[k] = withSums && sat(k) < nslots ? pd_get(ssq + sat(k)) : (pd_word)tag << 32;
            for (unsigned spins = 0;; spins++) {
                bool all = true;
                #pragma unroll
                for (int j = 0; j < PD_STAGE_WORDS; j++) all = all && pd_has(w[j], tag);
                #pragma unroll
                for (int k = 0; k < 8; k++) all = all && pd_has(v[k], tag);
                if (all) break;
                poll_pause(spins);
                #pragma unroll
                for (int j = 0; j < PD_STAGE_WORDS; j++) if (!pd_has(w[j], tag)) w[j] = pd_get(xh + xat(j));
                #pragma unroll
                for (int k = 0; k < 8; k++) if (!pd_has(v[k], tag)) v[k] = pd_get(ssq + sat(k));
            }
            #pragma unroll
            for (int j = 0; j < PD_STAGE_WORDS; j++) if (xat(j) < nw) ((u32*)xs)[xat(j)] = (u32)w[j];
            if (withSums) {
                #pragma unroll
                for (int k = 0; k < 8; k++) s += __uint_as_float((u32)v[k]);
            }
        }
        if (sums) {
            s = warp_sum(s);
            if (tid == 0) *scale = rsqrtf(s / in + eps);
        }
        pd_consumers_sync();
        return *scale;
    }

    // With a trace (bench --profile): %globaltimer (ns) at the phase boundaries of block 0's first consumer
    // thread, PD_MARKS a layer.
    #define PD_MARKS 6
    __device__ __forceinline__ unsigned long long pd_now() {
        unsigned long long t;
        asm volatile("mov.u64 %0, %globaltimer;" : "=l"(t));
        return t;
    }

    template <int CPW, int NPL, int PAIRS>
    __device__ __forceinline__ void persistent_body(
            int nLayer, int dModel, int inSize, int dSsm, int convDim, int dConv, int H, int P, int N, float eps, float lo,
            float hi, int dPerChannel, int nbg, int sh, const PersistentLayer* __restrict__ layers, float* residual,
            const act_t* xhModel, const float* ssqModel, PD_HAND_OVERS, unsigned* pbar, int slotBytes, int spw,
            unsigned long long* trace, int pairsFrom) {
        extern __shared__ __align__(128) unsigned char pd_smem[];
        const int nslots = 8 * spw;
        act_t* xs = (act_t*)(pd_smem + (size_t)nslots * slotBytes);  // [max(dModel, dSsm)]
        __shared__ __align__(8) unsigned long long full[PD_MAX_SLOTS], empty[PD_MAX_SLOTS];
        __shared__ float red[8], scale;
        const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5, b = blockIdx.x;
        // Rows per job: as many as a slot holds, up to 8 (a job's products cost about the same for 1 row as for
        // 8: their chain of k steps, not their rows; 1-row out_proj jobs made 2.7b's step 10% slower). out_proj's
        // jobs are whole pairs of rows (the host asks for two to fit), so that x̂'s pairs are written whole.
        const int jobIn = min(PD_JOB_ROWS, slotBytes / pd_stride(dModel)), jobSsm = min(PD_JOB_ROWS, slotBytes / pd_stride(dSsm)) & ~1;
        __shared__ int metaRow[PD_MAX_SLOTS], metaRows[PD_MAX_SLOTS];  // a slot's first row and rows (0: end of a phase)
        __shared__ unsigned epochS;
        if (tid == 0) {
            for (int i = 0; i < nslots; i++) { ds_mbar_init(smem_addr(&full[i])); ds_mbar_init(smem_addr(&empty[i])); }
            asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory");
            // Launches before this one (word 0), read before any thread of the block can hand anything over:
            // block 0 advances it after the last layer, which every block's hand-overs come before. (The previous
            // launch completed before the embedding started.)
            epochS = *(volatile unsigned*)pbar;
        }
        __syncthreads();
        const unsigned epoch = epochS;
        asm volatile("griddepcontrol.launch_dependents;" :::);
        // Job q (counted across the kernel by this block) belongs to warp q % 8, whose spw slots it takes in
        // turn: a slot is only ever consumed by one warp, in order, so a wait on its parity cannot see a use
        // two behind.
        auto slotOf = [&](int q) { return (q % 8) * spw + (q / 8) % spw; };
        auto useOf = [&](int q) { return (q / 8) / spw; };
        if (warp == 8) {
            // The producer: claims the jobs of each phase (weights do not depend on the previous kernel or phase:
            // no wait) from a counter the blocks share, one at a time, and streams them as soon as a slot is
            // free: a block that streams faster takes more, so no phase waits for the slowest multiprocessor's
            // fixed share. After a phase, one end marker per warp.
            if (lane != 0) return;
            int q = 0;
            auto put = [&](const act_t* W, int in, int r, int rows) {
                const int slot = slotOf(q), u = useOf(q);
                q++;
                if (u > 0) ds_mbar_wait(smem_addr(&empty[slot]), (u - 1) & 1);
                metaRow[slot] = r; metaRows[slot] = rows;
                const unsigned bar = smem_addr(&full[slot]);
                if (rows == 0) { pd_mbar_arrive(bar); return; }
                asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
                ds_mbar_expect(bar, (unsigned)(rows * in * 2));
                const unsigned dst = smem_addr(pd_smem + (size_t)slot * slotBytes);
                for (int j = 0; j < rows; j++) ds_bulk(dst + j * pd_stride(in), W + (size_t)(r + j) * in, in * 2, bar);
            };
            // The epilogue's per-row data of a claimed job (the conv window and its filter, biases, the next
            // norm's weight) fetched into L2 as the job is claimed, so that the consumer's loads and stores of it
            // meet L2 instead of memory behind the queued copies. Measured on the H200 (whole step, 1 row, same
            // runs): 1.3b 1,397–1,420 µs against 1,648 without, 2.7b 2,808 against 2,879 (on another machine 1.3b
            // took 1,523–1,559, its grid barrier after out_proj 8–9 µs instead of 2–3). Leaving those loads out
            // altogether (wrong results, timing only) gained nothing, so the gain is presumably on the stores to
            // the same lines (the conv window), which now meet them in L2.
            auto prefetch = [&](const void* a) { asm volatile("prefetch.global.L2 [%0];" :: "l"(a)); };
            // L is the phase's layer, read once per phase (not per job: the copies' memory clobbers would reload it).
            auto epilogueData = [&](const PersistentLayer& L, int p, int r, int n) {
                if (p % 2 == 0) {
                    if (L.inProjBias) prefetch(L.inProjBias + r);
                    const int c0 = max(r - dSsm, 0), c1 = min(r + n - dSsm, convDim);
                    if (c0 < c1) {
                        prefetch(L.convW + (size_t)c0 * dConv); prefetch(L.convW + (size_t)(c1 - 1) * dConv);
                        if (L.convB) prefetch(L.convB + c0);
                        for (int k = 0; k < dConv - 1; k++) prefetch(L.convState + (size_t)k * convDim + c0);
                    }
                } else {
                    if (L.outProjBias) prefetch(L.outProjBias + r);
                    prefetch(L.nextNorm + r);
                }
            };
            // Phase p's counter (pbar + 32·(1 + p)) grows by its jobs + one failed claim per block each launch: its
            // base is known. One job a claim: claims of two jobs left the phase's last blocks a job behind (1.3b's
            // grid barrier after out_proj 5–9 µs against 2.5; whole step 1,545–1,552 µs against 1,398–1,401, same
            // run; 2.7b 2,754–2,760 against 2,679–2,691); four a claim were slower still (1.3b 1,779).
            auto phase = [&](int p, const act_t* W, int in, int rows, int jr) {
                const int nJ = (rows + jr - 1) / jr;
                const PersistentLayer L = layers[p / 2];
                unsigned* c = pbar + 32 * (1 + p);
                const unsigned base = epoch * (unsigned)(nJ + gridDim.x);
                int j = (int)(atomicAdd(c, 1u) - base);
                while (j < nJ) {
                    const int next = (int)(atomicAdd(c, 1u) - base);  // in flight while job j is issued
                    epilogueData(L, p, j * jr, min(jr, rows - j * jr));
                    put(W, in, j * jr, min(jr, rows - j * jr));
                    j = next;
                }
                for (int i = 0; i < 8; i++) put(nullptr, 0, 0, 0);
            };
            for (int l = 0; l < nLayer; l++) {
                phase(2 * l, layers[l].inProj, dModel, inSize, jobIn);
                phase(2 * l + 1, layers[l].outProj, dSsm, dModel, jobSsm);
            }
            return;
        }
        // The consumers: this warp's jobs (q = warp, warp + 8, …) until the phase's end marker. `pre` loads what
        // a row's epilogue needs into registers before the product, so that it adds no round trip after it. The
        // epilogue runs in every lane (`mine`: lane < the job's rows), so that it may exchange values.
        int q = warp;
        auto jobs = [&](int in, auto&& pre, auto&& epilogue, unsigned* count) {
            for (;; q += 8) {
                const int slot = slotOf(q);
                ds_mbar_wait(smem_addr(&full[slot]), useOf(q) & 1);
                const int r = metaRow[slot], rows = metaRows[slot];
                PDRow ctx = {};
                if (lane < rows) ctx = pre(r + lane);
                const unsigned char* w = pd_smem + (size_t)slot * slotBytes;
                const float s = rows == 0 ? 0.f : in >= pairsFrom ? pd_job_dot_pairs(w, xs, in, rows) : pd_job_dot_row(w, xs, in, rows);
                __syncwarp();
                if (lane == 0) pd_mbar_arrive(smem_addr(&empty[slot]));
                if (rows == 0) { q += 8; return; }
                epilogue(r + lane, s, ctx, lane < rows);
                // A hint, not an ordering (the words carry their own tags): relaxed, so the copies do not wait on it.
                if (count && lane == 0) asm volatile("red.relaxed.gpu.global.add.u32 [%0], 1;" :: "l"(count) : "memory");
            }
        };
        const bool tracing = trace && b == 0 && tid == 0;
        asm volatile("griddepcontrol.wait;" ::: "memory");  // the embedding's hand-over
        const int per = (P + CPW - 1) / CPW;
        for (int l = 0; l < nLayer; l++) {
            const PersistentLayer L = layers[l];
            const u32 tag = pd_tag(epoch, nLayer, l), before = pd_tag(epoch, nLayer, l - 1);
            const bool last = l == nLayer - 1;
            unsigned* inDone = pbar + 32 * (1 + 2 * nLayer + l);  // in_proj's finished jobs (all launches)
            unsigned long long* mark = trace + (size_t)l * PD_MARKS;
            if (tracing) mark[0] = pd_now();
            // The SSD step's state does not depend on in_proj: its lines start for L2 before.
            for (int item = b * 8 + warp; item < H * per; item += gridDim.x * 8)
                ssd_state_prefetch(0, item / per, (item % per) * CPW, CPW, H, P, N, L.state, sh);
            // A. in_proj (+ bias), the conv step of conv inputs. Its input: the embedding's hand-over (layer 0),
            // else the last layer's out_proj's, tagged.
            float inv = l == 0 ? pd_stage(xs, xhModel, dModel, ssqModel, gridDim.x, eps, &scale)
                               : pd_stage_tagged(xs, hoxhM, dModel, hossqM, gridDim.x, eps, &scale, before);
            if (tracing) mark[1] = pd_now();
            const bool conv4 = dConv == 4;
            jobs(dModel, [&](int o) {
                PDRow x;
                x.v[0] = L.inProjBias ? L.inProjBias[o] : 0.f;
                const int c = o - dSsm;
                if (conv4 && c >= 0 && c < convDim) {  // the conv window: bias, 4 taps, 3 inputs held
                    x.v[1] = L.convB ? L.convB[c] : 0.f;
                    const float4 w = *(const float4*)(L.convW + (size_t)c * 4);
                    x.v[2] = w.x; x.v[3] = w.y; x.v[4] = w.z; x.v[5] = w.w;
                    for (int k = 0; k < 3; k++) x.v[6 + k] = L.convState[(size_t)k * convDim + c];
                }
                return x;
            }, [&](int o, float s, const PDRow& x, bool mine) {
                if (!mine) return;
                const float val = s * inv + x.v[0];
                const int c = o - dSsm;
                if (c < 0 || c >= convDim) { pd_put(hozx + o, __float_as_uint(val), tag); return; }  // z, dt
                float out;
                if (!conv4) {
                    out = conv_step_value(0, c, val, convDim, dConv, L.convW, L.convB, L.convState);
                } else {  // as conv_step_channel: bias + w₃·new, then the held inputs in order; the window shifts by one
                    float acc = x.v[1] + x.v[5] * val;
                    for (int k = 0; k < 3; k++) acc += x.v[2 + k] * x.v[6 + k];
                    L.convState[c] = x.v[7];
                    L.convState[(size_t)convDim + c] = x.v[8];
                    L.convState[(size_t)2 * convDim + c] = val;
                    out = silu(acc);
                }
                pd_put(hoxbc + c, __float_as_uint(out), tag);
            }, inDone);
            if (tracing) mark[2] = pd_now();
            // B. The SSD step, each item as soon as its inputs are there, handing y·silu(z) × the gate norm's
            // weight over in bf16 pairs (lanes 2i and 2i + 1), with the block's Σ v².
            const unsigned inJobs = (unsigned)((inSize + jobIn - 1) / jobIn);
            float sq = 0.f;
            for (int item = b * 8 + warp; item < H * per; item += gridDim.x * 8) {
                const int h = item / per, p0 = (item % per) * CPW;
                // The gate norm's weight of this lane's channel before the step, not after it: one round trip less.
                const float gw = lane < CPW && p0 + lane < P ? L.gateNorm[h * P + p0 + lane] : 0.f;
                const SsdSrcTagged src = {hoxbc, hozx, tag, inDone, (epoch + 1) * inJobs};
                float zc;
                const float y = ssd_step_y<CPW, NPL, PAIRS>(src, 0, h, p0, H, P, N, 1, dSsm, dSsm + convDim, L.dtBias, L.A, lo, hi, L.D,
                                                            dPerChannel, L.state, sh, true, zc);
                const int c = h * P + p0 + lane;
                const bool owner = lane < CPW && p0 + lane < P;
                const float sz = silu(zc), v = owner ? (nbg ? y : y * sz) : 0.f;
                const float xv = owner ? v * gw * (nbg ? sz : 1.f) : 0.f;
                const float up = __shfl_down_sync(0xffffffffu, xv, 1);
                if (owner && !(lane & 1)) pd_put(hoxhS + c / 2, pd_pair(xv, up), tag);
                sq += v * v;
            }
            pd_block_total(sq, red, hossqS + b, tag);
            if (tracing) mark[3] = pd_now();
            // C. out_proj into the residual, handed over to the next norm (the next layer's, or norm_f: the last
            // layer leaves the residual in `residual` for the head, which normalizes it itself).
            inv = pd_stage_tagged(xs, hoxhS, dSsm, hossqS, gridDim.x, eps, &scale, tag);
            if (tracing) mark[4] = pd_now();
            float rs = 0.f;
            jobs(dSsm, [&](int o) {
                PDRow x;
                if (l == 0) {
                    x.v[0] = __ldcg(residual + o);  // the embedding's
                } else {
                    pd_word w = pd_get(hores + o);  // written a layer ago: almost always there
                    for (unsigned spins = 0; !pd_has(w, before); spins++) { poll_pause(spins); w = pd_get(hores + o); }
                    x.v[0] = __uint_as_float((u32)w);
                }
                x.v[1] = L.outProjBias ? L.outProjBias[o] : 0.f; x.v[2] = L.nextNorm[o];
                return x;
            }, [&](int o, float s, const PDRow& x, bool mine) {
                const float val = mine ? x.v[0] + s * inv + x.v[1] : 0.f, xv = val * x.v[2];
                const float up = __shfl_down_sync(0xffffffffu, xv, 1);
                if (!mine) return;
                if (last) { residual[o] = val; return; }
                pd_put(hores + o, __float_as_uint(val), tag);
                if (!(o & 1)) pd_put(hoxhM + o / 2, pd_pair(xv, up), tag);
                rs += val * val;
            }, nullptr);
            pd_block_total(rs, red, hossqM + b, tag);
            if (tracing) mark[5] = pd_now();
        }
        // Every block has read the epoch (each handed its layers over, and block 0 waited for all of the last
        // layer's SSD sums): the next launch counts one more.
        if (b == 0 && tid == 0) *(volatile unsigned*)pbar = epoch + 1;
    }
    #define PD_ARGS int nLayer, int dModel, int inSize, int dSsm, int convDim, int dConv, int H, int P, int N, float eps, float lo, \
            float hi, int dPerChannel, int nbg, int sh, const PersistentLayer* __restrict__ layers, float* residual, \
            const act_t* xhModel, const float* ssqModel, PD_HAND_OVERS, unsigned* pbar, int slotBytes, int spw, \
            unsigned long long* trace, int pairsFrom
    #define PD_PASS nLayer, dModel, inSize, dSsm, convDim, dConv, H, P, N, eps, lo, hi, dPerChannel, nbg, sh, layers, residual, xhModel, \
            ssqModel, hoxhM, hossqM, hozx, hoxbc, hoxhS, hossqS, hores, pbar, slotBytes, spw, trace, pairsFrom
    // 8 consumer warps and the producer warp. Any N ≤ 256 and P: 4 channels a warp; N = 128: 8, in pairs.
    // Nine warps put three on some of the multiprocessor's four sub-partitions (16K registers each), so ptxas
    // caps a thread at 168 registers: every value held across the layer loop counts (the hand-overs' seven
    // addresses are kernel parameters, which stay in the constant bank): m_decode_persistent_n128, what every
    // released size runs, uses 168 and spills nothing; the general one spills about 100 bytes.
    extern "C" __global__ void __launch_bounds__(288, 1) m_decode_persistent(PD_ARGS) {
    #if ACT == 1 && SM90
        persistent_body<4, 0, 0>(PD_PASS);
    #endif
    }
    extern "C" __global__ void __launch_bounds__(288, 1) m_decode_persistent_n128(PD_ARGS) {
    #if ACT == 1 && SM90
        persistent_body<8, 4, 1>(PD_PASS);
    #endif
    }

    """#
}
