import Mamba2
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Settings of a training run (saved with every checkpoint; a resumed run keeps them).
public struct TrainingOptions: Sendable {
    /// Optimizer steps in the whole run (the learning-rate schedule spans them).
    public var steps: Int = 1000
    /// Rows per batch (b).
    public var rows: Int = 8
    /// Tokens per row (L).
    public var length: Int = 256
    public var seed: UInt64 = 0
    /// Validation loss every this many steps (and at the end); 0: only at the end.
    public var evalEvery: Int = 100
    /// Validation batches (of rows × length) per evaluation.
    public var evalBatches: Int = 4
    /// Checkpoint every this many steps (and at the end); 0: only at the end.
    public var saveEvery: Int = 100
    /// Batches whose gradients are averaged into one optimizer step (rows × length tokens each).
    public var accumulate: Int = 1
    public var optimizer = AdamW.Options()
    public init() {}

    var json: JSON {
        let o = optimizer
        return .object([
            "steps": .number(Double(steps)), "rows": .number(Double(rows)), "length": .number(Double(length)),
            "seed": .string(String(seed)), "eval_every": .number(Double(evalEvery)), "eval_batches": .number(Double(evalBatches)),
            "save_every": .number(Double(saveEvery)), "accumulate": .number(Double(accumulate)), "learning_rate": .number(Double(o.learningRate)),
            "min_learning_rate": .number(Double(o.minLearningRate)), "warmup_steps": .number(Double(o.warmupSteps)),
            "beta1": .number(Double(o.beta1)), "beta2": .number(Double(o.beta2)), "epsilon": .number(Double(o.epsilon)),
            "weight_decay": .number(Double(o.weightDecay)), "clip_norm": .number(Double(o.clipNorm)),
        ])
    }

    init(json j: JSON, source: String) throws {
        func num(_ k: String) throws -> Double {
            guard let v = j[k]?.doubleValue else { throw Mamba2Error.io(path: source, reason: "field '\(k)' missing or not a number") }
            return v
        }
        func int(_ k: String) throws -> Int {  // whole and within ±2^53 before it becomes an Int
            guard let v = j[k]?.intValue else { throw Mamba2Error.io(path: source, reason: "field '\(k)' missing or not a whole number in range") }
            return v
        }
        steps = try int("steps"); rows = try int("rows"); length = try int("length")
        guard let s = j["seed"]?.stringValue, let seed = UInt64(s) else { throw Mamba2Error.io(path: source, reason: "field 'seed' missing") }
        self.seed = seed
        evalEvery = try int("eval_every"); evalBatches = try int("eval_batches"); saveEvery = try int("save_every")
        accumulate = j["accumulate"] == nil ? 1 : try int("accumulate")  // runs saved before the option: 1
        optimizer.learningRate = Float(try num("learning_rate")); optimizer.minLearningRate = Float(try num("min_learning_rate"))
        optimizer.warmupSteps = try int("warmup_steps"); optimizer.totalSteps = steps
        optimizer.beta1 = Float(try num("beta1")); optimizer.beta2 = Float(try num("beta2")); optimizer.epsilon = Float(try num("epsilon"))
        optimizer.weightDecay = Float(try num("weight_decay")); optimizer.clipNorm = Float(try num("clip_norm"))
        do { try validate() } catch let e as Mamba2Error { throw Mamba2Error.io(path: source, reason: "\(e)") }
    }

    /// Every option in its range (steps, batch and schedule sizes positive and bounded; rates and the
    /// optimizer's constants finite and in their intervals), so that nothing derived from them overflows,
    /// allocates without bound or trains on NaN. The error names the option.
    public func validate() throws {
        func bad(_ name: String, _ reason: String) -> Mamba2Error { .invalidArgument(name, reason: reason) }
        guard (1...1_000_000_000).contains(steps) else { throw bad("steps", "must be 1 ... 10^9, got \(steps)") }
        guard (1...1_048_576).contains(rows) else { throw bad("batch (rows)", "must be 1 ... 2^20, got \(rows)") }
        guard (2...16_777_216).contains(length) else { throw bad("length", "must be 2 ... 2^24 tokens, got \(length)") }
        guard rows * length <= 1 << 28 else { throw bad("batch × length", "\(rows) × \(length) tokens per step is more than 2^28") }
        guard evalEvery >= 0, saveEvery >= 0 else { throw bad(evalEvery < 0 ? "eval every" : "save every", "must be ≥ 0") }
        guard (1...65_536).contains(accumulate) else { throw bad("accumulate", "must be 1 ... 65536 batches per step, got \(accumulate)") }
        guard (0...1_000_000).contains(evalBatches) else { throw bad("eval batches", "must be 0 ... 10^6, got \(evalBatches)") }
        let o = optimizer
        guard o.learningRate.isFinite, o.learningRate >= 0 else { throw bad("learning rate", "must be finite and ≥ 0, got \(o.learningRate)") }
        guard o.minLearningRate.isFinite, o.minLearningRate >= 0 else { throw bad("min learning rate", "must be finite and ≥ 0, got \(o.minLearningRate)") }
        guard (0...1_000_000_000).contains(o.warmupSteps) else { throw bad("warmup", "must be 0 ... 10^9, got \(o.warmupSteps)") }
        guard o.beta1 >= 0, o.beta1 < 1 else { throw bad("beta1", "must be in [0, 1), got \(o.beta1)") }
        guard o.beta2 >= 0, o.beta2 < 1 else { throw bad("beta2", "must be in [0, 1), got \(o.beta2)") }
        guard o.epsilon.isFinite, o.epsilon > 0 else { throw bad("epsilon", "must be finite and > 0, got \(o.epsilon)") }
        guard o.weightDecay.isFinite, o.weightDecay >= 0 else { throw bad("weight decay", "must be finite and ≥ 0, got \(o.weightDecay)") }
        guard o.clipNorm.isFinite, o.clipNorm >= 0 else { throw bad("clip", "must be finite and ≥ 0 (0: no clipping), got \(o.clipNorm)") }
    }
}

/// Where a run stands, reported after every step.
public struct TrainingProgress: Sendable {
    public var step: Int
    public var steps: Int
    public var loss: Double
    public var learningRate: Float
    public var gradientNorm: Float
    /// Training tokens per second over this step.
    public var tokensPerSecond: Double
    /// Seconds left at the recent pace.
    public var eta: Double
    /// Set on the steps that ran a validation.
    public var validationLoss: Double?
}

/// A training run over a `TextDataset`: AdamW steps on `ModelGradients`, periodic validation, and
/// checkpoints in the Hugging Face layout with the optimizer beside them, from which `resume` continues
/// exactly where the run stopped (same batches, same numbers).
///
/// A checkpoint directory holds:
///   config.json, model.safetensors (float32, Hugging Face names), tokenizer.json (when known),
///   optimizer.safetensors (AdamW moments), trainer_state.json (step, options, loss history), loss.svg.
/// Files are written to a temporary name and renamed, so an interrupted save never leaves a half file.
public final class Trainer {
    /// Makes the backend the steps run on from the model's config, its initial weights and AdamW's options.
    public typealias BackendFactory = (Mamba2Config, Mamba2Weights, AdamW.Options) throws -> any TrainingBackend
    /// The host's cores (`CPUTrainingBackend`).
    public static func cpuBackend(_ config: Mamba2Config, _ weights: Mamba2Weights, _ options: AdamW.Options) throws -> any TrainingBackend {
        try CPUTrainingBackend(config: config, weights: weights, optimizer: options)
    }

    public let config: Mamba2Config
    public let options: TrainingOptions
    public let dataset: TextDataset
    public let directory: String
    /// tokenizer.json text written beside the checkpoint (nil: none).
    public let tokenizerJSON: String?
    /// Where the steps run.
    public let backend: any TrainingBackend
    /// The parameters as they stand, by their state-spaces names.
    public var parameters: [String: [Float]] { (try? backend.parameters()) ?? [:] }
    public private(set) var step: Int
    public private(set) var trainLoss: [(step: Int, loss: Double)] = []
    public private(set) var validationLoss: [(step: Int, loss: Double)] = []
    /// Set by `resume` when the text differs from the saved run's (the batches then differ too).
    public private(set) var dataChanged = false

    public init(config: Mamba2Config, weights: Mamba2Weights, dataset: TextDataset, options: TrainingOptions,
                directory: String, tokenizerJSON: String?, backend makeBackend: BackendFactory = Trainer.cpuBackend) throws {
        try config.validate()
        guard dataset.idLimit <= config.vocabSize else {
            throw Mamba2Error.invalidArgument("data", reason: "token id \(dataset.idLimit - 1) does not fit the model's vocabulary of \(config.vocabSize)")
        }
        try options.validate()
        self.config = config
        var o = options
        o.optimizer.totalSteps = o.steps
        self.options = o
        self.dataset = dataset
        self.directory = directory
        self.tokenizerJSON = tokenizerJSON
        backend = try makeBackend(config, weights, o.optimizer)
        step = 0
    }

    /// Continues the run saved in `directory`. `steps` extends (or shortens) the run; the rest of the
    /// options are the saved ones, so the continuation equals an uninterrupted run.
    public static func resume(directory: String, dataset: TextDataset, steps: Int? = nil,
                              backend makeBackend: BackendFactory = Trainer.cpuBackend) throws -> Trainer {
        let statePath = directory + "/trainer_state.json"
        guard MappedFile.exists(statePath) else { throw Mamba2Error.io(path: statePath, reason: "missing: not a checkpoint of mamba2 train") }
        let state = try JSON.parse(try MappedFile.readAll(statePath), source: statePath)
        guard let optJ = state["options"], let savedStep = state["step"]?.intValue else {
            throw Mamba2Error.io(path: statePath, reason: "fields 'options' and 'step' are required")
        }
        var options = try TrainingOptions(json: optJ, source: statePath)
        if let steps { options.steps = steps; options.optimizer.totalSteps = steps }
        guard savedStep >= 0, savedStep <= options.steps else {
            throw Mamba2Error.io(path: statePath, reason: "step \(savedStep) is outside 0 ... steps (\(options.steps))")
        }
        let model = try Mamba2Model.load(directory: directory)
        let tokPath = directory + "/tokenizer.json"
        let tok = MappedFile.exists(tokPath) ? String(decoding: try MappedFile.readAll(tokPath), as: UTF8.self) : nil
        let t = try Trainer(config: model.config, weights: model.weights, dataset: dataset, options: options, directory: directory,
                            tokenizerJSON: tok, backend: makeBackend)
        let optPath = directory + "/optimizer.safetensors"
        let opt = try SafeTensorsFile(path: optPath)
        var moments: [String: [Float]] = [:]
        for name in opt.tensors.keys { moments[name] = try opt.tensor(name).data }
        let parameters = try t.backend.parameters()
        for name in parameters.keys where moments["m." + name] == nil || moments["v." + name] == nil {
            throw Mamba2Error.checkpoint(file: optPath, tensor: "m." + name, reason: "missing: the optimizer state does not match the model")
        }
        try t.backend.restore(parameters: parameters, optimizerStep: savedStep, moments: moments)
        t.step = savedStep
        func pairs(_ key: String) -> [(step: Int, loss: Double)] {
            (state[key]?.arrayValue ?? []).compactMap { p in
                guard let a = p.arrayValue, a.count == 2, let s = a[0].intValue, let l = a[1].doubleValue else { return nil }
                return (s, l)
            }
        }
        if let saved = state["data"]?["fingerprint"]?.stringValue, saved != dataset.fingerprint { t.dataChanged = true }
        t.trainLoss = pairs("train_loss")
        t.validationLoss = pairs("validation_loss")
        return t
    }

    /// The model as it stands.
    public func currentModel() throws -> Mamba2Model {
        try Mamba2Model(config: config, weights: try Mamba2Weights(config, values: try backend.parameters(), storedDType: "F32"))
    }

    /// Mean validation loss over the held-out batches.
    public func evaluate() throws -> Double {
        var total = 0.0, count = 0
        for b in try dataset.validationBatches(rows: options.rows, length: options.length, maxBatches: options.evalBatches) {
            let r = try backend.loss(b)
            total += r.loss * Double(r.targets); count += r.targets
        }
        return count > 0 ? total / Double(count) : .nan
    }

    /// One optimizer step on the step's batches (`accumulate` of them: batch numbers (step − 1)·accumulate + 1
    /// onwards, so that one batch a step is batch `step`). Returns (loss over their targets, gradient norm,
    /// learning rate).
    public func trainStep() throws -> (loss: Double, gradientNorm: Float, learningRate: Float) {
        var total = 0.0, count = 0
        for i in 0..<options.accumulate {
            let batch = try dataset.batch(step: step * options.accumulate + i + 1, rows: options.rows, length: options.length, seed: options.seed)
            let r = try backend.accumulate(batch)
            guard r.loss.isFinite else {
                throw Mamba2Error.invalidArgument("training", reason: "loss became \(r.loss) at step \(step + 1); lower the learning rate")
            }
            total += r.loss * Double(r.targets); count += r.targets
        }
        let loss = total / Double(max(count, 1))
        let (norm, lr) = try backend.optimizerStep()
        step += 1
        trainLoss.append((step, loss))
        return (loss, norm, lr)
    }

    /// Runs to `options.steps`, validating and saving as configured; `progress` hears every step.
    /// `shouldStop` is polled between steps (e.g. on SIGINT): the run then saves and returns.
    public func run(progress: (TrainingProgress) -> Void, shouldStop: () -> Bool = { false }) throws {
        var recent: [Double] = []
        while step < options.steps {
            if shouldStop() { try save(); return }
            let t0 = monotonicSeconds()
            let (loss, norm, lr) = try trainStep()
            let dt = monotonicSeconds() - t0
            recent.append(dt)
            if recent.count > 20 { recent.removeFirst() }
            var p = TrainingProgress(step: step, steps: options.steps, loss: loss, learningRate: lr, gradientNorm: norm,
                                     tokensPerSecond: Double(options.rows * options.length * options.accumulate) / dt,
                                     eta: recent.reduce(0, +) / Double(recent.count) * Double(options.steps - step))
            let last = step == options.steps
            if last || (options.evalEvery > 0 && step % options.evalEvery == 0) {
                let v = try evaluate()
                validationLoss.append((step, v))
                p.validationLoss = v
            }
            progress(p)
            if last || (options.saveEvery > 0 && step % options.saveEvery == 0) { try save() }
        }
    }

    /// Writes the checkpoint (see the type's comment).
    public func save() throws {
        try makeDirectories(directory)
        let weights = try Mamba2Weights(config, values: try backend.parameters(), storedDType: "F32")
        try Trainer.writeModel(config: config, weights: weights, tokenizerJSON: tokenizerJSON, to: directory, dtype: .f32)
        try SafeTensorsFile.write(try backend.optimizerState(), to: directory + "/optimizer.safetensors")
        let pairs: ([(step: Int, loss: Double)]) -> JSON = { .array($0.map { .array([.number(Double($0.step)), .number($0.loss)]) }) }
        let state: JSON = .object(["step": .number(Double(step)), "options": options.json,
                                   "train_loss": pairs(trainLoss), "validation_loss": pairs(validationLoss),
                                   "parameters": .number(Double(Mamba2Weights.parameterCount(config))),
                                   "data": .object(["fingerprint": .string(dataset.fingerprint),
                                                    "train_tokens": .number(Double(dataset.train.count)),
                                                    "validation_tokens": .number(Double(dataset.validation.count))])])
        try writeFileAtomically(Array(state.serialized.utf8), to: directory + "/trainer_state.json")
        try writeFileAtomically(Array(lossCurve().utf8), to: directory + "/loss.svg")
    }

    /// The loss curve so far, as SVG.
    public func lossCurve() -> String {
        LossCurve.svg(train: trainLoss, validation: validationLoss,
                      title: "Mamba-2 d_model \(config.dModel), \(config.nLayer) layers: \(options.rows)×\(options.length) tokens per step")
    }

    /// A model directory in the Hugging Face layout: config.json, model.safetensors in `dtype`
    /// (names as transformers' Mamba2ForCausalLM: backbone.embeddings, no lm_head when tied),
    /// tokenizer.json when given.
    public static func writeModel(config: Mamba2Config, weights: Mamba2Weights, tokenizerJSON: String?, to dir: String,
                                  dtype: DType) throws {
        try makeDirectories(dir)
        let tensors = weights.namedTensors(config).map { name, t in
            (name == "backbone.embedding.weight" ? "backbone.embeddings.weight" : name, t)
        }
        try SafeTensorsFile.write(tensors, to: dir + "/model.safetensors", dtype: dtype, metadata: ["format": "pt"])
        try writeFileAtomically(Array(config.huggingFaceConfigText.utf8), to: dir + "/config.json")
        if let tokenizerJSON { try writeFileAtomically(Array(tokenizerJSON.utf8), to: dir + "/tokenizer.json") }
    }
}
