import Mamba2

/// Tensor-parallel inference on GPUs, split as the paper does (`TensorParallelPlan`): rank r holds heads
/// [r·H/R, (r+1)·H/R) of every block (their rows of in_proj, conv channels, A, D, dt_bias, gated-norm weight and
/// out_proj columns, and the B, C groups they read); the embedding, block norms, final norm and head are
/// replicated, so every rank holds the whole residual stream.
///
/// Each rank is a `CUDAModel` of its own sizes (`TensorParallelPlan.localConfig`) on its device, running the
/// ordinary kernels. Rank 0 drives them all from one thread, layer by layer (`ranks`):
///   1. every rank: RMSNorm → in_proj → conv → SSD → gated norm → out_proj into its own product (not the residual);
///   2. one all-reduce a layer adds the ranks' products (and, where a gated-norm group spans ranks — the
///      released checkpoints' G = 1 — the norm's sums of squares, since the norm is then applied after out_proj:
///      the scale is one number a row, `gateHandOver`);
///   3. every rank's next RMSNorm adds the sum (times the row's norm scale) and out_proj's bias into its residual.
/// So one all-reduce of rows × (d_model + a few) floats a layer, in prefill and in decode, and the decode step
/// stays one CUDA graph a device (NCCL's calls captured with the kernels).
///
/// Decode runs the cuBLAS path at every row count (rmsnorm → cuBLAS → conv step → SSD step → cuBLAS): the
/// fused single-row and streaming kernels add into the residual themselves. Ranks on distinct GPUs add through
/// NCCL (`CUDACommunicator`); ranks sharing one device (the self-test's check of the split on one GPU) through a
/// kernel (`CUDASharedDeviceReduction`).
extension CUDAModel {
    /// A rank's place in a tensor-parallel model.
    struct TensorParallelRank {
        let plan: TensorParallelPlan
        let rank: Int
    }

    /// The whole model's config (a rank's own `config` has its local sizes).
    public var modelConfig: Mamba2Config { tensorParallel?.plan.config ?? config }

    /// Devices the ranks run on, rank 0's first (one entry without tensor parallelism).
    public var rankDevices: [CUDADevice] { ranks.map(\.device) }

    /// A model split across `devices` (rank r on devices[r]; one device given R times runs R ranks on it, for
    /// checking the split), the weights of `model` rounded to `precision`. Refused with a reason where the
    /// heads or groups do not divide (`TensorParallelPlan`), or where a gated-norm group of several groups spans
    /// ranks (G > 1 and R % G == 0, R > G: the scale would differ within a rank's product).
    public static func tensorParallel(devices: [CUDADevice], model: Mamba2Model, precision: Precision) throws -> CUDAModel {
        let plan = try plan(devices: devices, config: model.config)
        let local = plan.localConfig
        let whole = model.weights  // widened once (the matrices of a model held in another type)
        let ranks = try devices.indices.map { r -> CUDAModel in
            var w = whole
            w.layers = whole.layers.map { l in
                var s = plan.shard(l, rank: r)
                s.outProjBias = l.outProjBias  // added once, after the ranks' sum, by every rank's next norm
                return s
            }
            let named = w.namedTensors(local).map { ($0.0, $0.1.data) }
            return try CUDAModel(device: devices[r], config: local, precision: precision, values: Dictionary(uniqueKeysWithValues: named))
        }
        return try join(ranks, plan: plan)
    }

    /// A split model of random weights (each rank's part drawn from its own stream of `seed`): for benchmarks of
    /// the released shapes on several GPUs, no checkpoint read.
    public static func tensorParallel(devices: [CUDADevice], randomWeights config: Mamba2Config, seed: UInt64, precision: Precision) throws -> CUDAModel {
        let plan = try plan(devices: devices, config: config)
        let ranks = try devices.indices.map { r in
            try CUDAModel(device: devices[r], randomWeights: plan.localConfig, seed: seed &+ UInt64(r) &* 0x9E37_79B9, precision: precision)
        }
        return try join(ranks, plan: plan)
    }

    static func plan(devices: [CUDADevice], config: Mamba2Config) throws -> TensorParallelPlan {
        guard devices.count >= 2 else {
            throw Mamba2Error.invalidArgument("tensor-parallel", reason: "needs at least 2 ranks, got \(devices.count)")
        }
        let plan = try TensorParallelPlan(config: config, ranks: devices.count)
        guard !plan.normSpansRanks || config.nGroups == 1 else {
            throw Mamba2Error.invalidArgument("tensor-parallel", reason: "the model's \(config.nGroups) groups span \(devices.count) ranks: on the GPU a group spans ranks only where there is one (ngroups = 1); use a count of ranks that divides \(config.nGroups)")
        }
        let ordinals = devices.map(\.ordinal)
        let shared = devices.allSatisfy { $0 === devices[0] }
        guard shared || Set(ordinals).count == ordinals.count else {
            throw Mamba2Error.invalidArgument("tensor-parallel", reason: "GPUs \(ordinals): each rank needs a GPU of its own (or all ranks one device object, for checking)")
        }
        return plan
    }

    /// Rank 0 of `ranks`, driving the others: every rank set to the split's decode path.
    static func join(_ ranks: [CUDAModel], plan: TensorParallelPlan) throws -> CUDAModel {
        for (r, m) in ranks.enumerated() {
            m.tensorParallel = TensorParallelRank(plan: plan, rank: r)
            m.decodePath = .plain   // no persistent or streaming decode: they add into the residual themselves
            m.plainGEMVRows = 0     // nor m_gemv, for the same reason: cuBLAS at every row count
        }
        let primary = ranks[0]
        primary.peers = Array(ranks.dropFirst())
        let devices = ranks.map(\.device)
        primary.reduction = devices.allSatisfy({ $0 === devices[0] })
            ? CUDASharedDeviceReduction(kernels: primary.k, device: devices[0])
            : try CUDACommunicator(devices: devices)
        return primary
    }

    /// The norm's divisor and the pending product of layer i's out_proj, as rank's next RMSNorm adds it in.
    func rankPending(after i: Int, product: CUDABuffer, ssq: CUDABuffer?, slots: Int) -> PendingOutProjection? {
        guard i >= 0, let tp = tensorParallel else { return nil }
        return PendingOutProjection(product: product, ssq: tp.plan.normSpansRanks ? ssq : nil, slots: slots, bias: layers[i].outProjBias,
                                    groupSize: tp.plan.normGroupSize)
    }

    /// Prefill's pending product of layer i (`rmsnorm(pending:)`): nil without tensor parallelism.
    func prefillPending(after i: Int, pass p: PrefillPass) -> PendingOutProjection? {
        guard let product = p.buf.product else { return nil }
        return rankPending(after: i, product: product, ssq: p.buf.ssq, slots: config.nGroups)
    }

    /// Adds the ranks' prefill products (and norm sums) across ranks, in place on each.
    func reducePrefillProducts(_ passes: [PrefillPass]) throws {
        let T = passes[0].T
        var sets = [passes.map { $0.buf.product! }], counts = [T * config.dModel]
        if tensorParallel!.plan.normSpansRanks {
            sets.append(passes.map { $0.buf.ssq! })
            counts.append(T * config.nGroups)
        }
        try reduction!.allReduceSum(sets, counts: counts)
    }

    /// A decode step of n rows across the ranks (`enqueueStep` with tensor parallelism): the argmax (for
    /// `.greedyDecode` and `.argmax`) taken on every rank from the same logits, so that each feeds its own
    /// embedding the same token next step with nothing sent between them.
    func enqueueRanksStep(rows n: Int, choice: StepChoice) throws {
        let spans = tensorParallel!.plan.normSpansRanks
        let slots = ssqSlotsSSM(rows: n)
        func pending(_ m: CUDAModel, after i: Int) -> PendingOutProjection? {
            m.rankPending(after: i, product: m.outProduct1, ssq: m.ssqSSM, slots: slots)
        }
        for m in ranks { try m.enqueueEmbedding(rows: n, counting: choice == .greedyDecode, handOver: nil) }
        for i in layers.indices {
            for m in ranks {
                try m.inProjection(rows: n, layer: i, pending: pending(m, after: i - 1))
                try m.ssdStep(rows: n, layer: i)
                try m.outProjection(rows: n, layer: i)
            }
            var sets = [ranks.map { $0.outProduct1! }], counts = [n * config.dModel]
            if spans {
                sets.append(ranks.map { $0.ssqSSM! })
                counts.append(n * slots)
            }
            try reduction!.allReduceSum(sets, counts: counts)
        }
        for m in ranks where m === self || choice != .none {
            try m.head(rows: n, pending: pending(m, after: layers.count - 1))
            try m.enqueueChoice(rows: n, choice: choice)
        }
    }

    /// Row `row`'s state gathered from the ranks into the whole model's layout: each rank's heads of the SSM
    /// state, and its conv channels (B and C channels a group's ranks share are the same on each).
    func downloadRankStates(row: Int) throws -> (conv: [[Float]], ssm: [[Float]]) {
        let plan = tensorParallel!.plan, g = plan.config
        let whole = (conv: (g.dConv - 1) * g.convDim, ssm: g.nHeads * g.headDim * g.dState)
        var conv = [[Float]](repeating: [Float](repeating: 0, count: whole.conv), count: g.nLayer)
        var ssm = [[Float]](repeating: [Float](repeating: 0, count: whole.ssm), count: g.nLayer)
        for (r, m) in ranks.enumerated() {
            let (lc, ls) = try m.downloadOwnState(row: row)
            let channels = plan.convChannels(rank: r), C = plan.localConvDim
            let headValues = g.headDim * g.dState, first = plan.heads(rank: r).lowerBound * headValues
            for l in 0..<g.nLayer {
                for t in 0..<(g.dConv - 1) { for (j, ch) in channels.enumerated() { conv[l][t * g.convDim + ch] = lc[l][t * C + j] } }
                ssm[l].replaceSubrange(first..<(first + ls[l].count), with: ls[l])
            }
        }
        return (conv, ssm)
    }

    /// Sets row `row`'s state on every rank from the whole model's layout (each rank takes its part).
    func uploadRankStates(row: Int, conv: [[Float]], ssm: [[Float]]) throws {
        let plan = tensorParallel!.plan, g = plan.config
        for (r, m) in ranks.enumerated() {
            let channels = plan.convChannels(rank: r), C = plan.localConvDim
            let headValues = g.headDim * g.dState, first = plan.heads(rank: r).lowerBound * headValues
            let count = plan.localHeads * headValues
            let lc = (0..<g.nLayer).map { l in
                (0..<((g.dConv - 1) * C)).map { i in conv[l][i / C * g.convDim + channels[i % C]] }
            }
            let ls = (0..<g.nLayer).map { l in Array(ssm[l][first..<(first + count)]) }
            try m.uploadOwnState(row: row, conv: lc, ssm: ls)
        }
    }
}

/// How tensor-parallel ranks add their partial results: `CUDACommunicator` (NCCL, one GPU a rank) or
/// `CUDASharedDeviceReduction` (ranks on one device).
public protocol CUDARankReduction: AnyObject, Sendable {
    /// sets[k][r]: rank r's buffer of tensor k, counts[k] its float32 elements; each becomes the sum over
    /// ranks, queued on the ranks' streams.
    func allReduceSum(_ sets: [[CUDABuffer]], counts: [Int]) throws
}

/// The all-reduce of ranks that share one device: rank 0's buffer += each other rank's (m_add_into), then
/// copied back to them, in order on the device's one stream. The self-test checks the split on one GPU with it;
/// it is not a way to run faster.
final class CUDASharedDeviceReduction: CUDARankReduction, @unchecked Sendable {
    let kernels: ModelKernels
    let device: CUDADevice

    init(kernels: ModelKernels, device: CUDADevice) {
        self.kernels = kernels
        self.device = device
    }

    func allReduceSum(_ sets: [[CUDABuffer]], counts: [Int]) throws {
        for (set, n) in zip(sets, counts) {
            for b in set {
                guard b.device === device, n >= 0, n <= b.count else {
                    throw Mamba2Error.invalidArgument("buffers", reason: "\(n) elements do not fit a buffer of \(b.count) on this device")
                }
            }
            for b in set.dropFirst() {
                let a = KernelArguments()
                a.add(n); a.add(set[0]); a.add(b)
                try kernels.addInto.launch(grid: (max(1, min((n + 255) / 256, 4 * device.multiprocessors)), 1, 1), block: (256, 1, 1), arguments: a)
            }
            for b in set.dropFirst() { try b.copy(bytes: n * 4, from: set[0]) }
        }
    }
}
