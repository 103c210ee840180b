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
        let c = model.config
        guard c.dMLP == 0 else { throw Mamba2Error.config(field: "d_ssm", reason: "the reference gradients do not cover the gated MLP branch (d_ssm < expand·d_model)") }
        for (i, s) in sequences.enumerated() {
            guard s.count >= 2 else { throw Mamba2Error.invalidArgument("sequences[\(i)]", reason: "needs at least 2 tokens") }
            try model.checkTokens(s, argument: "sequences[\(i)]")
        }
        let w = model.weights
        let (D, E, V, K, CD) = (c.dModel, c.inProjSize, c.paddedVocabSize, c.dConv, c.convDim)
        let zOff = 2 * c.dMLP  // z within an in_proj row: after [z0 | x0] (empty here)
        let (H, P, N, G) = (c.nHeads, c.headDim, c.dState, c.nGroups)
        let eps = Double(c.rmsNormEps)
        let count = Double(sequences.reduce(0) { $0 + $1.count - 1 })
        var grads: [String: [Double]] = [:]
        func acc(_ name: String, _ g: [Double]) {
            if let old = grads[name] { grads[name] = zip(old, g).map(+) } else { grads[name] = g }
        }
        let dbl: ([Float]) -> [Double] = { $0.map(Double.init) }
        let emb = dbl(w.embedding), head = dbl(w.lmHead ?? w.embedding), normF = dbl(w.normF)
        var loss = 0.0

        for ids in sequences {
            let T = ids.count
            // ---- forward, keeping activations ----
            var hidden = [Double](repeating: 0, count: T * D)
            for t in 0..<T { for i in 0..<D { hidden[t * D + i] = emb[ids[t] * D + i] } }
            var residual = [Double](repeating: 0, count: T * D)
            struct Layer { var rIn: [Double]; var normed: [Double]; var zx: [Double]; var pre: [Double]; var conv: [Double]; var y: [Double]; var gated: [Double]; var input: SSDInput }
            var layers: [Layer] = []
            for l in 0..<c.nLayer {
                let lw = w.layers[l]
                for i in 0..<(T * D) { residual[i] += hidden[i] }
                let normed = rmsForward(residual, dbl(lw.norm), rows: T, n: D, eps: eps)
                let zx = linear(normed, dbl(lw.inProj), lw.inProjBias.map(dbl), rows: T, inF: D, outF: E)
                var pre = [Double](repeating: 0, count: T * CD), conv = pre
                for t in 0..<T {
                    for ch in 0..<CD {
                        var v = Double(lw.convBias?[ch] ?? 0)
                        for k in 0..<K where t - (K - 1) + k >= 0 {
                            v += Double(lw.convWeight[ch * K + k]) * zx[(t - (K - 1) + k) * E + c.xbcOffset + ch]
                        }
                        pre[t * CD + ch] = v
                        conv[t * CD + ch] = v / (1 + exp(-v))
                    }
                }
                var xs = [Float](), bs = [Float](), cs = [Float](), dts = [Float]()
                for t in 0..<T {
                    xs += conv[(t * CD)..<(t * CD + c.dSSM)].map(Float.init)
                    bs += conv[(t * CD + c.dSSM)..<(t * CD + c.dSSM + G * N)].map(Float.init)
                    cs += conv[(t * CD + c.dSSM + G * N)..<(t * CD + c.dSSM + 2 * G * N)].map(Float.init)
                    dts += zx[(t * E + c.dtOffset)..<(t * E + c.dtOffset + H)].map(Float.init)
                }
                let input = SSDInput(x: Tensor(shape: [1, T, H, P], data: xs), dt: Tensor(shape: [1, T, H], data: dts),
                                     A: Tensor(shape: [H], data: model.A[l]), B: Tensor(shape: [1, T, G, N], data: bs),
                                     C: Tensor(shape: [1, T, G, N], data: cs),
                                     D: c.dHasHeadDim ? Tensor(shape: [H, P], data: lw.D) : Tensor(shape: [H], data: lw.D),
                                     dtBias: Tensor(shape: [H], data: lw.dtBias))
                let y = dbl(try SSD.run(input, options: model.ssdOptions(form: .recurrent)).y.data)
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
                        for i in 0..<gs { gated[t * c.dSSM + g0 + i] = v[i] * rs * Double(lw.gateNorm[g0 + i]) }
                    }
                }
                let out = linear(gated, dbl(lw.outProj), lw.outProjBias.map(dbl), rows: T, inF: c.dInner, outF: D)
                layers.append(Layer(rIn: residual, normed: normed, zx: zx, pre: pre, conv: conv, y: y, gated: gated, input: input))
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
                let lw = w.layers[l], a = layers[l], p = "backbone.layers.\(l)."
                // out_proj
                acc(p + "mixer.out_proj.weight", outerGrad(dHidden, a.gated, rows: T, outF: D, inF: c.dInner))
                if c.projBias { acc(p + "mixer.out_proj.bias", colSum(dHidden, rows: T, n: D)) }
                let dGated = linearBack(dHidden, dbl(lw.outProj), rows: T, inF: c.dInner, outF: D)
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
                            let u = dGated[t * c.dSSM + g0 + i] * Double(lw.gateNorm[g0 + i])
                            dGN[g0 + i] += dGated[t * c.dSSM + g0 + i] * v[i] * rs
                            dot += u * v[i]
                        }
                        for i in 0..<gs {
                            let u = dGated[t * c.dSSM + g0 + i] * Double(lw.gateNorm[g0 + i])
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
                let sg = try SSD.backwardReference(a.input, options: model.ssdOptions(form: .recurrent),
                                                   gradY: Tensor(shape: [1, T, H, P], data: dy.map(Float.init)))
                acc(p + "mixer.dt_bias", dbl(sg.dtBias.data))
                acc(p + "mixer.A_log", zip(sg.A.data, model.A[l]).map { Double($0) * Double($1) })  // A = −exp(A_log)
                acc(p + "mixer.D", dbl(sg.D!.data))
                // conv + SiLU (input: the xBC columns of zx)
                var dzx = [Double](repeating: 0, count: T * E)
                var dConvW = [Double](repeating: 0, count: CD * K), dConvB = [Double](repeating: 0, count: CD)
                for t in 0..<T {
                    for ch in 0..<CD {
                        let dOut: Double
                        if ch < c.dSSM { dOut = Double(sg.x.data[t * c.dSSM + ch]) }
                        else if ch < c.dSSM + G * N { dOut = Double(sg.B.data[t * G * N + ch - c.dSSM]) }
                        else { dOut = Double(sg.C.data[t * G * N + ch - c.dSSM - G * N]) }
                        let v = a.pre[t * CD + ch], sig = 1 / (1 + exp(-v))
                        let dPre = dOut * sig * (1 + v * (1 - sig))
                        dConvB[ch] += dPre
                        for k in 0..<K where t - (K - 1) + k >= 0 {
                            let src = (t - (K - 1) + k) * E + c.xbcOffset + ch
                            dConvW[ch * K + k] += dPre * a.zx[src]
                            dzx[src] += dPre * Double(lw.convWeight[ch * K + k])
                        }
                    }
                    for i in 0..<c.dSSM { dzx[t * E + zOff + i] = dzGate[t * c.dSSM + i] }
                    for h in 0..<H { dzx[t * E + c.dtOffset + h] = Double(sg.dt.data[t * H + h]) }
                }
                acc(p + "mixer.conv1d.weight", dConvW)
                if c.convBias { acc(p + "mixer.conv1d.bias", dConvB) }
                // in_proj
                acc(p + "mixer.in_proj.weight", outerGrad(dzx, a.normed, rows: T, outF: E, inF: D))
                if c.projBias { acc(p + "mixer.in_proj.bias", colSum(dzx, rows: T, n: E)) }
                let dNormed = linearBack(dzx, dbl(lw.inProj), rows: T, inF: D, outF: E)
                let (dr, dwn) = rmsBackward(a.rIn, dbl(lw.norm), dNormed, rows: T, n: D, eps: eps)
                acc(p + "norm.weight", dwn)
                for i in 0..<(T * D) { dres[i] += dr[i] }
                dHidden = dres  // the residual stream's gradient reaches the previous block's output
            }
            // The first block's input is the embedding: rows scattered by id.
            var dEmb = [Double](repeating: 0, count: V * D)
            for t in 0..<T { for i in 0..<D { dEmb[ids[t] * D + i] += dres[t * D + i] } }
            acc("backbone.embedding.weight", dEmb)
        }
        var out: [String: Tensor] = [:]
        for (name, shape) in Mamba2Weights.expectedShapes(c) {
            out[name] = Tensor(shape: shape, data: (grads[name] ?? [Double](repeating: 0, count: shape.reduce(1, *))).map(Float.init))
        }
        return (loss, out)
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
