/// Generates one sequence token by token: the prompt is prefilled through the chunked SSD, then each
/// token is one recurrent step on a fixed-size state. Text is decoded as it forms whole characters and
/// held back while it could still be the start of a stop string.
public struct TokenGenerator {
    public let model: Mamba2Model
    public let tokenizer: Tokenizer?
    public var sampler: Sampler
    /// The sequence's state (one element; held in an array so the step updates it in place).
    public private(set) var states: [Mamba2State]
    public private(set) var tokens: [Int]
    public private(set) var info: GenerationInfo
    let parameters: GenerateParameters
    let workspace: DecodeWorkspace
    /// Where prefill and decode run when not on the CPU (the sampler and text stay on the host).
    let gpu: CUDAModel?
    var decoder: StreamingDecoder?
    var pendingText = ""
    var finished = false
    var lastToken: Int?

    /// Prefills the prompt. Throws for an empty prompt or ids outside the vocabulary. With `gpu` (a
    /// `CUDAModel` of the same weights) the model runs there; `state` must then be nil (the GPU starts
    /// sequences from zero) and `states` stays the initial CPU state.
    public init(model: Mamba2Model, tokenizer: Tokenizer?, prompt: [Int], parameters: GenerateParameters,
                state: Mamba2State? = nil, form: SSDForm = .auto, gpu: CUDAModel? = nil) throws {
        try parameters.validate()
        guard !prompt.isEmpty else { throw Mamba2Error.invalidArgument("prompt", reason: "empty prompt: give at least one token") }
        self.model = model
        self.tokenizer = tokenizer
        self.parameters = parameters
        sampler = Sampler(parameters: parameters)
        decoder = tokenizer.map { StreamingDecoder(tokenizer: $0) }
        workspace = DecodeWorkspace(config: model.config, batch: 1)
        var states = [state ?? model.newState()]
        self.gpu = gpu
        if gpu != nil && state != nil {
            throw Mamba2Error.invalidArgument("state", reason: "the GPU prefills from a fresh state; continuing a saved state runs on the CPU")
        }
        let t0 = monotonicSeconds()
        let logits = try gpu?.prefill([prompt], logits: .last)! ?? model.prefill([prompt], states: &states, logits: .last, form: form)[0]
        let prefill = monotonicSeconds() - t0
        self.states = states
        tokens = prompt
        info = GenerationInfo(promptTokens: prompt.count, generatedTokens: 0, prefillSeconds: prefill, decodeSeconds: 0,
                              stopReason: .maxTokens, form: form == .auto ? SSD.chooseForm(length: prompt.count, chunkSize: model.config.chunkSize,
                                                                     heads: model.config.nHeads, headDim: model.config.headDim,
                                                                     stateSize: model.config.dState, groups: model.config.nGroups) : form)
        workspace.logits.withUnsafeMutableBufferPointer { w in logits.data.withUnsafeBufferPointer { w.baseAddress!.update(from: $0.baseAddress!, count: $0.count) } }
    }

    /// The next token and the text it completes (nil when a character is still incomplete or held back
    /// for a stop string), or nil when generation has ended.
    public mutating func next() throws -> (token: SampledToken, text: String?)? {
        if finished { return nil }
        if info.generatedTokens >= parameters.maxTokens { finished = true; info.stopReason = .maxTokens; return nil }
        let t0 = monotonicSeconds()
        // The logits of the last token are in the workspace; a new token is fed only when asked for the next.
        if let last = lastToken {
            if let gpu {
                try workspace.logits.withUnsafeMutableBufferPointer { try gpu.step([last], into: $0) }
            } else {
                try model.step([last], states: &states, workspace: workspace)
            }
        }
        let chosen = workspace.logits.withUnsafeBufferPointer { sampler.sample($0, context: tokens[...]) }
        info.decodeSeconds += info.generatedTokens > 0 ? monotonicSeconds() - t0 : 0
        tokens.append(chosen.id)
        lastToken = chosen.id
        info.generatedTokens += 1
        if parameters.stopTokenIDs.contains(chosen.id) {
            finished = true
            info.stopReason = .stopToken
            return (chosen, nil)
        }
        guard var decoder else { return (chosen, nil) }
        let piece = decoder.push(chosen.id)
        self.decoder = decoder
        guard let piece else { return (chosen, nil) }
        return (chosen, emit(piece))
    }

    /// Text still held back when generation ends.
    public mutating func finishText() -> String? {
        if var decoder, !finished || info.stopReason != .stopString {
            if let rest = decoder.finish() { pendingText += rest }
            self.decoder = decoder
        }
        if info.stopReason == .stopString { return nil }
        let out = pendingText
        pendingText = ""
        return out.isEmpty ? nil : out
    }

    /// Appends text; returns what can be shown now, holding back a possible stop-string prefix.
    mutating func emit(_ piece: String) -> String? {
        pendingText += piece
        let stops = parameters.stopStrings.filter { !$0.isEmpty }
        if stops.isEmpty { defer { pendingText = "" }; return pendingText }
        for s in stops {
            if let r = pendingText.range(ofScalars: s) {
                finished = true
                info.stopReason = .stopString
                let out = String(pendingText[..<r.lowerBound])
                pendingText = ""
                return out
            }
        }
        // Hold back the longest tail that begins some stop string.
        let scalars = Array(pendingText.unicodeScalars)
        var hold = 0
        for s in stops {
            let ss = Array(s.unicodeScalars)
            for k in stride(from: min(ss.count - 1, scalars.count), to: 0, by: -1) where Array(scalars.suffix(k)) == Array(ss.prefix(k)) {
                hold = max(hold, k)
                break
            }
        }
        let out = String(String.UnicodeScalarView(scalars.dropLast(hold)))
        pendingText = String(String.UnicodeScalarView(scalars.suffix(hold)))
        return out
    }
}

extension String {
    /// The first range where `needle` occurs, comparing unicode scalars.
    func range(ofScalars needle: String) -> Range<String.Index>? { ranges(ofLiteral: needle).first }
}

/// Generates for several prompts together: one packed prefill, then every unfinished sequence decodes
/// in one batched step per token. Each sequence samples with its own sampler (seed + index), so a
/// sequence's tokens equal what it would generate alone with that seed.
/// With `gpu`, the prefill and every step run there (prompts of different lengths packed into one row);
/// its decode steps all rows, finished ones fed a placeholder token whose logits are not read.
struct BatchGenerator {
    let model: Mamba2Model
    let prompts: [[Int]]
    let parameters: GenerateParameters
    let gpu: CUDAModel?

    init(model: Mamba2Model, prompts: [[Int]], parameters: GenerateParameters, gpu: CUDAModel? = nil) throws {
        try parameters.validate()
        guard !prompts.isEmpty, prompts.allSatisfy({ !$0.isEmpty }) else {
            throw Mamba2Error.invalidArgument("prompts", reason: "give at least one non-empty prompt")
        }
        self.model = model; self.prompts = prompts; self.parameters = parameters; self.gpu = gpu
    }

    mutating func run() throws -> [[SampledToken]] {
        let V = model.config.paddedVocabSize
        var states = gpu == nil ? prompts.map { _ in model.newState() } : []
        // Each row's logits, a slice of the step's output (no copy).
        var logits: [ArraySlice<Float>]
        if let gpu {
            let l = try gpu.prefill(prompts, logits: .last)!
            logits = prompts.indices.map { l.data[($0 * V)..<(($0 + 1) * V)] }
        } else {
            logits = try model.prefill(prompts, states: &states, logits: .last).map { $0.data[...] }
        }
        var samplers = prompts.indices.map { i in
            var p = parameters
            p.seed = parameters.seed &+ UInt64(i)
            return Sampler(parameters: p)
        }
        var contexts = prompts
        var out = [[SampledToken]](repeating: [], count: prompts.count)
        var active = Array(prompts.indices)
        while !active.isEmpty {
            var next: [Int] = []
            var still: [Int] = []
            for (k, i) in active.enumerated() {
                let t = logits[k].withUnsafeBufferPointer { samplers[i].sample($0, context: contexts[i][...]) }
                out[i].append(t)
                contexts[i].append(t.id)
                if out[i].count < parameters.maxTokens && !parameters.stopTokenIDs.contains(t.id) { still.append(i); next.append(t.id) }
            }
            active = still
            if active.isEmpty { break }
            if let gpu {
                var all = [Int](repeating: 0, count: prompts.count)  // finished rows: a placeholder
                for (k, i) in active.enumerated() { all[i] = next[k] }
                let l = try gpu.step(all)
                logits = active.map { l.data[($0 * V)..<(($0 + 1) * V)] }
            } else {
                var batchStates = active.map { states[$0] }
                let l = try model.step(next, states: &batchStates)
                for (k, i) in active.enumerated() { states[i] = batchStates[k] }
                logits = active.indices.map { l.data[($0 * V)..<(($0 + 1) * V)] }
            }
        }
        return out
    }
}
