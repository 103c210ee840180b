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
    /// The float32 weights the model holds: all of them for `.f32`; otherwise every vector (norms, biases, conv,
    /// dt, A, D) and an untied embedding, the projections and the head being held once in `weightType` instead
    /// (`inProj`, `outProj`, `head`; their arrays here are empty).
    let stored: Mamba2Weights
    /// Per layer: the conv filter transposed to (d_conv, conv_dim), so the kernel runs along channels.
    package let convT: [[Float]]
    /// Per layer: A = −exp(A_log), (H).
    package let A: [[Float]]
    /// The type the projections and the head are held and computed in (prefill and decode alike).
    public let weightType: WeightType
    /// Decode steps this model has run (one per token per sequence), for monitoring.
    public var decodedTokens: Int { decodedCounter.load(ordering: .relaxed) }
    let decodedCounter = Atomic<Int>(0)
    /// Per layer in_proj (in_proj_size, d_model) and out_proj (d_model, d_inner); the head (padded vocab, d_model),
    /// which for a tied model is the embedding: embedding rows are then read (widened) from it.
    let inProj: [HeldMatrix], outProj: [HeldMatrix], head: HeldMatrix

    /// The model's weights in float32. For `.f32` these are the weights it computes with; for the other types
    /// the projections and the head are widened from the held copies (bf16 and f16 exactly, the blocks
    /// dequantized), a new float32 copy of every matrix on each call: read it once, not in a loop.
    public var weights: Mamba2Weights {
        guard weightType != .f32 else { return stored }
        var w = stored
        for l in w.layers.indices { w.layers[l].inProj = inProj[l].floats(); w.layers[l].outProj = outProj[l].floats() }
        if config.tieEmbeddings { w.embedding = head.floats() } else { w.lmHead = head.floats() }
        return w
    }

    /// The dtype of the bulk of the checkpoint's weights ("F32", "BF16", "F16").
    public var storedDType: String { stored.storedDType }

    /// Bytes the weights take in memory as held, counted from the arrays themselves: the float32 ones, and for
    /// the other types the held matrices (for .f32 those share the float32 arrays' storage).
    public var heldWeightBytes: Int {
        let matrices = weightType == .f32 ? 0 : inProj.reduce(0) { $0 + $1.byteCount } + outProj.reduce(0) { $0 + $1.byteCount } + head.byteCount
        return stored.floatCount * 4 + matrices
    }

    /// The same for any model of config c whose matrices are held as `matrices` (what `mamba2 info` reports).
    public static func heldWeightBytes(_ c: Mamba2Config, matrices type: WeightType) -> Int {
        let elements = heldMatrixElements(c)
        return type.bytes(elements) + (Mamba2Weights.parameterCount(c) - elements) * 4
    }

    /// Holds `weights` with the projections and the head in `weightType` (the float32 arrays of those are not
    /// kept unless the type is .f32).
    public convenience init(config: Mamba2Config, weights: Mamba2Weights, weightType: WeightType = .f32) throws {
        let c = config
        try Self.checkHoldable(c, weightType)
        guard weights.layers.count == c.nLayer, weights.embedding.count == c.paddedVocabSize * c.dModel,
              weights.layers.allSatisfy({ $0.inProj.count == c.inProjSize * c.dModel && $0.outProj.count == c.dModel * c.dInner }),
              weights.lmHead.map({ $0.count == c.paddedVocabSize * c.dModel }) ?? c.tieEmbeddings else {
            throw Mamba2Error.invalidArgument("weights", reason: "do not match the config's sizes")
        }
        let inProj = weights.layers.map { HeldMatrix($0.inProj, rows: c.inProjSize, cols: c.dModel, type: weightType) }
        let outProj = weights.layers.map { HeldMatrix($0.outProj, rows: c.dModel, cols: c.dInner, type: weightType) }
        let head = HeldMatrix(weights.lmHead ?? weights.embedding, rows: c.paddedVocabSize, cols: c.dModel, type: weightType)
        var stored = weights
        if weightType != .f32 { stored.releaseHeldMatrices(c) }
        try self.init(config: c, stored: stored, inProj: inProj, outProj: outProj, head: head)
    }

    /// A model of float32 `stored` weights (the held matrices' arrays empty unless they are float32) and the
    /// matrices as held: what the loaders build one tensor at a time.
    package init(config: Mamba2Config, stored: Mamba2Weights, inProj: [HeldMatrix], outProj: [HeldMatrix], head: HeldMatrix) throws {
        try config.validate()
        let c = config
        let type = head.type
        guard stored.layers.count == c.nLayer, inProj.count == c.nLayer, outProj.count == c.nLayer,
              inProj.allSatisfy({ $0.type == type && $0.rows == c.inProjSize && $0.cols == c.dModel }),
              outProj.allSatisfy({ $0.type == type && $0.rows == c.dModel && $0.cols == c.dInner }),
              head.rows == c.paddedVocabSize, head.cols == c.dModel,
              stored.embedding.count == (c.tieEmbeddings && type != .f32 ? 0 : c.paddedVocabSize * c.dModel) else {
            throw Mamba2Error.invalidArgument("weights", reason: "do not match the config's sizes")
        }
        self.config = config
        self.stored = stored
        self.inProj = inProj; self.outProj = outProj; self.head = head
        weightType = type
        convT = stored.layers.map { l in
            var t = [Float](repeating: 0, count: c.dConv * c.convDim)
            for ch in 0..<c.convDim { for k in 0..<c.dConv { t[k * c.convDim + ch] = l.convWeight[ch * c.dConv + k] } }
            return t
        }
        A = stored.layers.map { $0.aLog.map { -exp($0) } }
    }

    /// Whether a model of config c can hold its matrices as `type`: the block types need rows of multiples of 32.
    public static func canHold(_ c: Mamba2Config, _ type: WeightType) -> Bool {
        !type.isBlockQuantized || (c.dModel % 32 == 0 && c.dInner % 32 == 0)
    }

    /// `canHold`, or an error that says why not.
    static func checkHoldable(_ c: Mamba2Config, _ type: WeightType) throws {
        guard canHold(c, type) else {
            throw Mamba2Error.invalidArgument("weights", reason: "\(type.rawValue.uppercased()) needs d_model (\(c.dModel)) and d_inner (\(c.dInner)) to be multiples of 32")
        }
    }

    /// The checkpoint names of the matrices a model holds in its weight type: every in_proj and out_proj, and the
    /// head (the embedding when tied, else lm_head).
    static func heldMatrixNames(_ c: Mamba2Config) -> (inProj: [String], outProj: [String], head: String) {
        ((0..<c.nLayer).map { "backbone.layers.\($0).mixer.in_proj.weight" },
         (0..<c.nLayer).map { "backbone.layers.\($0).mixer.out_proj.weight" },
         c.tieEmbeddings ? "backbone.embedding.weight" : "lm_head.weight")
    }

    /// Those names with their matrices' (rows, cols).
    package static func heldMatrixShapes(_ c: Mamba2Config) -> [String: (rows: Int, cols: Int)] {
        let names = heldMatrixNames(c)
        var out: [String: (rows: Int, cols: Int)] = [names.head: (c.paddedVocabSize, c.dModel)]
        for n in names.inProj { out[n] = (c.inProjSize, c.dModel) }
        for n in names.outProj { out[n] = (c.dModel, c.dInner) }
        return out
    }

    static func heldMatrixElements(_ c: Mamba2Config) -> Int {
        heldMatrixShapes(c).values.reduce(0) { $0 + $1.rows * $1.cols }
    }

    /// Loads a model directory (config.json + weights, any layout `CheckpointLoader` reads) or a GGUF file
    /// (llama.cpp's, `general.architecture` "mamba2"; F32, F16, BF16, Q8_0, Q4_0 and Q4_1 tensors). The matrices
    /// are converted to `weightType` one tensor at a time, and each tensor's pages of the file are let go once
    /// read, so that loading takes the held model's memory plus one matrix in float32: not the whole model in
    /// float32, nor the file.
    public static func load(directory: String, weightType: WeightType = .f32) throws -> Mamba2Model {
        if GGUFFile.isGGUF(path: directory) {
            let g = try GGUFFile(path: directory)
            let config = try GGUFModel.config(g)
            return try holding(config, weightType) { try GGUFModel.weights(g, config: config, heldApart: $0, hold: $1) }
        }
        let configPath = directory + "/config.json"
        guard MappedFile.exists(configPath) else { throw Mamba2Error.io(path: configPath, reason: "missing: a model directory needs config.json") }
        let config = try Mamba2Config.load(path: configPath)
        let tensors = try CheckpointLoader.readTensors(directory: directory)
        return try holding(config, weightType) { try CheckpointLoader.weights(config, tensors: tensors, heldApart: $0, hold: $1) }
    }

    /// A model of config c from a reader of its weights that hands each matrix named in its first argument to
    /// its second as it reads it (converted here to `type` at once) and returns the rest as float32.
    static func holding(_ c: Mamba2Config, _ type: WeightType,
                        read: (Set<String>, (String, [Float]) throws -> Void) throws -> Mamba2Weights) throws -> Mamba2Model {
        if type == .f32 { return try Mamba2Model(config: c, weights: try read([]) { _, _ in }, weightType: .f32) }
        try checkHoldable(c, type)
        let shapes = heldMatrixShapes(c)
        var held: [String: HeldMatrix] = [:]
        let stored = try read(Set(shapes.keys)) { name, values in
            let s = shapes[name]!
            held[name] = HeldMatrix(values, rows: s.rows, cols: s.cols, type: type)
        }
        let names = heldMatrixNames(c)  // every one handed over: the readers throw on a missing tensor
        return try Mamba2Model(config: c, stored: stored, inProj: names.inProj.map { held[$0]! }, outProj: names.outProj.map { held[$0]! },
                               head: held[names.head]!)
    }

    public func newState() -> Mamba2State { Mamba2State(config: config) }

    /// Bytes of weights one decode step reads: the projections and the head in the decode dtype, the
    /// small per-layer vectors in float32, and of an untied embedding only the token's row.
    public var decodeWeightBytes: Int { Self.decodeWeightBytes(config, matrices: weightType) }

    /// The same for any model of config c whose matrices are held in `matrices` (the GPU's too).
    public static func decodeWeightBytes(_ c: Mamba2Config, matrices type: WeightType) -> Int {
        let untiedEmbedding = c.tieEmbeddings ? 0 : c.paddedVocabSize * c.dModel - c.dModel  // all but one row stays unread
        return heldWeightBytes(c, matrices: type) - untiedEmbedding * 4
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
            let w = stored.layers[l]
            addAndNorm(&residual, hidden, weight: w.norm, rows: T, into: &normed)
            prefillProject(normed, rows: T, matrix: inProj[l], bias: w.inProjBias, into: &zx)
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
            prefillProject(gated, rows: T, matrix: outProj[l], bias: w.outProjBias, into: &hidden)
        }
        for s in 0..<sequences.count { states[s].tokens += sequences[s].count }
        if mode == .none { return [] }
        addAndNorm(&residual, hidden, weight: stored.normF, rows: T, into: &normed)
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
        ws.hidden.withUnsafeMutableBufferPointer { h in
            for s in 0..<B { embeddingRow(tokens[s], into: h.baseAddress! + s * D) }
        }
        ws.residual.withUnsafeMutableBufferPointer { $0.update(repeating: 0) }
        for l in 0..<c.nLayer {
            let w = stored.layers[l]
            addAndNorm(&ws.residual, ws.hidden, weight: w.norm, rows: B, into: &ws.normed)
            decodeProject(ws.normed, rows: B, matrix: inProj[l], bias: w.inProjBias, into: &ws.zx)
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
            decodeProject(ws.gated, rows: B, matrix: outProj[l], bias: w.outProjBias, into: &ws.hidden)
        }
        for s in 0..<B { states[s].tokens += 1 }
        decodedCounter.add(B, ordering: .relaxed)
        addAndNorm(&ws.residual, ws.hidden, weight: stored.normF, rows: B, into: &ws.normed)
        decodeProject(ws.normed, rows: B, matrix: head, bias: nil, into: &ws.logits)
    }

    /// out (rows, matrix.rows) = input · matrixᵀ + bias for the few rows of a decode step: the matrix streamed
    /// once in its held type, rows split across the pool.
    func decodeProject(_ input: [Float], rows: Int, matrix m: HeldMatrix, bias: [Float]?, into out: inout [Float]) {
        input.withUnsafeBufferPointer { ip in out.withUnsafeMutableBufferPointer { op in
            m.withUnsafeBytes { w in
                mk_gemv_rows(Int32(rows), Int32(m.rows), Int32(m.cols), ip.baseAddress!, Int32(m.cols), w, m.type.code, bias,
                             op.baseAddress!, Int32(m.rows), Int32(Parallel.threadCount))
            }
        }}
    }

    // MARK: pieces

    /// Rows of the embedding for the ids.
    package func embed(_ ids: [Int]) -> [Float] {
        let D = config.dModel
        var out = [Float](repeating: 0, count: ids.count * D)
        out.withUnsafeMutableBufferPointer { o in
            for (t, id) in ids.enumerated() { embeddingRow(id, into: o.baseAddress! + t * D) }
        }
        return out
    }

    /// Token `id`'s embedding (d_model) into `out`: from the float32 embedding, or widened from the held head
    /// that a tied model's embedding is.
    func embeddingRow(_ id: Int, into out: UnsafeMutablePointer<Float>) {
        let D = config.dModel
        if stored.embedding.isEmpty { head.widenRows(id, count: 1, into: out); return }
        stored.embedding.withUnsafeBufferPointer { out.update(from: $0.baseAddress! + id * D, count: D) }
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
            func run(_ b: UnsafePointer<Float>?) {
                PrefillGEMM.multiplyThroughBLAS(rows: rows, n: outFeatures, k: inFeatures, x: ip.baseAddress!, w: wp.baseAddress!,
                                                bias: b, y: op.baseAddress!)
            }
            if let bias { bias.withUnsafeBufferPointer { run($0.baseAddress!) } } else { run(nil) }
        }}}
    }

    /// out (rows, matrix.rows) = input (rows, matrix.cols) · matrixᵀ + bias in the prefill, on the path
    /// `PrefillGEMM.multiply` chooses for the held type on this host.
    func prefillProject(_ input: [Float], rows: Int, matrix m: HeldMatrix, bias: [Float]?, into out: inout [Float]) {
        input.withUnsafeBufferPointer { ip in out.withUnsafeMutableBufferPointer { op in
            m.withUnsafeBytes { w in
                func run(_ b: UnsafePointer<Float>?) {
                    PrefillGEMM.multiply(rows: rows, n: m.rows, k: m.cols, x: ip.baseAddress!, w: w, type: m.type, bias: b,
                                         y: op.baseAddress!)
                }
                if let bias { bias.withUnsafeBufferPointer { run($0.baseAddress!) } } else { run(nil) }
            }
        }}
    }

    /// Logits (rows, padded vocab) of normed hidden rows, through the (tied) head.
    func head(_ normed: [Float], rows: Int) -> Tensor {
        let V = config.paddedVocabSize
        var logits = [Float](repeating: 0, count: rows * V)
        prefillProject(normed, rows: rows, matrix: head, bias: nil, into: &logits)
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
        let w = stored.layers[l]
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
        let w = stored.layers[l].gateNorm
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
