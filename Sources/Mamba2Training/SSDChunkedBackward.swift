import Mamba2
import CMamba2Kernels
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

extension SSD {
    /// The fast backward: the chunked algorithm run in reverse, every product a GEMM.
    ///
    /// Per sequence and head (in parallel over heads), with chunks of Q tokens as in `SSDChunked`:
    ///   1. Recompute the state entering every chunk, h_c (P×N), by the forward's state passing; keep them
    ///      (memory: chunks × H × P × N, e.g. 6 MB for a 130m layer at L = 2048: nothing per token).
    ///   2. Walk the chunks backwards with g = dLoss/d(state leaving the chunk), starting at the
    ///      gradient of the final state (or 0). For chunk c, with CB = C·Bᵀ, M = CB ∘ decay ∘ dt (the
    ///      forward's intra-chunk matrix) and dY this chunk's output gradient:
    ///        intra:    dM = dY·Xᵀ;  dX += Mᵀ·dY;  dCB = dM ∘ decay ∘ dt;  dC += dCB·B;  dB += dCBᵀ·C
    ///        incoming: dh_c = dYᵀ·(e^{cum}∘C);  dC += e^{cum}∘(dY·h_c)
    ///        leaving:  dX += w∘(B·gᵀ);  dB += (w∘X)·g,   w_s = e^{cum_last − cum_s}·dt_s
    ///        passing:  g ← e^{cum_last}·g + dh_c
    ///      and the log-decay gradients (dcum, one per token) gathered on the way, turned into dt and A
    ///      gradients by a reverse cumulative sum (cum_t = Σ_{k≤t} dt_k·A).
    ///   3. dt's chain through clamp, softplus and dt_bias; D and the gate z elementwise.
    /// B and C are shared by the heads of a group: each head writes its own copy, summed at the end.
    ///
    /// Same contract as `backwardReference`, plus packed rows (`seqIdx`; states reset at boundaries).
    /// `sequenceInitialStates` is not supported (training starts each sequence from zeros or
    /// `initialStates`).
    public static func backward(_ input: SSDInput, options: SSDOptions, gradY: Tensor,
                                gradFinalStates: Tensor? = nil) throws -> SSDGradients {
        let pr = try SSDProblem(input, options: options)
        guard input.sequenceInitialStates == nil else {
            throw Mamba2Error.invalidArgument("sequence_initial_states", reason: "the backward takes initial_states (one per row), not one per sequence")
        }
        let (b, L, H, P, G, N) = (pr.b, pr.L, pr.H, pr.P, pr.G, pr.N)
        guard gradY.shape == [b, L, H, P] else { throw Mamba2Error.shape(argument: "grad_y", expected: "(b, L, H, P)", got: gradY.shape) }
        if let g = gradFinalStates, g.shape != [b, H, P, N] {
            throw Mamba2Error.shape(argument: "grad_final_states", expected: "(b, H, P, N)", got: g.shape)
        }
        let tokens = b * L
        let dPerChannel = input.D?.shape.count == 2

        // 3a. Through the gate: needs the output before it, y' = SSD(x) + D·x.
        var dY = gradY.data
        var gz: [Float]? = nil
        if let z = input.z {
            var plain = input
            plain.z = nil
            var o = options
            o.form = .chunked
            let yPre = try SSD.run(plain, options: o).y.data
            var gzv = [Float](repeating: 0, count: dY.count)
            for i in 0..<dY.count {
                let zv = z.data[i], sig = 1 / (1 + exp(-zv))
                gzv[i] = dY[i] * yPre[i] * sig * (1 + zv * (1 - sig))
                dY[i] *= zv * sig
            }
            gz = gzv
        }
        // 3b. The skip: dD = Σ dY·x, dx = D·dY (the SSD core adds its part below).
        var gx = [Float](repeating: 0, count: dY.count)
        var gD: [Float]? = nil
        if let D = input.D {
            var acc = [Double](repeating: 0, count: D.count)
            for t in 0..<tokens {
                for h in 0..<H {
                    for p in 0..<P {
                        let i = (t * H + h) * P + p
                        let k = dPerChannel ? h * P + p : h
                        acc[k] += Double(dY[i]) * Double(input.x.data[i])
                        gx[i] = D.data[k] * dY[i]
                    }
                }
            }
            gD = acc.map(Float.init)
        }

        // 1–2. The SSD core.
        var gdt = [Float](repeating: 0, count: tokens * H)     // with respect to dt after the transform
        var gA = [Float](repeating: 0, count: H)
        var gBh = [Float](repeating: 0, count: H * tokens * N) // per head, (H, b·L, N)
        var gCh = [Float](repeating: 0, count: H * tokens * N)
        var gInit = [Float](repeating: 0, count: input.initialStates == nil ? 0 : b * H * P * N)
        let Q = options.chunkSize
        let maxQ = min(Q, pr.segments.flatMap { $0 }.map { $0.end - $0.start }.max()!)
        let maxChunks = pr.segments.flatMap { $0 }.map { ($0.end - $0.start + Q - 1) / Q }.max()!
        let stripes = min(H, Parallel.threadCount)
        let PN = P * N
        let floatsPerStripe = 4 * maxQ * maxQ + 2 * maxQ * N + 2 * maxQ * P + 3 * PN + maxChunks * PN + 2 * maxQ
        let scratch = UnsafeMutablePointer<Float>.allocate(capacity: stripes * floatsPerStripe)
        let dscratch = UnsafeMutablePointer<Double>.allocate(capacity: stripes * 3 * maxQ)
        defer { scratch.deallocate(); dscratch.deallocate() }
        let scS = SharedPointer(scratch), dsS = SharedPointer(dscratch)
        let gfData = gradFinalStates?.data

        pr.withInputPointers { ptrs in
        dY.withUnsafeBufferPointer { dyb in gx.withUnsafeMutableBufferPointer { gxb in
        gdt.withUnsafeMutableBufferPointer { gdtb in gA.withUnsafeMutableBufferPointer { gab in
        gBh.withUnsafeMutableBufferPointer { gbb in gCh.withUnsafeMutableBufferPointer { gcb in
        gInit.withUnsafeMutableBufferPointer { gib in
            let (x, B, C, dt) = (ptrs.x, ptrs.B, ptrs.C, ptrs.dt)
            let dYp = SharedPointer(dyb.baseAddress!), gxS = SharedPointer(gxb.baseAddress!)
            let gdtS = SharedPointer(gdtb.baseAddress!), gaS = SharedPointer(gab.baseAddress!)
            let gbS = SharedPointer(gbb.baseAddress!), gcS = SharedPointer(gcb.baseAddress!)
            let giS = gib.baseAddress.map { SharedPointer($0) }
            let ldx = H * P, ldb = G * N
            Parallel.forEachStripe(H) { stripe, heads in
                // Scratch of this thread.
                let cb = scS.p + stripe * floatsPerStripe
                let m = cb + maxQ * maxQ, dm = m + maxQ * maxQ
                let ce = dm + maxQ * maxQ, dce = ce + maxQ * N
                let dxw = dce + maxQ * N, xw = dxw + maxQ * P
                let g = xw + maxQ * P, gNew = g + PN, dhOff = gNew + PN
                let hIn = dhOff + PN, dtc = hIn + maxChunks * PN
                let decay = dtc + maxQ, eCum = decay + maxQ * maxQ   // exp(cum_t − cum_s) (q×q); exp(cum_t) (q)
                let cum = dsS.p + stripe * 3 * maxQ, dcum = cum + maxQ, gdtc = dcum + maxQ
                for h in heads {
                    let gi = h / pr.headsPerGroup
                    let a = Double(pr.A[h])
                    let gB = gbS.p + h * tokens * N, gC = gcS.p + h * tokens * N
                    var dA = 0.0
                    for r in 0..<b {
                        for (si, seg) in pr.segments[r].enumerated() {
                            let chunks = (seg.end - seg.start + Q - 1) / Q
                            func loadChunk(_ c: Int) -> (tok0: Int, q: Int) {
                                let c0 = seg.start + c * Q
                                let q = min(Q, seg.end - c0)
                                let tok0 = r * L + c0
                                SSDChunked.cumulativeDecay(dt: dt.p, H: H, head: h, a: a, tok0: tok0, q: q, dtc: dtc, cum: cum)
                                return (tok0, q)
                            }
                            // 1. States entering each chunk.
                            pr.loadInitialState(row: r, head: h, segment: seg, into: hIn)
                            let hasInit = pr.hasInitialState(seg)
                            for c in 0..<(chunks - 1) {
                                let (tok0, q) = loadChunk(c)
                                let last = cum[q - 1]
                                for t in 0..<q {
                                    let ws = Float(exp(min(last - cum[t], 0))) * dtc[t]
                                    let src = x.p + (tok0 + t) * ldx + h * P, dst = xw + t * P
                                    for p in 0..<P { dst[p] = src[p] * ws }
                                }
                                let next = hIn + (c + 1) * PN
                                next.update(from: hIn + c * PN, count: PN)
                                BLAS.sgemm(transA: true, m: P, n: N, k: q, a: xw, lda: P, b: B.p + (tok0 * G + gi) * N, ldb: ldb,
                                           beta: Float(exp(min(last, 0))), c: next, ldc: N)
                            }
                            // 2. Backwards over chunks. g = gradient of the state leaving the chunk.
                            if let gfData, si == pr.segments[r].count - 1 {
                                gfData.withUnsafeBufferPointer { g.update(from: $0.baseAddress! + (r * H + h) * PN, count: PN) }
                            } else {
                                g.update(repeating: 0, count: PN)
                            }
                            for c in stride(from: chunks - 1, through: 0, by: -1) {
                                let (tok0, q) = loadChunk(c)
                                let hc = hIn + c * PN
                                let incoming = hasInit || c > 0
                                let Xp = x.p + tok0 * ldx + h * P, dyp = dYp.p + tok0 * ldx + h * P
                                let gxp = gxS.p + tok0 * ldx + h * P
                                let Bp = B.p + (tok0 * G + gi) * N, Cp = C.p + (tok0 * G + gi) * N
                                let gBp = gB + tok0 * N, gCp = gC + tok0 * N
                                for t in 0..<q { dcum[t] = 0; gdtc[t] = 0 }
                                let last = cum[q - 1]
                                // intra-chunk (the decay factors kept apart from M for the dt gradient)
                                BLAS.sgemm(transB: true, m: q, n: q, k: N, a: Cp, lda: ldb, b: Bp, ldb: ldb, c: cb, ldc: q)
                                mk_ssd_decay_mask(Int32(q), cb, Int32(q), cum, dtc, m, Int32(q), decay)
                                BLAS.sgemm(transB: true, m: q, n: q, k: P, a: dyp, lda: ldx, b: Xp, ldb: ldx, c: dm, ldc: q)
                                BLAS.sgemm(transA: true, m: q, n: P, k: q, a: m, lda: q, b: dyp, ldb: ldx, beta: 1, c: gxp, ldc: ldx)
                                for t in 0..<q {
                                    var rowG = 0.0
                                    for s in 0...t {
                                        let i = t * q + s
                                        let grad = dm[i]
                                        let gl = grad * m[i]                 // d(log decay) contribution
                                        rowG += Double(gl)
                                        dcum[s] -= Double(gl)
                                        gdtc[s] += Double(grad * cb[i] * decay[i])
                                        dm[i] = grad * decay[i] * dtc[s]    // becomes dCB
                                    }
                                    dcum[t] += rowG
                                    for s in (t + 1)..<max(t + 1, q) { dm[t * q + s] = 0 }
                                }
                                BLAS.sgemm(m: q, n: N, k: q, a: dm, lda: q, b: Bp, ldb: ldb, beta: 1, c: gCp, ldc: N)
                                BLAS.sgemm(transA: true, m: q, n: N, k: q, a: dm, lda: q, b: Cp, ldb: ldb, beta: 1, c: gBp, ldc: N)
                                // the incoming state's part: Y += e^{cum}∘(C·h_cᵀ)
                                if incoming {
                                    for t in 0..<q {
                                        eCum[t] = Float(exp(min(cum[t], 0)))
                                        for n in 0..<N { ce[t * N + n] = Cp[t * ldb + n] * eCum[t] }
                                    }
                                    BLAS.sgemm(transA: true, m: P, n: N, k: q, a: dyp, lda: ldx, b: ce, ldb: N, c: dhOff, ldc: N)
                                    BLAS.sgemm(m: q, n: N, k: P, a: dyp, lda: ldx, b: hc, ldb: N, c: dce, ldc: N)
                                    for t in 0..<q {
                                        var s = 0.0
                                        for n in 0..<N {
                                            let v = dce[t * N + n]
                                            gCp[t * N + n] += eCum[t] * v
                                            s += Double(v * ce[t * N + n])
                                        }
                                        dcum[t] += s
                                    }
                                }
                                // the state leaving the chunk: h' = e^{last}·h_c + (w∘X)ᵀ·B
                                BLAS.sgemm(transB: true, m: q, n: P, k: N, a: Bp, lda: ldb, b: g, ldb: N, c: dxw, ldc: P)
                                for t in 0..<q {
                                    let el = Float(exp(min(last - cum[t], 0)))
                                    let w = el * dtc[t]
                                    var dw = Float(0)
                                    let xs = Xp + t * ldx
                                    for p in 0..<P {
                                        dw += xs[p] * dxw[t * P + p]
                                        gxp[t * ldx + p] += w * dxw[t * P + p]
                                        xw[t * P + p] = xs[p] * w
                                    }
                                    gdtc[t] += Double(dw * el)
                                    dcum[q - 1] += Double(dw * w)
                                    dcum[t] -= Double(dw * w)
                                }
                                BLAS.sgemm(m: q, n: N, k: P, a: xw, lda: P, b: g, ldb: N, beta: 1, c: gBp, ldc: N)
                                // passing: g ← e^{last}·g + dh_c
                                let eLast = Float(exp(min(last, 0)))
                                if incoming {
                                    var dot = 0.0
                                    for k in 0..<PN { dot += Double(g[k] * hc[k]) }
                                    dcum[q - 1] += Double(eLast) * dot
                                    for k in 0..<PN { gNew[k] = eLast * g[k] + dhOff[k] }
                                } else {
                                    for k in 0..<PN { gNew[k] = eLast * g[k] }
                                }
                                g.update(from: gNew, count: PN)
                                // log-decay gradients → dt and A: cum_t = Σ_{k≤t} dt_k·A
                                var run = 0.0
                                for t in stride(from: q - 1, through: 0, by: -1) {
                                    run += dcum[t]
                                    gdtS.p[(tok0 + t) * H + h] += Float(gdtc[t] + run * a)
                                    dA += run * Double(dtc[t])
                                }
                            }
                            // Only a row's first segment has an initial state (sequenceInitialStates is refused).
                            if hasInit, let giS { (giS.p + (r * H + h) * PN).update(from: g, count: PN) }
                        }
                    }
                    gaS.p[h] = Float(dA)
                }
            }
        }}}}}}}}

        // B and C: sum the heads of each group.
        var gB = [Float](repeating: 0, count: tokens * G * N), gC = gB
        for h in 0..<H {
            let gi = h / pr.headsPerGroup
            for t in 0..<tokens {
                for n in 0..<N {
                    gB[(t * G + gi) * N + n] += gBh[(h * tokens + t) * N + n]
                    gC[(t * G + gi) * N + n] += gCh[(h * tokens + t) * N + n]
                }
            }
        }
        // 3c. dt's chain: dt = clamp(softplus(raw + bias)).
        let clamp = !(options.dtLimit.lo == 0 && options.dtLimit.hi == .infinity)
        var gRaw = [Float](repeating: 0, count: tokens * H)
        var gBias = [Double](repeating: 0, count: H)
        for t in 0..<tokens {
            for h in 0..<H {
                let i = t * H + h
                var u = input.dt.data[i] + (input.dtBias?.data[h] ?? 0)
                var gu = gdt[i]
                if options.dtSoftplus { gu *= u <= 20 ? 1 / (1 + exp(-u)) : 1; u = mk_softplus(u) }
                if clamp && (u < options.dtLimit.lo || u > options.dtLimit.hi) { gu = 0 }
                gRaw[i] = gu
                gBias[h] += Double(gu)
            }
        }
        return SSDGradients(x: Tensor(shape: input.x.shape, data: gx), dt: Tensor(shape: input.dt.shape, data: gRaw),
                            dtBias: Tensor(shape: [H], data: gBias.map(Float.init)), A: Tensor(shape: [H], data: gA),
                            B: Tensor(shape: input.B.shape, data: gB), C: Tensor(shape: input.C.shape, data: gC),
                            D: gD.map { Tensor(shape: input.D!.shape, data: $0) }, z: gz.map { Tensor(shape: input.x.shape, data: $0) },
                            initialStates: input.initialStates.map { Tensor(shape: $0.shape, data: gInit) })
    }
}
