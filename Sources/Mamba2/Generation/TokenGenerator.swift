/// Generates one sequence token by token: the prompt is prefilled through the chunked SSD, then each
/// token is one recurrent step on a fixed-size state. Text is decoded as it forms whole characters and
/// held back while it could still be the start of a stop string.
public struct TokenGenerator {
    /// Where the model runs; this generator owns row `row` of its table while it runs.
    public let backend: any Mamba2Backend
    public let tokenizer: Tokenizer?
    public let row: Int
    public private(set) var info: GenerationInfo
    /// Sampling, the context and the text: everything but the backend calls.
    var sequence: GenerationSequence
    /// (padded vocab): the logits of the last token fed, reused token after token.
    var logits: [Float]
    /// The one-element row and token lists of a step, kept so that a step allocates nothing.
    var stepRows: [Int], stepTokens: [Int]

    /// The prompt, then every token chosen.
    public var tokens: [Int] { sequence.tokens }
    public var sampler: Sampler {
        get { sequence.sampler }
        set { sequence.sampler = newValue }
    }

    /// Prefills the prompt on `row` of the backend, from `state` if given, else from zero. Throws for an
    /// empty prompt or ids outside the vocabulary.
    public init(backend: any Mamba2Backend, tokenizer: Tokenizer?, prompt: [Int], parameters: GenerateParameters,
                state: Mamba2State? = nil, row: Int = 0) throws {
        try parameters.validate()
        guard !prompt.isEmpty else { throw Mamba2Error.invalidArgument("prompt", reason: "empty prompt: give at least one token") }
        self.backend = backend
        self.tokenizer = tokenizer
        self.row = row
        sequence = GenerationSequence(prompt: prompt, parameters: parameters, tokenizer: tokenizer)
        try backend.reserveRows(row + 1)
        if let state { try backend.setState(state, row: row) } else { try backend.resetState(row: row) }
        var logits = [Float](repeating: 0, count: backend.config.paddedVocabSize)
        let t0 = monotonicSeconds()
        try logits.withUnsafeMutableBufferPointer { try backend.prefill([prompt], rows: [row], lastLogits: $0) }
        self.logits = logits
        stepRows = [row]
        stepTokens = [0]
        info = GenerationInfo(promptTokens: prompt.count, generatedTokens: 0, prefillSeconds: monotonicSeconds() - t0,
                              decodeSeconds: 0, stopReason: .maxTokens, device: backend.deviceDescription)
    }

    /// On the CPU with `model`'s weights (a backend of its own), prefill in SSD form `form`.
    public init(model: Mamba2Model, tokenizer: Tokenizer?, prompt: [Int], parameters: GenerateParameters,
                state: Mamba2State? = nil, form: SSDForm = .auto) throws {
        let cpu = try CPUBackend(model: model)
        cpu.form = form
        try self.init(backend: cpu, tokenizer: tokenizer, prompt: prompt, parameters: parameters, state: state)
    }

    /// The sequence's state now (prompt and tokens generated so far), to save or branch.
    public func state() throws -> Mamba2State { try backend.state(row: row) }

    /// The next token and the text it completes (nil when a character is still incomplete or held back
    /// for a stop string), or nil when generation has ended.
    public mutating func next() throws -> (token: SampledToken, text: String?)? {
        guard sequence.wantsToken() else { info.stopReason = sequence.stopReason; return nil }
        let t0 = monotonicSeconds()
        // The logits of the last token are in the workspace; a new token is fed only when asked for the next.
        if let last = sequence.lastToken {
            stepTokens[0] = last
            try logits.withUnsafeMutableBufferPointer { try backend.step(stepTokens, rows: stepRows, logits: $0) }
        }
        let out = logits.withUnsafeBufferPointer { sequence.accept($0) }
        info.decodeSeconds += info.generatedTokens > 0 ? monotonicSeconds() - t0 : 0
        info.generatedTokens += 1
        info.stopReason = sequence.stopReason
        return out
    }

    /// Text still held back when generation ends.
    public mutating func finishText() -> String? { sequence.finishText() }
}

extension String {
    /// The first range where `needle` occurs, comparing unicode scalars.
    func range(ofScalars needle: String) -> Range<String.Index>? { ranges(ofLiteral: needle).first }
}

/// Generates for several prompts together: one packed prefill, then every unfinished sequence decodes
/// in one batched step per token. Each sequence samples with its own sampler (seed + index), so a
/// sequence's tokens equal what it would generate alone with that seed. Rows 0..<prompts.count of the
/// backend are used.
struct BatchGenerator {
    let backend: any Mamba2Backend
    let prompts: [[Int]]
    let parameters: GenerateParameters

    init(backend: any Mamba2Backend, prompts: [[Int]], parameters: GenerateParameters) throws {
        try parameters.validate()
        guard !prompts.isEmpty, prompts.allSatisfy({ !$0.isEmpty }) else {
            throw Mamba2Error.invalidArgument("prompts", reason: "give at least one non-empty prompt")
        }
        self.backend = backend; self.prompts = prompts; self.parameters = parameters
    }

    mutating func run() throws -> [[SampledToken]] {
        let V = backend.config.paddedVocabSize
        let n = prompts.count
        try backend.reserveRows(n)
        for r in 0..<n { try backend.resetState(row: r) }
        // (rows, padded vocab): the logits of each active row's last token, active rows first.
        var logits = [Float](repeating: 0, count: n * V)
        try logits.withUnsafeMutableBufferPointer { try backend.prefill(prompts, rows: Array(0..<n), lastLogits: $0) }
        var samplers = prompts.indices.map { i in
            var p = parameters
            p.seed = parameters.seed &+ UInt64(i)
            return Sampler(parameters: p)
        }
        var contexts = prompts
        var out = [[SampledToken]](repeating: [], count: n)
        var active = Array(prompts.indices)
        while !active.isEmpty {
            var next: [Int] = []
            var still: [Int] = []
            for (k, i) in active.enumerated() {
                let t = logits[(k * V)..<((k + 1) * V)].withUnsafeBufferPointer { samplers[i].sample($0, context: contexts[i][...]) }
                out[i].append(t)
                contexts[i].append(t.id)
                if out[i].count < parameters.maxTokens && !parameters.stopTokenIDs.contains(t.id) { still.append(i); next.append(t.id) }
            }
            active = still
            if active.isEmpty { break }
            try logits.withUnsafeMutableBufferPointer {
                try backend.step(next, rows: active, logits: UnsafeMutableBufferPointer(rebasing: $0[0..<(active.count * V)]))
            }
        }
        return out
    }
}
