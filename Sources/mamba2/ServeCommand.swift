import ArgumentParser
import Hummingbird
import Mamba2
import Mamba2CUDA
import Mamba2Hub
import Mamba2Server

struct ServeCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "serve",
        abstract: "An OpenAI-compatible HTTP server (POST /v1/completions, streamed or not) with continuous batching.",
        discussion: """
            Routes: POST /v1/completions, GET /v1/models, POST /v1/chat/completions (400: no chat template), \
            POST /tokenize, POST /detokenize, GET /health, GET /metrics, GET /openapi.json. Each running request \
            holds a slot (one sequence's fixed-size state); requests join and leave the batch at every decode \
            step. SIGINT or SIGTERM: new requests get 503, running ones have --shutdown-timeout seconds to \
            finish before they are ended, then the server exits.
            """)

    @OptionGroup var compute: ComputeOptions
    @Option(help: "Model directory or Hugging Face repo id (default: the bundled model, \(LanguageModel.bundledModelRelativePath)).") var model: String?
    @Option(help: "Revision (branch, tag or commit) of a Hub repo.") var revision: String = "main"
    @Option(help: "tokenizer.json (default: the model's).") var tokenizer: String?
    @Option(help: "Address to listen on.") var host: String = "127.0.0.1"
    @Option(help: "Port to listen on.") var port: Int = 8080
    @Option(help: "Requests that run at once (rows of the state table).") var slots: Int = 8
    @Option(help: "Requests that may wait for a slot; more get 429.") var queue: Int = 64
    @Option(help: "Prompt tokens one prefill between decode steps takes at most.") var prefillBudget: Int = 4096
    @Option(help: "MiB of prefix states kept (0: no cache): a prompt that extends a cached one prefills only the rest.") var cacheMib: Int = 512
    @Option(help: "Also keep a long prompt's state every this many tokens (a multiple of the model's chunk size; 0: only at its end; default 1024 rounded up to one).") var cacheBlock: Int?
    @Option(help: "Keep no cached state for sequences shorter than this (default: the device's break-even, 1 on the CPU, 512 on a GPU, where copying a state out costs about as much as prefilling that many tokens).") var cacheMinTokens: Int?
    @Option(help: "While requests run, milliseconds a new one may wait for others to prefill with (fewer, larger prefills; unless a quarter of the slots can be filled at once).") var admissionDelayMs: Double = 20
    @Option(help: "Events a client may leave unread before its request is ended (bounds a slow reader's memory).") var streamBuffer: Int = 8192
    @Option(help: "Seconds running requests get to finish after SIGTERM/SIGINT before they are ended.") var shutdownTimeout: Double = 10
    @Option(help: "Require 'Authorization: Bearer KEY' on /v1/*.") var apiKey: String?
    @Option(help: "The most max_tokens a request may ask for.") var maxTokensLimit: Int = 4096
    @Option(help: "The most prompt tokens a request may send (413 above).") var maxPromptTokens: Int = 65536
    @OptionGroup var decodeWeights: DecodeWeightOptions
    @OptionGroup var device: DeviceOptions

    func validate() throws {
        guard (1...65535).contains(port) else { throw ValidationError("--port must be in 1...65535, not \(port)") }
        guard (1...4096).contains(slots) else { throw ValidationError("--slots must be in 1...4096, not \(slots)") }
        guard (1...1_000_000).contains(queue) else { throw ValidationError("--queue must be in 1...1000000, not \(queue)") }
        guard (1...10_000_000).contains(prefillBudget) else { throw ValidationError("--prefill-budget must be in 1...10000000") }
        guard (0...1_048_576).contains(cacheMib) else { throw ValidationError("--cache-mib must be in 0...1048576, not \(cacheMib)") }
        if let cacheBlock { guard (0...1_048_576).contains(cacheBlock) else { throw ValidationError("--cache-block must be in 0...1048576") } }
        if let cacheMinTokens { guard (1...10_000_000).contains(cacheMinTokens) else { throw ValidationError("--cache-min-tokens must be in 1...10000000") } }
        guard (1...10_000_000).contains(streamBuffer) else { throw ValidationError("--stream-buffer must be in 1...10000000") }
        guard admissionDelayMs >= 0, admissionDelayMs <= 10_000 else { throw ValidationError("--admission-delay-ms must be in 0...10000") }
        guard shutdownTimeout >= 0, shutdownTimeout <= 86400 else { throw ValidationError("--shutdown-timeout must be in 0...86400 seconds") }
        guard maxTokensLimit >= 1, maxPromptTokens >= 1 else { throw ValidationError("--max-tokens-limit and --max-prompt-tokens must be ≥ 1") }
    }

    func run() async throws {
        try compute.apply()
        guard let model = model ?? LanguageModel.bundledModelPath else {
            throw ValidationError("no --model given, and the bundled model (\(LanguageModel.bundledModelRelativePath) of the checkout this binary was built from, or MAMBA2_MODEL) was not found")
        }
        let modelDir = try await resolveModel(model, revision: revision)
        let place = try device.place()
        let lm = try LanguageModel.load(directory: modelDir, tokenizerPath: tokenizer, device: place, weights: decodeWeights.parsed(for: place))
        let metrics = ServerMetrics()
        let options = ContinuousBatcher.Options(slots: slots, prefillTokenBudget: prefillBudget, queueLimit: queue,
                                                cacheBytes: cacheMib << 20, cacheBlockTokens: cacheBlock, cacheMinTokens: cacheMinTokens,
                                                streamBufferLimit: streamBuffer, admissionDelay: admissionDelayMs / 1000, observer: metrics)
        let batcher = try ContinuousBatcher(backend: lm.backend, tokenizer: lm.tokenizer, options: options)
        defer { batcher.stop() }
        let name = model.split(separator: "/").last.map(String.init) ?? model
        let server = CompletionServer(batcher: batcher, options: .init(host: host, port: port, modelName: name, apiKey: apiKey,
                                                                      maxTokensLimit: maxTokensLimit, maxPromptTokens: maxPromptTokens),
                                      metrics: metrics)
        printErr("serving \(model) on http://\(host):\(port) (\(lm.backend.deviceDescription), weights \(lm.backend.weightType.rawValue), \(slots) slots, prefix cache \(cacheMib) MiB)")
        try await server.run(shutdownTimeout: .milliseconds(Int64(shutdownTimeout * 1000)))
        printErr("stopped")
    }
}
