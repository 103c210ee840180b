import Mamba2
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The language model's loss and exact gradients, computed plainly in float64 with every activation
/// kept: the reference a fast trainer is checked against (and, for small models, usable as one).
/// Loss: mean next-token cross-entropy of logits[:, :-1] against ids[:, 1:] over all positions of all
/// sequences, over the padded vocabulary (as the reference fixture defines it).
public enum ReferenceGradients {
    /// (loss, gradient per parameter under its state-spaces name; a tied head has one gradient).
    public static func compute(model: Mamba2Model, sequences: [[Int]]) throws -> (loss: Double, gradients: [String: Tensor]) {
        for (i, s) in sequences.enumerated() { try model.checkTokens(s, argument: "sequences[\(i)]") }
        let c = model.config
        let params = Dictionary(uniqueKeysWithValues: model.weights.namedTensors(c).map { ($0.0, $0.1.data.map(Double.init)) })
        let (loss, g) = try compute(config: c, parameters: params, sequences: sequences)
        var tensors: [String: Tensor] = [:]
        for (name, shape) in Mamba2Weights.expectedShapes(c) { tensors[name] = Tensor(shape: shape, data: g[name]!.map(Float.init)) }
        return (loss, tensors)
    }

    /// The same in float64 throughout, on float64 parameters (state-spaces names): what finite
    /// differences are checked against.
    public static func compute(config c: Mamba2Config, parameters w: [String: [Double]],
                               sequences: [[Int]]) throws -> (loss: Double, gradients: [String: [Double]]) {
        guard c.dMLP == 0 else { throw Mamba2Error.config(field: "d_ssm", reason: "the reference gradients do not cover the gated MLP branch (d_ssm < expand·d_model)") }
        guard !c.normBeforeGate else { throw Mamba2Error.config(field: "norm_before_gate", reason: "the reference gradients cover norm_before_gate = false only") }
        for (i, s) in sequences.enumerated() {
            guard s.count >= 2 else { throw Mamba2Error.invalidArgument("sequences[\(i)]", reason: "needs at least 2 tokens") }
            guard s.allSatisfy({ $0 >= 0 && $0 < c.paddedVocabSize }) else {
                throw Mamba2Error.invalidArgument("sequences[\(i)]", reason: "token id outside the vocabulary 0..<\(c.paddedVocabSize)")
            }
        }
        for (name, shape) in Mamba2Weights.expectedShapes(c) where w[name]?.count != shape.reduce(1, *) {
            throw Mamba2Error.invalidArgument(name, reason: "missing or not of shape \(shape)")
        }
        let (D, E, V, K, CD) = (c.dModel, c.inProjSize, c.paddedVocabSize, c.dConv, c.convDim)
        let zOff = 2 * c.dMLP  // z within an in_proj row: after [z0 | x0] (empty here)
        let (H, P, N, G) = (c.nHeads, c.headDim, c.dState, c.nGroups)
        let eps = Double(c.rmsNormEps)
        let count = Double(sequences.reduce(0) { $0 + $1.count - 1 })
        var grads: [String: [Double]] = [:]
        func acc(_ name: String, _ g: [Double]) {
            if let old = grads[name] { grads[name] = zip(old, g).map(+) } else { grads[name] = g }
        }
        let emb = w["backbone.embedding.weight"]!, head = w["lm_head.weight"] ?? emb, normF = w["backbone.norm_f.weight"]!
        var loss = 0.0

        for ids in sequences {
            let T = ids.count
            // ---- forward, keeping activations ----
            var hidden = [Double](repeating: 0, count: T * D)
            for t in 0..<T { for i in 0..<D { hidden[t * D + i] = emb[ids[t] * D + i] } }
            var residual = [Double](repeating: 0, count: T * D)
            struct Layer { var rIn: [Double]; var normed: [Double]; var zx: [Double]; var pre: [Double]; var conv: [Double]; var y: [Double]; var gated: [Double]; var ssd: SSD64 }
            var layers: [Layer] = []
            for l in 0..<c.nLayer {
                let lw = LayerParameters(w, layer: l)
                for i in 0..<(T * D) { residual[i] += hidden[i] }
                let normed = rmsForward(residual, lw.norm, rows: T, n: D, eps: eps)
                let zx = linear(normed, lw.inProj, lw.inProjBias, rows: T, inF: D, outF: E)
                var pre = [Double](repeating: 0, count: T * CD), conv = pre
                for t in 0..<T {
                    for ch in 0..<CD {
                        var v = lw.convBias?[ch] ?? 0
                        for k in 0..<K where t - (K - 1) + k >= 0 {
                            v += lw.convWeight[ch * K + k] * zx[(t - (K - 1) + k) * E + c.xbcOffset + ch]
                        }
                        pre[t * CD + ch] = v
                        conv[t * CD + ch] = v / (1 + exp(-v))
                    }
                }
                var xs = [Double](), bs = [Double](), cs = [Double](), dts = [Double]()
                let (S, GN, dtOff) = (c.dSSM, G * N, c.dtOffset)
                for t in 0..<T {
                    let row = t * CD
                    xs += conv[row..<(row + S)]
                    bs += conv[(row + S)..<(row + S + GN)]
                    cs += conv[(row + S + GN)..<(row + S + 2 * GN)]
                    let zrow = t * E + dtOff
                    dts += zx[zrow..<(zrow + H)]
                }
                let ssd = SSD64(b: 1, L: T, H: H, P: P, G: G, N: N, x: xs, dtRaw: dts, A: lw.aLog.map { -exp($0) }, B: bs, C: cs,
                                D: lw.D, dPerChannel: c.dHasHeadDim, z: nil, dtBias: lw.dtBias, initial: nil, softplus: true,
                                limit: (Double(c.dtLimit.lo), Double(c.dtLimit.hi)))
                let y = ssd.forward().y
                var gated = [Double](repeating: 0, count: T * c.dSSM)
                let gs = c.dSSM / G
                for t in 0..<T {
                    for g0 in stride(from: 0, to: c.dSSM, by: gs) {
                        var ss = 0.0
                        var v = [Double](repeating: 0, count: gs)
                        for i in 0..<gs {
                            let zv = zx[t * E + zOff + g0 + i], yv = y[t * c.dSSM + g0 + i]
                            v[i] = yv * zv / (1 + exp(-zv))
                            ss += v[i] * v[i]
                        }
                        let rs = 1 / (ss / Double(gs) + eps).squareRoot()
                        for i in 0..<gs { gated[t * c.dSSM + g0 + i] = v[i] * rs * lw.gateNorm[g0 + i] }
                    }
                }
                let out = linear(gated, lw.outProj, lw.outProjBias, rows: T, inF: c.dInner, outF: D)
                layers.append(Layer(rIn: residual, normed: normed, zx: zx, pre: pre, conv: conv, y: y, gated: gated, ssd: ssd))
                hidden = out
            }
            for i in 0..<(T * D) { residual[i] += hidden[i] }
            let nf = rmsForward(residual, normF, rows: T, n: D, eps: eps)
            let logits = linear(nf, head, nil, rows: T, inF: D, outF: V)

            // ---- loss and its gradient ----
            var dLogits = [Double](repeating: 0, count: T * V)
            for t in 0..<(T - 1) {
                let row = logits[(t * V)..<((t + 1) * V)]
                let m = row.max()!
                let z = row.reduce(0) { $0 + exp($1 - m) }
                loss += (log(z) + m - logits[t * V + ids[t + 1]]) / count
                for v in 0..<V { dLogits[t * V + v] = exp(logits[t * V + v] - m) / z / count }
                dLogits[t * V + ids[t + 1]] -= 1 / count
            }

            // ---- backward ----
            acc(c.tieEmbeddings ? "backbone.embedding.weight" : "lm_head.weight", outerGrad(dLogits, nf, rows: T, outF: V, inF: D))
            let dnf = linearBack(dLogits, head, rows: T, inF: D, outF: V)
            var (dres, dwf) = rmsBackward(residual, normF, dnf, rows: T, n: D, eps: eps)
            acc("backbone.norm_f.weight", dwf)
            var dHidden = dres
            for l in stride(from: c.nLayer - 1, through: 0, by: -1) {
                let lw = LayerParameters(w, layer: l), a = layers[l], p = "backbone.layers.\(l)."
                // out_proj
                acc(p + "mixer.out_proj.weight", outerGrad(dHidden, a.gated, rows: T, outF: D, inF: c.dInner))
                if c.projBias { acc(p + "mixer.out_proj.bias", colSum(dHidden, rows: T, n: D)) }
                let dGated = linearBack(dHidden, lw.outProj, rows: T, inF: c.dInner, outF: D)
                // gated RMSNorm, per group
                var dy = [Double](repeating: 0, count: T * c.dSSM), dzGate = dy
                var dGN = [Double](repeating: 0, count: c.dSSM)
                let gs = c.dSSM / G
                for t in 0..<T {
                    for g0 in stride(from: 0, to: c.dSSM, by: gs) {
                        var v = [Double](repeating: 0, count: gs), ss = 0.0
                        for i in 0..<gs {
                            let zv = a.zx[t * E + zOff + g0 + i], yv = a.y[t * c.dSSM + g0 + i]
                            v[i] = yv * zv / (1 + exp(-zv)); ss += v[i] * v[i]
                        }
                        let rs = 1 / (ss / Double(gs) + eps).squareRoot()
                        var dot = 0.0
                        for i in 0..<gs {
                            let u = dGated[t * c.dSSM + g0 + i] * lw.gateNorm[g0 + i]
                            dGN[g0 + i] += dGated[t * c.dSSM + g0 + i] * v[i] * rs
                            dot += u * v[i]
                        }
                        for i in 0..<gs {
                            let u = dGated[t * c.dSSM + g0 + i] * lw.gateNorm[g0 + i]
                            let dv = rs * u - v[i] * rs * rs * rs * dot / Double(gs)
                            let zv = a.zx[t * E + zOff + g0 + i], yv = a.y[t * c.dSSM + g0 + i]
                            let sig = 1 / (1 + exp(-zv))
                            dy[t * c.dSSM + g0 + i] = dv * zv * sig
                            dzGate[t * c.dSSM + g0 + i] = dv * yv * sig * (1 + zv * (1 - sig))
                        }
                    }
                }
                acc(p + "mixer.norm.weight", dGN)
                // SSD
                let sg = a.ssd.backward(gradY: dy, gradFinal: nil)
                acc(p + "mixer.dt_bias", sg.dtBias)
                acc(p + "mixer.A_log", zip(sg.A, lw.aLog).map { $0 * -exp($1) })  // A = −exp(A_log)
                acc(p + "mixer.D", sg.D)
                // conv + SiLU (input: the xBC columns of zx)
                var dzx = [Double](repeating: 0, count: T * E)
                var dConvW = [Double](repeating: 0, count: CD * K), dConvB = [Double](repeating: 0, count: CD)
                for t in 0..<T {
                    for ch in 0..<CD {
                        let dOut: Double
                        if ch < c.dSSM { dOut = sg.x[t * c.dSSM + ch] }
                        else if ch < c.dSSM + G * N { dOut = sg.B[t * G * N + ch - c.dSSM] }
                        else { dOut = sg.C[t * G * N + ch - c.dSSM - G * N] }
                        let v = a.pre[t * CD + ch], sig = 1 / (1 + exp(-v))
                        let dPre = dOut * sig * (1 + v * (1 - sig))
                        dConvB[ch] += dPre
                        for k in 0..<K where t - (K - 1) + k >= 0 {
                            let src = (t - (K - 1) + k) * E + c.xbcOffset + ch
                            dConvW[ch * K + k] += dPre * a.zx[src]
                            dzx[src] += dPre * lw.convWeight[ch * K + k]
                        }
                    }
                    for i in 0..<c.dSSM { dzx[t * E + zOff + i] = dzGate[t * c.dSSM + i] }
                    for h in 0..<H { dzx[t * E + c.dtOffset + h] = sg.dtRaw[t * H + h] }
                }
                acc(p + "mixer.conv1d.weight", dConvW)
                if c.convBias { acc(p + "mixer.conv1d.bias", dConvB) }
                // in_proj
                acc(p + "mixer.in_proj.weight", outerGrad(dzx, a.normed, rows: T, outF: E, inF: D))
                if c.projBias { acc(p + "mixer.in_proj.bias", colSum(dzx, rows: T, n: E)) }
                let dNormed = linearBack(dzx, lw.inProj, rows: T, inF: D, outF: E)
                let (dr, dwn) = rmsBackward(a.rIn, lw.norm, dNormed, rows: T, n: D, eps: eps)
                acc(p + "norm.weight", dwn)
                for i in 0..<(T * D) { dres[i] += dr[i] }
                dHidden = dres  // the residual stream's gradient reaches the previous block's output
            }
            // The first block's input is the embedding: rows scattered by id.
            var dEmb = [Double](repeating: 0, count: V * D)
            for t in 0..<T { for i in 0..<D { dEmb[ids[t] * D + i] += dres[t * D + i] } }
            acc("backbone.embedding.weight", dEmb)
        }
        var out: [String: [Double]] = [:]
        for (name, shape) in Mamba2Weights.expectedShapes(c) { out[name] = grads[name] ?? [Double](repeating: 0, count: shape.reduce(1, *)) }
        return (loss, out)
    }

    /// One block's parameters by state-spaces name.
    struct LayerParameters {
        let norm, inProj, convWeight, dtBias, aLog, D, gateNorm, outProj: [Double]
        let inProjBias, convBias, outProjBias: [Double]?
        init(_ w: [String: [Double]], layer l: Int) {
            let p = "backbone.layers.\(l)."
            norm = w[p + "norm.weight"]!; inProj = w[p + "mixer.in_proj.weight"]!; convWeight = w[p + "mixer.conv1d.weight"]!
            dtBias = w[p + "mixer.dt_bias"]!; aLog = w[p + "mixer.A_log"]!; D = w[p + "mixer.D"]!
            gateNorm = w[p + "mixer.norm.weight"]!; outProj = w[p + "mixer.out_proj.weight"]!
            inProjBias = w[p + "mixer.in_proj.bias"]; convBias = w[p + "mixer.conv1d.bias"]; outProjBias = w[p + "mixer.out_proj.bias"]
        }
    }

    // MARK: plain float64 pieces

    static func rmsForward(_ x: [Double], _ w: [Double], rows: Int, n: Int, eps: Double) -> [Double] {
        var out = x
        for t in 0..<rows {
            var ss = 0.0
            for i in 0..<n { ss += x[t * n + i] * x[t * n + i] }
            let rs = 1 / (ss / Double(n) + eps).squareRoot()
            for i in 0..<n { out[t * n + i] = x[t * n + i] * rs * w[i] }
        }
        return out
    }

    /// (dx, dw) of out = x·rs·w, rs = 1/sqrt(mean(x²) + eps).
    static func rmsBackward(_ x: [Double], _ w: [Double], _ dOut: [Double], rows: Int, n: Int, eps: Double) -> ([Double], [Double]) {
        var dx = x, dw = [Double](repeating: 0, count: n)
        for t in 0..<rows {
            var ss = 0.0, dot = 0.0
            for i in 0..<n { ss += x[t * n + i] * x[t * n + i] }
            let rs = 1 / (ss / Double(n) + eps).squareRoot()
            for i in 0..<n {
                dw[i] += dOut[t * n + i] * x[t * n + i] * rs
                dot += dOut[t * n + i] * w[i] * x[t * n + i]
            }
            for i in 0..<n { dx[t * n + i] = rs * dOut[t * n + i] * w[i] - x[t * n + i] * rs * rs * rs * dot / Double(n) }
        }
        return (dx, dw)
    }

    /// out (rows, outF) = x (rows, inF) · Wᵀ + b, W (outF, inF).
    static func linear(_ x: [Double], _ W: [Double], _ b: [Double]?, rows: Int, inF: Int, outF: Int) -> [Double] {
        var out = [Double](repeating: 0, count: rows * outF)
        for t in 0..<rows {
            for o in 0..<outF {
                var s = b?[o] ?? 0
                for i in 0..<inF { s += x[t * inF + i] * W[o * inF + i] }
                out[t * outF + o] = s
            }
        }
        return out
    }

    /// dx (rows, inF) = dOut (rows, outF) · W.
    static func linearBack(_ dOut: [Double], _ W: [Double], rows: Int, inF: Int, outF: Int) -> [Double] {
        var dx = [Double](repeating: 0, count: rows * inF)
        for t in 0..<rows {
            for o in 0..<outF where dOut[t * outF + o] != 0 {
                let g = dOut[t * outF + o]
                for i in 0..<inF { dx[t * inF + i] += g * W[o * inF + i] }
            }
        }
        return dx
    }

    /// dW (outF, inF) = dOutᵀ · x.
    static func outerGrad(_ dOut: [Double], _ x: [Double], rows: Int, outF: Int, inF: Int) -> [Double] {
        var dW = [Double](repeating: 0, count: outF * inF)
        for t in 0..<rows {
            for o in 0..<outF where dOut[t * outF + o] != 0 {
                let g = dOut[t * outF + o]
                for i in 0..<inF { dW[o * inF + i] += g * x[t * inF + i] }
            }
        }
        return dW
    }

    static func colSum(_ m: [Double], rows: Int, n: Int) -> [Double] {
        var s = [Double](repeating: 0, count: n)
        for t in 0..<rows { for i in 0..<n { s[i] += m[t * n + i] } }
        return s
    }
}
