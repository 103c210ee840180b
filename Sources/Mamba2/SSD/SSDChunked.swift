import CMamba2Kernels
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The chunked SSD algorithm (and, with one chunk per sequence, the quadratic form).
///
/// Per sequence, tokens are cut into chunks of at most Q; a chunk never crosses a sequence boundary, so
/// packed rows need no masks. For each chunk c and head h (group g):
///   1. CB      = C_c · B_cᵀ                                (Q×Q, per group, shared by its heads; GEMM)
///   2. cum_t   = Σ_{k≤t} dt_k·A                            (inclusive, within the chunk, in double)
///   3. M[t,s]  = CB[t,s] · exp(min(cum_t − cum_s, 0)) · dt_s   for s ≤ t, else 0
///   4. Y_c     = M · X_c                                    (intra-chunk output; GEMM)
///   5. Y_c    += diag(exp(cum_t)) · C_c · h_prevᵀ            (state to output; GEMM)
///   6. h_next  = exp(cum_last)·h_prev + (w ∘ X_c)ᵀ · B_c,  w_s = exp(cum_last − cum_s)·dt_s
///                                                           (chunk state and state passing in one GEMM)
/// Chunks run in order; within a chunk, step 1 runs per group and steps 2–6 per head, in parallel.
/// The CB block of a chunk stays in cache while all heads of its group read it.
/// The quadratic (masked attention) form is this with Q = the sequence length: one block, no passing.
package enum SSDChunked {
    static func run(_ pr: SSDProblem, chunkSize: Int, y: UnsafeMutablePointer<Float>,
                    finalStates: UnsafeMutablePointer<Float>, sequenceStates: UnsafeMutablePointer<Float>) {
        let (L, H, P, G, N) = (pr.L, pr.H, pr.P, pr.G, pr.N)
        let stateSize = P * N
        let maxQ = min(chunkSize, pr.segments.flatMap { $0 }.map { $0.end - $0.start }.max()!)
        let stripes = min(H, Parallel.threadCount)

        // Buffers: CB (G, Q, Q) for the current chunk; per-head states (H, P, N); per-thread scratch.
        let cb = UnsafeMutablePointer<Float>.allocate(capacity: G * maxQ * maxQ)
        let states = UnsafeMutablePointer<Float>.allocate(capacity: H * stateSize)
        let scratchPerThread = maxQ * maxQ + maxQ * max(N, P) + maxQ
        let scratch = UnsafeMutablePointer<Float>.allocate(capacity: stripes * scratchPerThread)
        let cums = UnsafeMutablePointer<Double>.allocate(capacity: stripes * maxQ)
        defer { cb.deallocate(); states.deallocate(); scratch.deallocate(); cums.deallocate() }
        let cbS = SharedPointer(cb), stS = SharedPointer(states), scS = SharedPointer(scratch), cuS = SharedPointer(cums)
        let yS = SharedPointer(y)

        pr.withInputPointers { ptrs in
            let (x, B, C, dt) = (ptrs.x, ptrs.B, ptrs.C, ptrs.dt)
            for r in 0..<pr.b {
                for seg in pr.segments[r] {
                    // A new sequence: its given state (see SSDInput), else zeros.
                    for h in 0..<H { pr.loadInitialState(row: r, head: h, segment: seg, into: states + h * stateSize) }
                    var stateIsZero = !pr.hasInitialState(seg)
                    var c0 = seg.start
                    while c0 < seg.end {
                        let q = min(chunkSize, seg.end - c0)
                        let tok0 = r * L + c0
                        // 1. CB per group.
                        if G >= Parallel.threadCount {
                            Parallel.forEach(G) { g in
                                BLAS.sgemm(transB: true, m: q, n: q, k: N, a: C.p + (tok0 * G + g) * N, lda: G * N,
                                           b: B.p + (tok0 * G + g) * N, ldb: G * N, c: cbS.p + g * q * q, ldc: q)
                            }
                        } else {
                            for g in 0..<G {
                                BLAS.sgemmParallel(transB: true, m: q, n: q, k: N, a: C.p + (tok0 * G + g) * N, lda: G * N,
                                                   b: B.p + (tok0 * G + g) * N, ldb: G * N, c: cbS.p + g * q * q, ldc: q)
                            }
                        }
                        let zeroIn = stateIsZero
                        // 2–6 per head.
                        Parallel.forEachStripe(H) { stripe, heads in
                            let m = scS.p + stripe * scratchPerThread
                            let tmp = m + maxQ * maxQ
                            let dtc = tmp + maxQ * max(N, P)
                            let cum = cuS.p + stripe * maxQ
                            for h in heads {
                                let g = h / pr.headsPerGroup
                                let a = Double(pr.A[h])
                                let state = stS.p + h * stateSize
                                // 2. cumulative decay within the chunk.
                                cumulativeDecay(dt: dt.p, H: H, head: h, a: a, tok0: tok0, q: q, dtc: dtc, cum: cum)
                                // 3–4. intra-chunk output.
                                mk_ssd_decay_mask(Int32(q), cbS.p + g * q * q, Int32(q), cum, dtc, m, Int32(q), nil)
                                let xh = x.p + (tok0 * H + h) * P
                                let yh = yS.p + (tok0 * H + h) * P
                                BLAS.sgemm(m: q, n: P, k: q, a: m, lda: q, b: xh, ldb: H * P, c: yh, ldc: H * P)
                                // 5. the incoming state's contribution: rows of C scaled by exp(cum_t).
                                if !zeroIn {
                                    let cg = C.p + (tok0 * G + g) * N
                                    for t in 0..<q {
                                        let e = Float(exp(min(cum[t], 0)))
                                        let src = cg + t * G * N, dst = tmp + t * N
                                        for n in 0..<N { dst[n] = src[n] * e }
                                    }
                                    BLAS.sgemm(transB: true, m: q, n: P, k: N, a: tmp, lda: N, b: state, ldb: N,
                                               beta: 1, c: yh, ldc: H * P)
                                }
                                // 6. state at the chunk's end.
                                let last = cum[q - 1]
                                for t in 0..<q {
                                    let ws = Float(exp(min(last - cum[t], 0))) * dtc[t]
                                    let src = xh + t * H * P, dst = tmp + t * P
                                    for p in 0..<P { dst[p] = src[p] * ws }
                                }
                                BLAS.sgemm(transA: true, m: P, n: N, k: q, a: tmp, lda: P, b: B.p + (tok0 * G + g) * N,
                                           ldb: G * N, beta: zeroIn ? 0 : Float(exp(min(last, 0))), c: state, ldc: N)
                            }
                        }
                        stateIsZero = false
                        c0 += q
                    }
                    (sequenceStates + seg.ordinal * H * stateSize).update(from: states, count: H * stateSize)
                }
                (finalStates + r * H * stateSize).update(from: states, count: H * stateSize)
            }
        }
    }

    /// dtc[t] = dt of token tok0 + t for head h; cum[t] = Σ_{k≤t} dtc[k]·a, summed in double (t < q).
    @inline(__always)
    package static func cumulativeDecay(dt: UnsafeMutablePointer<Float>, H: Int, head h: Int, a: Double, tok0: Int, q: Int,
                                dtc: UnsafeMutablePointer<Float>, cum: UnsafeMutablePointer<Double>) {
        var acc = 0.0
        for t in 0..<q {
            let d = dt[(tok0 + t) * H + h]
            dtc[t] = d
            acc += Double(d) * a
            cum[t] = acc
        }
    }
}
