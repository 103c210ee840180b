import CMamba2Kernels
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The chunked SSD algorithm (and, with one chunk per sequence, the quadratic form).
///
/// Per sequence, tokens are cut into chunks of at most Q; a chunk never crosses a sequence boundary, so
/// packed rows need no masks. For each chunk c of head h (group g):
///   1. CB      = C_c · B_cᵀ                                (Q×Q, per group, shared by its heads; GEMM)
///   2. cum_t   = Σ_{k≤t} dt_k·A                            (inclusive, within the chunk, in double)
///   3. M[t,s]  = CB[t,s] · exp(min(cum_t − cum_s, 0)) · dt_s   for s ≤ t, else 0
///   4. Y_c     = M · X_c                                    (intra-chunk output; GEMM)
///   5. Y_c    += diag(exp(cum_t)) · C_c · h_prevᵀ            (state to output; GEMM)
///   6. h_next  = exp(cum_last)·h_prev + (w ∘ X_c)ᵀ · B_c,  w_s = exp(cum_last − cum_s)·dt_s
///                                                           (chunk state and state passing in one GEMM)
/// Steps 1 run for all chunks first; steps 2–6 run per head in parallel, chunks in order.
/// The quadratic (masked attention) form is this with Q = the sequence length: one block, no passing.
enum SSDChunked {
    static func run(_ pr: SSDProblem, chunkSize: Int, y: UnsafeMutablePointer<Float>,
                    finalStates: UnsafeMutablePointer<Float>, sequenceStates: UnsafeMutablePointer<Float>) {
        let (L, H, P, G, N) = (pr.L, pr.H, pr.P, pr.G, pr.N)
        let stateSize = P * N

        // Chunks of every row: [start, start+len) within one sequence.
        struct Chunk { let row: Int, start: Int, len: Int; let newSequence: Bool, first: Bool; let endsSequence: Int? ; let cbOffset: Int }
        var chunks: [Chunk] = []
        var cbTotal = 0
        var maxQ = 0
        for r in 0..<pr.b {
            for seg in pr.segments[r] {
                var s = seg.start
                while s < seg.end {
                    let len = min(chunkSize, seg.end - s)
                    let last = s + len == seg.end
                    chunks.append(Chunk(row: r, start: s, len: len, newSequence: s == seg.start, first: seg.first,
                                        endsSequence: last ? seg.ordinal : nil, cbOffset: cbTotal))
                    cbTotal += G * len * len
                    maxQ = max(maxQ, len)
                    s += len
                }
            }
        }

        let cb = UnsafeMutablePointer<Float>.allocate(capacity: cbTotal)
        defer { cb.deallocate() }
        let cbS = SharedPointer(cb), yS = SharedPointer(y), finS = SharedPointer(finalStates), seqS = SharedPointer(sequenceStates)
        pr.input.x.data.withUnsafeBufferPointer { xBuf in
        pr.input.B.data.withUnsafeBufferPointer { bBuf in
        pr.input.C.data.withUnsafeBufferPointer { cBuf in
        pr.dt.withUnsafeBufferPointer { dtBuf in
            let x = SharedPointer(xBuf.baseAddress!), B = SharedPointer(bBuf.baseAddress!)
            let C = SharedPointer(cBuf.baseAddress!), dt = SharedPointer(dtBuf.baseAddress!)

            // 1. CB for every (chunk, group).
            Parallel.forEach(chunks.count * G) { job in
                let ch = chunks[job / G], g = job % G
                let rowBase = (ch.row * L + ch.start) * G + g
                BLAS.sgemm(transB: true, m: ch.len, n: ch.len, k: N, a: C.p + rowBase * N, lda: G * N,
                           b: B.p + rowBase * N, ldb: G * N, c: cbS.p + ch.cbOffset + g * ch.len * ch.len, ldc: ch.len)
            }

            // 2–6 per (row, head); the chunk list is in row order, so each job walks its row's chunks.
            var rowChunks: [Range<Int>] = []
            var i0 = 0
            for r in 0..<pr.b {
                var i1 = i0
                while i1 < chunks.count && chunks[i1].row == r { i1 += 1 }
                rowChunks.append(i0..<i1)
                i0 = i1
            }
            Parallel.forEach(pr.b * H) { job in
                let (r, h) = (job / H, job % H)
                let g = h / pr.headsPerGroup
                let a = Double(pr.A[h])
                let state = UnsafeMutablePointer<Float>.allocate(capacity: stateSize)
                let m = UnsafeMutablePointer<Float>.allocate(capacity: maxQ * maxQ)
                let tmp = UnsafeMutablePointer<Float>.allocate(capacity: maxQ * max(N, P))
                let cum = UnsafeMutablePointer<Double>.allocate(capacity: maxQ)
                let dtc = UnsafeMutablePointer<Float>.allocate(capacity: maxQ)
                defer { state.deallocate(); m.deallocate(); tmp.deallocate(); cum.deallocate(); dtc.deallocate() }
                var stateIsZero = true
                for ci in rowChunks[r] {
                    let ch = chunks[ci]
                    let q = ch.len
                    let tok0 = r * L + ch.start
                    if ch.newSequence {
                        SSDRecurrent.loadInitialState(pr, row: r, head: h, first: ch.first, into: state)
                        stateIsZero = !(ch.first && pr.input.initialStates != nil)
                    }
                    // 2. cumulative decay within the chunk.
                    var acc = 0.0
                    for t in 0..<q {
                        let d = dt.p[(tok0 + t) * H + h]
                        dtc[t] = d
                        acc += Double(d) * a
                        cum[t] = acc
                    }
                    // 3–4. intra-chunk output.
                    mk_ssd_decay_mask(Int32(q), cbS.p + ch.cbOffset + g * q * q, Int32(q), cum, dtc, m, Int32(q))
                    let xh = x.p + (tok0 * H + h) * P
                    let yh = yS.p + (tok0 * H + h) * P
                    BLAS.sgemm(m: q, n: P, k: q, a: m, lda: q, b: xh, ldb: H * P, c: yh, ldc: H * P)
                    // 5. the incoming state's contribution: rows of C scaled by exp(cum_t).
                    let cg = C.p + (tok0 * G + g) * N
                    if !stateIsZero {
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
                               ldb: G * N, beta: stateIsZero ? 0 : Float(exp(min(last, 0))), c: state, ldc: N)
                    stateIsZero = false
                    if let s = ch.endsSequence {
                        (seqS.p + (s * H + h) * stateSize).update(from: state, count: stateSize)
                    }
                }
                (finS.p + (r * H + h) * stateSize).update(from: state, count: stateSize)
            }
        }}}}
    }
}
