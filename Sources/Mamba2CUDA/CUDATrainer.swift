import Mamba2
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Training of a Mamba-2 language model on one NVIDIA GPU: the whole step on the device, the same
/// computation as the CPU's `ModelGradients` + `AdamW` (its reference).
///
/// State on the device:
///   params, grads, m, v   (total) float32, one flat buffer each; every parameter a range of them, those
///                         with weight decay first (one AdamW pass over all of them)
///   mirror                (total) bf16 copy of params (bf16 mode): the matrix products' weights
///   A                     (n_layer, H) = −exp(A_log), remade before each forward
/// Per batch shape (`Workspace`), saved by the forward for the backward, per layer: the residual stream
/// entering it (T, d_model) float32, in_proj's output zx (T, in_proj_size) in the activation type and (bf16,
/// unless `recomputeSSD`) the SSD's output y (T, d_ssm), i.e. 4·d_model + 2·in_proj_size + 2·d_ssm bytes a
/// token a layer (12.8 KB at 130m). The rest of the block (the conv, the SSD's chunk states, both norms'
/// outputs) is recomputed in the backward from those.
///
/// Precision: `.bf16` (default) as mamba_ssm trains under autocast: bf16 matrix inputs and activations,
/// float32 accumulation, residual stream, norms' statistics, weight gradients, master weights and optimizer;
/// the SSD on tensor cores (head dim 64, N a multiple of 32 up to 128). `.f32`: every value float32, no
/// TF32, the plain float32 SSD: the mode the self-test checks against the CPU's gradients.
public final class CUDATrainer: @unchecked Sendable {
    public enum Precision: String, Sendable, CaseIterable { case bf16, f32 }

    /// One parameter's place in the flat buffers.
    public struct Slot: Sendable {
        public let name: String
        public let offset: Int
        public let count: Int
        public let decays: Bool
    }

    /// AdamW's constants for one step (the learning rate from the caller's schedule).
    public struct OptimizerStep: Sendable {
        public var learningRate, beta1, beta2, epsilon, weightDecay, clipNorm: Float
        public init(learningRate: Float, beta1: Float, beta2: Float, epsilon: Float, weightDecay: Float, clipNorm: Float) {
            self.learningRate = learningRate; self.beta1 = beta1; self.beta2 = beta2; self.epsilon = epsilon
            self.weightDecay = weightDecay; self.clipNorm = clipNorm
        }
    }

    /// A batch as the device takes it: rows × length tokens, each token's document start (flat index, never
    /// before its row's start) and its target (the next token of its document, or −1).
    public struct Batch: Sendable {
        public let rows, length: Int
        public let tokens, documentStarts, targets: [Int32]
        public init(rows: Int, length: Int, tokens: [Int32], documentStarts: [Int32], targets: [Int32]) throws {
            let T = rows * length
            guard rows >= 1, length >= 2, tokens.count == T, documentStarts.count == T, targets.count == T else {
                throw Mamba2Error.shape(argument: "batch", expected: "rows × length (\(rows) × \(length)) tokens, starts and targets",
                                        got: [tokens.count, documentStarts.count, targets.count])
            }
            for t in 0..<T {
                let start = Int(documentStarts[t]), rowStart = t / length * length
                guard start >= rowStart, start <= t, start == t || Int(documentStarts[t - 1]) == start else {
                    throw Mamba2Error.invalidArgument("batch", reason: "document start \(start) of token \(t) is not a start within its row")
                }
            }
            self.rows = rows; self.length = length; self.tokens = tokens; self.documentStarts = documentStarts; self.targets = targets
        }
        public var targetCount: Int { targets.reduce(0) { $0 + ($1 >= 0 ? 1 : 0) } }
    }

    public let device: CUDADevice
    public let config: Mamba2Config
    public let precision: Precision
    let bf16: Bool
    let k: TrainingKernels
    let mm: CUDAMatmul
    public let slots: [Slot]
    let slotIndex: [String: Int]
    /// Values in the flat buffers (with alignment gaps), and how many of them (from the start) decay.
    let total, nDecay: Int
    /// The flat buffers' leading range of matrices whose gradient one product writes whole per batch.
    let productEnd: Int
    /// Called after each layer's backward is queued (the last layer first) with the layer's index: from there
    /// that layer's in_proj and out_proj gradients (`layerGradients`) are final for the batch. Data parallelism
    /// records an event there and all-reduces them beside the rest of the backward.
    public var afterLayerBackward: ((Int) throws -> Void)?

    /// The flat gradients' range holding layer l's in_proj and out_proj (the layers' matrices lie first, in
    /// layer order); nil where the layout does not put them there.
    public func layerGradients(_ l: Int) -> Range<Int>? {
        guard let i = slotIndex["backbone.layers.\(l).mixer.in_proj.weight"], slots[i].offset < productEnd else { return nil }
        let next = slotIndex["backbone.layers.\(l + 1).mixer.in_proj.weight"].map { slots[$0].offset } ?? productEnd
        return slots[i].offset..<min(next, productEnd)
    }

    /// The rest of the flat gradients (embedding, head, norms, vectors): final once the whole backward is.
    public var otherGradients: Range<Int> { productEnd..<total }

    static func writtenByProduct(_ name: String) -> Bool {
        name.hasPrefix("backbone.layers.") && (name.hasSuffix(".mixer.in_proj.weight") || name.hasSuffix(".mixer.out_proj.weight"))
    }
    /// The weight gradients' beta for a parameter: 0 where the step's first batch writes it whole (the rest of
    /// the buffer was zeroed at that batch's start), else 1 (gradients accumulate).
    func gradientBeta(_ name: String) throws -> Float {
        let offset = try slot(name).offset
        return pendingBatches == 0 && offset < productEnd ? 0 : 1
    }
    let params, m, v: CUDABuffer
    /// The gradients' flat buffer (what data parallelism all-reduces).
    package let grads: CUDABuffer
    let mirror: CUDABuffer?
    let A: CUDABuffer
    /// [Σ g² (float64), Σ loss (float64)]
    let scalars: CUDABuffer
    let tc: CUDATensorCoreSSDBackward?
    let plain: CUDASSDBackward?
    /// Optimizer steps taken, and batches accumulated since the last.
    public private(set) var optimizerSteps = 0
    public private(set) var pendingBatches = 0

    /// A layer's parameters and gradients as views of the flat buffers.
    struct LayerViews {
        let norm, inProj, convW, convB, dtBias, aLog, D, gateNorm, outProj: CUDABuffer?
    }

    /// Random weights (`Mamba2Weights.randomValues`' distributions), the large matrices drawn on the device
    /// (normal, std 0.02): benchmarks of released shapes need no host copy.
    public convenience init(device: CUDADevice, randomWeights c: Mamba2Config, seed: UInt64, precision: Precision,
                            decays: (String) -> Bool, recomputeSSD: Bool = false) throws {
        try self.init(device: device, config: c, values: Mamba2Weights.randomValues(c, seed: seed, matrices: false), precision: precision,
                      decays: decays, missingDrawn: seed, recomputeSSD: recomputeSSD)
    }

    /// From float32 values under their state-spaces names; with `missingDrawn`, parameters left out are drawn
    /// on the device from that seed (normal, std 0.02).
    public init(device: CUDADevice, config c: Mamba2Config, values: [String: [Float]], precision: Precision,
                decays: (String) -> Bool, missingDrawn: UInt64? = nil, recomputeSSD: Bool = false) throws {
        self.recomputeSSD = recomputeSSD
        try c.validate()
        guard c.dMLP == 0 else { throw Mamba2Error.config(field: "d_ssm", reason: "GPU training does not cover the gated MLP branch (d_ssm < expand·d_model)") }
        guard !c.normBeforeGate else { throw Mamba2Error.config(field: "norm_before_gate", reason: "GPU training covers norm_before_gate = false (the released models) only") }
        guard !c.projBias else { throw Mamba2Error.config(field: "bias", reason: "GPU training does not cover biases on in_proj/out_proj (the released models have none)") }
        guard c.dConv <= 8 else { throw Mamba2Error.config(field: "d_conv", reason: "GPU training takes d_conv ≤ 8, got \(c.dConv)") }
        self.device = device
        config = c
        self.precision = precision
        bf16 = precision == .bf16
        if bf16 {
            guard c.headDim == CUDATensorCoreSSD.headDim, c.dState % 32 == 0, c.dState <= 128 else {
                throw Mamba2Error.invalidArgument("precision", reason: "bf16 training runs the SSD on tensor cores, which take head_dim 64 and d_state 32, 64, 96 or 128 (this model: \(c.headDim), \(c.dState)); train it with --precision f32")
            }
            tc = try CUDATensorCoreSSDBackward(device: device, elementType: .bf16, stateSize: c.dState)
            plain = nil
        } else {
            tc = nil
            plain = try CUDASSDBackward(device: device)
        }
        k = try TrainingKernels(device: device, bf16: bf16)
        mm = try CUDAMatmul(device: device, bf16: bf16)
        let t = Self.convTokens, act = bf16 ? 2 : 4
        for f in [k.conv4, k.conv8] { try f.allowSharedMemory((t + 7) * 256 * act + t * 4) }
        // the norms' backward sum their weight gradients in shared memory: d_model and d_ssm floats
        if c.dModel * 4 > 48 * 1024 { try k.rmsnormBackward.allowSharedMemory(c.dModel * 4) }
        if c.dSSM * 4 > 48 * 1024 { try k.gatedNormBackward.allowSharedMemory(c.dSSM * 4) }
        let st = Self.rowStages(actSize: act), rowKernels = Self.rowKernels(c, actSize: act)
        if rowKernels.norm {
            try k.rmsnormRows.allowSharedMemory(Self.rowShared(columns: c.dModel, stage: st.norm))
            try k.rmsnormBackwardRows.allowSharedMemory(Self.rowShared(columns: c.dModel, stage: st.normBackward))
        }
        if Self.segmentConv(c) {
            let sh = Self.segmentShared(actSize: act)
            for f in [k.convSegment4, k.convSegment8] { try f.allowSharedMemory(sh.forward) }
            for f in [k.convSegmentBackward4, k.convSegmentBackward8] { try f.allowSharedMemory(sh.backward) }
        }
        if rowKernels.gated {
            try k.gatedNormRows.allowSharedMemory(Self.rowShared(columns: c.dSSM, stage: st.gated))
            try k.gatedNormBackwardRows.allowSharedMemory(Self.rowShared(columns: c.dSSM, stage: st.gatedBackward))
        }
        for f in [k.convBackward4, k.convBackward8] { try f.allowSharedMemory((2 * t + 21) * 256 * act + (t + 7) * 4) }

        // The flat layout: decaying parameters first, each range starting at a multiple of 16 values (aligned
        // operands for cuBLAS, even offsets for the 16-bit mirror's views); within each group the blocks'
        // in_proj and out_proj matrices first: their gradients are written whole by one product per batch, so
        // a step's first batch writes them with beta 0 instead of zeroing them first (1.2 ms of a 1.3b step).
        let shapes = Mamba2Weights.expectedShapes(c)
        var slots: [Slot] = []
        var offset = 0
        var productEnd = 0
        for wantDecay in [true, false] {
            for product in [true, false] {
                for (name, shape) in shapes where decays(name) == wantDecay && Self.writtenByProduct(name) == product {
                    let n = shape.reduce(1, *)
                    slots.append(Slot(name: name, offset: offset, count: n, decays: wantDecay))
                    offset = (offset + n + 15) / 16 * 16
                    if product && productEnd == slots[slots.count - 1].offset { productEnd = offset }
                }
            }
        }
        self.slots = slots
        self.productEnd = productEnd
        slotIndex = Dictionary(uniqueKeysWithValues: slots.enumerated().map { ($1.name, $0) })
        total = offset
        nDecay = slots.last { $0.decays }.map { ($0.offset + $0.count + 15) / 16 * 16 } ?? 0
        params = try CUDABuffer(count: total, on: device)
        grads = try CUDABuffer(count: total, on: device)
        m = try CUDABuffer(count: total, on: device)
        v = try CUDABuffer(count: total, on: device)
        mirror = bf16 ? try CUDABuffer(count: (total + 1) / 2, on: device) : nil
        A = try CUDABuffer(count: c.nLayer * c.nHeads, on: device)
        scalars = try CUDABuffer(count: 4, on: device)
        for b in [grads, m, v, params] { try b.fill(bitPattern: 0) }
        if let seed = missingDrawn {
            var stream = seed &* 0x9E37_79B9_7F4A_7C15
            for s in slots where values[s.name] == nil {
                stream &+= 0xD1B5_4A32_D192_ED03
                let a = KernelArguments()
                a.add(Int64(s.count)); a.add(stream); a.add(Float(0.02)); a.add(params.view(at: s.offset, count: s.count))
                try k.fillNormal.launch(grid: (1024, 1, 1), block: (256, 1, 1), arguments: a)
            }
        }
        try upload(values, skipMissing: missingDrawn != nil)
    }

    // MARK: parameters

    func slot(_ name: String) throws -> Slot {
        guard let i = slotIndex[name] else { throw Mamba2Error.invalidArgument(name, reason: "not a parameter of this model") }
        return slots[i]
    }

    /// A parameter's range of one of the flat float32 buffers.
    func view(_ buffer: CUDABuffer, _ name: String) throws -> CUDABuffer {
        let s = try slot(name)
        return buffer.view(at: s.offset, count: s.count)
    }

    /// Device address of a matrix in the products' type: the mirror's in bf16, the master's in f32.
    func weightAddress(_ name: String) throws -> UInt64 {
        let s = try slot(name)
        if let mirror { return mirror.pointer + UInt64(s.offset * 2) }
        return params.pointer + UInt64(s.offset * 4)
    }

    /// Sets every parameter (float32 by state-spaces name, each of its expected size) and remakes the mirror.
    public func upload(_ values: [String: [Float]]) throws { try upload(values, skipMissing: false) }

    func upload(_ values: [String: [Float]], skipMissing: Bool) throws {
        for s in slots {
            if skipMissing && values[s.name] == nil { continue }
            guard let v = values[s.name] else { throw Mamba2Error.invalidArgument(s.name, reason: "missing from the weights") }
            guard v.count == s.count else { throw Mamba2Error.invalidArgument(s.name, reason: "\(v.count) values, expected \(s.count)") }
            try params.upload(v, atFloat: s.offset)
        }
        try refreshMirror()
        try device.synchronize()
    }

    func refreshMirror() throws {
        guard let mirror else { return }
        let a = KernelArguments()
        a.add(Int64(total)); a.add(params); a.add(mirror)
        try k.toAct.launch(grid: (min((total + 255) / 256, 8192), 1, 1), block: (256, 1, 1), arguments: a)
    }

    /// Values of one flat buffer by parameter name.
    func download(_ buffer: CUDABuffer) throws -> [String: [Float]] {
        try device.synchronize()
        let all = try buffer.download(total, as: Float.self)
        var out: [String: [Float]] = [:]
        for s in slots { out[s.name] = Array(all[s.offset..<(s.offset + s.count)]) }
        return out
    }

    /// The parameters, float32 by state-spaces name.
    public func parameters() throws -> [String: [Float]] { try download(params) }
    /// The gradients accumulated since the last optimizer step (sums over the batches).
    public func gradients() throws -> [String: [Float]] { try download(grads) }
    /// AdamW's moments by parameter name.
    public func moments() throws -> (m: [String: [Float]], v: [String: [Float]]) { (try download(m), try download(v)) }

    /// Restores a checkpoint: parameters, the optimizer's step count and its moments (missing moments: zeros).
    public func restore(parameters values: [String: [Float]], optimizerSteps steps: Int, m mValues: [String: [Float]], v vValues: [String: [Float]]) throws {
        try upload(values)
        for (buffer, vals) in [(m, mValues), (v, vValues)] {
            try buffer.fill(bitPattern: 0)
            for s in slots {
                guard let x = vals[s.name] else { continue }
                guard x.count == s.count else { throw Mamba2Error.invalidArgument("moment of " + s.name, reason: "\(x.count) values, expected \(s.count)") }
                try buffer.upload(x, atFloat: s.offset)
            }
        }
        try grads.fill(bitPattern: 0)
        pendingBatches = 0
        optimizerSteps = steps
        try device.synchronize()
    }

    func layerViews(_ buffer: CUDABuffer, _ l: Int) throws -> LayerViews {
        let p = "backbone.layers.\(l)."
        func opt(_ n: String) throws -> CUDABuffer? { slotIndex[p + n] == nil ? nil : try view(buffer, p + n) }
        return LayerViews(norm: try opt("norm.weight"), inProj: try opt("mixer.in_proj.weight"), convW: try opt("mixer.conv1d.weight"),
                          convB: try opt("mixer.conv1d.bias"), dtBias: try opt("mixer.dt_bias"), aLog: try opt("mixer.A_log"),
                          D: try opt("mixer.D"), gateNorm: try opt("mixer.norm.weight"), outProj: try opt("mixer.out_proj.weight"))
    }

    // MARK: the step

    /// Adds the gradients of `batch`'s mean loss to the pending sum; returns that loss.
    public func accumulate(_ batch: Batch) throws -> Double {
        try queueAccumulate(batch, normalizer: Double(batch.targetCount))
        return try collectLoss(normalizer: Double(batch.targetCount))
    }

    /// Queues `accumulate`'s work on the device and returns without waiting (`collectLoss` waits): the loss
    /// summed over the batch's targets and divided by `normalizer` — its own target count for its mean; the
    /// whole step's count when several devices each take part of one batch (data parallelism), so that the
    /// gradients summed over devices are the whole batch's mean.
    public func queueAccumulate(_ batch: Batch, normalizer: Double) throws {
        guard batch.targetCount > 0 else { throw Mamba2Error.invalidArgument("batch", reason: "no position has a next token of its own document") }
        guard normalizer > 0 else { throw Mamba2Error.invalidArgument("normalizer", reason: "must be positive, got \(normalizer)") }
        let w = try workspace(batch)
        if pendingBatches == 0 && productEnd < total { try grads.fill(at: productEnd, words: total - productEnd, bitPattern: 0) }
        try forward(w)
        try head(w, normalizer: normalizer, backward: true)
        try backward(w)
        pendingBatches += 1
    }

    /// Counts a batch this device took no part of (data parallelism with fewer rows than devices): nothing is
    /// added to the gradients, which are zeroed if it is the step's first.
    public func skipBatch() throws {
        if pendingBatches == 0 { try grads.fill(bitPattern: 0) }
        pendingBatches += 1
    }

    /// Waits for the queued batch and returns its loss (summed over its targets, divided by `normalizer`).
    public func collectLoss(normalizer: Double) throws -> Double { try readLoss(normalizer: normalizer) }

    /// The mean loss of `batch`, no gradients.
    public func loss(_ batch: Batch) throws -> Double {
        let w = try workspace(batch)
        try forward(w)
        guard batch.targetCount > 0 else { throw Mamba2Error.invalidArgument("batch", reason: "no position has a next token of its own document") }
        try head(w, normalizer: Double(batch.targetCount), backward: false)
        return try readLoss(normalizer: Double(batch.targetCount))
    }

    func readLoss(normalizer: Double) throws -> Double {
        try device.synchronize()
        let s = try scalars.download(4, as: Float.self)
        let sum = s.withUnsafeBytes { $0.load(fromByteOffset: 8, as: Double.self) }
        return sum / normalizer
    }

    /// One AdamW step with the mean of the accumulated gradients; returns their global norm before clipping.
    public func optimizerStep(_ o: OptimizerStep) throws -> Float {
        guard pendingBatches > 0 else { throw Mamba2Error.invalidArgument("training", reason: "an optimizer step with no gradients accumulated") }
        optimizerSteps += 1
        let scale = 1 / Float(pendingBatches)
        try scalars.fill(at: 0, words: 2, bitPattern: 0)
        let blocks = min((total + 255) / 256, 8 * max(device.multiprocessors, 1) * 8)
        let a = KernelArguments()
        a.add(Int64(total)); a.add(grads); a.add(scalars)
        try part("optimizer norm") { try k.sumSquares.launch(grid: (blocks, 1, 1), block: (256, 1, 1), arguments: a) }
        let bc1 = 1 - pow(o.beta1, Float(optimizerSteps)), bc2 = 1 - pow(o.beta2, Float(optimizerSteps))
        let b = KernelArguments()
        b.add(Int64(total)); b.add(Int64(nDecay)); b.add(params); b.add(grads); b.add(m); b.add(v); b.add(mirror?.pointer ?? 0)
        for x in [o.learningRate, o.beta1, o.beta2, o.epsilon, o.weightDecay, bc1, bc2, scale, o.clipNorm] { b.add(x) }
        b.add(scalars)
        try part("optimizer AdamW") { try k.adamW.launch(grid: (blocks, 1, 1), block: (256, 1, 1), arguments: b) }
        pendingBatches = 0  // the next batch overwrites or zeroes the gradients
        try device.synchronize()
        let s = try scalars.download(2, as: Float.self)
        let sumsq = s.withUnsafeBytes { $0.load(as: Double.self) }
        return Float(sumsq.squareRoot()) * scale
    }

    /// Buffers for one batch shape, kept between steps of that shape.
    final class Workspace {
        let rows, length, T: Int
        let tokens, docStart, targets: CUDABuffer   // (T) int32
        var packed: CUDAPackedRows?
        let resid: [CUDABuffer]                      // n_layer + 1 × (T, d) f32
        let zx: [CUDABuffer]                         // n_layer × (T, E) act
        let normed: CUDABuffer                       // (T, d) act
        let x, B, C: CUDABuffer                      // (T, S), (T, G·N) ×2 act
        let dt: CUDABuffer                           // (T, H) f32 raw
        let y: CUDABuffer                            // (T, S) act (one value when the layers keep theirs)
        let gated, dy: CUDABuffer                    // (T, S) act
        let dGated: CUDABuffer                       // (T, S) act
        let dzx: CUDABuffer                          // (T, E) act
        let dNormed: CUDABuffer                      // (T, d) act
        let dresid: CUDABuffer                       // (T, d) f32
        let dresidAct: CUDABuffer                    // (T, d) act
        let headRows: Int                            // rows of logits at a time
        let logits: CUDABuffer                       // (headRows, V) f32
        let dlogits: CUDABuffer                      // (headRows, V) act
        let ssd: SSDWork
        /// The conv's streaming kernels' segments (tokens a block walks) and grids for T rows (nil: `training`'s
        /// tile kernels).
        var convSegments: (forward: (segment: Int, grid: Int), backward: (segment: Int, grid: Int))?
        /// The norms' row kernels' launches for T rows (nil: `training`'s kernels).
        var rowLaunches: (norm: RowLaunch?, normBackward: RowLaunch?, gated: RowLaunch?, gatedBackward: RowLaunch?)?
        /// Per layer, the tensor-core SSD's output y (T, S) act when it is not recomputed (2·S bytes a token):
        /// the gated norm's input. What its backward reads besides (dt, the cumulative decay, the chunks'
        /// incoming states: 8·H + 2·H·P·N/128 bytes a token, as much as y again at N = 128) is remade there
        /// by the forward's state and passing kernels, about 40% of the forward's time.
        var savedY: [CUDABuffer] = []
        init(rows: Int, length: Int, T: Int, tokens: CUDABuffer, docStart: CUDABuffer, targets: CUDABuffer, resid: [CUDABuffer], zx: [CUDABuffer],
             normed: CUDABuffer, x: CUDABuffer, B: CUDABuffer, C: CUDABuffer, dt: CUDABuffer, y: CUDABuffer, gated: CUDABuffer, dy: CUDABuffer,
             dGated: CUDABuffer, dzx: CUDABuffer, dNormed: CUDABuffer, dresid: CUDABuffer, dresidAct: CUDABuffer,
             headRows: Int, logits: CUDABuffer, dlogits: CUDABuffer, ssd: SSDWork) {
            self.rows = rows; self.length = length; self.T = T; self.tokens = tokens; self.docStart = docStart; self.targets = targets
            self.resid = resid; self.zx = zx; self.normed = normed; self.x = x; self.B = B; self.C = C; self.dt = dt; self.y = y
            self.gated = gated; self.dy = dy; self.dGated = dGated; self.dzx = dzx; self.dNormed = dNormed
            self.dresid = dresid; self.dresidAct = dresidAct; self.headRows = headRows; self.logits = logits; self.dlogits = dlogits
            self.ssd = ssd
        }
    }
    var works: [Workspace] = []

    /// Recompute the SSD forward in the backward instead of keeping its output per layer (less memory, about
    /// a thirtieth more time). The plain float32 SSD (f32 mode) always recomputes.
    public let recomputeSSD: Bool

    /// The SSD's own scratch: the forward's saved values and the backward's intermediates and outputs.
    struct SSDWork {
        let nchunks, Q: Int
        let dtOut, cumOut, states, statesIn, chunkDecay, finalStates: CUDABuffer
        let CB: CUDABuffer?                                        // plain only
        // backward
        let dHout, dStates: CUDABuffer
        let hsplit: Int                                            // tensor cores' head parts (1: plain)
        let ddecayPart, dCBsum, dcumP, ddtP, wdw, offP, dApart, dBiasPart, Dpart, dHscale, gScale: CUDABuffer?  // tensor cores
        let ddecay, dCB, Z, gdt, dApartPlain, dRaw64, dBh, dCh: CUDABuffer?                   // plain
        let parts: Int
        let dX, dB, dC, dRaw, dBias, dA, dD: CUDABuffer
    }

    /// With `profiling` set, every part of a step is waited for and timed (seconds summed by part name, in the
    /// order first seen): a breakdown for `bench train --breakdown`, slower than an unprofiled step.
    public var profiling = false
    public private(set) var profile: [(part: String, seconds: Double)] = []
    public func resetProfile() { profile = [] }

    func part(_ name: String, _ body: () throws -> Void) throws {
        guard profiling else { return try body() }
        try device.synchronize()
        let t0 = monotonicSeconds()
        try body()
        try device.synchronize()
        let dt = monotonicSeconds() - t0
        if let i = profile.firstIndex(where: { $0.part == name }) { profile[i].seconds += dt } else { profile.append((name, dt)) }
    }

    /// Bytes the logits of the head may take at once (float32 logits and their act gradient): 512 MiB takes
    /// 1,780 rows at a time at 1.3b (50,288 columns), the peak memory 0.5 GiB under a 1 GiB budget's; smaller
    /// budgets slow the head's weight gradient, which reads and writes its float32 sum once per chunk.
    public var headBudgetBytes = 1 << 29

    func actBuffer(_ n: Int) throws -> CUDABuffer { try CUDABuffer(count: bf16 ? max((n + 1) / 2, 1) : max(n, 1), on: device) }
    func floatBuffer(_ n: Int) throws -> CUDABuffer { try CUDABuffer(count: max(n, 1), on: device) }

    func workspace(_ batch: Batch) throws -> Workspace {
        let c = config
        let (rows, L) = (batch.rows, batch.length)
        for t in batch.tokens where t < 0 || Int(t) >= c.vocabSize {
            throw Mamba2Error.invalidArgument("batch.tokens", reason: "token id \(t) is outside the vocabulary of \(c.vocabSize)")
        }
        // Two shapes kept (the training batches' and the last validation batch's, which may be shorter);
        // a third replaces the one used least recently, whose buffers go before the new ones are made.
        let w: Workspace
        if let i = works.firstIndex(where: { $0.rows == rows && $0.length == L }) {
            w = works.remove(at: i)
        } else {
            if works.count >= 2 { works.removeFirst() }
            w = try makeWorkspace(rows: rows, length: L)
        }
        works.append(w)
        try w.tokens.upload(batch.tokens)
        try w.docStart.upload(batch.documentStarts)
        try w.targets.upload(batch.targets)
        // Packed rows for the SSD when some row holds more than one document.
        var spans: [[(start: Int, end: Int)]] = []
        var many = false
        for r in 0..<rows {
            var row: [(start: Int, end: Int)] = []
            for t in 0..<L where Int(batch.documentStarts[r * L + t]) == r * L + t {
                if let last = row.last { row[row.count - 1] = (last.start, t) }
                row.append((t, L))
            }
            many = many || row.count > 1
            spans.append(row)
        }
        w.packed = many ? try CUDAPackedRows(on: device, rowLength: L, rows: spans) : nil
        return w
    }

    func makeWorkspace(rows: Int, length L: Int) throws -> Workspace {
        let c = config
        let T = rows * L
        let (d, E, S, H, G, N, P, V) = (c.dModel, c.inProjSize, c.dSSM, c.nHeads, c.nGroups, c.dState, c.headDim, c.paddedVocabSize)
        let headRows = max(1, min(T, headBudgetBytes / (V * (bf16 ? 6 : 8))))
        let nD = c.dHasHeadDim ? S : H
        let ssd: SSDWork
        if tc != nil {
            let Q = CUDATensorCoreSSD.chunk, nchunks = (L + Q - 1) / Q
            let halves = rows * H * nchunks * P * N
            let parts = P * N / 512 * 8
            let hsplit = CUDATensorCoreSSDBackward.headSplits(rows: rows, chunks: nchunks, heads: H, groups: G, multiprocessors: device.multiprocessors)
            ssd = SSDWork(
                nchunks: nchunks, Q: Q, dtOut: try floatBuffer(rows * H * L), cumOut: try floatBuffer(rows * H * L),
                states: try actBuffer(halves), statesIn: try actBuffer(halves), chunkDecay: try floatBuffer(rows * H * nchunks),
                finalStates: try floatBuffer(rows * H * P * N), CB: nil, dHout: try actBuffer(halves), dStates: try actBuffer(halves), hsplit: hsplit,
                ddecayPart: try floatBuffer(rows * H * nchunks * parts), dCBsum: try actBuffer(rows * G * hsplit * nchunks * Q * Q),
                dcumP: try floatBuffer(rows * H * L), ddtP: try floatBuffer(rows * H * L), wdw: try floatBuffer(rows * H * L),
                offP: try floatBuffer(N / CUDATensorCoreSSDBackward.splitWidth(stateSize: N) * rows * H * L),
                dApart: try floatBuffer(rows * H * nchunks), dBiasPart: try floatBuffer(rows * H * nchunks), Dpart: try floatBuffer(rows * nchunks * CUDATensorCoreSSDBackward.dPartPlanes * H * P),
                dHscale: try floatBuffer(rows * H * nchunks), gScale: try floatBuffer(rows * H * nchunks),
                ddecay: nil, dCB: nil, Z: nil, gdt: nil, dApartPlain: nil, dRaw64: nil, dBh: nil, dCh: nil, parts: parts,
                dX: try actBuffer(T * S), dB: try actBuffer(T * G * N), dC: try actBuffer(T * G * N), dRaw: try floatBuffer(T * H),
                dBias: try floatBuffer(H), dA: try floatBuffer(H), dD: try floatBuffer(nD))
        } else {
            let Q = min(c.chunkSize, 256), nchunks = (L + Q - 1) / Q
            let states = rows * H * nchunks * P * N
            // C·Bᵀ once per group for the forward; its gradient and Z per head for the backward
            let squares = rows * G * nchunks * Q * Q, headSquares = rows * H * nchunks * Q * Q
            ssd = SSDWork(
                nchunks: nchunks, Q: Q, dtOut: try floatBuffer(rows * H * L), cumOut: try floatBuffer(2 * rows * H * L),
                states: try floatBuffer(states), statesIn: try floatBuffer(states), chunkDecay: try floatBuffer(rows * H * nchunks),
                finalStates: try floatBuffer(rows * H * P * N), CB: try floatBuffer(squares), dHout: try floatBuffer(states),
                dStates: try floatBuffer(states), hsplit: 1, ddecayPart: nil, dCBsum: nil, dcumP: nil, ddtP: nil, wdw: nil, offP: nil, dApart: nil,
                dBiasPart: nil, Dpart: nil, dHscale: nil, gScale: nil, ddecay: try floatBuffer(rows * H * nchunks), dCB: try floatBuffer(headSquares), Z: try floatBuffer(2 * headSquares),
                gdt: try floatBuffer(2 * T * H), dApartPlain: try floatBuffer(2 * rows * H * nchunks), dRaw64: try floatBuffer(2 * T * H),
                dBh: try floatBuffer(H * T * N), dCh: try floatBuffer(H * T * N), parts: 0,
                dX: try floatBuffer(T * S), dB: try floatBuffer(T * G * N), dC: try floatBuffer(T * G * N), dRaw: try floatBuffer(T * H),
                dBias: try floatBuffer(H), dA: try floatBuffer(H), dD: try floatBuffer(nD))
        }
        let keepY = tc != nil && !recomputeSSD
        let w = Workspace(
            rows: rows, length: L, T: T, tokens: try floatBuffer(T), docStart: try floatBuffer(T), targets: try floatBuffer(T),
            resid: try (0...c.nLayer).map { _ in try floatBuffer(T * d) }, zx: try (0..<c.nLayer).map { _ in try actBuffer(T * E) },
            normed: try actBuffer(T * d), x: try actBuffer(T * S), B: try actBuffer(T * G * N), C: try actBuffer(T * G * N),
            dt: try floatBuffer(T * H), y: try actBuffer(keepY ? 1 : T * S), gated: try actBuffer(T * S), dy: try actBuffer(T * S),
            dGated: try actBuffer(T * S), dzx: try actBuffer(T * E), dNormed: try actBuffer(T * d),
            dresid: try floatBuffer(T * d), dresidAct: try actBuffer(T * d), headRows: headRows,
            logits: try floatBuffer(headRows * V), dlogits: try actBuffer(headRows * V), ssd: ssd)
        if keepY { w.savedY = try (0..<c.nLayer).map { _ in try actBuffer(T * S) } }
        if Self.segmentConv(c) {
            let sh = Self.segmentShared(actSize: actSize), tiles = (c.convDim + c.nHeads + 255) / 256
            func plan(_ f: CUDAKernel, _ shared: Int) throws -> (segment: Int, grid: Int) {
                let resident = try residentBlocks(f, threads: 256, shared: shared)
                let segments = max(1, resident / tiles), tileTokens = Self.segmentTile
                let segment = ((T + segments - 1) / segments + tileTokens - 1) / tileTokens * tileTokens
                return (segment, (T + segment - 1) / segment)
            }
            let K8 = c.dConv > 4
            w.convSegments = (try plan(K8 ? k.convSegment8 : k.convSegment4, sh.forward),
                              try plan(K8 ? k.convSegmentBackward8 : k.convSegmentBackward4, sh.backward))
        }
        let st = Self.rowStages(actSize: actSize), use = Self.rowKernels(c, actSize: actSize)
        w.rowLaunches = (use.norm ? try rowLaunch(k.rmsnormRows, T: T, columns: d, stage: st.norm) : nil,
                         use.norm ? try rowLaunch(k.rmsnormBackwardRows, T: T, columns: d, stage: st.normBackward) : nil,
                         use.gated ? try rowLaunch(k.gatedNormRows, T: T, columns: S, stage: st.gated) : nil,
                         use.gated ? try rowLaunch(k.gatedNormBackwardRows, T: T, columns: S, stage: st.gatedBackward) : nil)
        return w
    }

    /// Layer l's SSD output: its own when kept, else the shared scratch.
    func ssdOutput(_ w: Workspace, layer l: Int) -> CUDABuffer { l < w.savedY.count ? w.savedY[l] : w.y }

    /// Tokens a thread of the conv kernels slides over (CT), and rows a block of the RMSNorm's backward (RB)
    /// and of the gated norm's backward (GRB) takes.
    static let convTokens = 32, normRows = 16, gatedNormRows = 32
    /// The conv kernels' staged tiles (see their source): inputs, output gradients and document starts.
    var convShared: (forward: Int, backward: Int) {
        let t = Self.convTokens
        return ((t + 7) * 256 * actSize + t * 4, (2 * t + 21) * 256 * actSize + (t + 7) * 4)
    }

    /// The gated norm's 16-byte path: bf16, and rows (S, E) and groups that are whole multiples of 8 values
    /// (every released shape).
    var gatedNormVector: Bool {
        let c = config
        return bf16 && c.dSSM % 8 == 0 && c.inProjSize % 8 == 0 && (c.dSSM / c.nGroups) % 8 == 0
    }

    /// Element size of activations, for addresses within act buffers.
    var actSize: Int { bf16 ? 2 : 4 }

    /// The norms' row kernels (`CUDAKernelSource.trainingNorms`): a thread per 8 columns (rounded up to a
    /// warp), a pipeline of `rowPipeline` stages of `stage` bytes a thread in shared memory.
    static let rowPipeline = 4
    static func rowThreads(_ columns: Int) -> Int { (columns / 8 + 31) / 32 * 32 }
    /// Stage bytes a thread: the forward's x (8 floats); the backward's x, g (8 act values), dx; the gated
    /// norm's y, z, g.
    static func rowStages(actSize: Int) -> (norm: Int, normBackward: Int, gated: Int, gatedBackward: Int) {
        (32, 64 + 8 * actSize, 2 * 8 * actSize, 3 * 8 * actSize)
    }
    static func rowShared(columns: Int, stage: Int) -> Int { rowPipeline * rowThreads(columns) * stage }
    /// Whether the norms take the row kernels: rows and column offsets whole multiples of 8 values, at most
    /// 8,192 columns, at most 64 groups, the pipeline within 200 KB of shared memory.
    static func rowKernels(_ c: Mamba2Config, actSize: Int) -> (norm: Bool, gated: Bool) {
        let st = rowStages(actSize: actSize)
        let norm = c.dModel % 8 == 0 && c.dModel <= 8192 && rowShared(columns: c.dModel, stage: st.normBackward) <= 200 * 1024
        let gated = c.dSSM % 8 == 0 && c.dSSM <= 8192 && c.inProjSize % 8 == 0 && c.nGroups <= 64 && (c.dSSM / c.nGroups) % 8 == 0
            && rowShared(columns: c.dSSM, stage: st.gatedBackward) <= 200 * 1024
        return (norm, gated)
    }

    /// Blocks of `f` the whole GPU runs at once (the streaming kernels' grids: one wave, no tail).
    func residentBlocks(_ f: CUDAKernel, threads: Int, shared: Int) throws -> Int {
        max(1, try f.blocksPerMultiprocessor(threads: threads, sharedBytes: shared)) * max(device.multiprocessors, 1)
    }

    /// A row kernel's launch over T rows: as many blocks as the GPU runs at once (at most T), each a
    /// contiguous range of `rows` rows, so that no partial wave trails.
    struct RowLaunch { let grid, rows, threads, shared: Int }
    func rowLaunch(_ f: CUDAKernel, T: Int, columns: Int, stage: Int) throws -> RowLaunch {
        let threads = Self.rowThreads(columns), shared = Self.rowShared(columns: columns, stage: stage)
        let resident = try residentBlocks(f, threads: threads, shared: shared)
        let rows = (T + min(T, resident) - 1) / min(T, resident)
        return RowLaunch(grid: (T + rows - 1) / rows, rows: rows, threads: threads, shared: shared)
    }

    /// normed = RMSNorm(x)·weight; with copy, x is copied there as well (the next layer's residual stream).
    func rmsnorm(_ w: Workspace, x: CUDABuffer, weight: CUDABuffer, copy: CUDABuffer? = nil) throws {
        let d = config.dModel
        let a = KernelArguments()
        if let r = w.rowLaunches?.norm {
            a.add(Int32(w.T)); a.add(Int32(d)); a.add(Int32(r.rows)); a.add(config.rmsNormEps); a.add(x); a.add(weight)
            a.add(w.normed); a.add(copy?.pointer ?? 0)
            try k.rmsnormRows.launch(grid: (r.grid, 1, 1), block: (r.threads, 1, 1), sharedBytes: r.shared, arguments: a)
        } else {
            a.add(Int32(d)); a.add(config.rmsNormEps); a.add(x); a.add(weight); a.add(w.normed); a.add(copy?.pointer ?? 0)
            try k.rmsnorm.launch(grid: (w.T, 1, 1), block: (256, 1, 1), arguments: a)
        }
    }

    /// The conv's streaming kernels (`CUDAKernelSource.trainingConv`): taken where every row start, column
    /// offset and the x/B/C boundaries are whole multiples of 8 values; tiles of `segmentTile` tokens, two in
    /// shared memory at a time (forward: inputs; backward: inputs and output gradients) with their document
    /// starts.
    static let segmentTile = 32
    static func segmentConv(_ c: Mamba2Config) -> Bool {
        [c.convDim, c.dSSM, c.nGroups * c.dState, c.inProjSize, c.xbcOffset].allSatisfy { $0 % 8 == 0 }
    }
    static func segmentShared(actSize: Int) -> (forward: Int, backward: Int) {
        let t = segmentTile
        return (2 * (t * 256 * actSize + t * 4), 2 * (2 * t * 256 * actSize + t * 4))
    }

    func conv(_ w: Workspace, layer l: Int, views lv: LayerViews) throws {
        let c = config
        let a = KernelArguments()
        if let seg = w.convSegments?.forward {
            for v in [w.T, c.convDim, c.dConv, c.dSSM, c.nGroups * c.dState, c.nHeads, c.inProjSize, c.xbcOffset, c.dtOffset, seg.segment] { a.add(Int32(v)) }
            a.add(w.zx[l]); a.add(w.docStart); a.add(lv.convW!); a.add(lv.convB?.pointer ?? 0); a.add(w.x); a.add(w.B); a.add(w.C); a.add(w.dt)
            return try (c.dConv <= 4 ? k.convSegment4 : k.convSegment8).launch(grid: (seg.grid, (c.convDim + c.nHeads + 255) / 256, 1), block: (256, 1, 1),
                                                                               sharedBytes: Self.segmentShared(actSize: actSize).forward, arguments: a)
        }
        for v in [w.T, c.convDim, c.dConv, c.dSSM, c.nGroups * c.dState, c.nHeads, c.inProjSize, c.xbcOffset, c.dtOffset] { a.add(Int32(v)) }
        a.add(w.zx[l]); a.add(w.docStart); a.add(lv.convW!); a.add(lv.convB?.pointer ?? 0); a.add(w.x); a.add(w.B); a.add(w.C); a.add(w.dt)
        try (config.dConv <= 4 ? k.conv4 : k.conv8).launch(grid: ((w.T + Self.convTokens - 1) / Self.convTokens, (c.convDim + c.nHeads + 255) / 256, 1), block: (256, 1, 1),
                          sharedBytes: convShared.forward, arguments: a)
    }

    func gatedNorm(_ w: Workspace, layer l: Int, views lv: LayerViews) throws {
        let c = config
        let a = KernelArguments()
        if let r = w.rowLaunches?.gated {
            a.add(Int32(w.T)); a.add(Int32(c.dSSM)); a.add(Int32(c.nGroups)); a.add(Int32(r.rows)); a.add(c.rmsNormEps); a.add(ssdOutput(w, layer: l))
            a.add(w.zx[l]); a.add(Int32(c.inProjSize)); a.add(lv.gateNorm!); a.add(w.gated)
            return try k.gatedNormRows.launch(grid: (r.grid, 1, 1), block: (r.threads, 1, 1), sharedBytes: r.shared, arguments: a)
        }
        a.add(Int32(w.T)); a.add(Int32(c.dSSM)); a.add(Int32(c.nGroups)); a.add(c.rmsNormEps); a.add(ssdOutput(w, layer: l)); a.add(w.zx[l])
        a.add(Int32(c.inProjSize))
        a.add(lv.gateNorm!); a.add(w.gated); a.add(Int32(gatedNormVector ? 1 : 0))
        try k.gatedNorm.launch(grid: ((w.T + 7) / 8, 1, 1), block: (256, 1, 1), arguments: a)
    }

    /// The tensor-core SSD's forward and backward descriptions for layer l over the workspace.
    func tcPrepared(_ w: Workspace, layer l: Int, views lv: LayerViews) throws -> CUDATensorCoreSSDBackward.Prepared {
        let c = config, s = w.ssd
        let (H, G) = (c.nHeads, c.nGroups)
        let fwd = CUDATensorCoreSSD.Prepared(
            b: w.rows, L: w.length, H: H, G: G, nchunks: s.nchunks,
            hb: try CUDATensorCoreSSD.headsPerBlock(rows: w.rows, chunks: s.nchunks, heads: H, groups: G),
            x: w.x, dt: w.dt, A: A.view(at: l * H, count: H), B: w.B, C: w.C, y: ssdOutput(w, layer: l), dtOut: s.dtOut, cumOut: s.cumOut,
            states: s.states, statesIn: s.statesIn, chunkDecay: s.chunkDecay, finalStates: s.finalStates, dtBias: lv.dtBias, D: lv.D, z: nil,
            initial: nil, dPerChannel: c.dHasHeadDim, softplus: true, lo: c.dtLimit.lo, hi: c.dtLimit.hi, packed: w.packed, sequenceStates: nil)
        return CUDATensorCoreSSDBackward.Prepared(
            fwd: fwd, gradY: w.dy, gradFinal: nil, dYp: w.dy, dHout: s.dHout, dHscale: s.dHscale!, dStates: s.dStates, gScale: s.gScale!, ddecayPart: s.ddecayPart!, parts: s.parts,
            dCBsum: s.dCBsum!, hsplit: s.hsplit, dcumP: s.dcumP!, ddtP: s.ddtP!, wdw: s.wdw!, offP: s.offP!, dApart: s.dApart!, dBiasPart: s.dBiasPart!,
            Dpart: s.Dpart, dX: s.dX, dB: s.dB, dC: s.dC, dRaw: s.dRaw, dBias: s.dBias, dA: s.dA, dD: s.dD, dz: nil, dInitial: nil)
    }

    /// The plain float32 SSD's descriptions for layer l.
    func plainPrepared(_ w: Workspace, layer l: Int, views lv: LayerViews) -> CUDASSDBackward.Prepared {
        let c = config, s = w.ssd
        let (H, G) = (c.nHeads, c.nGroups)
        let fwd = CUDASSD.Prepared(
            b: w.rows, L: w.length, H: H, P: c.headDim, G: G, N: c.dState, Q: s.Q, nchunks: s.nchunks, x: w.x, dt: w.dt,
            A: A.view(at: l * H, count: H), B: w.B, C: w.C, y: w.y, dtOut: s.dtOut, cumOut: s.cumOut, chunkStates: s.states,
            chunkDecay: s.chunkDecay, statesIn: s.statesIn, finalStates: s.finalStates, CB: s.CB!, dtBias: lv.dtBias, D: lv.D, z: nil,
            initial: nil, dPerChannel: c.dHasHeadDim, softplus: true, lo: c.dtLimit.lo, hi: c.dtLimit.hi, packed: w.packed, sequenceStates: nil)
        return CUDASSDBackward.Prepared(
            fwd: fwd, gradY: w.dy, gradFinal: nil, dYp: w.dGated.view(at: 0, count: w.T * c.dSSM), dHout: s.dHout, dStates: s.dStates,
            ddecay: s.ddecay!, dCB: s.dCB!, Z: s.Z!, gdt: s.gdt!, dApart: s.dApartPlain!, dRaw64: s.dRaw64!, dBh: s.dBh!, dCh: s.dCh!,
            dX: s.dX, dRaw: s.dRaw, dBias: s.dBias, dA: s.dA, dB: s.dB, dC: s.dC, dD: s.dD, dz: nil, dInitial: nil)
    }

    func ssdForward(_ w: Workspace, layer l: Int, views lv: LayerViews) throws {
        if let tc { try tc.forward.launch(try tcPrepared(w, layer: l, views: lv).fwd) } else {
            try plain!.forward.launch(plainPrepared(w, layer: l, views: lv).fwd)
        }
    }

    func forward(_ w: Workspace) throws {
        let c = config
        let (d, E, S, H) = (c.dModel, c.inProjSize, c.dSSM, c.nHeads)
        // A = −exp(A_log), a launch per layer (each layer's A_log is its own range of the flat buffer)
        for l in 0..<c.nLayer {
            let a = KernelArguments()
            a.add(Int32(H)); a.add(try view(params, "backbone.layers.\(l).mixer.A_log")); a.add(A.view(at: l * H, count: H))
            try k.negExp.launch(grid: (1, 1, 1), block: (max(32, (H + 31) / 32 * 32), 1, 1), arguments: a)
        }
        let ae = KernelArguments()
        ae.add(Int32(d)); ae.add(w.tokens); ae.add(try view(params, "backbone.embedding.weight")); ae.add(w.resid[0])
        try k.embed.launch(grid: (w.T, 1, 1), block: (256, 1, 1), arguments: ae)
        for l in 0..<c.nLayer {
            let lv = try layerViews(params, l)
            let p = "backbone.layers.\(l).mixer."
            // the next layer's residual stream starts as a copy of this one's (out_proj adds into it)
            try part("fwd rmsnorm") { try rmsnorm(w, x: w.resid[l], weight: lv.norm!, copy: w.resid[l + 1]) }
            try part("fwd in_proj") {
                try mm.forward(rows: w.T, out: E, in: d, x: w.normed.pointer, w: try weightAddress(p + "in_proj.weight"), y: w.zx[l].pointer,
                               beta: 0, outputActivation: true)
            }
            try part("fwd conv") { try conv(w, layer: l, views: lv) }
            try part("fwd ssd") { try ssdForward(w, layer: l, views: lv) }
            try part("fwd gated norm") { try gatedNorm(w, layer: l, views: lv) }
            try part("fwd out_proj") {
                try mm.forward(rows: w.T, out: d, in: S, x: w.gated.pointer, w: try weightAddress(p + "out_proj.weight"), y: w.resid[l + 1].pointer,
                               beta: 1, outputActivation: false)
            }
        }
    }

    /// The final norm, the tied (or own) head and the cross-entropy, `headRows` rows of logits at a time; with
    /// `backward`, the head's gradients and the final norm's, leaving d loss/d residual in dresid.
    /// The loss is summed over the targets and divided by `normalizer` (the gradients with it).
    func head(_ w: Workspace, normalizer: Double, backward: Bool) throws {
        let c = config
        let (d, V, T) = (c.dModel, c.paddedVocabSize, w.T)
        let headName = c.tieEmbeddings ? "backbone.embedding.weight" : "lm_head.weight"
        let headW = try weightAddress(headName)
        let normF = try view(params, "backbone.norm_f.weight")
        try part("head rmsnorm") { try rmsnorm(w, x: w.resid[c.nLayer], weight: normF) }
        try scalars.fill(at: 2, words: 2, bitPattern: 0)
        var r0 = 0
        while r0 < T {
            let n = min(w.headRows, T - r0)
            let nf = w.normed.pointer + UInt64(r0 * d * actSize)
            try part("head logits") { try mm.forward(rows: n, out: V, in: d, x: nf, w: headW, y: w.logits.pointer, beta: 0, outputActivation: false) }
            let a = KernelArguments()
            a.add(Int32(V)); a.add(w.logits); a.add(w.targets.pointer + UInt64(r0 * 4)); a.add(Float(1 / normalizer))
            a.add(scalars.pointer + 8); a.add(backward ? w.dlogits.pointer : 0)
            try part("head cross-entropy") { try k.crossEntropy.launch(grid: (n, 1, 1), block: (256, 1, 1), arguments: a) }
            if backward {
                try part("head dX") {
                    try mm.backwardInput(rows: n, out: V, in: d, dy: w.dlogits.pointer, w: headW, dx: w.dNormed.pointer + UInt64(r0 * d * actSize), beta: 0,
                                         outputActivation: true)
                }
                try part("head dW") { try mm.backwardWeight(rows: n, out: V, in: d, dy: w.dlogits.pointer, x: nf, dw: try view(grads, headName).pointer) }
            }
            r0 += n
        }
        guard backward else { return }
        try w.dresid.fill(bitPattern: 0)
        try part("head rmsnorm backward") {
            try rmsnormBackward(w, x: w.resid[c.nLayer], weight: normF, grad: try view(grads, "backbone.norm_f.weight"), remakeOutput: false)
        }
    }

    /// The RMSNorm's backward from dNormed into dresid (and dresidAct); with `remakeOutput`, normed is made
    /// again too (in_proj's weight gradient reads it next): by the row kernel on its way, else by the forward.
    func rmsnormBackward(_ w: Workspace, x: CUDABuffer, weight: CUDABuffer, grad: CUDABuffer, remakeOutput: Bool) throws {
        let d = config.dModel
        let a = KernelArguments()
        if let r = w.rowLaunches?.normBackward {
            a.add(Int32(w.T)); a.add(Int32(d)); a.add(Int32(r.rows)); a.add(config.rmsNormEps); a.add(x); a.add(weight); a.add(w.dNormed)
            a.add(w.dresid); a.add(w.dresidAct); a.add(remakeOutput ? w.normed.pointer : 0); a.add(grad)
            try k.rmsnormBackwardRows.launch(grid: (r.grid, 1, 1), block: (r.threads, 1, 1), sharedBytes: r.shared, arguments: a)
        } else {
            a.add(Int32(w.T)); a.add(Int32(d)); a.add(config.rmsNormEps); a.add(x); a.add(weight); a.add(w.dNormed); a.add(w.dresid)
            a.add(w.dresidAct); a.add(grad)
            try k.rmsnormBackward.launch(grid: ((w.T + Self.normRows - 1) / Self.normRows, 1, 1), block: (256, 1, 1), sharedBytes: d * 4, arguments: a)
            if remakeOutput { try rmsnorm(w, x: x, weight: weight) }
        }
    }

    /// The gated norm's backward from dGated into dy and dzx's z columns (and its weight's gradient), making
    /// its output `gated` again on the way (out_proj's weight gradient reads it next): the row kernel in one
    /// pass, else the forward kernel, then the backward's.
    func gatedNormBackward(_ w: Workspace, layer l: Int, views lv: LayerViews, grads gv: LayerViews) throws {
        let c = config
        let (S, E) = (c.dSSM, c.inProjSize)
        let a = KernelArguments()
        if let r = w.rowLaunches?.gatedBackward {
            a.add(Int32(w.T)); a.add(Int32(S)); a.add(Int32(c.nGroups)); a.add(Int32(r.rows)); a.add(c.rmsNormEps)
            a.add(ssdOutput(w, layer: l)); a.add(w.zx[l]); a.add(Int32(E)); a.add(lv.gateNorm!); a.add(w.dGated); a.add(w.dy); a.add(w.dzx)
            a.add(w.gated); a.add(gv.gateNorm!)
            return try k.gatedNormBackwardRows.launch(grid: (r.grid, 1, 1), block: (r.threads, 1, 1), sharedBytes: r.shared, arguments: a)
        }
        try gatedNorm(w, layer: l, views: lv)
        a.add(Int32(w.T)); a.add(Int32(S)); a.add(Int32(c.nGroups)); a.add(c.rmsNormEps); a.add(ssdOutput(w, layer: l)); a.add(w.zx[l])
        a.add(Int32(E)); a.add(lv.gateNorm!); a.add(w.dGated); a.add(w.dy); a.add(w.dzx); a.add(gv.gateNorm!); a.add(Int32(gatedNormVector ? 1 : 0))
        try k.gatedNormBackward.launch(grid: ((w.T + Self.gatedNormRows - 1) / Self.gatedNormRows, 1, 1), block: (256, 1, 1), sharedBytes: S * 4, arguments: a)
    }

    /// The layers' backward, last to first. (Running the weight gradients' products on a second stream beside
    /// the memory-bound kernels after them was tried: no gain at 370m or 1.3b, since cuBLAS's products hold
    /// every multiprocessor while they run.)
    func backward(_ w: Workspace) throws {
        let c = config
        let (d, E, S, H, CD) = (c.dModel, c.inProjSize, c.dSSM, c.nHeads, c.convDim)
        let nD = c.dHasHeadDim ? S : H
        for l in stride(from: c.nLayer - 1, through: 0, by: -1) {
            let lv = try layerViews(params, l), gv = try layerViews(grads, l)
            let p = "backbone.layers.\(l).mixer."
            // recompute the block's inside from the saved zx (and y): the conv's outputs, and the SSD's
            // chunk states (or its whole forward)
            try part("bwd conv (recomputed)") { try conv(w, layer: l, views: lv) }
            let tcp = tc == nil ? nil : try tcPrepared(w, layer: l, views: lv)
            if let tcp, let tc, !w.savedY.isEmpty {
                try part("bwd ssd states (recomputed)") { try tc.forward.launch(tcp.fwd, only: 0); try tc.forward.launch(tcp.fwd, only: 1) }
            } else {
                try part("bwd ssd forward (recomputed)") { try ssdForward(w, layer: l, views: lv) }
            }
            // out_proj's input gradient (dresidAct: this block's output gradient in act), the gated norm's
            // backward → dy and dzx's z columns (the row kernel remakes the norm's output), out_proj's dW
            try part("bwd out_proj dX") {
                try mm.backwardInput(rows: w.T, out: d, in: S, dy: w.dresidAct.pointer, w: try weightAddress(p + "out_proj.weight"),
                                     dx: w.dGated.pointer, beta: 0, outputActivation: true)
            }
            try part("bwd gated norm") { try gatedNormBackward(w, layer: l, views: lv, grads: gv) }
            let outBeta = try gradientBeta(p + "out_proj.weight"), inBeta = try gradientBeta(p + "in_proj.weight")
            try part("bwd out_proj dW") {
                try mm.backwardWeight(rows: w.T, out: d, in: S, dy: w.dresidAct.pointer, x: w.gated.pointer, dw: gv.outProj!.pointer, beta: outBeta)
            }
            // SSD
            try part("bwd ssd") {
                if let tc, let tcp { try tc.launchBackward(tcp) } else { try plain!.launch(plainPrepared(w, layer: l, views: lv)) }
            }
            let s = w.ssd
            let ah = KernelArguments()
            ah.add(Int32(H)); ah.add(Int32(nD)); ah.add(s.dA); ah.add(A.view(at: l * H, count: H)); ah.add(gv.aLog!); ah.add(s.dBias)
            ah.add(gv.dtBias!); ah.add(s.dD); ah.add(gv.D!)
            try part("bwd head grads") { try k.headGradients.launch(grid: (1, 1, 1), block: (256, 1, 1), arguments: ah) }
            // conv + SiLU → dzx's xBC and dt columns, the conv's weight and bias gradients
            let ap = KernelArguments()
            let seg = w.convSegments?.backward
            for v in [w.T, CD, c.dConv, S, c.nGroups * c.dState, H, E, c.xbcOffset, c.dtOffset] { ap.add(Int32(v)) }
            if let seg { ap.add(Int32(seg.segment)) }
            ap.add(w.zx[l]); ap.add(w.docStart); ap.add(lv.convW!); ap.add(lv.convB?.pointer ?? 0); ap.add(s.dX); ap.add(s.dB); ap.add(s.dC)
            ap.add(s.dRaw); ap.add(w.dzx); ap.add(gv.convW!); ap.add(gv.convB?.pointer ?? 0)
            try part("bwd conv") {
                if let seg {
                    try (c.dConv <= 4 ? k.convSegmentBackward4 : k.convSegmentBackward8).launch(
                        grid: (seg.grid, (CD + H + 255) / 256, 1), block: (256, 1, 1), sharedBytes: Self.segmentShared(actSize: actSize).backward, arguments: ap)
                } else {
                    try (c.dConv <= 4 ? k.convBackward4 : k.convBackward8).launch(grid: ((w.T + Self.convTokens - 1) / Self.convTokens, (CD + H + 255) / 256, 1),
                                                                                  block: (256, 1, 1), sharedBytes: convShared.backward, arguments: ap)
                }
            }
            // in_proj's input gradient, the block norm's backward (the row kernel remakes in_proj's input),
            // in_proj's dW
            try part("bwd in_proj dX") {
                try mm.backwardInput(rows: w.T, out: E, in: d, dy: w.dzx.pointer, w: try weightAddress(p + "in_proj.weight"), dx: w.dNormed.pointer, beta: 0,
                                     outputActivation: true)
            }
            try part("bwd rmsnorm") { try rmsnormBackward(w, x: w.resid[l], weight: lv.norm!, grad: gv.norm!, remakeOutput: true) }
            try part("bwd in_proj dW") {
                try mm.backwardWeight(rows: w.T, out: E, in: d, dy: w.dzx.pointer, x: w.normed.pointer, dw: gv.inProj!.pointer, beta: inBeta)
            }
            try afterLayerBackward?(l)
        }
        let a = KernelArguments()
        a.add(Int32(d)); a.add(w.tokens); a.add(w.dresid); a.add(try view(grads, "backbone.embedding.weight"))
        try part("bwd embedding") { try k.embedBackward.launch(grid: (w.T, 1, 1), block: (256, 1, 1), arguments: a) }
    }
}

extension CUDATrainer {
    /// The bf16 matrix-product rate this GPU reaches now (FLOP/s): cuBLAS on 8192³ products with float32
    /// accumulation, the best of five timings of four products each. MFU is quoted against it.
    public static func measuredBF16Peak(device: CUDADevice) throws -> Double {
        let n = 8192
        let mm = try CUDAMatmul(device: device, bf16: true)
        let a = try CUDABuffer(count: n * n / 2, on: device), b = try CUDABuffer(count: n * n / 2, on: device)
        let c = try CUDABuffer(count: n * n / 2, on: device)
        for x in [a, b] { try x.fill(bitPattern: 0x3C00_3C00) }  // bf16 0.0078 pairs: finite products
        var best = Double.infinity
        for rep in 0..<6 {
            try device.synchronize()
            let t0 = monotonicSeconds()
            for _ in 0..<4 { try mm.forward(rows: n, out: n, in: n, x: a.pointer, w: b.pointer, y: c.pointer, beta: 0, outputActivation: true) }
            try device.synchronize()
            if rep > 0 { best = min(best, (monotonicSeconds() - t0) / 4) }  // the first warms up
        }
        return 2 * Double(n) * Double(n) * Double(n) / best
    }
}
