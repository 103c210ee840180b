import Mamba2
import Mamba2Training
import Mamba2CUDA

/// `TrainingBackend` on an NVIDIA GPU: the whole step on the device (`CUDATrainer`), with the CPU trainer's
/// batches, schedule (warmup + cosine), decay rules, clipping and checkpoints, so that `Trainer` runs either
/// and a checkpoint of one resumes on the other.
public final class CUDATrainingBackend: TrainingBackend {
    public let trainer: CUDATrainer
    /// The schedule and constants of the CPU's AdamW (its moments are the device's, not this value's).
    let schedule: AdamW

    public var config: Mamba2Config { trainer.config }
    public var optimizerSteps: Int { trainer.optimizerSteps }

    public init(device: CUDADevice, config: Mamba2Config, weights: Mamba2Weights, optimizer options: AdamW.Options,
                precision: CUDATrainer.Precision, recomputeSSD: Bool = false) throws {
        let values = Dictionary(uniqueKeysWithValues: weights.namedTensors(config).map { ($0.0, $0.1.data) })
        trainer = try CUDATrainer(device: device, config: config, values: values, precision: precision, decays: AdamW.decays,
                                  recomputeSSD: recomputeSSD)
        schedule = AdamW(options: options)
    }

    /// The batch as the device takes it: int32 tokens, each token's document start and target.
    public static func deviceBatch(_ b: TrainingBatch) throws -> CUDATrainer.Batch {
        let T = b.rows * b.length
        let starts = b.documentStarts()
        var targets = [Int32](repeating: -1, count: T)
        for t in 0..<T where b.hasTarget(t) { targets[t] = Int32(b.tokens[t + 1]) }
        return try CUDATrainer.Batch(rows: b.rows, length: b.length, tokens: b.tokens.map { Int32(clamping: $0) },  // an id past Int32 stays out of range
                                     documentStarts: starts.map { Int32($0) }, targets: targets)
    }

    public func accumulate(_ batch: TrainingBatch) throws -> (loss: Double, targets: Int) {
        let b = try Self.deviceBatch(batch)
        return (try trainer.accumulate(b), b.targetCount)
    }

    public func loss(_ batch: TrainingBatch) throws -> (loss: Double, targets: Int) {
        let b = try Self.deviceBatch(batch)
        return (try trainer.loss(b), b.targetCount)
    }

    public func optimizerStep() throws -> (gradientNorm: Float, learningRate: Float) {
        let o = schedule.options
        let lr = schedule.learningRate(at: trainer.optimizerSteps + 1)
        let norm = try trainer.optimizerStep(CUDATrainer.OptimizerStep(learningRate: lr, beta1: o.beta1, beta2: o.beta2, epsilon: o.epsilon,
                                                                       weightDecay: o.weightDecay, clipNorm: o.clipNorm))
        return (norm, lr)
    }

    public func parameters() throws -> [String: [Float]] { try trainer.parameters() }

    public func optimizerState() throws -> [(String, Tensor)] {
        let (m, v) = try trainer.moments()
        return AdamW.momentTensors(m: m, v: v)
    }

    public func restore(parameters: [String: [Float]], optimizerStep: Int, moments: [String: [Float]]) throws {
        let (m, v) = AdamW.splitMoments(moments)
        try trainer.restore(parameters: parameters, optimizerSteps: optimizerStep, m: m, v: v)
    }
}
