import Mamba2
import CMamba2Kernels
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The fast loss-and-gradient pass of the language model, float32, for training.
///
/// Forward as `Mamba2Model.prefill` (chunked SSD, packed documents with state and conv resets), keeping
/// per layer only what the backward cannot cheaply recompute:
///   residual in (T, d_model) and its 1/rms (T), in_proj output zx (T, in_proj_size), conv
///   pre-activation (T, conv_dim), SSD output y (T, d_ssm)
/// (T = rows·length; about 60 MB per layer for a 130m layer at T = 2048, so 1.5 GB for 24 layers).
/// The normed input, the conv output and the gated output are recomputed from those. Backward:
/// cross-entropy → head → final norm → per layer, top down: out_proj → gated RMSNorm → SSD (the chunked
/// backward, `SSD.backward`) → conv + SiLU → in_proj → block norm → residual; then the embedding.
/// Projections are GEMMs over all tokens; elementwise steps run in parallel over tokens or channels.
/// Covers the configurations the released models use (no gated-MLP branch, norm after the gate).
public enum ModelGradients {
    /// What one pass returns.
    public struct Result: Sendable {
        /// Mean next-token cross-entropy over the positions with a target (nats).
        public var loss: Double
        /// Number of positions with a target.
        public var targets: Int
        /// d loss / d parameter, laid out as the weights (a tied head's gradient is in `embedding`).
        public var gradients: Mamba2Weights
    }

    public static func compute(model: Mamba2Model, batch: TrainingBatch) throws -> Result {
        let c = model.config
        guard c.dMLP == 0 else { throw Mamba2Error.config(field: "d_ssm", reason: "training does not cover the gated MLP branch (d_ssm < expand·d_model)") }
        guard !c.normBeforeGate else { throw Mamba2Error.config(field: "norm_before_gate", reason: "training covers norm_before_gate = false (the released models) only") }
        try model.checkTokens(batch.tokens, argument: "batch.tokens")
        let w = model.weights
        let (D, E, V, K, CD) = (c.dModel, c.inProjSize, c.paddedVocabSize, c.dConv, c.convDim)
        let (H, P, N, G, S) = (c.nHeads, c.headDim, c.dState, c.nGroups, c.dSSM)
        let (rows, L) = (batch.rows, batch.length)
        let T = rows * L
        let eps = c.rmsNormEps
        let docStart = batch.documentStarts()
        let seqIdx: [Int32]? = Set(batch.documents).count > 1 || rows > 1 ? batch.documents : nil
        let targets = batch.targetCount
        guard targets > 0 else { throw Mamba2Error.invalidArgument("batch", reason: "no position has a next token of its own document") }

        struct Saved { var rIn: [Float]; var rstd: [Float]; var zx: [Float]; var pre: [Float]; var y: [Float]; var input: SSDInput? }
        var saved: [Saved] = []
        saved.reserveCapacity(c.nLayer)

        // ---- forward ----
        var hidden = model.embed(batch.tokens)
        var residual = [Float](repeating: 0, count: T * D)
        var normed = [Float](repeating: 0, count: T * D)
        var gated = [Float](repeating: 0, count: T * S)
        for l in 0..<c.nLayer {
            let lw = w.layers[l]
            add(&residual, hidden)
            var rstd = [Float](repeating: 0, count: T)
            rmsNorm(residual, weight: lw.norm, rows: T, n: D, eps: eps, out: &normed, rstd: &rstd)
            var zx = [Float](repeating: 0, count: T * E)
            model.project(normed, rows: T, inFeatures: D, weight: lw.inProj, bias: lw.inProjBias, outFeatures: E, into: &zx)
            var pre = [Float](repeating: 0, count: T * CD), xbc = pre
            convForward(zx: zx, E: E, offset: c.xbcOffset, T: T, CD: CD, K: K, wT: model.convT[l], bias: lw.convBias,
                        docStart: docStart, pre: &pre, out: &xbc)
            let input = model.ssdInput(layer: l, rows: T, batchRows: rows, zx: zx, xbc: xbc, seqIdx: seqIdx, states: nil)
            let y = try SSD.run(input, options: ssdOptions(c)).y.data
            model.gate(y: y, zx: zx, rows: T, layer: l, into: &gated)
            model.project(gated, rows: T, inFeatures: S, weight: lw.outProj, bias: lw.outProjBias, outFeatures: D, into: &hidden)
            saved.append(Saved(rIn: residual, rstd: rstd, zx: zx, pre: pre, y: y, input: input))
        }
        add(&residual, hidden)
        var rstdF = [Float](repeating: 0, count: T)
        var nf = [Float](repeating: 0, count: T * D)
        rmsNorm(residual, weight: w.normF, rows: T, n: D, eps: eps, out: &nf, rstd: &rstdF)
        let headW = w.lmHead ?? w.embedding
        var logits = [Float](repeating: 0, count: T * V)
        model.project(nf, rows: T, inFeatures: D, weight: headW, bias: nil, outFeatures: V, into: &logits)

        // ---- loss; logits become their gradient in place ----
        let loss = crossEntropy(&logits, batch: batch, V: V, count: targets)

        // ---- backward ----
        var g = zeroWeights(c)
        var dHead = [Float](repeating: 0, count: V * D)
        gemmAtB(logits, nf, rows: T, m: V, n: D, into: &dHead)       // dHead = dLogitsᵀ · nf
        var dnf = [Float](repeating: 0, count: T * D)
        gemmAB(logits, headW, rows: T, k: V, n: D, into: &dnf)        // dnf = dLogits · head
        logits = []
        var dres = [Float](repeating: 0, count: T * D)
        rmsBackward(residual, weight: w.normF, rstd: rstdF, dOut: dnf, rows: T, n: D, dx: &dres, dw: &g.normF)
        var dGated = [Float](repeating: 0, count: T * S)
        var dzx = [Float](repeating: 0, count: T * E)
        for l in stride(from: c.nLayer - 1, through: 0, by: -1) {
            let lw = w.layers[l], a = saved[l]
            var gl = g.layers[l]
            dzx.withUnsafeMutableBufferPointer { $0.update(repeating: 0) }
            // out_proj (dres is the gradient of this block's output)
            model.gate(y: a.y, zx: a.zx, rows: T, layer: l, into: &gated)
            gemmAtB(dres, gated, rows: T, m: D, n: S, into: &gl.outProj)
            if gl.outProjBias != nil { gl.outProjBias = colSum(dres, rows: T, n: D) }
            gemmAB(dres, lw.outProj, rows: T, k: D, n: S, into: &dGated)
            // gated RMSNorm → dy and the z columns of dzx
            var dy = [Float](repeating: 0, count: T * S)
            gatedNormBackward(y: a.y, zx: a.zx, E: E, T: T, S: S, groupSize: S / G, weight: lw.gateNorm, eps: eps,
                              dOut: dGated, dy: &dy, dzx: &dzx, dw: &gl.gateNorm)
            // SSD
            let sg = try SSD.backward(a.input!, options: ssdOptions(c), gradY: Tensor(shape: [rows, L, H, P], data: dy))
            gl.dtBias = sg.dtBias.data
            gl.aLog = zip(sg.A.data, model.A[l]).map { $0 * $1 }   // A = −exp(A_log): dA_log = dA·A
            gl.D = sg.D!.data
            // conv + SiLU → the xBC columns of dzx; dt columns
            var dOut = [Float](repeating: 0, count: T * CD)
            for t in 0..<T {
                for i in 0..<S { dOut[t * CD + i] = sg.x.data[t * S + i] }
                for i in 0..<(G * N) {
                    dOut[t * CD + S + i] = sg.B.data[t * G * N + i]
                    dOut[t * CD + S + G * N + i] = sg.C.data[t * G * N + i]
                }
                for h in 0..<H { dzx[t * E + c.dtOffset + h] = sg.dt.data[t * H + h] }
            }
            convBackward(zx: a.zx, E: E, offset: c.xbcOffset, T: T, CD: CD, K: K, weight: lw.convWeight, pre: a.pre,
                         dOut: dOut, docStart: docStart, dzx: &dzx, dW: &gl.convWeight,
                         dBias: &gl.convBias)
            // in_proj (the normed input recomputed)
            rmsNorm(a.rIn, weight: lw.norm, rows: T, n: D, eps: eps, out: &normed, rstd: nil)
            gemmAtB(dzx, normed, rows: T, m: E, n: D, into: &gl.inProj)
            if gl.inProjBias != nil { gl.inProjBias = colSum(dzx, rows: T, n: E) }
            var dNormed = [Float](repeating: 0, count: T * D)
            gemmAB(dzx, lw.inProj, rows: T, k: E, n: D, into: &dNormed)
            // block norm: its input is the residual stream, whose gradient reaches the previous block's output
            rmsBackward(a.rIn, weight: lw.norm, rstd: a.rstd, dOut: dNormed, rows: T, n: D, dx: &dres, dw: &gl.norm)
            g.layers[l] = gl
            saved[l] = Saved(rIn: [], rstd: [], zx: [], pre: [], y: [], input: nil)  // free as we go
        }
        // embedding rows (and the tied head)
        if c.tieEmbeddings { g.embedding = dHead } else { g.lmHead = dHead }
        for t in 0..<T {
            let id = batch.tokens[t]
            for i in 0..<D { g.embedding[id * D + i] += dres[t * D + i] }
        }
        return Result(loss: loss, targets: targets, gradients: g)
    }

    /// Loss only (forward), for validation: the same numbers `compute` reports.
    public static func loss(model: Mamba2Model, batch: TrainingBatch) throws -> (loss: Double, targets: Int) {
        let r = try model.perplexity(batch.documentSequences(), window: batch.length)
        return (r.meanNLL, r.count)
    }

    // MARK: pieces

    static func ssdOptions(_ c: Mamba2Config) -> SSDOptions {
        SSDOptions(form: .chunked, chunkSize: c.chunkSize, dtSoftplus: true, dtLimit: (c.dtLimit.lo, c.dtLimit.hi))
    }

    static func zeroWeights(_ c: Mamba2Config) -> Mamba2Weights {
        var v: [String: [Float]] = [:]
        for (name, shape) in Mamba2Weights.expectedShapes(c) { v[name] = [Float](repeating: 0, count: shape.reduce(1, *)) }
        return try! Mamba2Weights(c, values: v, storedDType: "F32")  // made from expectedShapes: always fits
    }

    static func add(_ a: inout [Float], _ b: [Float]) {
        a.withUnsafeMutableBufferPointer { ap in b.withUnsafeBufferPointer { bp in
            for i in 0..<ap.count { ap[i] += bp[i] }
        }}
    }

    /// out = x·rstd·w per row, rstd = 1/sqrt(mean(x²) + eps) (saved when asked).
    static func rmsNorm(_ x: [Float], weight: [Float], rows: Int, n: Int, eps: Float, out: inout [Float], rstd: UnsafeMutablePointer<Float>?) {
        x.withUnsafeBufferPointer { xp in out.withUnsafeMutableBufferPointer { op in weight.withUnsafeBufferPointer { wp in
            let xs = SharedPointer(xp.baseAddress!), os = SharedPointer(op.baseAddress!), ws = SharedPointer(wp.baseAddress!)
            let rs = rstd.map { SharedPointer($0) }
            Parallel.forEach(rows) { t in
                let xr = xs.p + t * n, orow = os.p + t * n
                var ss: Float = 0
                for i in 0..<n { ss += xr[i] * xr[i] }
                let r = 1 / (ss / Float(n) + eps).squareRoot()
                rs?.p[t] = r
                for i in 0..<n { orow[i] = xr[i] * r * ws.p[i] }
            }
        }}}
    }

    static func rmsNorm(_ x: [Float], weight: [Float], rows: Int, n: Int, eps: Float, out: inout [Float], rstd: inout [Float]) {
        rstd.withUnsafeMutableBufferPointer { rmsNorm(x, weight: weight, rows: rows, n: n, eps: eps, out: &out, rstd: $0.baseAddress!) }
    }

    /// dx += d(x·rstd·w)/dx · dOut; dw += Σ_rows dOut·x·rstd.
    static func rmsBackward(_ x: [Float], weight: [Float], rstd: [Float], dOut: [Float], rows: Int, n: Int,
                            dx: inout [Float], dw: inout [Float]) {
        let stripes = min(rows, Parallel.threadCount)
        var partial = [Float](repeating: 0, count: stripes * n)
        x.withUnsafeBufferPointer { xp in dOut.withUnsafeBufferPointer { gp in dx.withUnsafeMutableBufferPointer { dp in
        weight.withUnsafeBufferPointer { wp in rstd.withUnsafeBufferPointer { rp in partial.withUnsafeMutableBufferPointer { pp in
            let xs = SharedPointer(xp.baseAddress!), gs = SharedPointer(gp.baseAddress!), ds = SharedPointer(dp.baseAddress!)
            let ws = SharedPointer(wp.baseAddress!), rs = SharedPointer(rp.baseAddress!), ps = SharedPointer(pp.baseAddress!)
            Parallel.forEachStripe(rows) { s, range in
                let dwp = ps.p + s * n
                for t in range {
                    let xr = xs.p + t * n, gr = gs.p + t * n, dr = ds.p + t * n
                    let r = rs.p[t]
                    var dot: Float = 0
                    for i in 0..<n {
                        dwp[i] += gr[i] * xr[i] * r
                        dot += gr[i] * ws.p[i] * xr[i]
                    }
                    let k = r * r * r * dot / Float(n)
                    for i in 0..<n { dr[i] += r * gr[i] * ws.p[i] - xr[i] * k }
                }
            }
        }}}}}}
        for s in 0..<stripes { for i in 0..<n { dw[i] += partial[s * n + i] } }
    }

    /// out (m, n) = Aᵀ · B with A (rows, m), B (rows, n): a weight gradient.
    static func gemmAtB(_ a: [Float], _ b: [Float], rows: Int, m: Int, n: Int, into out: inout [Float]) {
        a.withUnsafeBufferPointer { ap in b.withUnsafeBufferPointer { bp in out.withUnsafeMutableBufferPointer { op in
            BLAS.sgemmParallel(transA: true, m: m, n: n, k: rows, a: ap.baseAddress!, lda: m, b: bp.baseAddress!, ldb: n,
                               c: op.baseAddress!, ldc: n)
        }}}
    }

    /// out (rows, n) = A · W with A (rows, k), W (k, n): an input gradient.
    static func gemmAB(_ a: [Float], _ w: [Float], rows: Int, k: Int, n: Int, into out: inout [Float]) {
        a.withUnsafeBufferPointer { ap in w.withUnsafeBufferPointer { wp in out.withUnsafeMutableBufferPointer { op in
            BLAS.sgemmParallel(m: rows, n: n, k: k, a: ap.baseAddress!, lda: k, b: wp.baseAddress!, ldb: n, c: op.baseAddress!, ldc: n)
        }}}
    }

    static func colSum(_ m: [Float], rows: Int, n: Int) -> [Float] {
        var s = [Double](repeating: 0, count: n)
        for t in 0..<rows { for i in 0..<n { s[i] += Double(m[t * n + i]) } }
        return s.map(Float.init)
    }

    /// pre[t, ch] = bias + Σ_k w[k, ch]·in[t − (K−1) + k, ch] over the rows of t's document; out = silu(pre).
    static func convForward(zx: [Float], E: Int, offset: Int, T: Int, CD: Int, K: Int, wT: [Float], bias: [Float]?,
                            docStart: [Int], pre: inout [Float], out: inout [Float]) {
        zx.withUnsafeBufferPointer { zp in wT.withUnsafeBufferPointer { wp in
        pre.withUnsafeMutableBufferPointer { pp in out.withUnsafeMutableBufferPointer { op in
            let zs = SharedPointer(zp.baseAddress!), ws = SharedPointer(wp.baseAddress!)
            let ps = SharedPointer(pp.baseAddress!), os = SharedPointer(op.baseAddress!)
            Parallel.forEach(T) { t in
                let p = ps.p + t * CD
                if let bias { for ch in 0..<CD { p[ch] = bias[ch] } } else { p.update(repeating: 0, count: CD) }
                for k in 0..<K {
                    let src = t - (K - 1) + k
                    if src < docStart[t] { continue }
                    let inp = zs.p + src * E + offset, wk = ws.p + k * CD
                    for ch in 0..<CD { p[ch] += wk[ch] * inp[ch] }
                }
                let o = os.p + t * CD
                for ch in 0..<CD { o[ch] = p[ch] / (1 + expf(-p[ch])) }
            }
        }}}}
    }

    /// The conv's backward: dpre = dOut·silu'(pre); dW, dBias, and dzx (the xBC columns) accumulate.
    static func convBackward(zx: [Float], E: Int, offset: Int, T: Int, CD: Int, K: Int, weight: [Float], pre: [Float],
                             dOut: [Float], docStart: [Int], dzx: inout [Float], dW: inout [Float], dBias: inout [Float]?) {
        var dBiasAcc = [Float](repeating: 0, count: CD)
        zx.withUnsafeBufferPointer { zp in weight.withUnsafeBufferPointer { wp in pre.withUnsafeBufferPointer { pp in
        dOut.withUnsafeBufferPointer { gp in dzx.withUnsafeMutableBufferPointer { dzp in dW.withUnsafeMutableBufferPointer { dwp in
        dBiasAcc.withUnsafeMutableBufferPointer { dbp in
            let zs = SharedPointer(zp.baseAddress!), ws = SharedPointer(wp.baseAddress!), ps = SharedPointer(pp.baseAddress!)
            let gs = SharedPointer(gp.baseAddress!), dzs = SharedPointer(dzp.baseAddress!), dws = SharedPointer(dwp.baseAddress!)
            let dbs = SharedPointer(dbp.baseAddress!)
            // Channels split across threads: every write (dW row, bias, dzx column) belongs to one channel.
            Parallel.forEachStripe(CD) { _, chans in
                // d pre = dOut · silu'(pre), once per element, then used by the K taps.
                let dpre = UnsafeMutablePointer<Float>.allocate(capacity: CD)
                defer { dpre.deallocate() }
                for t in 0..<T {
                    let p = ps.p + t * CD, g = gs.p + t * CD
                    for ch in chans {
                        let sig = 1 / (1 + expf(-p[ch]))
                        dpre[ch] = g[ch] * sig * (1 + p[ch] * (1 - sig))
                        dbs.p[ch] += dpre[ch]
                    }
                    for k in 0..<K {
                        let src = t - (K - 1) + k
                        if src < docStart[t] { continue }
                        let inp = zs.p + src * E + offset, dz = dzs.p + src * E + offset
                        for ch in chans {
                            dws.p[ch * K + k] += dpre[ch] * inp[ch]
                            dz[ch] += dpre[ch] * ws.p[ch * K + k]
                        }
                    }
                }
            }
        }}}}}}}
        if dBias != nil { dBias = dBiasAcc }
    }

    /// Backward of the gated group RMSNorm: dy, dz (into zx's z columns, overwritten), dw accumulated.
    static func gatedNormBackward(y: [Float], zx: [Float], E: Int, T: Int, S: Int, groupSize gs: Int, weight: [Float], eps: Float,
                                  dOut: [Float], dy: inout [Float], dzx: inout [Float], dw: inout [Float]) {
        let stripes = min(T, Parallel.threadCount)
        var partial = [Float](repeating: 0, count: stripes * S)
        y.withUnsafeBufferPointer { yp in zx.withUnsafeBufferPointer { zp in weight.withUnsafeBufferPointer { wp in
        dOut.withUnsafeBufferPointer { gp in dy.withUnsafeMutableBufferPointer { dyp in dzx.withUnsafeMutableBufferPointer { dzp in
        partial.withUnsafeMutableBufferPointer { pp in
            let ys = SharedPointer(yp.baseAddress!), zs = SharedPointer(zp.baseAddress!), ws = SharedPointer(wp.baseAddress!)
            let gsP = SharedPointer(gp.baseAddress!), dys = SharedPointer(dyp.baseAddress!), dzs = SharedPointer(dzp.baseAddress!)
            let ps = SharedPointer(pp.baseAddress!)
            Parallel.forEachStripe(T) { s, range in
                let dwp = ps.p + s * S
                var v = [Float](repeating: 0, count: gs)
                for t in range {
                    let yr = ys.p + t * S, zr = zs.p + t * E, gr = gsP.p + t * S, dyr = dys.p + t * S, dzr = dzs.p + t * E
                    for g0 in stride(from: 0, to: S, by: gs) {
                        var ss: Float = 0
                        for i in 0..<gs {
                            let zv = zr[g0 + i]
                            v[i] = yr[g0 + i] * zv / (1 + expf(-zv))
                            ss += v[i] * v[i]
                        }
                        let r = 1 / (ss / Float(gs) + eps).squareRoot()
                        var dot: Float = 0
                        for i in 0..<gs {
                            let u = gr[g0 + i] * ws.p[g0 + i]
                            dwp[g0 + i] += gr[g0 + i] * v[i] * r
                            dot += u * v[i]
                        }
                        let k = r * r * r * dot / Float(gs)
                        for i in 0..<gs {
                            let dv = r * gr[g0 + i] * ws.p[g0 + i] - v[i] * k
                            let zv = zr[g0 + i], sig = 1 / (1 + expf(-zv))
                            dyr[g0 + i] = dv * zv * sig
                            dzr[g0 + i] = dv * yr[g0 + i] * sig * (1 + zv * (1 - sig))
                        }
                    }
                }
            }
        }}}}}}}
        for s in 0..<stripes { for i in 0..<S { dw[i] += partial[s * S + i] } }
    }

    /// Mean cross-entropy over the positions with a target; logits ← d loss / d logits.
    static func crossEntropy(_ logits: inout [Float], batch: TrainingBatch, V: Int, count: Int) -> Double {
        let T = batch.rows * batch.length
        let stripes = min(T, Parallel.threadCount)
        var partial = [Double](repeating: 0, count: stripes)
        let inv = 1 / Float(count)
        logits.withUnsafeMutableBufferPointer { lp in partial.withUnsafeMutableBufferPointer { pp in
            let ls = SharedPointer(lp.baseAddress!), ps = SharedPointer(pp.baseAddress!)
            Parallel.forEachStripe(T) { s, range in
                var acc = 0.0
                for t in range {
                    let row = ls.p + t * V
                    guard batch.hasTarget(t) else { row.update(repeating: 0, count: V); continue }
                    let target = batch.tokens[t + 1]
                    var m = -Float.infinity
                    for v in 0..<V { m = max(m, row[v]) }
                    let logit = row[target]
                    var z: Float = 0
                    for v in 0..<V { let e = expf(row[v] - m); row[v] = e; z += e }
                    acc += Double(logf(z)) + Double(m) - Double(logit)
                    let scale = inv / z
                    for v in 0..<V { row[v] *= scale }
                    row[target] -= inv
                }
                ps.p[s] = acc
            }
        }}
        return partial.reduce(0, +) / Double(count)
    }
}
