import Mamba2
import Mamba2Training
import Mamba2CUDA

/// Data-parallel training on several GPUs of this machine (`mamba2 train --device cuda --gpus N`): a
/// `CUDATrainer` per GPU holding the whole model, each batch's rows dealt out among them (as evenly as they
/// divide), their gradients summed through NCCL before every optimizer step, and the same AdamW step on every
/// GPU, so that their weights stay equal. Each GPU's loss is summed over its targets and divided by the whole
/// batch's target count: the sum over GPUs is the batch's mean, as one GPU would take it.
///
/// With `batchesPerStep` set (as `mamba2 train` and `bench train` set it), the step's last batch all-reduces its
/// gradients in buckets beside its own backward: each layer's in_proj and out_proj gradients as soon as that
/// layer's backward has written them (an event on each GPU's compute stream, NCCL on a second stream waiting for
/// it), the rest (embedding, norms, vectors) after the whole backward; the AdamW step waits for the last bucket.
/// Otherwise they are all-reduced in one call before the AdamW step.
public final class CUDADataParallelTrainingBackend: TrainingBackend {
    public let trainers: [CUDATrainer]
    let communicator: CUDACommunicator
    let schedule: AdamW
    /// Batches each optimizer step takes (nil: unknown, so the gradients are all-reduced whole before the
    /// step). A step of another count is refused where the buckets were already sent.
    public var batchesPerStep: Int?
    /// Batches accumulated since the last step, and whether their gradients are already being all-reduced.
    var pending = 0
    var reducedBeside = false
    /// Per GPU: an event after each layer's backward, after the whole batch, and after the last bucket.
    var layerEvents: [[CUDAEvent]] = []
    var endEvents: [CUDAEvent] = [], doneEvents: [CUDAEvent] = []

    public var config: Mamba2Config { trainers[0].config }
    public var optimizerSteps: Int { trainers[0].optimizerSteps }

    public convenience init(devices: [CUDADevice], config: Mamba2Config, weights: Mamba2Weights, optimizer options: AdamW.Options,
                            precision: CUDATrainer.Precision, recomputeSSD: Bool = false) throws {
        let values = Dictionary(uniqueKeysWithValues: weights.namedTensors(config).map { ($0.0, $0.1.data) })
        try self.init(trainers: try devices.map {
            try CUDATrainer(device: $0, config: config, values: values, precision: precision, decays: AdamW.decays, recomputeSSD: recomputeSSD)
        }, optimizer: options)
    }

    /// Over trainers already made (one per GPU, the same weights: for instance each drawn on its device from
    /// the same seed).
    public init(trainers: [CUDATrainer], optimizer options: AdamW.Options) throws {
        guard !trainers.isEmpty else { throw Mamba2Error.invalidArgument("gpus", reason: "no GPUs given") }
        self.trainers = trainers
        communicator = try CUDACommunicator(devices: trainers.map(\.device))
        schedule = AdamW(options: options)
    }

    /// Whether the gradients can go in buckets: every trainer's layers in the leading ranges.
    var bucketsFit: Bool {
        trainers.allSatisfy { t in (0..<t.config.nLayer).allSatisfy { t.layerGradients($0) != nil } }
    }

    /// Makes the side streams and events of the buckets (once).
    func prepareBuckets() throws {
        guard layerEvents.isEmpty else { return }
        for t in trainers { try t.device.openSideStream() }
        layerEvents = try trainers.map { t in try (0..<t.config.nLayer).map { _ in try CUDAEvent(on: t.device) } }
        endEvents = try trainers.map { try CUDAEvent(on: $0.device) }
        doneEvents = try trainers.map { try CUDAEvent(on: $0.device) }
    }

    /// Queues the buckets' all-reduces on the side streams, each after its producers (the batch's backward is
    /// queued, its layer events recorded).
    func queueBuckets() throws {
        for e in endEvents { try e.record() }
        func reduce(_ ranges: [Range<Int>]) throws {
            try communicator.allReduceSum([zip(trainers, ranges).map { $0.grads.view(at: $1.lowerBound, count: $1.count) }], counts: [ranges[0].count],
                                          type: .f32, side: true)
        }
        for l in stride(from: config.nLayer - 1, through: 0, by: -1) {
            for events in layerEvents { try events[l].wait(side: true) }
            try reduce(trainers.map { $0.layerGradients(l)! })
        }
        for e in endEvents { try e.wait(side: true) }
        try reduce(trainers.map(\.otherGradients))
        for e in doneEvents { try e.record(side: true) }
    }

    /// Rows [start, end) of a batch that GPU i of n takes: the first rows % n GPUs one row more.
    public static func rows(of rows: Int, gpu i: Int, of n: Int) -> Range<Int> {
        let base = rows / n, extra = rows % n
        let start = i * base + min(i, extra)
        return start..<(start + base + (i < extra ? 1 : 0))
    }

    /// Each GPU's rows of a batch, nil for a GPU past its rows.
    public static func split(_ batch: TrainingBatch, gpus n: Int) throws -> [TrainingBatch?] {
        try (0..<n).map { i in
            let r = rows(of: batch.rows, gpu: i, of: n), L = batch.length
            guard !r.isEmpty else { return nil }
            return try TrainingBatch(rows: r.count, length: L, tokens: Array(batch.tokens[(r.lowerBound * L)..<(r.upperBound * L)]),
                                     documents: Array(batch.documents[(r.lowerBound * L)..<(r.upperBound * L)]))
        }
    }

    /// The GPUs' parts of a batch as their trainers take them (GPUs past its rows take none).
    func parts(_ batch: TrainingBatch) throws -> [(trainer: CUDATrainer, batch: CUDATrainer.Batch)] {
        try zip(trainers, Self.split(batch, gpus: trainers.count)).compactMap { t, part in
            try part.map { (t, try CUDATrainingBackend.deviceBatch($0)) }
        }
    }

    public func accumulate(_ batch: TrainingBatch) throws -> (loss: Double, targets: Int) {
        guard !reducedBeside else {
            throw Mamba2Error.invalidArgument("batchesPerStep", reason: "a batch after the step's last (\(batchesPerStep ?? 0) a step): its gradients were already sent")
        }
        let ps = try parts(batch)
        let targets = ps.reduce(0) { $0 + $1.batch.targetCount }
        guard targets > 0 else { throw Mamba2Error.invalidArgument("batch", reason: "no position has a next token of its own document") }
        let beside = pending + 1 == batchesPerStep && bucketsFit
        if beside {
            try prepareBuckets()
            for (i, t) in trainers.enumerated() { t.afterLayerBackward = { [events = layerEvents[i]] l in try events[l].record() } }
        }
        defer { for t in trainers { t.afterLayerBackward = nil } }
        // Every GPU's work queued before any is waited for, so that they run side by side.
        for p in ps { try p.trainer.queueAccumulate(p.batch, normalizer: Double(targets)) }
        // A GPU that took no rows this batch has no gradients of it: its pending count must still advance
        // with the others' (its gradient buffer is summed as zeros), and its buckets are ready at once.
        for (i, t) in trainers.enumerated() where !ps.contains(where: { $0.trainer === t }) {
            try t.skipBatch()
            if beside { for e in layerEvents[i] { try e.record() } }
        }
        if beside {
            try queueBuckets()
            reducedBeside = true
        }
        pending += 1
        let loss = try ps.reduce(0.0) { $0 + (try $1.trainer.collectLoss(normalizer: Double(targets))) }
        return (loss, targets)
    }

    public func loss(_ batch: TrainingBatch) throws -> (loss: Double, targets: Int) {
        let b = try CUDATrainingBackend.deviceBatch(batch)
        return (try trainers[0].loss(b), b.targetCount)
    }

    public func optimizerStep() throws -> (gradientNorm: Float, learningRate: Float) {
        if reducedBeside {
            for e in doneEvents { try e.wait() }  // the AdamW step after the last bucket
        } else {
            try communicator.allReduceSum(trainers.map(\.grads), count: trainers[0].grads.count)
        }
        reducedBeside = false
        pending = 0
        let o = schedule.options
        let lr = schedule.learningRate(at: optimizerSteps + 1)
        let step = CUDATrainer.OptimizerStep(learningRate: lr, beta1: o.beta1, beta2: o.beta2, epsilon: o.epsilon,
                                             weightDecay: o.weightDecay, clipNorm: o.clipNorm)
        var norm: Float = 0
        for (i, t) in trainers.enumerated() {
            let n = try t.optimizerStep(step)
            if i == 0 { norm = n }
        }
        return (norm, lr)
    }

    public func parameters() throws -> [String: [Float]] { try trainers[0].parameters() }

    public func optimizerState() throws -> [(String, Tensor)] {
        let (m, v) = try trainers[0].moments()
        return AdamW.momentTensors(m: m, v: v)
    }

    public func restore(parameters: [String: [Float]], optimizerStep: Int, moments: [String: [Float]]) throws {
        let (m, v) = AdamW.splitMoments(moments)
        for t in trainers { try t.restore(parameters: parameters, optimizerSteps: optimizerStep, m: m, v: v) }
    }
}
