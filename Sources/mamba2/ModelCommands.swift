import ArgumentParser
import Mamba2
import Mamba2Training
import Mamba2CUDA
import Mamba2Diagnostics

/// Parses "1,2,3" into token ids.
/// Token ids separated by commas (non-negative; the model checks its vocabulary).
func parseIDs(_ s: String, option: String) throws -> [Int] { try parseIntegers(s, option: option, minimum: 0) }

/// The one list parser: integers ≥ minimum separated by commas (spaces around them allowed, no empty item).
func parseIntegers(_ s: String, option: String, minimum: Int) throws -> [Int] {
    let parts = s.split(separator: ",", omittingEmptySubsequences: false).map { $0.trimmingCharacters() }
    let values = parts.compactMap { Int($0) }
    guard !s.isEmpty, values.count == parts.count, values.allSatisfy({ $0 >= minimum }) else {
        throw ValidationError("\(option) takes \(minimum == 0 ? "non-negative" : "positive") integers separated by commas, got '\(s)'")
    }
    return values
}

func bytesString(_ b: Int) -> String {
    let d = Double(b)
    if d >= Double(1 << 30) { return fixed(d / Double(1 << 30), 2) + " GiB" }
    if d >= Double(1 << 20) { return fixed(d / Double(1 << 20), 2) + " MiB" }
    if d >= Double(1 << 10) { return fixed(d / Double(1 << 10), 1) + " KiB" }
    return "\(b) B"
}

func countString(_ n: Int) -> String {
    let d = Double(n)
    if d >= 1e9 { return fixed(d / 1e9, 2) + "B" }
    if d >= 1e6 { return fixed(d / 1e6, 2) + "M" }
    if d >= 1e3 { return fixed(d / 1e3, 2) + "K" }
    return "\(n)"
}

/// `--model DIR` for the commands that read a local model: the small English model that ships in the
/// repository when none is named (as `generate` does).
struct ModelOption: ParsableArguments {
    @Option(help: "Model directory (config.json + weights) or a llama.cpp GGUF file (default: the bundled model, \(LanguageModel.bundledModelRelativePath)).") var model: String?

    var directory: String {
        get throws {
            guard let dir = model ?? LanguageModel.bundledModelPath else {
                throw ValidationError("no --model given, and the bundled model (\(LanguageModel.bundledModelRelativePath) of the checkout this binary was built from, or MAMBA2_MODEL) was not found")
            }
            return dir
        }
    }
}

extension SSDForm: ExpressibleByArgument {}

struct InfoCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "info", abstract: "Config, parameter count, dtype, weight and per-sequence state memory of a model.")
    @OptionGroup var modelOption: ModelOption

    func run() throws {
        let model = try modelOption.directory
        let info = try ModelInfo(directory: model)
        let c = info.config
        print("model        \(model) (\(c.layout.rawValue) layout)")
        print("weights      \(info.files.joined(separator: ", "))")
        print("parameters   \(countString(info.parameterCount)) (\(info.parameterCount))")
        print("dtype        " + info.dtypeCounts.sorted { $0.value > $1.value }.map { "\($0.key) \(countString($0.value))" }.joined(separator: ", "))
        print("weights      \(bytesString(info.storedBytes)) stored; in memory with --weights-dtype " + WeightType.allCases
            .filter { Mamba2Model.canHold(c, $0) }
            .map { "\($0.rawValue) \(bytesString(Mamba2Model.heldWeightBytes(c, matrices: $0)))" }.joined(separator: ", "))
        print("state        \(bytesString(info.stateBytesPerSequence)) per sequence (conv \((c.dConv - 1) * c.convDim) + SSM \(c.nHeads * c.headDim * c.dState) floats per layer), whatever the length")
        print("shape        d_model \(c.dModel), layers \(c.nLayer), vocab \(c.vocabSize) (padded \(c.paddedVocabSize)), d_inner \(c.dInner), d_ssm \(c.dSSM)")
        print("ssm          heads H \(c.nHeads), head dim P \(c.headDim), state N \(c.dState), groups G \(c.nGroups), d_conv \(c.dConv), chunk Q \(c.chunkSize)")
        print("options      tied embeddings \(c.tieEmbeddings), proj bias \(c.projBias), conv bias \(c.convBias), D per channel \(c.dHasHeadDim), dt_limit (\(c.dtLimit.lo), \(c.dtLimit.hi)), eps \(c.rmsNormEps)")
    }
}

struct LogitsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "logits", abstract: "Writes float32 logits (sequences, length, padded vocab) of token sequences to a safetensors file.")
    @OptionGroup var compute: ComputeOptions
    @OptionGroup var modelOption: ModelOption
    @Option(help: "Token ids of one sequence, comma-separated; repeat for more (all the same length).") var tokens: [String]
    @Option(help: "Output .safetensors file (tensor 'logits').") var output: String
    @Option(help: "SSD form for the prompt pass: auto, recurrent, quadratic, chunked.") var form: SSDForm = .auto

    func run() throws {
        try compute.apply()
        guard !tokens.isEmpty else { throw ValidationError("give at least one --tokens") }
        let seqs = try tokens.map { try parseIDs($0, option: "--tokens") }
        guard Set(seqs.map(\.count)).count == 1 else { throw ValidationError("every --tokens sequence must have the same length for a (sequences, length, vocab) tensor") }
        let m = try Mamba2Model.load(directory: try modelOption.directory)
        var states = seqs.map { _ in m.newState() }
        let out = try m.prefill(seqs, states: &states, logits: .all, form: form)
        let t = Tensor(shape: [seqs.count, seqs[0].count, m.config.paddedVocabSize], data: out.flatMap(\.data))
        try SafeTensorsFile.write([("logits", t)], to: output)
        print("wrote logits \(t.shape) to \(output)")
    }
}

struct PerplexityCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "perplexity", abstract: "Mean next-token negative log-likelihood and perplexity of token sequences or a text file.")
    @OptionGroup var compute: ComputeOptions
    @OptionGroup var modelOption: ModelOption
    @Option(help: "Token ids of one sequence, comma-separated; repeat for more.") var tokens: [String] = []
    @Option(help: "A text file to score (needs --tokenizer).") var textFile: String?
    @Option(help: "tokenizer.json for --text-file (default: the model's).") var tokenizer: String?
    @Option(help: "Tokens per prefill window; memory is bounded by it.") var window: Int = 512

    func run() throws {
        try compute.apply()
        var seqs = try tokens.map { try parseIDs($0, option: "--tokens") }
        let dir = try modelOption.directory
        if let textFile {
            let own = dir + "/tokenizer.json"
            guard let path = tokenizer ?? (MappedFile.exists(own) ? own : nil) else {
                throw ValidationError("--text-file needs --tokenizer FILE (the model has no tokenizer.json)")
            }
            let tok = try Tokenizer(path: path)
            seqs.append(tok.encode(try readText(textFile)))
        }
        guard !seqs.isEmpty else { throw ValidationError("give --tokens or --text-file") }
        let m = try Mamba2Model.load(directory: dir)
        let r = try m.perplexity(seqs, window: window)
        guard r.count > 0 else { throw ValidationError("no position to predict: every sequence has fewer than 2 tokens") }
        print("positions    \(r.count)")
        print("mean NLL     \(fixed(r.meanNLL, 6)) nats")
        print("perplexity   \(fixed(r.perplexity, 4))")
    }
}

/// Reads a text file as UTF-8 (invalid bytes become U+FFFD).
func readText(_ path: String) throws -> String {
    String(decoding: try MappedFile.readText(path), as: UTF8.self)
}
