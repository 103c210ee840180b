/// A model with its tokenizer: what `mamba2 generate` and library users load in one call.
public final class LanguageModel: Sendable {
    public let model: Mamba2Model
    /// nil for a model without a tokenizer (generate from ids then).
    public let tokenizer: Tokenizer?

    public init(model: Mamba2Model, tokenizer: Tokenizer?) {
        self.model = model
        self.tokenizer = tokenizer
    }

    /// The GPT-NeoX-20B tokenizer.json that ships in this repository (used for `state-spaces/*` models,
    /// which ship none). Found beside the sources, or through MAMBA2_TOKENIZER.
    public static var bundledTokenizerPath: String? {
        if let env = environment("MAMBA2_TOKENIZER") { return env }
        let path = repositoryRoot + "/Tokenizers/gpt-neox-20b/tokenizer.json"
        return MappedFile.exists(path) ? path : nil
    }

    /// The directory of the small English model that ships in this repository (Models/kjv-bytes,
    /// trained by `mamba2 train`), used when no model is named; MAMBA2_MODEL overrides it. nil when
    /// neither exists (e.g. a binary copied away from its checkout).
    public static var bundledModelPath: String? {
        if let env = environment("MAMBA2_MODEL") { return env }
        let path = repositoryRoot + "/Models/kjv-bytes"
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
    /// GPT-NeoX-20B one, else none.
    public static func load(directory: String, tokenizerPath: String? = nil,
                            decodeWeights: Mamba2Model.DecodeWeights = .f32) throws -> LanguageModel {
        let model = try Mamba2Model.load(directory: directory, decodeWeights: decodeWeights)
        var path = tokenizerPath
        if path == nil, MappedFile.exists(directory + "/tokenizer.json") { path = directory + "/tokenizer.json" }
        if path == nil, model.config.layout == .stateSpaces, model.config.vocabSize >= 50277 { path = bundledTokenizerPath }
        return LanguageModel(model: model, tokenizer: try path.map { try Tokenizer(path: $0) })
    }

    /// Streams a generation: text pieces (as soon as they form whole characters), tokens, then a summary.
    /// Cancelling the consuming task stops the work after the current token. With `gpu` (a `CUDAModel` of
    /// this model's weights) prefill and decode run there; one generation at a time per `CUDAModel`.
    public func generate(prompt: [Int], parameters: GenerateParameters, gpu: CUDAModel? = nil) -> AsyncThrowingStream<Generation, Error> {
        AsyncThrowingStream { continuation in
            let task = Task.detached {
                do {
                    var gen = try TokenGenerator(model: self.model, tokenizer: self.tokenizer, prompt: prompt, parameters: parameters, gpu: gpu)
                    while let step = try gen.next() {
                        if Task.isCancelled { break }
                        continuation.yield(.token(step.token))
                        if let text = step.text, !text.isEmpty { continuation.yield(.chunk(text)) }
                    }
                    if let rest = gen.finishText(), !rest.isEmpty { continuation.yield(.chunk(rest)) }
                    continuation.yield(.info(gen.info))
                    continuation.finish()
                } catch {
                    continuation.finish(throwing: error)
                }
            }
            continuation.onTermination = { _ in task.cancel() }
        }
    }

    /// Encodes the prompt with the tokenizer, then streams as above.
    public func generate(prompt: String, parameters: GenerateParameters, gpu: CUDAModel? = nil) throws -> AsyncThrowingStream<Generation, Error> {
        guard let tokenizer else { throw Mamba2Error.invalidArgument("prompt", reason: "this model has no tokenizer; give token ids") }
        return generate(prompt: tokenizer.encode(prompt), parameters: parameters, gpu: gpu)
    }

    /// Generates for several prompts at once (packed prefill, batched decode), on the CPU or on `gpu`.
    /// Returns each one's tokens.
    public func generateBatch(prompts: [[Int]], parameters: GenerateParameters, gpu: CUDAModel? = nil) throws -> [[SampledToken]] {
        var gen = try BatchGenerator(model: model, prompts: prompts, parameters: parameters, gpu: gpu)
        return try gen.run()
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
    public var form: SSDForm
    public var prefillTokensPerSecond: Double { Double(promptTokens) / max(prefillSeconds, 1e-9) }
    public var decodeTokensPerSecond: Double { Double(max(generatedTokens - 1, 0)) / max(decodeSeconds, 1e-9) }

    public enum StopReason: String, Sendable { case maxTokens = "max tokens", stopToken = "stop token", stopString = "stop string", cancelled }
}

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

func environment(_ name: String) -> String? {
    guard let v = getenv(name) else { return nil }
    let s = String(cString: v)
    return s.isEmpty ? nil : s
}
