import Foundation
import Hummingbird
import Mamba2

/// What `mamba2 serve` takes besides the model.
public struct ServerOptions: Sendable {
    public var host: String
    public var port: Int
    /// The id `GET /v1/models` lists and responses carry.
    public var modelName: String
    /// With a key, requests to /v1/* need `Authorization: Bearer KEY`.
    public var apiKey: String?
    /// The most `max_tokens` a request may ask for (400 above it).
    public var maxTokensLimit: Int
    /// The most prompt tokens a request may send (413 above it).
    public var maxPromptTokens: Int

    public init(host: String = "127.0.0.1", port: Int = 8080, modelName: String = "mamba2", apiKey: String? = nil,
                maxTokensLimit: Int = 4096, maxPromptTokens: Int = 65536) {
        self.host = host; self.port = port; self.modelName = modelName; self.apiKey = apiKey
        self.maxTokensLimit = maxTokensLimit; self.maxPromptTokens = maxPromptTokens
    }

    /// Request bodies larger than this are refused with 413 (Hummingbird's limit for a decoded body).
    public static let maxBodyBytes = 2 * 1024 * 1024
}

/// An OpenAI-compatible HTTP server over a `ContinuousBatcher`: `POST /v1/completions` (streamed as
/// server-sent events or not), `GET /v1/models`, `POST /v1/chat/completions` (400: no model here has a chat
/// template), `POST /tokenize`, `POST /detokenize`, `GET /health`, `GET /metrics` (Prometheus text). Errors
/// are OpenAI's JSON shape with their status; bad input is a 4xx, never a 5xx.
public struct CompletionServer: Sendable {
    public let batcher: ContinuousBatcher
    public let options: ServerOptions
    /// Give the same object to the batcher as its observer for the latency histograms.
    public let metrics: ServerMetrics
    let created = Int(Date().timeIntervalSince1970)

    public init(batcher: ContinuousBatcher, options: ServerOptions, metrics: ServerMetrics = ServerMetrics()) {
        self.batcher = batcher
        self.options = options
        self.metrics = metrics
    }

    var tokenizer: Tokenizer? { batcher.tokenizer }

    /// The routes, behind the error and API-key middleware.
    public func makeRouter() -> Router<BasicRequestContext> {
        let router = Router()
        router.add(middleware: OpenAIErrorMiddleware())
        if let key = options.apiKey { router.add(middleware: APIKeyMiddleware(key: key)) }
        router.get("/health") { _, _ in try Self.json(["status": "ok"]) }
        router.get("/v1/models") { _, _ in
            try Self.json(ModelList(data: [.init(id: options.modelName, created: created)]))
        }
        router.post("/v1/completions") { request, context in
            let body = try await request.decode(as: CompletionRequest.self, context: context)
            return try await complete(body)
        }
        router.post("/v1/chat/completions") { _, _ -> Response in
            throw APIError.badRequest("this model has no chat template; use /v1/completions with a prompt")
        }
        router.post("/tokenize") { request, context in
            let body = try await request.decode(as: TokenizeRequest.self, context: context)
            let tok = try requireTokenizer()
            return try Self.json(["tokens": tok.encode(body.content, addSpecialTokens: body.add_special ?? true)])
        }
        router.post("/detokenize") { request, context in
            let body = try await request.decode(as: DetokenizeRequest.self, context: context)
            let tok = try requireTokenizer()
            let vocab = batcher.backend.config.vocabSize
            if let bad = body.tokens.first(where: { $0 < 0 || $0 >= vocab }) {
                throw APIError.badRequest("token id \(bad) is outside the vocabulary (0..<\(vocab))", param: "tokens")
            }
            return try Self.json(["content": tok.decode(body.tokens)])
        }
        router.get("/metrics") { _, _ in
            Response(status: .ok, headers: [.contentType: "text/plain; version=0.0.4"],
                     body: .init(byteBuffer: ByteBuffer(string: metrics.scrape(batcher.metrics))))
        }
        let document = OpenAPIDocument.json(options, vocabSize: batcher.backend.config.vocabSize)
        router.get("/openapi.json") { _, _ in
            Response(status: .ok, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(string: document)))
        }
        return router
    }

    func requireTokenizer() throws -> Tokenizer {
        guard let tokenizer else { throw APIError.badRequest("this model has no tokenizer: send token ids") }
        return tokenizer
    }

    // MARK: completions

    /// Checks a request and turns it into prompts and sampling parameters.
    func prepare(_ r: CompletionRequest) throws -> (prompts: [[Int]], texts: [String?], parameters: GenerateParameters) {
        if let n = r.n, n != 1 { throw APIError.badRequest("n must be 1 (send several prompts instead)", param: "n") }
        if let b = r.best_of, b != 1 { throw APIError.badRequest("best_of is not supported", param: "best_of") }
        if r.suffix != nil { throw APIError.badRequest("suffix is not supported", param: "suffix") }
        let maxTokens = r.max_tokens ?? 16
        guard maxTokens >= 0, maxTokens <= options.maxTokensLimit else {
            throw APIError.badRequest("max_tokens must be in 0...\(options.maxTokensLimit), not \(maxTokens)", param: "max_tokens")
        }
        guard r.prompt.count >= 1, r.prompt.count <= 64 else { throw APIError.badRequest("send 1 to 64 prompts", param: "prompt") }
        var prompts: [[Int]] = [], texts: [String?] = []
        switch r.prompt {
        case let .texts(ts):
            let tok = try requireTokenizer()
            for t in ts { prompts.append(tok.encode(t)); texts.append(t) }
        case let .ids(ids):
            prompts = ids
            texts = ids.map { ids in tokenizer.map { $0.decode(ids) } }
        }
        for p in prompts {
            if p.isEmpty { throw APIError.badRequest("a prompt is empty", param: "prompt") }
            if p.count > options.maxPromptTokens {
                throw APIError(.contentTooLarge, "a prompt has \(p.count) tokens; this server takes at most \(options.maxPromptTokens)", param: "prompt")
            }
        }
        let stops = r.stop?.strings ?? []
        guard stops.count <= 16 else { throw APIError.badRequest("at most 16 stop strings", param: "stop") }
        let logprobs = r.logprobs ?? 0
        guard logprobs >= 0, logprobs <= 20 else { throw APIError.badRequest("logprobs must be in 0...20", param: "logprobs") }
        var p = GenerateParameters(maxTokens: maxTokens, temperature: r.temperature ?? 1, topK: r.top_k ?? 0, topP: r.top_p ?? 1,
                                   minP: r.min_p ?? 0, repetitionPenalty: r.repetition_penalty ?? 1,
                                   seed: r.seed.map { UInt64(bitPattern: $0) } ?? UInt64.random(in: 0...UInt64.max),
                                   stopStrings: stops.filter { !$0.isEmpty }, topLogprobs: r.logprobs == nil ? 0 : max(logprobs, 1))
        if let eos = tokenizer?.endOfTextID, !(r.ignore_eos ?? false) { p.stopTokenIDs = [eos] }
        do { try p.validate() } catch let Mamba2Error.invalidArgument(name, reason) {
            throw APIError.badRequest("\(name) \(reason)", param: name)
        }
        return (prompts, texts, p)
    }

    func complete(_ r: CompletionRequest) async throws -> Response {
        let (prompts, texts, parameters) = try prepare(r)
        // Every prompt is queued before any is read, so they run together.
        let streams: [AsyncThrowingStream<Generation, Error>] = try prompts.enumerated().map { i, p in
            var params = parameters
            params.seed = parameters.seed &+ UInt64(i)
            return try batcher.submit(prompt: p, parameters: params)
        }
        let id = "cmpl-" + String(UInt64.random(in: 0...UInt64.max), radix: 16)
        let echo = r.echo ?? false
        let wantLogprobs = r.logprobs != nil
        if r.stream ?? false {
            let header = (id: id, created: Int(Date().timeIntervalSince1970), model: options.modelName)
            let tokenizer = tokenizer
            let includeUsage = r.stream_options?.include_usage ?? false
            let promptTokens = prompts.reduce(0) { $0 + $1.count }
            return Response(status: .ok, headers: [.contentType: "text/event-stream", .cacheControl: "no-cache"], body: ResponseBody { writer in
                var completionTokens = 0
                func chunk(_ choices: [CompletionResponse.Choice], usage: CompletionResponse.Usage? = nil) throws -> ByteBuffer {
                    try Self.event(CompletionResponse(id: header.id, created: header.created, model: header.model, choices: choices, usage: usage))
                }
                do {
                    for (i, stream) in streams.enumerated() {
                        var acc = ChoiceAccumulator(tokenizer: tokenizer, logprobs: wantLogprobs)
                        if echo, let t = texts[i] { try await writer.write(chunk([.init(text: t, index: i)])) }
                        for try await event in stream {
                            switch event {
                            case let .token(t): acc.add(t)
                            case let .chunk(text):
                                try await writer.write(chunk([.init(text: text, index: i, logprobs: acc.take(text: text))]))
                            case let .info(info):
                                completionTokens += info.generatedTokens
                                try await writer.write(chunk([.init(text: "", index: i, logprobs: acc.take(text: ""),
                                                                    finish_reason: Self.finishReason(info.stopReason))]))
                            }
                        }
                    }
                    if includeUsage {
                        try await writer.write(chunk([], usage: .init(prompt_tokens: promptTokens, completion_tokens: completionTokens,
                                                                      total_tokens: promptTokens + completionTokens)))
                    }
                    try await writer.write(ByteBuffer(string: "data: [DONE]\n\n"))
                } catch let e as ContinuousBatcher.StreamError {
                    // The status went out with the first event: the error is the stream's last event.
                    let body = APIError.Body(error: .init(message: "\(e)", type: "server_error", param: nil, code: "reader_too_slow"))
                    var b = ByteBuffer(string: "data: ")
                    b.writeBytes(try Self.encoder.encode(body))
                    b.writeString("\n\n")
                    try? await writer.write(b)
                }
                try await writer.finish(nil)
            })
        }
        // Not streamed: read every prompt's stream at once.
        let results = try await withThrowingTaskGroup(of: (Int, String, CompletionResponse.Logprobs?, GenerationInfo?).self) { group in
            for (i, stream) in streams.enumerated() {
                let tokenizer = tokenizer
                group.addTask {
                    var text = "", info: GenerationInfo?
                    var acc = ChoiceAccumulator(tokenizer: tokenizer, logprobs: wantLogprobs)
                    for try await event in stream {
                        switch event {
                        case let .token(t): acc.add(t)
                        case let .chunk(c): text += c
                        case let .info(i): info = i
                        }
                    }
                    return (i, text, acc.take(text: text), info)
                }
            }
            var out = [(String, CompletionResponse.Logprobs?, GenerationInfo?)](repeating: ("", nil, nil), count: streams.count)
            for try await (i, text, lp, info) in group { out[i] = (text, lp, info) }
            return out
        }
        var choices: [CompletionResponse.Choice] = []
        var completionTokens = 0
        for (i, (text, lp, info)) in results.enumerated() {
            completionTokens += info?.generatedTokens ?? 0
            choices.append(.init(text: (echo ? texts[i] ?? "" : "") + text, index: i, logprobs: lp,
                                 finish_reason: info.map { Self.finishReason($0.stopReason) }))
        }
        let promptTokens = prompts.reduce(0) { $0 + $1.count }
        return try Self.json(CompletionResponse(id: id, created: Int(Date().timeIntervalSince1970), model: options.modelName, choices: choices,
                                                usage: .init(prompt_tokens: promptTokens, completion_tokens: completionTokens,
                                                             total_tokens: promptTokens + completionTokens)))
    }

    static func finishReason(_ r: GenerationInfo.StopReason) -> String {
        switch r {
        case .maxTokens, .cancelled: "length"
        case .stopToken, .stopString: "stop"
        }
    }

    static let encoder: JSONEncoder = {
        let e = JSONEncoder()
        e.outputFormatting = [.withoutEscapingSlashes]
        return e
    }()

    static func json(_ value: some Encodable) throws -> Response {
        Response(status: .ok, headers: [.contentType: "application/json"],
                 body: .init(byteBuffer: ByteBuffer(bytes: try encoder.encode(value))))
    }

    static func event(_ value: some Encodable) throws -> ByteBuffer {
        var b = ByteBuffer(string: "data: ")
        b.writeBytes(try encoder.encode(value))
        b.writeString("\n\n")
        return b
    }
}

/// Tokens and their log-probabilities gathered until the text they make is sent.
struct ChoiceAccumulator {
    let tokenizer: Tokenizer?
    let logprobs: Bool
    var pending: [SampledToken] = []
    var offset = 0

    mutating func add(_ t: SampledToken) { if logprobs { pending.append(t) } }

    /// The log-probabilities of the tokens since the last call (nil when not asked for).
    mutating func take(text: String) -> CompletionResponse.Logprobs? {
        guard logprobs else { return nil }
        var lp = CompletionResponse.Logprobs()
        for t in pending {
            let s = tokenizer?.decode([t.id], skipSpecialTokens: false) ?? "\(t.id)"
            lp.tokens.append(s)
            lp.token_logprobs.append(t.logprob)
            var top: [String: Float] = [:]
            for a in t.top { top[tokenizer?.decode([a.id], skipSpecialTokens: false) ?? "\(a.id)"] = a.logprob }
            lp.top_logprobs.append(top)
            lp.text_offset.append(offset)
            offset += s.count
        }
        pending = []
        return lp
    }
}
