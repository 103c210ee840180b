import Mamba2

/// Time to the first token of a conversation's follow-up, with and without the prefix-state cache: turn 1
/// sends `prefix` tokens and gets `answer` tokens back; turn 2 sends all of that again plus `followUp` new
/// tokens. With the cache, turn 2 restores the state turn 1 ended with and prefills only the new tokens.
/// Each repetition asks a different follow-up of the same history. Greedy; random token ids.
public struct PrefixCacheBenchmark {
    public var prefix = 2000, answer = 16, followUp = 50, repetitions = 3
    public init() {}

    public struct Row: Sendable {
        public var cache: Bool
        /// Median seconds from submitting turn 2 to its first token, and each repetition's.
        public var medianSeconds: Double
        public var seconds: [Double]
        /// Prompt tokens of turn 2 that came from the cache (each repetition's).
        public var cachedTokens: Int
    }

    /// `makeBackend` gives a fresh backend of the same weights for each of the two runs.
    public func run(makeBackend: () throws -> any Mamba2Backend) async throws -> [Row] {
        var rng = SplitMix64(seed: 7)
        var rows: [Row] = []
        for useCache in [false, true] {
            let backend = try makeBackend()
            let vocab = backend.config.vocabSize
            let history = (0..<prefix).map { _ in Int(rng.next() % UInt64(vocab)) }
            let b = try ContinuousBatcher(backend: backend, tokenizer: nil,
                                          options: .init(slots: 2, prefillTokenBudget: 1 << 20, cacheBytes: useCache ? 4 << 30 : 0))
            defer { b.stop() }
            let p = GenerateParameters(maxTokens: answer, temperature: 0)
            var reply: [Int] = []
            for try await e in try b.submit(prompt: history, parameters: p) { if case let .token(t) = e { reply.append(t.id) } }
            var seconds: [Double] = []
            var followRng = SplitMix64(seed: 11)
            for _ in 0..<repetitions {
                let turn2 = history + reply + (0..<followUp).map { _ in Int(followRng.next() % UInt64(vocab)) }
                let t0 = monotonicSeconds()
                var first: Double?
                for try await e in try b.submit(prompt: turn2, parameters: .init(maxTokens: 1, temperature: 0)) {
                    if case .token = e, first == nil { first = monotonicSeconds() - t0 }
                }
                seconds.append(first ?? .nan)
            }
            let m = b.metrics
            rows.append(Row(cache: useCache, medianSeconds: seconds.sorted()[seconds.count / 2], seconds: seconds,
                            cachedTokens: m.cacheHits > 0 ? m.cachedTokens / m.cacheHits : 0))
        }
        return rows
    }
}
