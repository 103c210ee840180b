import ArgumentParser
import Mamba2
import Mamba2Training
import Mamba2CUDA
import Mamba2CUDATraining
import Mamba2Diagnostics
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Set by SIGINT: the run saves a checkpoint and stops after the current step.
nonisolated(unsafe) var interruptRequested: sig_atomic_t = 0

struct TrainCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "train",
        abstract: "Trains a Mamba-2 language model on text files (CPU or GPU), with checkpoints you can resume.",
        discussion: """
        Model: --preset (tiny, small, base, 130m, 370m, 780m, 1.3b, 2.7b), --config FILE (config.json of either layout), or \
        --init-from DIR to fine-tune a checkpoint. Text: each file is a document; a line '<|endoftext|>' separates documents \
        within a file; every 50th document is held out for validation. Ids from --tokenizer FILE (tokenizer.json), the \
        model's own tokenizer.json with --init-from, or --bytes (UTF-8 bytes, vocabulary 257). Checkpoints go to --out \
        (config.json + model.safetensors in the Hugging Face layout, optimizer.safetensors, trainer_state.json, loss.svg); \
        --resume continues one exactly, with the saved run's settings (only --steps may change them), on either device. \
        Ctrl-C saves and stops. --device cuda runs the whole step on the GPU (bf16 mixed precision by default, \
        --precision f32 for checking).
        """)

    @OptionGroup var compute: ComputeOptions
    @Option(help: "cpu, cuda or cuda:N: where the training step runs.") var device: DeviceChoice = .cpu
    @Option(help: "GPU training precision: bf16 (mixed: bf16 matrix inputs and activations, float32 master weights, gradients and optimizer) or f32.")
    var precision: CUDATrainer.Precision = .bf16
    @Option(help: "Batches whose gradients are averaged into each optimizer step.") var accumulate: Int = 1
    @Flag(help: "GPU: recompute the SSD forward in the backward instead of keeping its output y per layer (less memory for long sequences).")
    var recomputeSsd = false
    @Argument(help: "Text files to train on.") var data: [String] = []
    @Option(help: "Checkpoint directory.") var out: String
    @Flag(help: "Continue the run saved in --out.") var resume = false
    @Option(help: "Model shape: tiny, small, base, 130m, 370m, 780m, 1.3b, 2.7b.") var preset: String?
    @Option(help: "config.json giving the model shape.") var config: String?
    @Option(help: "Start from this model directory (either layout) instead of random weights.") var initFrom: String?
    @Option(help: "tokenizer.json for the text.") var tokenizer: String?
    @Flag(help: "Train on UTF-8 bytes (ids 0–255, end of text 256).") var bytes = false
    @Option(help: "Optimizer steps in the run.") var steps: Int?
    @Option(help: "Rows per batch.") var batch: Int = 8
    @Option(help: "Tokens per row.") var length: Int = 256
    @Option(help: "Peak learning rate.") var lr: Float = 1e-3
    @Option(help: "Final learning rate of the cosine schedule.") var minLr: Float = 1e-4
    @Option(help: "Linear warmup steps.") var warmup: Int = 100
    @Option(help: "AdamW weight decay (not on A_log, D, dt_bias, norms, biases).") var weightDecay: Float = 0.1
    @Option(help: "Clip the gradient's global norm to this (0: off).") var clip: Float = 1.0
    @Option(help: "Seed of the initial weights and the batches.") var seed: UInt64 = 0
    @Option(help: "Validation every N steps.") var evalEvery: Int = 100
    @Option(help: "Validation batches per evaluation.") var evalBatches: Int = 4
    @Option(help: "Checkpoint every N steps.") var saveEvery: Int = 100
    @Option(help: "Also write the final model here (config.json, model.safetensors, tokenizer.json, loss.svg).") var export: String?
    @Option(help: "Weights dtype of the export: f32, bf16, f16.") var exportDtype: String = "bf16"
    @Option(help: "Save and stop once this step is reached (train in sittings; continue with --resume).") var stopAfter: Int?
    @Flag(help: "One progress line per step even on a terminal.") var plain = false
    @Option(help: "With --device cuda: data parallelism over GPUs 0..<N of this machine (each batch's rows dealt out, gradients summed through NCCL).")
    var gpus: Int?

    func run() throws {
        try compute.apply()
        guard !data.isEmpty else { throw ValidationError("give the text files to train on") }
        let exportType: DType
        switch exportDtype {
        case "f32": exportType = .f32
        case "bf16": exportType = .bf16
        case "f16": exportType = .f16
        default: throw ValidationError("--export-dtype must be f32, bf16 or f16")
        }

        var gpu: CUDADevice?
        let factory: Trainer.BackendFactory
        switch device {
        case .cpu: factory = Trainer.cpuBackend
        case let .cuda(n):
            let d = try CUDADevice(ordinal: n)
            gpu = d
            let (precision, recompute) = (self.precision, recomputeSsd)
            if let gpus {
                guard n == 0 else { throw ValidationError("--gpus N takes GPUs 0..<N: give --device cuda, not cuda:\(n)") }
                let devices = try CUDADevice.first(gpus, reusing: d)
                factory = { try CUDADataParallelTrainingBackend(devices: devices, config: $0, weights: $1, optimizer: $2, precision: precision,
                                                                recomputeSSD: recompute) }
            } else {
                factory = { try CUDATrainingBackend(device: d, config: $0, weights: $1, optimizer: $2, precision: precision, recomputeSSD: recompute) }
            }
        }
        if gpus != nil, case .cpu = device { throw ValidationError("--gpus needs --device cuda") }
        let trainer: Trainer
        if resume {
            guard preset == nil, config == nil, initFrom == nil else {
                throw ValidationError("--resume takes the model from --out; drop --preset, --config and --init-from")
            }
            guard MappedFile.exists(out + "/trainer_state.json") else {
                throw Mamba2Error.io(path: out + "/trainer_state.json", reason: "missing: --resume needs a checkpoint directory written by mamba2 train")
            }
            let tokPath = out + "/tokenizer.json"
            let encoding = try self.encoding(modelTokenizer: MappedFile.exists(tokPath) ? tokPath : nil)
            let dataset = try TextDataset(files: data, encoding: encoding)
            trainer = try Trainer.resume(directory: out, dataset: dataset, steps: steps, backend: factory)
            printErr("resumed \(out) at step \(trainer.step) of \(trainer.options.steps)")
            if trainer.dataChanged {
                printErr("warning: the text differs from the saved run's (its fingerprint changed): training continues on the new text, so the run will not equal an uninterrupted one")
            }
        } else {
            let sources = [preset != nil, config != nil, initFrom != nil].filter { $0 }.count
            guard sources == 1 else { throw ValidationError("give exactly one of --preset, --config, --init-from (or --resume)") }
            let modelTokenizer = initFrom.map { $0 + "/tokenizer.json" }.flatMap { MappedFile.exists($0) ? $0 : nil }
            let encoding = try self.encoding(modelTokenizer: modelTokenizer)
            let vocab: Int
            let tokJSON: String?
            switch encoding {
            case .bytes: vocab = ByteTokenizer.vocabularySize; tokJSON = ByteTokenizer.json()
            case let .tokenizer(t):
                vocab = t.vocabularySize
                let path = tokenizer ?? modelTokenizer!
                tokJSON = String(decoding: try MappedFile.readAll(path), as: UTF8.self)
            }
            let dataset = try TextDataset(files: data, encoding: encoding)
            let cfg: Mamba2Config
            let weights: Mamba2Weights
            if let initFrom {
                let m = try Mamba2Model.load(directory: initFrom)
                cfg = m.config; weights = m.weights
            } else {
                var c: Mamba2Config
                if let config { c = try Mamba2Config.load(path: config) } else { c = try Mamba2Config.preset(preset!, vocabSize: vocab) }
                if config != nil && c.vocabSize < vocab {
                    throw ValidationError("the config's vocab_size \(c.vocabSize) is smaller than the tokenizer's \(vocab)")
                }
                c.layout = .huggingFace
                cfg = c
                weights = Mamba2Weights.random(c, seed: seed)
            }
            var o = TrainingOptions()
            o.steps = steps ?? 1000; o.rows = batch; o.length = length; o.seed = seed
            o.evalEvery = evalEvery; o.evalBatches = evalBatches; o.saveEvery = saveEvery; o.accumulate = accumulate
            o.optimizer.learningRate = lr; o.optimizer.minLearningRate = minLr; o.optimizer.warmupSteps = warmup
            o.optimizer.weightDecay = weightDecay; o.optimizer.clipNorm = clip
            trainer = try Trainer(config: cfg, weights: weights, dataset: dataset, options: o, directory: out, tokenizerJSON: tokJSON,
                                  backend: factory)
        }
        // data parallelism all-reduces the gradients beside the backward of each step's last batch
        (trainer.backend as? CUDADataParallelTrainingBackend)?.batchesPerStep = trainer.options.accumulate
        let c = trainer.config
        printErr("model: d_model \(c.dModel), \(c.nLayer) layers, state \(c.dState), heads \(c.nHeads)×\(c.headDim), vocab \(c.vocabSize) — \(countString(Mamba2Weights.parameterCount(c))) parameters")
        let perStep = trainer.options.rows * trainer.options.length * trainer.options.accumulate
        printErr("data: \(countString(trainer.dataset.train.count)) training tokens, \(countString(trainer.dataset.validation.count)) validation tokens; \(trainer.options.rows)×\(trainer.options.length)\(trainer.options.accumulate > 1 ? "×\(trainer.options.accumulate)" : "") tokens per step; " + (gpu == nil ? "threads \(Parallel.threadCount)" : "GPU \(gpu!.name), \(precision.rawValue)"))
        // MFU: 6 · parameters · tokens/s over the bf16 matrix-product peak measured on this card now.
        var peak: Double?
        if let gpu {
            peak = try CUDATrainer.measuredBF16Peak(device: gpu)
            printErr("measured bf16 matrix-product peak: \(fixed(peak! / 1e12, 0)) TFLOP/s")
        }
        let parameters = Double(Mamba2Weights.parameterCount(c))

        signal(SIGINT) { _ in interruptRequested = 1 }
        let tty = isatty(2) != 0 && !plain
        let t0 = monotonicSeconds()
        var tokens = 0
        try trainer.run(progress: { p in
            tokens += perStep
            let avg = Double(tokens) / max(monotonicSeconds() - t0, 1e-9)
            let width = 24
            let filled = p.step * width / max(p.steps, 1)
            let bar = String(repeating: "=", count: filled) + (filled < width ? ">" : "") + String(repeating: " ", count: max(0, width - filled - 1))
            var line = "step \(p.step)/\(p.steps) [\(bar)] loss \(fixed(p.loss, 4)) | \(fixed(avg, 0)) tok/s | lr \(sci(Double(p.learningRate))) | ETA \(duration(p.eta))"
            if let v = p.validationLoss { line += " | val \(fixed(v, 4))" }
            if let gpu, let peak {
                line += " | MFU \(fixed(100 * 6 * parameters * p.tokensPerSecond / peak, 1))% | mem \(bytesString(gpu.peakAllocatedBytes))"
            }
            if tty {
                writeAll(2, "\r\u{1B}[K" + line + (p.validationLoss != nil || p.step == p.steps ? "\n" : ""))
            } else {
                printErr(line)
            }
        }, shouldStop: { interruptRequested != 0 || (stopAfter.map { trainer.step >= $0 } ?? false) })
        if interruptRequested != 0 {
            printErr("\ninterrupted: saved step \(trainer.step) to \(out); continue with --resume")
            throw ExitCode(130)
        }
        if trainer.step < trainer.options.steps {
            printErr("stopped at step \(trainer.step) (--stop-after); saved to \(out); continue with --resume")
            return
        }
        let v = trainer.validationLoss.last?.loss ?? .nan
        printErr("done: step \(trainer.step), validation loss \(fixed(v, 4)) nats/token (\(fixed(v / log(2.0), 3)) bits); peak memory \(bytesString(peakResidentBytes())); checkpoint in \(out)")
        if let export {
            let weights = try Mamba2Weights(c, values: trainer.parameters, storedDType: "F32")
            try Trainer.writeModel(config: c, weights: weights, tokenizerJSON: trainer.tokenizerJSON, to: export, dtype: exportType)
            try writeFileAtomically(Array(trainer.lossCurve().utf8), to: export + "/loss.svg")
            printErr("exported \(exportDtype) model to \(export)")
        }
    }

    func encoding(modelTokenizer: String?) throws -> TextDataset.Encoding {
        if bytes {
            guard tokenizer == nil else { throw ValidationError("give --bytes or --tokenizer, not both") }
            return .bytes
        }
        if let path = tokenizer ?? modelTokenizer { return .tokenizer(try Tokenizer(path: path)) }
        throw ValidationError("say how to turn text into ids: --tokenizer FILE or --bytes")
    }
}

/// "1h02m", "3m05s", "42s".
func duration(_ s: Double) -> String {
    guard s.isFinite, s >= 0 else { return "?" }
    let t = Int(s.rounded())
    if t >= 3600 { return "\(t / 3600)h" + (t % 3600 / 60 < 10 ? "0" : "") + "\(t % 3600 / 60)m" }
    if t >= 60 { return "\(t / 60)m" + (t % 60 < 10 ? "0" : "") + "\(t % 60)s" }
    return "\(t)s"
}
