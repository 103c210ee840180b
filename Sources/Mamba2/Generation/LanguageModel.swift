import Synchronization

/// A model with its tokenizer, on the device it was loaded for: what `mamba2 generate` and library users
/// load in one call. Generation runs on `backend` (CPU or GPU alike); one generation at a time (calls
/// wait for the one before them).
public final class LanguageModel: Sendable {
    /// The model as loaded on the host, its matrices held in the type asked for (`load` loads them in the
    /// backend's type, so that the CPU backend runs this very model and no second copy is made); the source
    /// every backend is built from.
    public let model: Mamba2Model
    /// Where prefill and decode run.
    public let backend: any Mamba2Backend
    /// nil for a model without a tokenizer (generate from ids then).
    public let tokenizer: Tokenizer?
    /// Held while a generation uses the backend's rows.
    let busy = Mutex<Void>(())

    public var config: Mamba2Config { model.config }

    /// `model` on `device` with its matrices in `weights` (the device's default when nil).
    public init(model: Mamba2Model, tokenizer: Tokenizer?, device: some ComputeDevice = .cpu, weights: WeightType? = nil) throws {
        self.model = model
        self.tokenizer = tokenizer
        backend = try device.makeBackend(model: model, weights: weights ?? device.defaultWeightType)
    }

    /// The GPT-NeoX-20B tokenizer.json that ships in this repository (used for `state-spaces/*` models,
    /// which ship none). Found beside the sources, or through MAMBA2_TOKENIZER.
    public static var bundledTokenizerPath: String? {
        if let env = environment("MAMBA2_TOKENIZER") { return env }
        let path = repositoryRoot + "/Tokenizers/gpt-neox-20b/tokenizer.json"
        return MappedFile.exists(path) ? path : nil
    }

    /// Where the model that ships lies inside the repository.
    public static let bundledModelRelativePath = "Models/english-bytes"

    /// The directory of the small English model that ships in this repository (Models/english-bytes,
    /// trained by `mamba2 train`), used when no model is named; MAMBA2_MODEL overrides it. nil when
    /// neither exists (e.g. a binary copied away from its checkout).
    public static var bundledModelPath: String? {
        if let env = environment("MAMBA2_MODEL") { return env }
        let path = repositoryRoot + "/" + bundledModelRelativePath
        return MappedFile.exists(path + "/config.json") ? path : nil
    }

    /// The checkout this library was built from (its sources' location at build time).
    static var repositoryRoot: String {
        var parts = #filePath.split(separator: "/", omittingEmptySubsequences: false)
        parts.removeLast(4)  // Sources/Mamba2/Generation/LanguageModel.swift
        return parts.joined(separator: "/")
    }

    /// Loads config, weights and tokenizer from a directory. The tokenizer is `tokenizerPath` if given,
    /// else the directory's tokenizer.json, else (for a state-spaces layout, which ships none) the bundled
    /// GPT-NeoX-20B one, else none. The model runs on `device` with its matrices in `weights` (the device's
    /// default when nil: f32 on the CPU, bf16 on a GPU).
    public static func load(directory: String, tokenizerPath: String? = nil, device: some ComputeDevice = .cpu,
                            weights: WeightType? = nil) throws -> LanguageModel {
        // In the type the backend takes: on the CPU the backend then runs this model itself (one copy of the
        // matrices, not a float32 one beside it); a GPU backend is built from it (bf16 and f16 widen exactly).
        let model = try Mamba2Model.load(directory: directory, weightType: weights ?? device.defaultWeightType)
        if GGUFFile.isGGUF(path: directory) {  // a GGUF file: its own tokenizer unless one is given
            let tokenizer = try tokenizerPath.map { try Tokenizer(path: $0) } ?? GGUFModel.tokenizer(try GGUFFile(path: directory))
            return try LanguageModel(model: model, tokenizer: tokenizer, device: device, weights: weights)
        }
        var path = tokenizerPath
        if path == nil, MappedFile.exists(directory + "/tokenizer.json") { path = directory + "/tokenizer.json" }
        if path == nil, model.config.layout == .stateSpaces, model.config.vocabSize >= 50277 { path = bundledTokenizerPath }
        return try LanguageModel(model: model, tokenizer: try path.map { try Tokenizer(path: $0) }, device: device, weights: weights)
    }

    /// Streams a generation: text pieces (as soon as they form whole characters), tokens, then a summary.
    /// Cancelling the consuming task stops the work after the current token.
    public func generate(prompt: [Int], parameters: GenerateParameters) -> AsyncThrowingStream<Generation, Error> {
        AsyncThrowingStream { continuation in
            let task = Task.detached {
                do {
                    try self.busy.withLock { _ in
                        var gen = try TokenGenerator(backend: self.backend, tokenizer: self.tokenizer, prompt: prompt, parameters: parameters)
                        while let step = try gen.next() {
                            if Task.isCancelled { break }
                            continuation.yield(.token(step.token))
                            if let text = step.text, !text.isEmpty { continuation.yield(.chunk(text)) }
                        }
                        if let rest = gen.finishText(), !rest.isEmpty { continuation.yield(.chunk(rest)) }
                        continuation.yield(.info(gen.info))
                    }
                    continuation.finish()
                } catch {
                    continuation.finish(throwing: error)
                }
            }
            continuation.onTermination = { _ in task.cancel() }
        }
    }

    /// Encodes the prompt with the tokenizer, then streams as above.
    public func generate(prompt: String, parameters: GenerateParameters) throws -> AsyncThrowingStream<Generation, Error> {
        guard let tokenizer else { throw Mamba2Error.invalidArgument("prompt", reason: "this model has no tokenizer; give token ids") }
        return generate(prompt: tokenizer.encode(prompt), parameters: parameters)
    }

    /// Generates for several prompts at once (packed prefill, batched decode). Returns each one's tokens.
    public func generateBatch(prompts: [[Int]], parameters: GenerateParameters) throws -> [[SampledToken]] {
        try busy.withLock { _ in
            var gen = try BatchGenerator(backend: backend, prompts: prompts, parameters: parameters)
            return try gen.run()
        }
    }

    /// A token-by-token generator on the backend's row 0, for callers that drive the loop themselves
    /// (`mamba2 generate`). Hold no other generation of this model while it runs.
    public func tokenGenerator(prompt: [Int], parameters: GenerateParameters, state: Mamba2State? = nil,
                               printingText: Bool = true) throws -> TokenGenerator {
        try TokenGenerator(backend: backend, tokenizer: printingText ? tokenizer : nil, prompt: prompt, parameters: parameters, state: state)
    }
}

/// What a generation stream yields.
public enum Generation: Sendable {
    case token(SampledToken)
    case chunk(String)
    case info(GenerationInfo)
}

/// A summary of one generation.
public struct GenerationInfo: Sendable {
    public var promptTokens: Int
    public var generatedTokens: Int
    public var prefillSeconds: Double
    public var decodeSeconds: Double
    public var stopReason: StopReason
    /// Where it ran ("cpu (2 threads)", "cuda:0 (NVIDIA H200)").
    public var device: String
    public var prefillTokensPerSecond: Double { Double(promptTokens) / max(prefillSeconds, 1e-9) }
    public var decodeTokensPerSecond: Double { Double(max(generatedTokens - 1, 0)) / max(decodeSeconds, 1e-9) }

    public enum StopReason: String, Sendable { case maxTokens = "max tokens", stopToken = "stop token", stopString = "stop string", cancelled }
}

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

package func environment(_ name: String) -> String? {
    guard let v = getenv(name) else { return nil }
    let s = String(cString: v)
    return s.isEmpty ? nil : s
}
