import Mamba2

/// Where training steps run: the parameters (a float32 master copy), the optimizer's state, the loss and
/// gradients of batches, and optimizer steps. `Trainer` (data, schedule, checkpoints, progress) drives one
/// and knows nothing else of it: `CPUTrainingBackend` here, the GPU's from `Mamba2CUDA` later.
///
/// Gradient accumulation: `accumulate` adds a batch's gradients (of the mean loss over its targets) to
/// the pending sum; `optimizerStep` applies their mean over the batches accumulated, then clears them.
public protocol TrainingBackend: AnyObject {
    var config: Mamba2Config { get }
    /// Adds the gradients of `batch`'s mean loss; returns that loss and its target count.
    func accumulate(_ batch: TrainingBatch) throws -> (loss: Double, targets: Int)
    /// The loss of `batch` without gradients (validation).
    func loss(_ batch: TrainingBatch) throws -> (loss: Double, targets: Int)
    /// One AdamW step (decay rules, warmup + cosine schedule and global-norm clipping of `AdamW`) with
    /// the mean of the accumulated gradients. Returns the gradients' global norm before clipping and the
    /// learning rate used.
    func optimizerStep() throws -> (gradientNorm: Float, learningRate: Float)
    /// Optimizer steps taken.
    var optimizerSteps: Int { get }
    /// The parameters by their state-spaces names, float32 (for checkpoints and evaluation).
    func parameters() throws -> [String: [Float]]
    /// The optimizer's moments ("m.NAME", "v.NAME"), for checkpoints.
    func optimizerState() throws -> [(String, Tensor)]
    /// Restores a checkpoint: parameters, the optimizer's step count and its moments.
    func restore(parameters: [String: [Float]], optimizerStep: Int, moments: [String: [Float]]) throws
}

/// Training on the host's cores: `ModelGradients` (exact float32 gradients through the chunked SSD
/// backward) and `AdamW`.
public final class CPUTrainingBackend: TrainingBackend {
    public let config: Mamba2Config
    var params: [String: [Float]]
    var optimizer: AdamW
    /// The sum of the accumulated batches' gradients, and how many.
    var pending: [String: [Float]] = [:]
    var pendingBatches = 0
    /// The model of the current parameters, made again after each step.
    var cachedModel: Mamba2Model?

    public init(config: Mamba2Config, weights: Mamba2Weights, optimizer options: AdamW.Options) throws {
        try config.validate()
        self.config = config
        params = Dictionary(uniqueKeysWithValues: weights.namedTensors(config).map { ($0.0, $0.1.data) })
        optimizer = AdamW(options: options)
    }

    func model() throws -> Mamba2Model {
        if let cachedModel { return cachedModel }
        let m = try Mamba2Model(config: config, weights: try Mamba2Weights(config, values: params, storedDType: "F32"))
        cachedModel = m
        return m
    }

    public func accumulate(_ batch: TrainingBatch) throws -> (loss: Double, targets: Int) {
        let r = try ModelGradients.compute(model: try model(), batch: batch)
        for (name, g) in r.gradients.namedTensors(config) {
            if var sum = pending[name] {
                g.data.withUnsafeBufferPointer { gp in for i in sum.indices { sum[i] += gp[i] } }
                pending[name] = sum
            } else {
                pending[name] = g.data
            }
        }
        pendingBatches += 1
        return (r.loss, r.targets)
    }

    public func loss(_ batch: TrainingBatch) throws -> (loss: Double, targets: Int) {
        try ModelGradients.loss(model: try model(), batch: batch)
    }

    public func optimizerStep() throws -> (gradientNorm: Float, learningRate: Float) {
        guard pendingBatches > 0 else { throw Mamba2Error.invalidArgument("training", reason: "an optimizer step with no gradients accumulated") }
        if pendingBatches > 1 {
            let scale = 1 / Float(pendingBatches)
            for k in pending.keys { pending[k] = pending[k]!.map { $0 * scale } }
        }
        let norm = optimizer.update(&params, gradients: pending)
        pending = [:]
        pendingBatches = 0
        cachedModel = nil
        return (norm, optimizer.learningRate(at: optimizer.step))
    }

    public var optimizerSteps: Int { optimizer.step }
    public func parameters() throws -> [String: [Float]] { params }
    public func optimizerState() throws -> [(String, Tensor)] { optimizer.stateTensors }

    public func restore(parameters: [String: [Float]], optimizerStep: Int, moments: [String: [Float]]) throws {
        for (name, v) in params {
            guard let p = parameters[name], p.count == v.count else {
                throw Mamba2Error.invalidArgument(name, reason: "missing from the restored parameters or of another size")
            }
        }
        params = parameters
        optimizer = AdamW(options: optimizer.options, step: optimizerStep, state: moments)
        cachedModel = nil
    }
}
