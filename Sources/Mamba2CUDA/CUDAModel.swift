import Mamba2
import CMamba2CUDA
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A Mamba-2 language model on an NVIDIA GPU, the same computation as `Mamba2Model` (its CPU reference):
/// prefill runs the projections through cuBLAS and the SSD through the chunked kernels (tensor cores for
/// 16-bit precisions when P = 64 and N ∈ {32, 64, 96, 128}, else the plain float32 kernels); decode runs
/// one token per sequence as a CUDA graph of fused kernels (`CUDAKernelSource.model`), so a token costs
/// about one read of the weights and a handful of microseconds of launches.
///
/// States live on the device: per layer the conv window and the SSM state of up to `capacity` rows.
/// Prefill starts those rows from zero (new sequences, of one length or packed); decode continues them.
public final class CUDAModel: @unchecked Sendable {
    /// The weights' and matrix inputs' type (the CPU model's decode-weight type, same three cases);
    /// accumulation, the residual stream and states are float32.
    public typealias Precision = WeightType

    /// The decode state's element type. float32 is the default; bf16 halves the bytes a decode step moves
    /// through its state (what mamba_ssm keeps for a bf16 model), rounding the state once per token. Prefill
    /// computes in float32 and rounds its final states.
    public enum StateType: String, CaseIterable, Sendable { case f32, bf16 }

    public let device: CUDADevice
    public let config: Mamba2Config
    public let precision: Precision
    let k: ModelKernels
    /// The SSD of prefill: tensor cores when the shape and precision allow, else the plain kernels.
    package let tc: CUDATensorCoreSSD?
    let plain: CUDASSD?

    struct Layer {
        let norm: CUDABuffer          // (d_model) f32                block RMSNorm
        let inProj: CUDABuffer        // (in_proj_size, d_model)      precision
        let inProjBias: CUDABuffer?   // (in_proj_size) f32
        let convW: CUDABuffer         // (conv_dim, d_conv) f32
        let convB: CUDABuffer?        // (conv_dim) f32
        let dtBias, A: CUDABuffer     // (H) f32; A = −exp(A_log)
        let D: CUDABuffer             // (H) or (d_ssm) f32
        let gateNorm: CUDABuffer      // (d_ssm) f32
        let outProj: CUDABuffer       // (d_model, d_ssm)             precision
        let outProjBias: CUDABuffer?  // (d_model) f32
    }
    let layers: [Layer]
    let embedding: CUDABuffer         // (padded_vocab, d_model)      precision
    let lmHead: CUDABuffer            // the embedding itself when tied
    let normF: CUDABuffer             // (d_model) f32

    /// The decode state's element type (`StateType`); changing it drops the rows held.
    public var stateType: StateType = .f32 {
        didSet {
            guard stateType != oldValue else { return }
            capacity = 0; rows = 0; convStates = []; ssmStates = []; staging = ([], []); stagingRows = 0; graphs = [:]
            for p in peers { p.stateType = stateType }
        }
    }
    /// Bytes of one SSM state value.
    var stateBytes: Int { stateType == .bf16 ? 2 : 4 }
    /// (rows, H, P, N) f32: prefill's final SSM states of one layer before they are rounded into a bf16 state.
    var stateScratch: CUDABuffer?

    /// Rows the states and decode buffers hold now.
    public private(set) var capacity = 0
    var convStates: [CUDABuffer] = []  // per layer (capacity, d_conv − 1, conv_dim)
    var ssmStates: [CUDABuffer] = []   // per layer (capacity, H, P, N)
    /// Decode buffers, (capacity, ·) float32 unless said.
    var residual1: CUDABuffer!        // (rows, d_model)
    var zx1: CUDABuffer!              // (rows, in_proj_size)
    var xbc1: CUDABuffer!             // (rows, conv_dim)
    var y1: CUDABuffer!               // (rows, d_ssm)
    package var logits1: CUDABuffer!          // (rows, padded_vocab)
    var normed1: CUDABuffer!          // (rows, max(d_model, d_ssm)) precision: cuBLAS's input for many rows
    /// The streaming decode's hand-overs (`CUDAKernelSource.decodeStream`): a product's input times its
    /// norm's weight, in the precision, and the producer's partial sums of squares per row.
    var xhModel: CUDABuffer!          // (rows, d_model) precision: into in_proj and the head
    var xhSSM: CUDABuffer!            // (rows, d_ssm) precision: into out_proj
    /// Whether `gateHandOver` may be taken (MAMBA2_GATE_HANDOVER=0 turns it off, for timing it against the gated norm kernel).
    package var gateHandOverAllowed = environment("MAMBA2_GATE_HANDOVER") != "0" { didSet { graphs = [:] } }
    var outProduct1: CUDABuffer!      // (slices, rows, d_model) f32: out_proj's product before its gated norm's scale (`gateHandOver`), in up to
                                      // decodeMaxSlices partial products at up to gateHandOverRows rows (`decodeSlices`)
    var ssqModel: CUDABuffer!         // (rows, streamSlotsModel) f32: from the embedding or out_proj
    var ssqSSM: CUDABuffer!           // (rows, H·P/32) f32: from the SSD step
    var tokens1: CUDABuffer!          // (rows) int32: the tokens fed to the next step
    var chosenLogprob1: CUDABuffer!   // (rows) f32: log-probability of each row's argmax (stepArgmax), right after tokens1
    var choice1: CUDABuffer!          // (2, rows): tokens1 then chosenLogprob1
    /// What tokens1 holds after a stepArgmax (its own choices), so that the next one need not upload them.
    var tokensHeld: [Int32]?
    /// Rows of a stepArgmax launched and not yet collected.
    var argmaxInFlight: Int?
    /// Its choices, once downloaded (before something else needed tokens1, or by collectArgmax).
    var settledChoices: [(id: Int, logprob: Float)]?
    let counter: CUDABuffer           // (1) int32: graph decode steps run
    var history: CUDABuffer?          // (steps, rows) int32: tokens chosen by graph decode
    var historyCapacity = 0
    /// One decode graph per number of rows (n: greedy decode; −n: a step that returns logits).
    var graphs: [Int: CUDAGraph] = [:]
    /// Decode's cuBLAS products, the algorithm timing chose per shape (`CUDADecodeProducts.swift`).
    var decodeProducts: [DecodeProductShape: DecodeProductChoice] = [:]
    /// Whether decode's cuBLAS products are timed and the fastest algorithm kept (else cublasGemmEx's own
    /// choice): the self-test compares the two.
    package var decodeProductTuning = true { didSet { graphs = [:]; decodeProducts = [:] } }
    /// With a value, tuning takes cuBLASLt's candidate of that index for every product where it runs, whatever its
    /// speed (the self-test checks candidates against cublasGemmEx this way).
    package var decodeProductCandidate: Int? { didSet { graphs = [:]; decodeProducts = [:] } }
    /// With a value, tuning cuts every sliceable product into that many slices (`decodeSliceCounts`), whatever its speed.
    package var decodeProductSliceCount: Int? { didSet { graphs = [:]; decodeProducts = [:] } }
    /// Which decode path runs: `.automatic` picks per row count (`persistent(rows:)`, then `streams(rows:)`);
    /// the self-test and `bench --profile` force `.plain` (m_gemv / cuBLAS, the reference), `.streaming` (at
    /// every row count it serves, 1–16) or `.persistent` (one row as one kernel at any layer size; other row
    /// counts as `.automatic`).
    package enum DecodePath: Sendable { case automatic, plain, streaming, persistent }
    package var decodePath = DecodePath.automatic { didSet { graphs = [:] } }
    /// The persistent decode's dot products take the two-rows-at-a-time layout for inputs of at least this many
    /// values (`CUDAKernelSource.decodePersistent`, pd_job_dot_pairs), the x̂-as-row-0 one below it. The
    /// self-test forces each (0: pairs everywhere; Int.max: never) against the plain path.
    package var persistentPairsFrom = CUDAModel.persistentPairsInput { didSet { graphs = [:] } }
    /// Rows up to which the plain decode path runs its products as m_gemv (cuBLAS beyond): set from the shape
    /// (`plainGEMVRowsDefault`); `bench --profile` lowers it to time cuBLAS at those rows too.
    package var plainGEMVRows = CUDAModel.gemvRows { didSet { graphs = [:] } }
    /// Prefill's conv runs m_conv_prefill (a thread per channel and token, the reference) instead of
    /// m_conv_prefill_run: the self-test compares the two.
    package var plainPrefillConv = false
    /// Decode's SSD step of a bf16 state runs m_ssd_step_n128 (a block an item) instead of
    /// m_ssd_step_ring_bf16 (`ssdStepRing`): the self-test compares the two.
    package var referenceSSDStep = false { didSet { graphs = [:] } }
    /// Blocks of m_ssd_step_ring_bf16 resident at once on the device, per number of ring stages (asked once each).
    var ssdRingBlocks: [Int: Int] = [:]
    /// The persistent decode's layer table (13 addresses a layer), counters (the launch count, one per phase's
    /// job claims), the embedding's hand-over sums (one per multiprocessor) and the tagged hand-overs between
    /// blocks: `preparePersistent`.
    var persistentTable, persistentBarrier, persistentSSQ, persistentHandOvers: CUDABuffer?
    /// Whether this model's shape and device allow the persistent decode (bf16, one group, sm_90, the ring
    /// fits and a block of it is resident on each multiprocessor).
    var persistentShapeFits = false
    /// Rows in use (set by prefill).
    public private(set) var rows = 0
    /// Tensor parallelism (`CUDAModelTensorParallel.swift`): this rank's place in the split, set on every rank;
    /// on rank 0, which drives them all, the other ranks and how their out_proj products are added.
    var tensorParallel: TensorParallelRank?
    var peers: [CUDAModel] = []
    var reduction: (any CUDARankReduction)?
    /// Every rank this model drives: itself, then its peers (itself alone without tensor parallelism).
    var ranks: [CUDAModel] { [self] + peers }
    /// One row's conv window and SSM state: the middle of a swap of two rows.
    var swapRow: (CUDABuffer, CUDABuffer)?

    /// Uploads a CPU model's weights, rounded to `precision`.
    public convenience init(device: CUDADevice, model: Mamba2Model, precision: Precision) throws {
        let named = model.weights.namedTensors(model.config).map { ($0.0, $0.1.data) }
        try self.init(device: device, config: model.config, precision: precision, values: Dictionary(uniqueKeysWithValues: named))
    }

    /// Random weights of a config, from the distributions of `Mamba2Weights.random` but not its values: the
    /// large matrices are drawn on the device (benchmarks of released shapes need no checkpoint or host copy).
    public convenience init(device: CUDADevice, randomWeights config: Mamba2Config, seed: UInt64, precision: Precision) throws {
        try self.init(device: device, config: config, precision: precision,
                      values: Mamba2Weights.randomValues(config, seed: seed, matrices: false))
        // The matrices, normal with std 0.02, each from its own stream of the seed.
        var stream = seed &* 0x9E37_79B9_7F4A_7C15
        func fill(_ b: CUDABuffer, _ n: Int) throws {
            stream &+= 0xD1B5_4A32_D192_ED03
            let a = KernelArguments()
            a.add(n); a.add(stream); a.add(Float(0.02)); a.add(b)
            try k.fillNormal.launch(grid: (1024, 1, 1), block: (256, 1, 1), arguments: a)
        }
        let c = config
        try fill(embedding, c.paddedVocabSize * c.dModel)
        if !c.tieEmbeddings { try fill(lmHead, c.paddedVocabSize * c.dModel) }
        for l in layers {
            try fill(l.inProj, c.inProjSize * c.dModel)
            try fill(l.outProj, c.dModel * c.dInner)
        }
        try device.synchronize()
    }

    /// Builds the model from float32 values under their state-spaces names (`Mamba2Weights.expectedShapes`);
    /// a matrix left out is allocated but not set.
    init(device: CUDADevice, config c: Mamba2Config, precision: Precision, values: [String: [Float]]) throws {
        guard WeightType.floatingPoint.contains(precision) else {
            throw Mamba2Error.invalidArgument("weights", reason: "\(precision.rawValue) is a CPU decode type; on a GPU use f32, bf16 or f16")
        }
        try c.validate()
        guard c.dMLP == 0 else {
            throw Mamba2Error.invalidArgument("config", reason: "d_ssm (\(c.dSSM)) < expand·d_model (\(c.dInner)): the gated-MLP branch is not on the GPU")
        }
        guard (c.dSSM / c.nGroups) % 4 == 0 else {
            throw Mamba2Error.invalidArgument("config", reason: "d_ssm / ngroups = \(c.dSSM / c.nGroups): the GPU's gated norm reads groups 4 values at a time, so it must be a multiple of 4")
        }
        for (name, v) in [("d_model", c.dModel), ("d_ssm", c.dSSM)] where v % 8 != 0 {
            throw Mamba2Error.invalidArgument("config", reason: "\(name) = \(v): the GPU's matrix-vector kernel reads rows 8 values at a time, so it must be a multiple of 8")
        }
        try device.openBLAS()
        self.device = device
        config = c
        self.precision = precision
        k = try ModelKernels(device: device, precision: precision)
        try k.gemv.allowSharedMemory(Self.gemvRows * max(c.dModel, c.dSSM) * 4)
        if device.hasSM90Features {  // the streaming products (sm_90 only) ask for more than sm_80/89 have
            for kernel in k.gemvTC.values { try kernel.allowSharedMemory(Self.streamSharedLimit) }
        }
        persistentShapeFits = Self.persistentFits(c, precision: precision, device: device, kernels: k)
        plainGEMVRows = Self.plainGEMVRowsDefault(c)
        let tcShape = c.headDim == CUDATensorCoreSSD.headDim && c.dState % 32 == 0 && c.dState <= 128
        if precision != .f32 && tcShape {
            tc = try CUDATensorCoreSSD(device: device, elementType: precision == .bf16 ? .bf16 : .f16, stateSize: c.dState)
            plain = nil
        } else {
            tc = nil
            plain = try CUDASSD(device: device)
        }
        let shapes = Dictionary(uniqueKeysWithValues: Mamba2Weights.expectedShapes(c).map { ($0.0, $0.1.reduce(1, *)) })
        func floats(_ name: String) throws -> [Float] {
            guard let v = values[name] else { throw Mamba2Error.invalidArgument(name, reason: "missing from the weights") }
            guard v.count == shapes[name] else { throw Mamba2Error.invalidArgument(name, reason: "\(v.count) values, expected \(shapes[name] ?? 0)") }
            return v
        }
        func matrix(_ name: String) throws -> CUDABuffer {
            guard values[name] != nil else { return try CUDABuffer(bytes: shapes[name]! * (precision == .f32 ? 4 : 2), on: device) }
            let v = try floats(name)
            return precision == .f32 ? try CUDABuffer(v, on: device) : try CUDABuffer(halves: roundedTo16Bits(v, bfloat: precision == .bf16), on: device)
        }
        func vector(_ name: String) throws -> CUDABuffer { try CUDABuffer(try floats(name), on: device) }
        func optionalVector(_ name: String) throws -> CUDABuffer? { shapes[name] == nil ? nil : try vector(name) }
        embedding = try matrix("backbone.embedding.weight")
        lmHead = c.tieEmbeddings ? embedding : try matrix("lm_head.weight")
        normF = try vector("backbone.norm_f.weight")
        layers = try (0..<c.nLayer).map { i in
            let p = "backbone.layers.\(i)."
            return Layer(
                norm: try vector(p + "norm.weight"), inProj: try matrix(p + "mixer.in_proj.weight"),
                inProjBias: try optionalVector(p + "mixer.in_proj.bias"), convW: try vector(p + "mixer.conv1d.weight"),
                convB: try optionalVector(p + "mixer.conv1d.bias"), dtBias: try vector(p + "mixer.dt_bias"),
                A: try CUDABuffer(try floats(p + "mixer.A_log").map { -exp($0) }, on: device), D: try vector(p + "mixer.D"),
                gateNorm: try vector(p + "mixer.norm.weight"), outProj: try matrix(p + "mixer.out_proj.weight"),
                outProjBias: try optionalVector(p + "mixer.out_proj.bias"))
        }
        counter = try CUDABuffer(count: 1, on: device)
    }

    /// Which file cuBLAS was loaded from.
    public static var blasPath: String { String(cString: mkc_blas_path()) }

    /// Bytes of weights one decode step reads (matrices in the precision, the rest float32).
    public var decodeWeightBytes: Int { Mamba2Model.decodeWeightBytes(config, matrices: precision) }

    /// Makes room for `n` rows of state and decode buffers. Rows already there keep their states; new rows
    /// start at zero.
    func reserve(rows n: Int) throws {
        for p in peers { try p.reserve(rows: n) }
        guard n > capacity else { return }
        let c = config
        graphs = [:]
        history = nil
        historyCapacity = 0
        let (convRow, ssmRow) = (Self.convRowFloats(c), Self.ssmRowFloats(c))
        func grown(_ old: [CUDABuffer], rowBytes: Int) throws -> [CUDABuffer] {
            try (0..<c.nLayer).map { l in
                let b = try CUDABuffer(bytes: n * rowBytes, on: device)
                try b.fill(bitPattern: 0)
                if l < old.count { try b.copy(bytes: capacity * rowBytes, from: old[l]) }
                return b
            }
        }
        convStates = try grown(convStates, rowBytes: convRow * 4)
        ssmStates = try grown(ssmStates, rowBytes: ssmRow * stateBytes)
        residual1 = try CUDABuffer(count: n * c.dModel, on: device)
        zx1 = try CUDABuffer(count: n * c.inProjSize, on: device)
        xbc1 = try CUDABuffer(count: n * c.convDim, on: device)
        y1 = try CUDABuffer(count: n * c.dSSM, on: device)
        outProduct1 = try CUDABuffer(count: max(n, Self.decodeMaxSlices * min(n, Self.gateHandOverRows)) * c.dModel, on: device)
        logits1 = try CUDABuffer(count: n * c.paddedVocabSize, on: device)
        normed1 = try CUDABuffer(count: n * max(c.dModel, c.dSSM), on: device)
        xhModel = try CUDABuffer(bytes: n * c.dModel * 2, on: device)
        xhSSM = try CUDABuffer(bytes: n * c.dSSM * (precision == .f32 ? 4 : 2), on: device)  // tensor parallelism hands over in float32 too
        ssqModel = try CUDABuffer(count: n * streamSlotsModel, on: device)
        ssqSSM = try CUDABuffer(count: n * Self.ssdRingWarps * streamSlotsSSM, on: device)  // room for the ring's slot a warp
        // tokens1 and chosenLogprob1 side by side: a step whose tokens the device chooses downloads both at once.
        choice1 = try CUDABuffer(count: 2 * n, on: device)
        tokens1 = choice1.view(at: 0, count: n)
        chosenLogprob1 = choice1.view(at: n, count: n)
        tokensHeld = nil
        swapRow = (try CUDABuffer(count: convRow, on: device), try CUDABuffer(bytes: ssmRow * stateBytes, on: device))
        try preparePersistent()
        try device.synchronize()
        capacity = n
    }

    /// Floats of one row's conv window, (d_conv − 1, conv_dim), and SSM state, (H, P, N), in one layer.
    static func convRowFloats(_ c: Mamba2Config) -> Int { (c.dConv - 1) * c.convDim }
    static func ssmRowFloats(_ c: Mamba2Config) -> Int { c.nHeads * c.headDim * c.dState }

    // MARK: state rows

    /// Row `row`'s state, every layer, copied to the host (with tensor parallelism, gathered from the ranks
    /// into the whole model's layout).
    public func downloadState(row: Int) throws -> (conv: [[Float]], ssm: [[Float]]) {
        precondition(row >= 0 && row < capacity)
        return peers.isEmpty ? try downloadOwnState(row: row) : try downloadRankStates(row: row)
    }

    /// Row `row`'s state as this device holds it (a rank's part: its conv channels and heads).
    func downloadOwnState(row: Int) throws -> (conv: [[Float]], ssm: [[Float]]) {
        let (cr, sr) = (Self.convRowFloats(config), Self.ssmRowFloats(config))
        var conv: [[Float]] = [], ssm: [[Float]] = []
        for l in 0..<config.nLayer {
            conv.append(try [Float](unsafeUninitializedCapacity: cr) { b, n in
                n = cr
                if cr > 0 { try CUDABuffer.download(convStates[l], at: row * cr, into: b) }
            })
            if stateType == .bf16 {
                let h = try ssmStates[l].download(halves: sr, at: row * sr)
                ssm.append(floatsFrom16Bits(h, bfloat: true))
                continue
            }
            ssm.append(try [Float](unsafeUninitializedCapacity: sr) { b, n in
                n = sr
                try CUDABuffer.download(ssmStates[l], at: row * sr, into: b)
            })
        }
        return (conv, ssm)
    }

    /// Sets row `row`'s state from host values (per layer, the sizes of `downloadState`).
    public func uploadState(row: Int, conv: [[Float]], ssm: [[Float]]) throws {
        precondition(row >= 0 && row < capacity)
        try peers.isEmpty ? uploadOwnState(row: row, conv: conv, ssm: ssm) : uploadRankStates(row: row, conv: conv, ssm: ssm)
    }

    /// Sets row `row`'s state as this device holds it (a rank's part).
    func uploadOwnState(row: Int, conv: [[Float]], ssm: [[Float]]) throws {
        let (cr, sr) = (Self.convRowFloats(config), Self.ssmRowFloats(config))
        for l in 0..<config.nLayer {
            precondition(conv[l].count == cr && ssm[l].count == sr)
            try convStates[l].upload(conv[l], atFloat: row * cr)
            if stateType == .bf16 {
                try ssmStates[l].upload(roundedTo16Bits(ssm[l], bfloat: true), atFloat: row * sr / 2)  // sr is even (H·P·N, P even)
            } else {
                try ssmStates[l].upload(ssm[l], atFloat: row * sr)
            }
        }
    }

    /// Copies row `source`'s state into row `destination` (queued on the stream).
    public func copyStateRow(from source: Int, to destination: Int) throws {
        precondition(source >= 0 && source < capacity && destination >= 0 && destination < capacity)
        guard source != destination else { return }
        for p in peers { try p.copyStateRow(from: source, to: destination) }
        let (cr, sr) = (Self.convRowFloats(config) * 4, Self.ssmRowFloats(config) * stateBytes)
        for l in 0..<config.nLayer {
            try convStates[l].copy(bytes: cr, from: convStates[l], at: source * cr, to: destination * cr)
            try ssmStates[l].copy(bytes: sr, from: ssmStates[l], at: source * sr, to: destination * sr)
        }
    }

    /// Sets row `row`'s state to zeros (queued on the stream).
    public func zeroStateRow(_ row: Int) throws {
        precondition(row >= 0 && row < capacity)
        for p in peers { try p.zeroStateRow(row) }
        let (cr, sr) = (Self.convRowFloats(config), Self.ssmRowFloats(config))
        for l in 0..<config.nLayer {
            if cr > 0 { try convStates[l].fill(at: row * cr, words: cr, bitPattern: 0) }
            let words = sr * stateBytes / 4
            try ssmStates[l].fill(at: row * words, words: words, bitPattern: 0)
        }
    }

    /// Exchanges the states of two rows through `swapRow` (queued on the stream).
    func swapStateRows(_ a: Int, _ b: Int) throws {
        guard a != b, let (tc, ts) = swapRow else { return }
        for p in peers { try p.swapStateRows(a, b) }
        let (cr, sr) = (Self.convRowFloats(config) * 4, Self.ssmRowFloats(config) * stateBytes)
        for l in 0..<config.nLayer {
            for (buf, tmp, n) in [(convStates[l], tc, cr), (ssmStates[l], ts, sr)] where n > 0 {
                try tmp.copy(bytes: n, from: buf, at: a * n)
                try buf.copy(bytes: n, from: buf, at: b * n, to: a * n)
                try buf.copy(bytes: n, from: tmp, to: b * n)
            }
        }
    }

    // MARK: prefill

    /// Prefill buffers for T token rows.
    struct PrefillBuffers {
        let T: Int
        let residual: CUDABuffer      // (T, d_model) f32
        let normed: CUDABuffer        // (T, max(d_model, d_ssm)) precision: the matrix products' input
        let zx: CUDABuffer            // (T, in_proj_size) f32 room: float32, or the 16-bit type (`zxHalf`)
        let x, B, C: CUDABuffer       // (T, d_ssm), (T, G·N) ×2: f32 room, 16-bit for the tensor cores
        let dt: CUDABuffer            // (T, H) f32, raw
        let y: CUDABuffer             // (T, d_ssm) f32 room
        let tokens: CUDABuffer        // (T) int32
        /// Tensor parallelism: this rank's out_proj product before the ranks' sum, and its gated norm's sums of
        /// squares where the norm's group spans ranks.
        let product: CUDABuffer?      // (T, d_model) f32
        let ssq: CUDABuffer?          // (T, G held) f32
    }
    var prefillBuffers: PrefillBuffers?
    /// (rows) int32: which packed token ends each sequence, for the last-logits gather (kept: an allocation
    /// and its free, which synchronizes, per prefill cost a server's admissions).
    var gatherIndex: CUDABuffer?

    func buffers(tokens T: Int) throws -> PrefillBuffers {
        if let b = prefillBuffers, b.T >= T { return b }
        let c = config
        let b = PrefillBuffers(
            T: T, residual: try CUDABuffer(count: T * c.dModel, on: device), normed: try CUDABuffer(count: T * max(c.dModel, c.dSSM), on: device),
            zx: try CUDABuffer(count: T * c.inProjSize, on: device), x: try CUDABuffer(count: T * c.dSSM, on: device),
            B: try CUDABuffer(count: T * c.nGroups * c.dState, on: device), C: try CUDABuffer(count: T * c.nGroups * c.dState, on: device),
            dt: try CUDABuffer(count: T * c.nHeads, on: device), y: try CUDABuffer(count: T * c.dSSM, on: device), tokens: try CUDABuffer(count: T, on: device),
            product: tensorParallel == nil ? nil : try CUDABuffer(count: T * c.dModel, on: device),
            ssq: tensorParallel?.plan.normSpansRanks == true ? try CUDABuffer(count: T * c.nGroups, on: device) : nil)
        prefillBuffers = b
        return b
    }

    /// Y (rows, out) (+)= X (rows, in) · Wᵀ on cuBLAS, float32 sums; Y float32, or with `yHalf` the 16-bit type.
    func gemm(rows: Int, out: Int, in: Int, x: CUDABuffer, w: CUDABuffer, y: CUDABuffer, accumulate: Bool, yHalf: Bool = false) throws {
        // column-major: Yᵀ (out, rows) = op_T(W as (in, out)) · Xᵀ (in, rows)
        let r = mkc_gemm(device.handle, 1, 0, Int32(out), Int32(rows), Int32(`in`), 1, UnsafeRawPointer(bitPattern: UInt(w.pointer)), Int32(`in`),
                         UnsafeRawPointer(bitPattern: UInt(x.pointer)), Int32(`in`), precision.code, accumulate ? 1 : 0,
                         UnsafeMutableRawPointer(bitPattern: UInt(y.pointer)), Int32(out), yHalf ? precision.code : 0, 1)
        guard r == 0 else { throw Mamba2Error.invalidArgument("device", reason: "cuBLAS GEMM (\(rows)×\(`in`) · \(`in`)×\(out)) failed with status \(r)") }
    }

    /// Runs sequences from fresh states through the model, leaving their states for decode (rows
    /// 0..<count). Sequences of one length go as rows of a batch; of different lengths, packed one after
    /// the other into a single row (the conv and the SSD reset at each start; `CUDAPackedRows`). Returns
    /// logits (count, padded vocab) of each last token for `.last`, (total tokens, padded vocab) for `.all`
    /// (sequences in order), nil for `.none`.
    /// With `targetRows`, sequence i's state goes to row targetRows[i] instead of row i (other rows are left
    /// as they are; the rows must exist, see `reserve`), and `rows` is not changed.
    public func prefill(_ sequences: [[Int]], into targetRows: [Int]? = nil, logits mode: Mamba2Model.LogitsMode) throws -> Tensor? {
        let c = config
        guard !sequences.isEmpty, sequences.allSatisfy({ !$0.isEmpty }) else {
            throw Mamba2Error.invalidArgument("sequences", reason: "give at least one sequence, none of them empty (lengths \(sequences.map(\.count)))")
        }
        for s in sequences { try c.checkTokens(s, argument: "sequences") }
        let n = sequences.count
        if let targetRows {
            precondition(targetRows.count == n && targetRows.allSatisfy { $0 >= 0 && $0 < capacity } && Set(targetRows).count == n)
        }
        // Each rank embeds, then layer by layer runs its part; with tensor parallelism the ranks' out_proj
        // products are added across ranks after every layer and each rank's next norm adds the sum in.
        let passes = try ranks.map { try $0.beginPrefill(sequences, into: targetRows) }
        for i in layers.indices {
            for (m, pass) in zip(ranks, passes) { try m.prefillLayer(i, pass: pass) }
            if tensorParallel != nil { try reducePrefillProducts(passes) }
        }
        for (m, pass) in zip(ranks, passes) { try m.placePrefillStates(pass, into: targetRows) }
        let (T, buf) = (passes[0].T, passes[0].buf)
        // The last layer's product, added in by the final norm (its output is the head's input for `.all`).
        if tensorParallel != nil { try rmsnorm(rows: T, x: buf.residual, ldx: c.dModel, w: normF, out: buf.normed, pending: prefillPending(after: layers.count - 1, pass: passes[0])) }
        let V = c.paddedVocabSize
        switch mode {
        case .none:
            try device.synchronize()
            return nil
        case .last:
            // The last token of each sequence gathered into the decode rows, then decode's head (final
            // RMSNorm and lm_head) over them.
            if gatherIndex == nil || gatherIndex!.count < n { gatherIndex = try CUDABuffer(count: max(n, capacity), on: device) }
            let last = gatherIndex!
            let L = passes[0].L
            try last.upload(passes[0].packed?.lastTokens.map { Int32($0) } ?? (0..<n).map { Int32($0 * L + L - 1) })
            let ag = KernelArguments()
            ag.add(Int32(c.dModel)); ag.add(last); ag.add(buf.residual); ag.add(residual1)
            try k.gatherRows.launch(grid: (n, 1, 1), block: (256, 1, 1), arguments: ag)
            try head(rows: n, handedOver: false)
            try device.synchronize()
            return Tensor(shape: [n, V], data: try logits1.download(n * V, as: Float.self))
        case .all:
            if tensorParallel == nil { try rmsnorm(rows: T, x: buf.residual, ldx: c.dModel, w: normF, out: buf.normed) }
            let out = try CUDABuffer(count: T * V, on: device)
            try gemm(rows: T, out: V, in: c.dModel, x: buf.normed, w: lmHead, y: out, accumulate: false)
            try device.synchronize()
            return Tensor(shape: [T, V], data: try out.download())
        }
    }

    /// One rank's prefill of some sequences: their layout and where their states go.
    struct PrefillPass {
        let b, L, T, n: Int             // rows × length of the kernels' layout (one row of all tokens when packed)
        let packed: CUDAPackedRows?
        let staged: Bool                // states land in staging rows first (`targetRows` other than 0..<n)
        let states: (conv: [CUDABuffer], ssm: [CUDABuffer])
        let buf: PrefillBuffers
    }

    /// Lays the sequences out (rows of one length, or packed into one row), makes room for their states, and
    /// embeds their tokens into the residual.
    func beginPrefill(_ sequences: [[Int]], into targetRows: [Int]?) throws -> PrefillPass {
        let c = config
        let packed = sequences.allSatisfy({ $0.count == sequences[0].count }) ? nil : try CUDAPackedRows(on: device, lengths: sequences.map(\.count))
        let (b, L) = packed == nil ? (sequences.count, sequences[0].count) : (1, sequences.reduce(0) { $0 + $1.count })
        let n = sequences.count
        // States land in rows 0..<n, or for other target rows first in staging rows past the table's end.
        let staged = targetRows.map { $0 != Array(0..<n) } ?? false
        if targetRows != nil {
            if staged { try reserveStaging(rows: n) }
        } else {
            try reserve(rows: n)
            rows = n
        }
        let buf = try buffers(tokens: b * L)
        try buf.tokens.upload(sequences.joined().map { Int32($0) })
        let a0 = KernelArguments()
        a0.add(Int32(c.dModel)); a0.add(buf.tokens); a0.add(embedding); a0.add(buf.residual); a0.add(UInt64(0))
        a0.add(UInt64(0)); a0.add(UInt64(0)); a0.add(UInt64(0)); a0.add(Int32(0))  // no hand-over
        try k.embed.launch(grid: (b * L, 1, 1), block: (256, 1, 1), arguments: a0)
        return PrefillPass(b: b, L: L, T: b * L, n: n, packed: packed, staged: staged, states: staged ? staging : (convStates, ssmStates), buf: buf)
    }

    /// Layer i of a prefill pass: norm, in_proj, conv, SSD, gated norm, out_proj. Without tensor parallelism
    /// out_proj adds into the residual; with it, into this rank's product (`prefillPending`).
    func prefillLayer(_ i: Int, pass p: PrefillPass) throws {
        let c = config, l = layers[i], buf = p.buf, T = p.T
        try rmsnorm(rows: T, x: buf.residual, ldx: c.dModel, w: l.norm, out: buf.normed, pending: prefillPending(after: i - 1, pass: p))
        try inProjection(tokens: T, layer: l, buffers: buf)
        try convPrefill(rows: p.b, length: p.L, layer: l, buffers: buf, convState: p.states.conv[i], packed: p.packed)
        if stateType == .bf16 {
            // The SSD's final states in float32, then rounded into the bf16 rows.
            let count = p.n * Self.ssmRowFloats(c)
            if stateScratch == nil || stateScratch!.count < count { stateScratch = try CUDABuffer(count: count, on: device) }
            try ssd(rows: p.b, length: p.L, layer: l, buffers: buf, states: stateScratch!, packed: p.packed)
            let ar = KernelArguments()
            ar.add(count); ar.add(stateScratch!); ar.add(p.states.ssm[i])
            try k.toBF16.launch(grid: (min((count + 255) / 256, 4096), 1, 1), block: (256, 1, 1), arguments: ar)
        } else {
            try ssd(rows: p.b, length: p.L, layer: l, buffers: buf, states: p.states.ssm[i], packed: p.packed)
        }
        if let tp = tensorParallel {
            try gatedNorm(rows: T, y: buf.y, yHalf: tc != nil, z: buf.zx, zHalf: zxHalf, w: l.gateNorm, out: buf.normed,
                          ssqOut: tp.plan.normSpansRanks ? buf.ssq : nil)
            try gemm(rows: T, out: c.dModel, in: c.dSSM, x: buf.normed, w: l.outProj, y: buf.product!, accumulate: false)
            return
        }
        try gatedNorm(rows: T, y: buf.y, yHalf: tc != nil, z: buf.zx, zHalf: zxHalf, w: l.gateNorm, out: buf.normed)
        try gemm(rows: T, out: c.dModel, in: c.dSSM, x: buf.normed, w: l.outProj, y: buf.residual, accumulate: true)
        if let bias = l.outProjBias { try addBias(rows: T, n: c.dModel, y: buf.residual, half: false, bias: bias) }
    }

    /// Moves a pass's states from staging into their target rows (consecutive rows, what a server's batcher
    /// admits into, take one copy per layer and buffer, not one per row: 12 new rows of a 24-layer model were
    /// 576 copies).
    func placePrefillStates(_ p: PrefillPass, into targetRows: [Int]?) throws {
        guard p.staged, let targetRows else { return }
        let (cr, sr) = (Self.convRowFloats(config) * 4, Self.ssmRowFloats(config) * stateBytes)
        let n = p.n
        let consecutive = targetRows.enumerated().allSatisfy { $0.element == targetRows[0] + $0.offset }
        for l in 0..<config.nLayer {
            if consecutive {
                if cr > 0 { try convStates[l].copy(bytes: n * cr, from: staging.conv[l], at: 0, to: targetRows[0] * cr) }
                try ssmStates[l].copy(bytes: n * sr, from: staging.ssm[l], at: 0, to: targetRows[0] * sr)
                continue
            }
            for (s, r) in targetRows.enumerated() {
                if cr > 0 { try convStates[l].copy(bytes: cr, from: staging.conv[l], at: s * cr, to: r * cr) }
                try ssmStates[l].copy(bytes: sr, from: staging.ssm[l], at: s * sr, to: r * sr)
            }
        }
    }

    /// Per layer, the conv windows and SSM states of prefills into rows other than 0..<n (then copied to
    /// their rows), sized for `stagingRows` sequences.
    var staging: (conv: [CUDABuffer], ssm: [CUDABuffer]) = ([], [])
    var stagingRows = 0

    /// Whether prefill's in_proj output (zx) is kept in the 16-bit type of a 16-bit model, as mamba_ssm keeps
    /// it (its Linear's output dtype): half its bytes written by the product and read by the conv and the
    /// gated norm (2.7b at 16,384 tokens, separate runs on the H200: a layer's in_proj, conv and gated norm
    /// 1.70 → 1.57 ms, the whole prefill 196.9 → 191.8 ms). Float32 models keep it in float32; decode's zx1
    /// stays float32.
    var zxHalf: Bool { precision != .f32 }

    /// Prefill's in_proj over T token rows: zx = normed · in_projᵀ (+ bias), in float32 or the 16-bit type
    /// (`zxHalf`: cuBLAS rounds its float32 sums once; with a bias, once more after adding it).
    func inProjection(tokens T: Int, layer l: Layer, buffers buf: PrefillBuffers) throws {
        let c = config
        try gemm(rows: T, out: c.inProjSize, in: c.dModel, x: buf.normed, w: l.inProj, y: buf.zx, accumulate: false, yHalf: zxHalf)
        if let bias = l.inProjBias { try addBias(rows: T, n: c.inProjSize, y: buf.zx, half: zxHalf, bias: bias) }
    }

    /// Prefill's causal conv over the in_proj output (zx): x, B, C (16-bit for the tensor-core SSD) and raw dt
    /// out, each row's (or packed sequence's) last inputs left in `convState`. m_conv_prefill_run (two channels
    /// and a run of tokens a thread) where d_conv ≤ 4 and the sizes it pairs are even, else, or with
    /// `plainPrefillConv`, m_conv_prefill (its reference).
    func convPrefill(rows b: Int, length L: Int, layer l: Layer, buffers buf: PrefillBuffers, convState: CUDABuffer,
                     packed: CUDAPackedRows?) throws {
        let c = config
        let a = KernelArguments()
        for v in [L, c.convDim, c.dConv, c.dSSM, c.nGroups * c.dState, c.nHeads] { a.add(Int32(v)) }
        a.add(buf.zx); a.add(Int32(zxHalf ? 1 : 0)); a.add(Int32(c.inProjSize)); a.add(Int32(c.dSSM)); a.add(Int32(c.dSSM + c.convDim))
        a.add(l.convW); a.add(l.convB?.pointer ?? 0); a.add(Int32(tc != nil ? 1 : 0))
        a.add(buf.x); a.add(buf.B); a.add(buf.C); a.add(buf.dt); a.add(convState)
        a.add(packed?.seqStart.pointer ?? 0); a.add(packed?.tokenEnd.pointer ?? 0); a.add(packed?.tokenSequence.pointer ?? 0)
        let even = [c.convDim, c.dSSM, c.nGroups * c.dState, c.inProjSize].allSatisfy { $0 % 2 == 0 }
        if c.dConv <= Self.convRunTaps && even && !plainPrefillConv {
            let run = zxHalf ? 16 : 8  // tokens a thread (CONV_RUN of m_conv_prefill_run_h / m_conv_prefill_run)
            try (zxHalf ? k.convPrefillRunHalf : k.convPrefillRun).launch(grid: ((c.convDim + c.nHeads + 511) / 512, (L + run - 1) / run, b),
                                                                         block: (256, 1, 1), arguments: a)
        } else {
            try k.convPrefill.launch(grid: ((c.convDim + c.nHeads + 255) / 256, L, b), block: (256, 1, 1), arguments: a)
        }
    }

    /// The most taps m_conv_prefill_run serves (KW).
    static let convRunTaps = 4

    func reserveStaging(rows n: Int) throws {
        guard n > stagingRows else { return }
        let c = config
        staging = (try (0..<c.nLayer).map { _ in try CUDABuffer(count: max(n * Self.convRowFloats(c), 1), on: device) },
                   try (0..<c.nLayer).map { _ in try CUDABuffer(bytes: n * Self.ssmRowFloats(c) * stateBytes, on: device) })
        stagingRows = n
    }

    /// RMSNorm of rows of x (d_model) into out. With `pending` (decode on cuBLAS with the gated norm handed
    /// over, `gateHandOver`): first x += rsqrt(Σ ssq / d_ssm + eps)·Σ product slices (+ bias), the previous out_proj's.
    func rmsnorm(rows: Int, x: CUDABuffer, ldx: Int, w: CUDABuffer, out: CUDABuffer, pending: PendingOutProjection? = nil) throws {
        let d = config.dModel
        let a = KernelArguments()
        if pending == nil && Self.rmsnormWarpRows(rows: rows, d: d, ldx: ldx) {
            a.add(Int32(rows)); a.add(Int32(d)); a.add(config.rmsNormEps); a.add(x); a.add(Int32(ldx)); a.add(w); a.add(out)
            try k.rmsnormRows.launch(grid: ((rows + 7) / 8, 1, 1), block: (256, 1, 1), arguments: a, dependent: true)
            return
        }
        a.add(Int32(d)); a.add(config.rmsNormEps); a.add(x); a.add(Int32(ldx)); a.add(w); a.add(out)
        a.add(pending?.product.pointer ?? 0); a.add(pending?.ssq?.pointer ?? 0); a.add(Int32(pending?.slots ?? 0))
        a.add(Int32(pending?.groupSize ?? config.dSSM)); a.add(pending?.bias?.pointer ?? 0)
        let slices = pending?.slices ?? 1  // decode's few rows: their slices' stride fits (prefill has none)
        a.add(Int32(slices)); a.add(Int32(slices > 1 ? rows * d : 0))
        try k.rmsnorm.launch(grid: (rows, 1, 1), block: (256, 1, 1), arguments: a, dependent: true)
    }

    /// An out_proj product not yet added into the residual (decode on cuBLAS with the gated norm handed over,
    /// and tensor parallelism): product (rows, d_model) float32 of the unnormalized gated y, the sums of
    /// squares of its norm (rows, slots) over groups of `groupSize` channels (no sums: the product was
    /// normalized already), and out_proj's bias. With `slices` > 1 the product is that many partial products,
    /// rows · d_model values apart, to be added (`decodeSlices`).
    struct PendingOutProjection {
        let product: CUDABuffer
        let ssq: CUDABuffer?
        let slots: Int
        let bias: CUDABuffer?
        let groupSize: Int
        var slices = 1
    }

    /// Whether an RMSNorm of `rows` rows takes m_rmsnorm_rows (a warp per row): rows of up to 1,024 values in
    /// 16-byte groups, and enough of them to fill the device (prefill; decode's few rows keep a block each).
    static func rmsnormWarpRows(rows: Int, d: Int, ldx: Int) -> Bool { d <= 1024 && d % 4 == 0 && ldx % 4 == 0 && rows >= 256 }

    /// m_gated_norm over token rows: y (f32 or 16-bit) gated by z (in zx), normalized per group.
    /// With `ssqOut` (rows, G): each group's sum of squares written there and the values left unscaled (tensor
    /// parallelism, the group spanning ranks).
    func gatedNorm(rows: Int, y: CUDABuffer, yHalf: Bool, z: CUDABuffer, zHalf: Bool, w: CUDABuffer, out: CUDABuffer,
                   ssqOut: CUDABuffer? = nil) throws {
        let c = config
        let a = KernelArguments()
        a.add(Int32(c.dSSM)); a.add(Int32(c.nGroups)); a.add(c.rmsNormEps); a.add(Int32(c.normBeforeGate ? 1 : 0))
        a.add(y); a.add(Int32(yHalf ? 1 : 0)); a.add(z); a.add(Int32(zHalf ? 1 : 0)); a.add(Int32(c.inProjSize)); a.add(w); a.add(out)
        a.add(ssqOut?.pointer ?? 0)
        let gs = c.dSSM / c.nGroups
        // The kernel's own test for its 16-byte path (16-bit y and z, 8-aligned z rows and groups).
        let eight = precision != .f32 && yHalf && zHalf && c.inProjSize % 8 == 0 && gs % 8 == 0
        try k.gatedNorm.launch(grid: (rows, 1, 1), block: (Self.gatedNormThreads(groupSize: gs, eight: eight), 1, 1), arguments: a,
                             dependent: true)
    }

    /// m_gated_norm's block: enough threads (a multiple of 32, up to 1,024) for a group of `groupSize` values to
    /// fit 16 values a thread, 4 × 4 or (`eight`: 16-bit y and z, the kernel's 16-byte path) 2 × 8 (2.7b's 5,120:
    /// 320 threads); at least 256 on the 4 × 4 path, 32 on the 16-byte one (130m's 1,536: 96).
    static func gatedNormThreads(groupSize: Int, eight: Bool = false) -> Int {
        min(1024, max(eight ? 32 : 256, ((groupSize + 15) / 16 + 31) / 32 * 32))
    }

    /// Y (rows, n) += bias; Y float32 or (`half`) the 16-bit type.
    func addBias(rows: Int, n: Int, y: CUDABuffer, half: Bool, bias: CUDABuffer) throws {
        let a = KernelArguments()
        a.add(Int32(n)); a.add(y); a.add(Int32(half ? 1 : 0)); a.add(bias)
        try k.addBias.launch(grid: (rows, 1, 1), block: (256, 1, 1), arguments: a, dependent: true)
    }

    /// The SSD's scratch for one prefill shape (rows, length): dt after softplus and the cumulative decay
    /// (rows, H, L; float64 for the plain kernels), the chunks' own states and incoming states (rows, H, chunks, P, N; 16-bit for the
    /// tensor cores), the chunk decays, and the plain kernels' C·Bᵀ. Kept between layers
    /// and calls of the same shape.
    struct SSDScratch {
        let rows, length: Int
        let dt, cum, states, statesIn, chunkDecay: CUDABuffer
        let CB: CUDABuffer?
        /// The fused tensor-core SSD's look-back buffers, made the first time a prefill takes that kernel.
        var fused: CUDATensorCoreSSD.FusedBuffers? = nil
    }
    var ssdScratch: SSDScratch?
    var packedFinal: CUDABuffer?

    /// Room for the single packed row's own final state (H, P, N), which decode does not use.
    func packedFinalStates() throws -> CUDABuffer {
        if let b = packedFinal { return b }
        let b = try CUDABuffer(count: config.nHeads * config.headDim * config.dState, on: device)
        packedFinal = b
        return b
    }

    func scratch(rows b: Int, length L: Int, chunk Q: Int) throws -> SSDScratch {
        if let s = ssdScratch, s.rows == b, s.length == L { return s }
        ssdScratch = nil
        let c = config
        let (H, G, nchunks) = (c.nHeads, c.nGroups, (L + Q - 1) / Q)
        let stateCount = b * H * nchunks * c.headDim * c.dState
        let s = SSDScratch(
            rows: b, length: L, dt: try CUDABuffer(count: b * H * L, on: device), cum: try CUDABuffer(count: (tc != nil ? 1 : 2) * b * H * L, on: device),  // float64 for the plain kernels
            states: try CUDABuffer(count: tc != nil ? (stateCount + 1) / 2 : stateCount, on: device), statesIn: try CUDABuffer(count: tc != nil ? (stateCount + 1) / 2 : stateCount, on: device),
            chunkDecay: try CUDABuffer(count: b * H * nchunks, on: device), CB: tc != nil ? nil : try CUDABuffer(count: b * G * nchunks * Q * Q, on: device))
        ssdScratch = s
        return s
    }

    /// The chunked SSD of one layer over the prefill buffers: x, dt, B, C in, y out, the final states
    /// written into the layer's decode state `states` (sequences, H, P, N): a row's, or with `packed`
    /// each sequence's (the single row's own final state then goes to scratch).
    func ssd(rows b: Int, length L: Int, layer l: Layer, buffers buf: PrefillBuffers, states: CUDABuffer, packed: CUDAPackedRows?) throws {
        let finalStates = packed == nil ? states : try packedFinalStates()
        let sequenceStates = packed == nil ? nil : states
        let c = config
        let (H, G, N, P) = (c.nHeads, c.nGroups, c.dState, c.headDim)
        let (lo, hi) = (c.dtLimit.lo, c.dtLimit.hi)
        if let tc {
            let Q = CUDATensorCoreSSD.chunk
            let s = try scratch(rows: b, length: L, chunk: Q)
            let nchunks = (L + Q - 1) / Q
            var p = CUDATensorCoreSSD.Prepared(
                b: b, L: L, H: H, G: G, nchunks: nchunks,
                hb: try CUDATensorCoreSSD.headsPerBlock(rows: b, chunks: nchunks, heads: H, groups: G),
                x: buf.x, dt: buf.dt, A: l.A, B: buf.B, C: buf.C, y: buf.y, dtOut: s.dt, cumOut: s.cum, states: s.states,
                statesIn: s.statesIn, chunkDecay: s.chunkDecay, finalStates: finalStates, dtBias: l.dtBias, D: l.D, z: nil,
                initial: nil, dPerChannel: c.dHasHeadDim, softplus: true, lo: lo, hi: hi, packed: packed, sequenceStates: sequenceStates)
            p.fullIncomingStates = false  // nothing after the scan reads them (packed rows' sequence states: launch sees to them)
            if tc.fusedApplies(packed: packed != nil) {
                if ssdScratch?.fused == nil { ssdScratch?.fused = try CUDATensorCoreSSD.FusedBuffers(rows: b, heads: H, chunks: nchunks, stateSize: N, on: device) }
                p.fused = ssdScratch?.fused
            }
            try tc.launch(p)
        } else {
            let Q = min(c.chunkSize, 256)
            let s = try scratch(rows: b, length: L, chunk: Q)
            let p = CUDASSD.Prepared(
                b: b, L: L, H: H, P: P, G: G, N: N, Q: Q, nchunks: (L + Q - 1) / Q, x: buf.x, dt: buf.dt, A: l.A, B: buf.B, C: buf.C,
                y: buf.y, dtOut: s.dt, cumOut: s.cum, chunkStates: s.states, chunkDecay: s.chunkDecay, statesIn: s.statesIn,
                finalStates: finalStates, CB: s.CB!, dtBias: l.dtBias, D: l.D, z: nil, initial: nil,
                dPerChannel: c.dHasHeadDim, softplus: true, lo: lo, hi: hi, packed: packed, sequenceStates: sequenceStates)
            try plain!.launch(p)
        }
    }
}
