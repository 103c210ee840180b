import CMamba2Kernels
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The tensor-parallel forward on the CPU, rank after rank: the plain reference that the split of
/// `TensorParallelPlan` is checked with (every rank's block from its own shard of the weights, the all-reduces as
/// sums over ranks), and that a multi-device backend is tested against. Float32; a prompt through the chunked SSD
/// (`prefill`), then one token at a time through the recurrence (`step`), the state kept whole (each rank reads
/// and writes its heads' and channels' part of it).
public struct TensorParallelReference: Sendable {
    public let model: Mamba2Model
    public let plan: TensorParallelPlan
    /// Per rank, per layer: the rank's shard.
    public let shards: [[Mamba2LayerWeights]]
    /// Per rank, per layer, made once from the shard (so that its slices are what is checked): the conv filter
    /// transposed to (K, local conv_dim) as the conv kernel takes it, and A = −exp(A_log), (H/R).
    let filters: [[[Float]]], A: [[[Float]]]

    public init(model: Mamba2Model, ranks: Int) throws {
        let plan = try TensorParallelPlan(config: model.config, ranks: ranks)
        let c = model.config
        self.model = model
        self.plan = plan
        let layers = model.weights.layers  // widened once (the matrices of a model held in another type)
        shards = (0..<ranks).map { r in layers.map { plan.shard($0, rank: r) } }
        let (K, C) = (c.dConv, plan.localConvDim)
        filters = shards.map { $0.map { w in (0..<(K * C)).map { i in w.convWeight[i % C * K + i / C] } } }
        A = shards.map { $0.map { w in w.aLog.map { -exp($0) } } }
    }

    /// One sequence from the zero state: logits (T, padded vocab) and the state after it.
    public func prefill(_ tokens: [Int]) throws -> (logits: Tensor, state: Mamba2State) {
        guard !tokens.isEmpty else { throw Mamba2Error.invalidArgument("tokens", reason: "empty sequence") }
        var state = Mamba2State(config: model.config)
        let logits = try forward(tokens) { l, r, z in try prefillMixer(layer: l, rank: r, zx: z, rows: tokens.count, state: &state) }
        state.tokens = tokens.count
        return (logits, state)
    }

    /// One token continuing `state`: logits (1, padded vocab); the state advanced.
    public func step(_ token: Int, state: inout Mamba2State) throws -> Tensor {
        var s = state
        // each rank reads its history from the state before the step: ranks that share a group's channels
        // would otherwise read the history another rank has already shifted
        let logits = try forward([token]) { l, r, z in try stepMixer(layer: l, rank: r, zx: z, from: state, into: &s) }
        s.tokens += 1
        state = s
        return logits
    }

    /// Greedy decoding: the prompt, then `steps` tokens each the argmax of the last logits (the sampler's:
    /// the first index of the largest).
    public func greedy(prompt: [Int], steps: Int) throws -> [Int] {
        var (logits, state) = try prefill(prompt)
        var out: [Int] = []
        var last = Array(logits.data.suffix(model.config.paddedVocabSize))
        for _ in 0..<steps {
            out.append(Self.argmax(last))
            logits = try step(out.last!, state: &state)
            last = logits.data
        }
        return out
    }

    /// The first index of the largest value, as greedy sampling chooses.
    static func argmax(_ v: [Float]) -> Int {
        v.withUnsafeBufferPointer { Int(mk_first_index_f32(Int32($0.count), $0.baseAddress!, mk_max_f32(Int32($0.count), $0.baseAddress!))) }
    }

    /// The model around the ranks: embedding, per layer [residual add → norm → each rank's in_proj and
    /// `mixer` (conv and SSD, filling its y) → the ranks' gated norm and out_proj summed], final norm, head.
    func forward(_ tokens: [Int], mixer: (_ layer: Int, _ rank: Int, _ zx: [Float]) throws -> [Float]) throws -> Tensor {
        let c = model.config, p = plan
        try model.checkTokens(tokens, argument: "tokens")
        let (T, D, E) = (tokens.count, c.dModel, p.localInProjSize)
        var hidden = model.embed(tokens)
        var residual = [Float](repeating: 0, count: T * D), normed = residual
        for l in 0..<c.nLayer {
            model.addAndNorm(&residual, hidden, weight: model.stored.layers[l].norm, rows: T, into: &normed)
            var zx = [[Float]](), y = [[Float]]()
            for r in 0..<p.ranks {
                let w = shards[r][l]
                var z = [Float](repeating: 0, count: T * E)
                model.project(normed, rows: T, inFeatures: D, weight: w.inProj, bias: w.inProjBias, outFeatures: E, into: &z)
                y.append(try mixer(l, r, z))
                zx.append(z)
            }
            hidden = combine(layer: l, zx: zx, y: y, rows: T)
        }
        model.addAndNorm(&residual, hidden, weight: model.stored.normF, rows: T, into: &normed)
        return model.head(normed, rows: T)
    }

    /// A rank's conv and chunked SSD over a prompt from the zero state; writes its part of the state.
    func prefillMixer(layer l: Int, rank r: Int, zx z: [Float], rows T: Int, state: inout Mamba2State) throws -> [Float] {
        let c = model.config, p = plan, w = shards[r][l]
        let (K, P, N, Hr, g, S, M, E, C) = (c.dConv, c.headDim, c.dState, p.localHeads, p.localGroups, p.localSSM, p.localMLP,
                                            p.localInProjSize, p.localConvDim)
        var xbc = [Float](repeating: 0, count: T * C)
        z.withUnsafeBufferPointer { zp in
            mk_causal_conv_silu(Int32(T), Int32(C), Int32(K), zp.baseAddress! + 2 * M + S, E, nil, filters[r][l], w.convBias, &xbc, C)
        }
        // the conv history: the last K − 1 inputs (zeros before the first token), into the global channels
        let channels = p.convChannels(rank: r)
        for k in 0..<(K - 1) where T - (K - 1) + k >= 0 {
            let t = T - (K - 1) + k
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
                             A: Tensor(shape: [Hr], data: A[r][l]), B: Tensor(shape: [1, T, g, N], data: B),
                             C: Tensor(shape: [1, T, g, N], data: Cm),
                             D: c.dHasHeadDim ? Tensor(shape: [Hr, P], data: w.D) : Tensor(shape: [Hr], data: w.D),
                             dtBias: Tensor(shape: [Hr], data: w.dtBias))
        let out = try SSD.run(input, options: model.ssdOptions(form: .auto))
        let h0 = p.heads(rank: r).lowerBound * P * N
        state.ssm[l].replaceSubrange(h0..<(h0 + Hr * P * N), with: out.finalStates.data)
        return out.y.data
    }

    /// A rank's conv step and SSD recurrence step for one token, its part of the state read from `old` and
    /// written into `state`.
    func stepMixer(layer l: Int, rank r: Int, zx z: [Float], from old: Mamba2State, into state: inout Mamba2State) throws -> [Float] {
        let c = model.config, p = plan, w = shards[r][l]
        let (K, P, N, Hr, g, S, M, C) = (c.dConv, c.headDim, c.dState, p.localHeads, p.localGroups, p.localSSM, p.localMLP, p.localConvDim)
        let channels = p.convChannels(rank: r), K1 = K - 1
        // the rank's history (K − 1, C) out of the whole one, the conv over it and this token, then shifted
        var hist = [Float](repeating: 0, count: K1 * C)
        for k in 0..<K1 { for (j, ch) in channels.enumerated() { hist[k * C + j] = old.conv[l][k * c.convDim + ch] } }
        var xbc = [Float](repeating: 0, count: C)
        z.withUnsafeBufferPointer { zp in
            mk_causal_conv_silu(1, Int32(C), Int32(K), zp.baseAddress! + 2 * M + S, p.localInProjSize, hist, filters[r][l], w.convBias, &xbc, C)
        }
        for k in 0..<K1 {
            for (j, ch) in channels.enumerated() {
                state.conv[l][k * c.convDim + ch] = k + 1 < K1 ? hist[(k + 1) * C + j] : z[2 * M + S + j]
            }
        }
        let hs = p.heads(rank: r), h0 = hs.lowerBound * P * N
        var ssm = Array(old.ssm[l][h0..<(h0 + Hr * P * N)])
        var y = [Float](repeating: 0, count: S)
        xbc.withUnsafeBufferPointer { xp in
            let x = xp.baseAddress!
            mk_ssd_decode_step(Int32(Hr), Int32(P), Int32(N), Int32(g), Array(z[(2 * M + S + C)...]), w.dtBias, A[r][l], c.dtLimit.lo, c.dtLimit.hi,
                               x, x + S, x + S + g * N, w.D, c.dHasHeadDim ? 1 : 0, &ssm, &y, 1)
        }
        state.ssm[l].replaceSubrange(h0..<(h0 + Hr * P * N), with: ssm)
        return y
    }

    /// The ranks' gated norm and out_proj, summed (the block's all-reduce): the norm's sums of squares per token
    /// and group are added over ranks first (the second all-reduce when groups span ranks; one rank's own sum
    /// otherwise), then each rank's out_proj of [silu(z0)·x0 | norm(v)·w].
    func combine(layer l: Int, zx: [[Float]], y: [[Float]], rows T: Int) -> [Float] {
        let c = model.config, p = plan
        let (D, E, S, M, gs) = (c.dModel, p.localInProjSize, p.localSSM, p.localMLP, c.dSSM / c.nGroups)
        // v: what the norm normalizes, y·silu(z) (or y alone when the norm comes before the gate), per rank (T, S)
        let v = (0..<p.ranks).map { r in
            (0..<(T * S)).map { i in c.normBeforeGate ? y[r][i] : y[r][i] * silu(zx[r][i / S * E + 2 * M + i % S]) }
        }
        var sumsq = [Double](repeating: 0, count: T * c.nGroups)
        for r in 0..<p.ranks {
            let ch0 = p.channels(rank: r).lowerBound
            for t in 0..<T { for j in 0..<S { sumsq[t * c.nGroups + (ch0 + j) / gs] += Double(v[r][t * S + j] * v[r][t * S + j]) } }
        }
        var sum = [Float](repeating: 0, count: T * D)
        for r in 0..<p.ranks {
            let w = shards[r][l], ch0 = p.channels(rank: r).lowerBound
            var gated = [Float](repeating: 0, count: T * p.localInner)
            for t in 0..<T {
                let zr = t * E, gr = t * p.localInner
                for i in 0..<M { gated[gr + i] = zx[r][zr + M + i] * silu(zx[r][zr + i]) }
                for j in 0..<S {
                    let zv = zx[r][zr + 2 * M + j]
                    let scale = Float(1 / (sumsq[t * c.nGroups + (ch0 + j) / gs] / Double(gs) + Double(c.rmsNormEps)).squareRoot())
                    let normedValue = v[r][t * S + j] * scale * w.gateNorm[j]
                    gated[gr + M + j] = c.normBeforeGate ? normedValue * silu(zv) : normedValue
                }
            }
            var part = [Float](repeating: 0, count: T * D)
            model.project(gated, rows: T, inFeatures: p.localInner, weight: w.outProj, bias: w.outProjBias, outFeatures: D, into: &part)
            for i in 0..<(T * D) { sum[i] += part[i] }
        }
        return sum
    }

    func silu(_ v: Float) -> Float { v / (1 + exp(-v)) }
}
