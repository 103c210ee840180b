/// One sequence's generation after its prompt, apart from the model: the sampler (its own seed), the
/// context its repetition penalty looks at, the text as it forms whole characters (held back while it
/// could still begin a stop string), and when and why it ends. Whoever owns the backend feeds it logits:
/// `TokenGenerator` one row at a time, `ContinuousBatcher` a batched step over many sequences.
public struct GenerationSequence: Sendable {
    public let parameters: GenerateParameters
    /// The prompt, then every token chosen.
    public private(set) var tokens: [Int]
    public let promptCount: Int
    public private(set) var finished = false
    public private(set) var stopReason: GenerationInfo.StopReason = .maxTokens
    public var sampler: Sampler
    var decoder: StreamingDecoder?
    var pendingText = ""

    /// `tokenizer` nil: tokens only, no text.
    public init(prompt: [Int], parameters: GenerateParameters, tokenizer: Tokenizer?) {
        self.parameters = parameters
        tokens = prompt
        promptCount = prompt.count
        sampler = Sampler(parameters: parameters)
        decoder = tokenizer.map { StreamingDecoder(tokenizer: $0) }
    }

    /// Tokens chosen so far.
    public var generatedCount: Int { tokens.count - promptCount }
    /// The last token chosen, which the model has still to be fed for the next logits.
    public var lastToken: Int? { generatedCount > 0 ? tokens.last : nil }
    /// Whether another token may be chosen (not finished, below max_tokens); marks it finished if not.
    public mutating func wantsToken() -> Bool {
        if finished { return false }
        if generatedCount >= parameters.maxTokens { finished = true; stopReason = .maxTokens; return false }
        return true
    }

    /// Chooses the next token from the logits of the last token fed; returns it and the text that can be
    /// shown now (nil while a character is incomplete or held back for a stop string).
    public mutating func accept(_ logits: UnsafeBufferPointer<Float>) -> (token: SampledToken, text: String?) {
        accept(chosen: sampler.sample(logits, context: tokens[...]))
    }

    /// Whether the sampler's choice is the plain argmax, with nothing else asked of the logits (greedy, no
    /// repetition penalty, no alternatives): then a device may choose and `accept(chosen:)` takes it.
    public var isPlainGreedy: Bool { parameters.choosesArgmax && parameters.topLogprobs == 0 }

    /// Takes a token chosen elsewhere (a device's argmax for a plain greedy sequence).
    public mutating func accept(chosen: SampledToken) -> (token: SampledToken, text: String?) {
        tokens.append(chosen.id)
        if parameters.stopTokenIDs.contains(chosen.id) {
            finished = true
            stopReason = .stopToken
            return (chosen, nil)
        }
        guard var decoder else { return (chosen, nil) }
        let piece = decoder.push(chosen.id)
        self.decoder = decoder
        guard let piece else { return (chosen, nil) }
        return (chosen, emit(piece))
    }

    /// Ends the sequence early (a cancelled request).
    public mutating func cancel() { if !finished { finished = true; stopReason = .cancelled } }

    /// Text still held back when generation ends.
    public mutating func finishText() -> String? {
        if var decoder, !finished || stopReason != .stopString {
            if let rest = decoder.finish() { pendingText += rest }
            self.decoder = decoder
        }
        if stopReason == .stopString { return nil }
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
                stopReason = .stopString
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
