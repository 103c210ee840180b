import Mamba2
import Mamba2Training
import Mamba2CUDA

/// Data-parallel training on several GPUs of this machine (`mamba2 train --device cuda --gpus N`): a
/// `CUDATrainer` per GPU holding the whole model, each batch's rows dealt out among them (as evenly as they
/// divide), their gradients summed through NCCL before every optimizer step, and the same AdamW step on every
/// GPU, so that their weights stay equal. Each GPU's loss is summed over its targets and divided by the whole
/// batch's target count: the sum over GPUs is the batch's mean, as one GPU would take it.
///
/// The gradients are all-reduced in one call after the backward of the step's last batch (not yet in buckets
/// beside the backward).
public final class CUDADataParallelTrainingBackend: TrainingBackend {
    public let trainers: [CUDATrainer]
    let communicator: CUDACommunicator
    let schedule: AdamW

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
        let ps = try parts(batch)
        let targets = ps.reduce(0) { $0 + $1.batch.targetCount }
        guard targets > 0 else { throw Mamba2Error.invalidArgument("batch", reason: "no position has a next token of its own document") }
        // Every GPU's work queued before any is waited for, so that they run side by side.
        for p in ps { try p.trainer.queueAccumulate(p.batch, normalizer: Double(targets)) }
        let loss = try ps.reduce(0.0) { $0 + (try $1.trainer.collectLoss(normalizer: Double(targets))) }
        // A GPU that took no rows this batch has no gradients of it: its pending count must still advance
        // with the others' (its gradient buffer is summed as zeros).
        for t in trainers where !ps.contains(where: { $0.trainer === t }) { try t.skipBatch() }
        return (loss, targets)
    }

    public func loss(_ batch: TrainingBatch) throws -> (loss: Double, targets: Int) {
        let b = try CUDATrainingBackend.deviceBatch(batch)
        return (try trainers[0].loss(b), b.targetCount)
    }

    public func optimizerStep() throws -> (gradientNorm: Float, learningRate: Float) {
        try communicator.allReduceSum(trainers.map(\.grads), count: trainers[0].grads.count)
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
