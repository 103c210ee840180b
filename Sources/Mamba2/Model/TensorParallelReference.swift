import CMamba2Kernels
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The tensor-parallel forward on the CPU, rank after rank: the plain reference that the split of
/// `TensorParallelPlan` is checked with (every rank's block from its own shard of the weights, the all-reduces as
/// sums over ranks), and that a multi-device backend is tested against. Float32.
public struct TensorParallelReference: Sendable {
    public let model: Mamba2Model
    public let plan: TensorParallelPlan
    /// Per rank, per layer: the rank's shard.
    public let shards: [[Mamba2LayerWeights]]

    public init(model: Mamba2Model, ranks: Int) throws {
        let plan = try TensorParallelPlan(config: model.config, ranks: ranks)
        self.model = model
        self.plan = plan
        shards = (0..<ranks).map { r in model.weights.layers.map { plan.shard($0, rank: r) } }
    }

    /// One sequence from the zero state: logits (T, padded vocab) and the state after it, assembled from the
    /// ranks' parts (SSM states by heads, conv histories by channels).
    public func prefill(_ tokens: [Int]) throws -> (logits: Tensor, state: Mamba2State) {
        let c = model.config, p = plan, R = p.ranks
        guard !tokens.isEmpty else { throw Mamba2Error.invalidArgument("tokens", reason: "empty sequence") }
        try model.checkTokens(tokens, argument: "tokens")
        let (T, D, K) = (tokens.count, c.dModel, c.dConv)
        let (Hr, P, N, g, S, M) = (p.localHeads, c.headDim, c.dState, p.localGroups, p.localSSM, p.localMLP)
        let (E, C) = (p.localInProjSize, p.localConvDim)
        var hidden = model.embed(tokens)
        var residual = [Float](repeating: 0, count: T * D), normed = residual
        var state = Mamba2State(config: c)
        state.tokens = T
        for l in 0..<c.nLayer {
            model.addAndNorm(&residual, hidden, weight: model.weights.layers[l].norm, rows: T, into: &normed)
            // 1. Each rank's in_proj, conv and SSD on its heads.
            var zx = [[Float]](), y = [[Float]]()
            for r in 0..<R {
                let w = shards[r][l]
                var z = [Float](repeating: 0, count: T * E)
                model.project(normed, rows: T, inFeatures: D, weight: w.inProj, bias: w.inProjBias, outFeatures: E, into: &z)
                var wT = [Float](repeating: 0, count: K * C)  // the filter as (K, C), as the conv kernel takes it
                for ch in 0..<C { for k in 0..<K { wT[k * C + ch] = w.convWeight[ch * K + k] } }
                var xbc = [Float](repeating: 0, count: T * C)
                z.withUnsafeBufferPointer { zp in
                    mk_causal_conv_silu(Int32(T), Int32(C), Int32(K), zp.baseAddress! + 2 * M + S, E, nil, wT, w.convBias, &xbc, C)
                }
                // the conv history: the last K − 1 inputs (zeros before the first token), into the global channels
                let channels = p.convChannels(rank: r)
                for k in 0..<(K - 1) {
                    let t = T - (K - 1) + k
                    guard t >= 0 else { continue }
                    for (j, ch) in channels.enumerated() { state.conv[l][k * c.convDim + ch] = z[t * E + 2 * M + S + j] }
                }
                var x = [Float](), B = [Float](), Cm = [Float](), dt = [Float]()
                for t in 0..<T {
                    let row = t * C
                    x += xbc[row..<(row + S)]
                    B += xbc[(row + S)..<(row + S + g * N)]
                    Cm += xbc[(row + S + g * N)..<(row + S + 2 * g * N)]
                    dt += z[(t * E + 2 * M + S + C)..<(t * E + E)]
                }
                let input = SSDInput(x: Tensor(shape: [1, T, Hr, P], data: x), dt: Tensor(shape: [1, T, Hr], data: dt),
                                     A: Tensor(shape: [Hr], data: w.aLog.map { -exp($0) }), B: Tensor(shape: [1, T, g, N], data: B),
                                     C: Tensor(shape: [1, T, g, N], data: Cm),
                                     D: c.dHasHeadDim ? Tensor(shape: [Hr, P], data: w.D) : Tensor(shape: [Hr], data: w.D),
                                     dtBias: Tensor(shape: [Hr], data: w.dtBias))
                let out = try SSD.run(input, options: model.ssdOptions(form: .auto))
                let h0 = p.heads(rank: r).lowerBound * P * N
                state.ssm[l].replaceSubrange(h0..<(h0 + Hr * P * N), with: out.finalStates.data)
                zx.append(z)
                y.append(out.y.data)
            }
            // 2. The gated norm's sums of squares per token and group, added over ranks (the all-reduce when
            // groups span ranks; one rank's own sum otherwise).
            let gs = c.dSSM / c.nGroups
            var sumsq = [Double](repeating: 0, count: T * c.nGroups)
            for r in 0..<R {
                let ch0 = p.channels(rank: r).lowerBound
                for t in 0..<T {
                    for j in 0..<S {
                        let v = gatedValue(y[r][t * S + j], z: zx[r][t * E + 2 * M + j])
                        sumsq[t * c.nGroups + (ch0 + j) / gs] += Double(v * v)
                    }
                }
            }
            // 3. Each rank's out_proj of [silu(z0)·x0 | norm(v)·w], summed (the block's all-reduce).
            var sum = [Float](repeating: 0, count: T * D)
            for r in 0..<R {
                let w = shards[r][l], ch0 = p.channels(rank: r).lowerBound
                var gated = [Float](repeating: 0, count: T * p.localInner)
                for t in 0..<T {
                    let zr = t * E, gr = t * p.localInner
                    for i in 0..<M { gated[gr + i] = zx[r][zr + M + i] * silu(zx[r][zr + i]) }
                    for j in 0..<S {
                        let zv = zx[r][zr + 2 * M + j]
                        let scale = Float(1 / (sumsq[t * c.nGroups + (ch0 + j) / gs] / Double(gs) + Double(c.rmsNormEps)).squareRoot())
                        let normedValue = gatedValue(y[r][t * S + j], z: zv) * scale * w.gateNorm[j]
                        gated[gr + M + j] = c.normBeforeGate ? normedValue * silu(zv) : normedValue
                    }
                }
                var part = [Float](repeating: 0, count: T * D)
                model.project(gated, rows: T, inFeatures: p.localInner, weight: w.outProj, bias: w.outProjBias, outFeatures: D, into: &part)
                for i in 0..<(T * D) { sum[i] += part[i] }
            }
            hidden = sum
        }
        model.addAndNorm(&residual, hidden, weight: model.weights.normF, rows: T, into: &normed)
        return (model.head(normed, rows: T), state)
    }

    /// What the gated norm normalizes: y·silu(z), or y alone when the norm comes before the gate.
    func gatedValue(_ y: Float, z: Float) -> Float { model.config.normBeforeGate ? y : y * silu(z) }

    func silu(_ v: Float) -> Float { v / (1 + exp(-v)) }
}
