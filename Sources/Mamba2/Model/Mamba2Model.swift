import CMamba2Kernels
import Synchronization
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A Mamba-2 language model, as `MambaLMHeadModel` of `mamba_ssm`:
///   embedding → per layer [residual add (float32) → RMSNorm → Mamba-2 mixer] → residual add → RMSNorm → tied head.
/// Prompts run through the chunked SSD (`prefill`), generation one token at a time through the
/// recurrence (`step`); both carry a fixed-size `Mamba2State` per sequence.
public final class Mamba2Model: Sendable {
    public let config: Mamba2Config
    public let weights: Mamba2Weights
    /// Per layer: the conv filter transposed to (d_conv, conv_dim), so the kernel runs along channels.
    package let convT: [[Float]]
    /// Per layer: A = −exp(A_log), (H).
    package let A: [[Float]]
    /// How the decode step holds the projections and the head (float32 always stays for prefill).
    public let weightType: WeightType
    /// Decode steps this model has run (one per token per sequence), for monitoring.
    public var decodedTokens: Int { decodedCounter.load(ordering: .relaxed) }
    let decodedCounter = Atomic<Int>(0)
    /// 16-bit copies for decode when `decodeWeights` is not .f32: per layer in_proj and out_proj, and the head.
    let halfInProj: [[UInt16]], halfOutProj: [[UInt16]], halfHead: [UInt16]

    public init(config: Mamba2Config, weights: Mamba2Weights, weightType: WeightType = .f32) throws {
        try config.validate()
        let c = config
        guard weights.layers.count == c.nLayer, weights.embedding.count == c.paddedVocabSize * c.dModel else {
            throw Mamba2Error.invalidArgument("weights", reason: "do not match the config's sizes")
        }
        self.config = config
        self.weights = weights
        convT = weights.layers.map { l in
            var t = [Float](repeating: 0, count: c.dConv * c.convDim)
            for ch in 0..<c.convDim { for k in 0..<c.dConv { t[k * c.convDim + ch] = l.convWeight[ch * c.dConv + k] } }
            return t
        }
        A = weights.layers.map { $0.aLog.map { -exp($0) } }
        self.weightType = weightType
        // The decode copies: 16-bit values, or Q8_0 / Q4_0 blocks (34 / 18 bytes, 17 / 9 UInt16s, per 32 weights).
        func decodeCopy(_ w: [Float]) -> [UInt16] {
            guard weightType.isBlockQuantized else { return roundedTo16Bits(w, bfloat: weightType == .bf16) }
            // blocks are 32 consecutive weights, so with every row length a multiple of 32 the whole matrix
            // quantizes as rows of 32
            var out = [UInt16](repeating: 0, count: weightType.bytes(w.count) / 2)
            w.withUnsafeBufferPointer { wp in out.withUnsafeMutableBytes { op in
                let o = op.baseAddress!.assumingMemoryBound(to: UInt8.self)
                if weightType == .q8_0 { mk_quantize_q8_0(w.count / 32, 32, wp.baseAddress!, o) }
                else { mk_quantize_q4_0(w.count / 32, 32, wp.baseAddress!, o) }
            }}
            return out
        }
        if weightType.isBlockQuantized {
            guard c.dModel % 32 == 0, c.dInner % 32 == 0 else {
                throw Mamba2Error.invalidArgument("weights", reason: "\(weightType.rawValue.uppercased()) needs d_model (\(c.dModel)) and d_inner (\(c.dInner)) to be multiples of 32")
            }
        }
        if weightType == .f32 {
            halfInProj = []; halfOutProj = []; halfHead = []
        } else {
            halfInProj = weights.layers.map { decodeCopy($0.inProj) }
            halfOutProj = weights.layers.map { decodeCopy($0.outProj) }
            halfHead = decodeCopy(weights.lmHead ?? weights.embedding)
        }
    }

    /// Loads `config.json` and the weights of a model directory (any layout `CheckpointLoader` reads).
    /// Loads a model directory (config.json + weights) or a GGUF file (llama.cpp's, `general.architecture`
    /// "mamba2"; F32, F16, BF16, Q8_0, Q4_0 and Q4_1 tensors, converted to float32).
    public static func load(directory: String, weightType: WeightType = .f32) throws -> Mamba2Model {
        if GGUFFile.isGGUF(path: directory) {
            let (config, weights, _) = try GGUFModel.load(path: directory)
            return try Mamba2Model(config: config, weights: weights, weightType: weightType)
        }
        let configPath = directory + "/config.json"
        guard MappedFile.exists(configPath) else { throw Mamba2Error.io(path: configPath, reason: "missing: a model directory needs config.json") }
        let config = try Mamba2Config.load(path: configPath)
        let weights = try CheckpointLoader.weights(config, tensors: try CheckpointLoader.readTensors(directory: directory))
        return try Mamba2Model(config: config, weights: weights, weightType: weightType)
    }

    public func newState() -> Mamba2State { Mamba2State(config: config) }

    /// Bytes of weights one decode step reads: the projections and the head in the decode dtype, the
    /// small per-layer vectors in float32, and of an untied embedding only the token's row.
    public var decodeWeightBytes: Int { Self.decodeWeightBytes(config, matrices: weightType) }

    /// The same for any model of config c whose matrices are held in `matrices` (the GPU's too).
    public static func decodeWeightBytes(_ c: Mamba2Config, matrices type: WeightType) -> Int {
        let embedding = c.paddedVocabSize * c.dModel
        let matrices = c.nLayer * (c.inProjSize * c.dModel + c.dModel * c.dInner) + embedding  // + the head
        let untiedEmbedding = c.tieEmbeddings ? 0 : embedding - c.dModel  // all but one row stays unread
        let rest = Mamba2Weights.parameterCount(c) - matrices - untiedEmbedding
        return type.bytes(matrices) + rest * 4
    }

    /// Which logits `prefill` returns.
    public enum LogitsMode: Sendable { case all, last, none }

    package func checkTokens(_ ids: [Int], argument: String) throws { try config.checkTokens(ids, argument: argument) }

    /// Runs prompts through the model in one packed pass (state and convolution reset between them),
    /// continuing each from its state and leaving the state after its last token. Returns, per
    /// sequence, logits (length, padded vocab) for `.all`, (1, padded vocab) for `.last`, none for `.none`.
    public func prefill(_ sequences: [[Int]], states: inout [Mamba2State], logits mode: LogitsMode = .all,
                        form: SSDForm = .auto) throws -> [Tensor] {
        let c = config
        guard !sequences.isEmpty else { throw Mamba2Error.invalidArgument("sequences", reason: "no sequences given") }
        guard states.count == sequences.count else {
            throw Mamba2Error.invalidArgument("states", reason: "\(states.count) states for \(sequences.count) sequences")
        }
        for (i, s) in sequences.enumerated() {
            guard !s.isEmpty else { throw Mamba2Error.invalidArgument("sequences[\(i)]", reason: "empty sequence") }
            try checkTokens(s, argument: "sequences[\(i)]")
        }
        let (D, E, T) = (c.dModel, c.inProjSize, sequences.reduce(0) { $0 + $1.count })
        let starts = sequences.reduce(into: [0]) { $0.append($0.last! + $1.count) }
        let tokens = sequences.flatMap { $0 }
        var hidden = embed(tokens)
        var residual = [Float](repeating: 0, count: T * D)
        var normed = [Float](repeating: 0, count: T * D)
        var zx = [Float](repeating: 0, count: T * E)
        var xbc = [Float](repeating: 0, count: T * c.convDim)
        var gated = [Float](repeating: 0, count: T * c.dInner)
        var seqIdx: [Int32] = []
        for (i, s) in sequences.enumerated() { seqIdx += [Int32](repeating: Int32(i), count: s.count) }

        for l in 0..<c.nLayer {
            let w = weights.layers[l]
            addAndNorm(&residual, hidden, weight: w.norm, rows: T, into: &normed)
            prefillProject(normed, rows: T, inFeatures: D, weight: w.inProj, half: weightType == .f32 ? nil : halfInProj[l],
                           bias: w.inProjBias, outFeatures: E, into: &zx)
            // Causal conv + SiLU over x, B, C, per sequence from its conv history; then the new history.
            for s in 0..<sequences.count {
                let (t0, n) = (starts[s], sequences[s].count)
                zx.withUnsafeBufferPointer { zp in xbc.withUnsafeMutableBufferPointer { xp in
                    states[s].conv[l].withUnsafeBufferPointer { hp in convT[l].withUnsafeBufferPointer { wp in
                        mk_causal_conv_silu(Int32(n), Int32(c.convDim), Int32(c.dConv), zp.baseAddress! + t0 * E + c.xbcOffset, E,
                                            hp.baseAddress, wp.baseAddress!, w.convBias, xp.baseAddress! + t0 * c.convDim, c.convDim)
                    }}
                }}
                states[s].conv[l] = convHistory(old: states[s].conv[l], zx: zx, rows: t0..<(t0 + n))
            }
            // SSD over all sequences at once, each from its own state.
            let out = try SSD.run(ssdInput(layer: l, rows: T, zx: zx, xbc: xbc, seqIdx: sequences.count > 1 ? seqIdx : nil,
                                           states: states.map { $0.ssm[l] }),
                                  options: ssdOptions(form: form))
            let stateSize = c.nHeads * c.headDim * c.dState
            for s in 0..<sequences.count { states[s].ssm[l] = Array(out.sequenceStates.data[(s * stateSize)..<((s + 1) * stateSize)]) }
            gate(y: out.y.data, zx: zx, rows: T, layer: l, into: &gated)
            prefillProject(gated, rows: T, inFeatures: c.dInner, weight: w.outProj, half: weightType == .f32 ? nil : halfOutProj[l],
                           bias: w.outProjBias, outFeatures: D, into: &hidden)
        }
        for s in 0..<sequences.count { states[s].tokens += sequences[s].count }
        if mode == .none { return [] }
        addAndNorm(&residual, hidden, weight: weights.normF, rows: T, into: &normed)
        var result: [Tensor] = []
        for s in 0..<sequences.count {
            let (t0, n) = mode == .all ? (starts[s], sequences[s].count) : (starts[s + 1] - 1, 1)
            result.append(head(Array(normed[(t0 * D)..<((t0 + n) * D)]), rows: n))
        }
        return result
    }

    /// One token for each sequence, continuing its state. Returns logits (sequences, padded vocab).
    public func step(_ tokens: [Int], states: inout [Mamba2State]) throws -> Tensor {
        let ws = DecodeWorkspace(config: config, batch: tokens.count)
        try step(tokens, states: &states, workspace: ws)
        return Tensor(shape: [tokens.count, config.paddedVocabSize], data: Array(ws.logits[0..<(tokens.count * config.paddedVocabSize)]))
    }

    /// The decode step into a reusable workspace (logits land in `workspace.logits`). Allocates nothing
    /// once the states are uniquely held: every buffer lives in the workspace, the conv history shifts
    /// in place, and the SSM state is updated in place.
    public func step(_ tokens: [Int], states: inout [Mamba2State], workspace ws: DecodeWorkspace) throws {
        let c = config
        let B = tokens.count
        guard states.count == B, B >= 1, B <= ws.batch else {
            throw Mamba2Error.invalidArgument("states", reason: "\(states.count) states for \(B) tokens (workspace for \(ws.batch))")
        }
        try checkTokens(tokens, argument: "tokens")
        let (D, E) = (c.dModel, c.inProjSize)
        let (H, P, N, G) = (c.nHeads, c.headDim, c.dState, c.nGroups)
        let K1 = c.dConv - 1, CD = c.convDim
        for s in 0..<B {
            let id = tokens[s]
            ws.hidden.withUnsafeMutableBufferPointer { h in
                weights.embedding.withUnsafeBufferPointer { e in (h.baseAddress! + s * D).update(from: e.baseAddress! + id * D, count: D) }
            }
        }
        ws.residual.withUnsafeMutableBufferPointer { $0.update(repeating: 0) }
        for l in 0..<c.nLayer {
            let w = weights.layers[l]
            addAndNorm(&ws.residual, ws.hidden, weight: w.norm, rows: B, into: &ws.normed)
            decodeProject(ws.normed, rows: B, inFeatures: D, weight: w.inProj, half: weightType == .f32 ? nil : halfInProj[l],
                          bias: w.inProjBias, outFeatures: E, into: &ws.zx)
            let a = A[l]
            for s in 0..<B {
                ws.zx.withUnsafeBufferPointer { zp in ws.xbc.withUnsafeMutableBufferPointer { xp in ws.y.withUnsafeMutableBufferPointer { yp in
                    convT[l].withUnsafeBufferPointer { wp in
                        states[s].conv[l].withUnsafeMutableBufferPointer { hp in
                            let row = zp.baseAddress! + s * E + c.xbcOffset
                            mk_causal_conv_silu(1, Int32(CD), Int32(c.dConv), row, E, hp.baseAddress, wp.baseAddress!, w.convBias,
                                                xp.baseAddress! + s * CD, CD)
                            // History: drop the oldest row, append this token's input.
                            if K1 > 0 {
                                let hb = hp.baseAddress!
                                if K1 > 1 { hb.update(from: hb + CD, count: (K1 - 1) * CD) }
                                (hb + (K1 - 1) * CD).update(from: row, count: CD)
                            }
                        }
                    }
                    // The SSD decode step, all heads: h ← exp(dt·A)·h + dt·x⊗B; y = h·C + D·x.
                    states[s].ssm[l].withUnsafeMutableBufferPointer { sp in
                        a.withUnsafeBufferPointer { ap in w.dtBias.withUnsafeBufferPointer { bp in w.D.withUnsafeBufferPointer { dp in
                            let x = xp.baseAddress! + s * CD
                            mk_ssd_decode_step(Int32(H), Int32(P), Int32(N), Int32(G), zp.baseAddress! + s * E + c.dtOffset,
                                               bp.baseAddress!, ap.baseAddress!, c.dtLimit.lo, c.dtLimit.hi, x, x + c.dSSM,
                                               x + c.dSSM + G * N, dp.baseAddress!, c.dHasHeadDim ? 1 : 0, sp.baseAddress!,
                                               yp.baseAddress! + s * c.dSSM, Int32(Parallel.threadCount))
                        }}}
                    }
                }}}
            }
            gate(y: ws.y, zx: ws.zx, rows: B, layer: l, into: &ws.gated)
            decodeProject(ws.gated, rows: B, inFeatures: c.dInner, weight: w.outProj, half: weightType == .f32 ? nil : halfOutProj[l],
                          bias: w.outProjBias, outFeatures: D, into: &ws.hidden)
        }
        for s in 0..<B { states[s].tokens += 1 }
        decodedCounter.add(B, ordering: .relaxed)
        addAndNorm(&ws.residual, ws.hidden, weight: weights.normF, rows: B, into: &ws.normed)
        decodeProject(ws.normed, rows: B, inFeatures: D, weight: weights.lmHead ?? weights.embedding,
                      half: weightType == .f32 ? nil : halfHead, bias: nil, outFeatures: c.paddedVocabSize, into: &ws.logits)
    }

    /// out (rows, outFeatures) = input · weightᵀ + bias for the few rows of a decode step: the weight
    /// streamed once (in 16 bits when `half` is given), rows split across the pool.
    func decodeProject(_ input: [Float], rows: Int, inFeatures: Int, weight: [Float], half: [UInt16]?, bias: [Float]?,
                       outFeatures: Int, into out: inout [Float]) {
        input.withUnsafeBufferPointer { ip in out.withUnsafeMutableBufferPointer { op in
            let threads = Int32(Parallel.threadCount)
            if let half {
                half.withUnsafeBufferPointer { hp in
                    mk_gemv_rows(Int32(rows), Int32(outFeatures), Int32(inFeatures), ip.baseAddress!, Int32(inFeatures),
                                 hp.baseAddress!, weightType.code, bias, op.baseAddress!, Int32(outFeatures), threads)
                }
            } else {
                weight.withUnsafeBufferPointer { wp in
                    mk_gemv_rows(Int32(rows), Int32(outFeatures), Int32(inFeatures), ip.baseAddress!, Int32(inFeatures),
                                 wp.baseAddress!, 0, bias, op.baseAddress!, Int32(outFeatures), threads)
                }
            }
        }}
    }

    // MARK: pieces

    /// Rows of the embedding for the ids.
    package func embed(_ ids: [Int]) -> [Float] {
        let D = config.dModel
        var out = [Float](repeating: 0, count: ids.count * D)
        for (t, id) in ids.enumerated() { out.replaceSubrange((t * D)..<((t + 1) * D), with: weights.embedding[(id * D)..<((id + 1) * D)]) }
        return out
    }

    /// residual += hidden; normed = rmsnorm(residual) · weight, per row.
    func addAndNorm(_ residual: inout [Float], _ hidden: [Float], weight: [Float], rows: Int, into normed: inout [Float]) {
        let D = config.dModel, eps = config.rmsNormEps
        residual.withUnsafeMutableBufferPointer { rp in hidden.withUnsafeBufferPointer { hp in normed.withUnsafeMutableBufferPointer { np in
            let r = SharedPointer(rp.baseAddress!), h = SharedPointer(hp.baseAddress!), n = SharedPointer(np.baseAddress!)
            weight.withUnsafeBufferPointer { wp in
                let w = SharedPointer(wp.baseAddress!)
                Parallel.forEach(rows) { t in
                    let rr = r.p + t * D, hh = h.p + t * D
                    for i in 0..<D { rr[i] += hh[i] }
                    mk_rmsnorm(D, rr, w.p, eps, n.p + t * D)
                }
            }
        }}}
    }

    /// out (rows, outFeatures) = input (rows, inFeatures) · weightᵀ + bias.
    package func project(_ input: [Float], rows: Int, inFeatures: Int, weight: [Float], bias: [Float]?, outFeatures: Int,
                 into out: inout [Float]) {
        input.withUnsafeBufferPointer { ip in weight.withUnsafeBufferPointer { wp in out.withUnsafeMutableBufferPointer { op in
            BLAS.sgemmParallel(transB: true, m: rows, n: outFeatures, k: inFeatures, a: ip.baseAddress!, lda: inFeatures,
                               b: wp.baseAddress!, ldb: inFeatures, c: op.baseAddress!, ldc: outFeatures)
            if let bias {
                for t in 0..<rows { for j in 0..<outFeatures { op[t * outFeatures + j] += bias[j] } }
            }
        }}}
    }

    /// out (rows, outFeatures) = input · weightᵀ + bias in the prefill: through the own kernels with the
    /// decode copy `half` (nil for float32 weights) where `PrefillGEMM.takes` says so (bf16 weights on
    /// AMX / AVX512-BF16 hosts, or every product with the BLAS switched off), else the float32 weights
    /// through the BLAS.
    func prefillProject(_ input: [Float], rows: Int, inFeatures: Int, weight: [Float], half: [UInt16]?, bias: [Float]?,
                        outFeatures: Int, into out: inout [Float]) {
        let type = half == nil ? WeightType.f32 : weightType
        guard PrefillGEMM.takes(type, k: inFeatures) else {
            project(input, rows: rows, inFeatures: inFeatures, weight: weight, bias: bias, outFeatures: outFeatures, into: &out)
            return
        }
        input.withUnsafeBufferPointer { ip in out.withUnsafeMutableBufferPointer { op in
            func run(_ w: UnsafeRawPointer, _ b: UnsafePointer<Float>?) {
                PrefillGEMM.multiply(rows: rows, n: outFeatures, k: inFeatures, x: ip.baseAddress!, w: w, type: type, bias: b,
                                     y: op.baseAddress!)
            }
            func withBias(_ w: UnsafeRawPointer) {
                if let bias { bias.withUnsafeBufferPointer { run(w, $0.baseAddress!) } } else { run(w, nil) }
            }
            if let half { half.withUnsafeBytes { withBias($0.baseAddress!) } } else { weight.withUnsafeBytes { withBias($0.baseAddress!) } }
        }}
    }

    /// Logits (rows, padded vocab) of normed hidden rows, through the (tied) head.
    func head(_ normed: [Float], rows: Int) -> Tensor {
        let V = config.paddedVocabSize
        var logits = [Float](repeating: 0, count: rows * V)
        prefillProject(normed, rows: rows, inFeatures: config.dModel, weight: weights.lmHead ?? weights.embedding,
                       half: weightType == .f32 ? nil : halfHead, bias: nil, outFeatures: V, into: &logits)
        return Tensor(shape: [rows, V], data: logits)
    }

    /// The conv history after `rows` of zx: the last d_conv − 1 xBC inputs, reaching into the old
    /// history when the sequence was shorter than that.
    func convHistory(old: [Float], zx: [Float], rows: Range<Int>) -> [Float] {
        let c = config, K1 = c.dConv - 1, C = c.convDim, E = c.inProjSize
        if K1 == 0 { return old }
        // Only the last K1 rows can survive: the old history's tail, then this sequence's last rows (a
        // 512-token prompt no longer copies all 512 of them first).
        let new = rows.suffix(K1)
        var combined = Array(old.suffix((K1 - new.count) * C))  // (K1, C), oldest first
        combined.reserveCapacity(K1 * C)
        for t in new { combined += zx[(t * E + c.xbcOffset)..<(t * E + c.xbcOffset + C)] }
        return combined
    }

    /// SSD inputs of one layer from the projections and the conv output.
    /// T tokens in `batchRows` rows of T / batchRows each (1: one packed row); `states`, when given, is the
    /// state each sequence starts from (prefill), else every sequence starts from zeros (training).
    package func ssdInput(layer l: Int, rows T: Int, batchRows b: Int = 1, zx: [Float], xbc: [Float], seqIdx: [Int32]?,
                  states: [[Float]]?) -> SSDInput {
        let c = config
        let (H, P, G, N, E) = (c.nHeads, c.headDim, c.nGroups, c.dState, c.inProjSize)
        var x = [Float](repeating: 0, count: T * c.dSSM)
        var B = [Float](repeating: 0, count: T * G * N), C = B
        var dt = [Float](repeating: 0, count: T * H)
        for t in 0..<T {
            let row = t * c.convDim
            x.replaceSubrange((t * c.dSSM)..<((t + 1) * c.dSSM), with: xbc[row..<(row + c.dSSM)])
            B.replaceSubrange((t * G * N)..<((t + 1) * G * N), with: xbc[(row + c.dSSM)..<(row + c.dSSM + G * N)])
            C.replaceSubrange((t * G * N)..<((t + 1) * G * N), with: xbc[(row + c.dSSM + G * N)..<(row + c.dSSM + 2 * G * N)])
            dt.replaceSubrange((t * H)..<((t + 1) * H), with: zx[(t * E + c.dtOffset)..<(t * E + c.dtOffset + H)])
        }
        let w = weights.layers[l]
        let L = T / b
        return SSDInput(x: Tensor(shape: [b, L, H, P], data: x), dt: Tensor(shape: [b, L, H], data: dt),
                        A: Tensor(shape: [H], data: A[l]), B: Tensor(shape: [b, L, G, N], data: B),
                        C: Tensor(shape: [b, L, G, N], data: C),
                        D: c.dHasHeadDim ? Tensor(shape: [H, P], data: w.D) : Tensor(shape: [H], data: w.D),
                        dtBias: Tensor(shape: [H], data: w.dtBias),
                        sequenceInitialStates: states.map { Tensor(shape: [$0.count, H, P, N], data: $0.flatMap { $0 }) },
                        seqIdx: seqIdx)
    }

    func ssdOptions(form: SSDForm) -> SSDOptions {
        SSDOptions(form: form, chunkSize: config.chunkSize, dtSoftplus: true, dtLimit: (config.dtLimit.lo, config.dtLimit.hi))
    }

    /// gated (rows, d_inner) = [silu(z0)·x0 | gatedRMSNorm(y, z)].
    package func gate(y: [Float], zx: [Float], rows: Int, layer l: Int, into gated: inout [Float]) {
        let c = config, E = c.inProjSize, M = c.dMLP
        let w = weights.layers[l].gateNorm
        y.withUnsafeBufferPointer { yp in zx.withUnsafeBufferPointer { zp in gated.withUnsafeMutableBufferPointer { gp in
            w.withUnsafeBufferPointer { wp in
                let yS = SharedPointer(yp.baseAddress!), zS = SharedPointer(zp.baseAddress!), gS = SharedPointer(gp.baseAddress!)
                let wS = SharedPointer(wp.baseAddress!)
                Parallel.forEach(rows) { t in
                    let g = gS.p + t * c.dInner, z = zS.p + t * E
                    for i in 0..<M { g[i] = z[M + i] * (z[i] / (1 + expf(-z[i]))) }
                    mk_gated_rmsnorm(Int32(c.dSSM), Int32(c.dSSM / c.nGroups), yS.p + t * c.dSSM, z + 2 * M, wS.p, c.rmsNormEps,
                                     c.normBeforeGate ? 1 : 0, g + M)
                }
            }
        }}}
    }
}

/// Buffers of the decode step for up to `batch` sequences, reused token after token.
public final class DecodeWorkspace: @unchecked Sendable {
    public let batch: Int
    var hidden: [Float]      // (batch, d_model)
    var residual: [Float]    // (batch, d_model)
    var normed: [Float]      // (batch, d_model)
    var zx: [Float]          // (batch, in_proj_size)
    var xbc: [Float]         // (batch, conv_dim)
    var y: [Float]           // (batch, d_ssm)
    var gated: [Float]       // (batch, d_inner)
    /// (batch, padded vocab): the logits of the last step.
    public internal(set) var logits: [Float]

    public init(config c: Mamba2Config, batch: Int) {
        self.batch = batch
        hidden = [Float](repeating: 0, count: batch * c.dModel)
        residual = hidden
        normed = hidden
        zx = [Float](repeating: 0, count: batch * c.inProjSize)
        xbc = [Float](repeating: 0, count: batch * c.convDim)
        y = [Float](repeating: 0, count: batch * c.dSSM)
        gated = [Float](repeating: 0, count: batch * c.dInner)
        logits = [Float](repeating: 0, count: batch * c.paddedVocabSize)
    }
}

extension Mamba2Config {
    /// Offset of xBC within an in_proj output row: after [z0 | x0 | z].
    package var xbcOffset: Int { 2 * dMLP + dSSM }
    /// Offset of dt within an in_proj output row: the last H entries.
    package var dtOffset: Int { 2 * dMLP + dSSM + convDim }
}
