// The prefix-state cache alone, and the continuous batcher with it: a follow-up prompt that extends an
// earlier request restores its state and prefills only the rest, with the same tokens and log-probabilities
// as a full prefill.
import Foundation
import Mamba2
import Mamba2TestSupport
import Testing

@Suite("Prefix-state cache") struct PrefixStateCacheTests {
    func state(_ c: Mamba2Config, _ v: Float) -> Mamba2State {
        var s = Mamba2State(config: c)
        for i in s.ssm.indices { s.ssm[i] = [Float](repeating: v, count: s.ssm[i].count) }
        return s
    }

    @Test("the longest shorter prefix wins; equal length and other texts miss")
    func longest() throws {
        let c = try Mamba2Config.load(path: fixture("tiny-hf") + "/config.json")
        var cache = PrefixStateCache(capacityBytes: 1 << 30)
        cache.insert(tokens: [1, 2], state: state(c, 2))
        cache.insert(tokens: [1, 2, 3, 4], state: state(c, 4))
        cache.insert(tokens: [9, 9, 9], state: state(c, 9))
        let found = cache.longestPrefix(of: [1, 2, 3, 4, 5])
        let hit = try #require(found)
        #expect(hit.count == 4 && hit.state == state(c, 4))
        #expect(cache.longestPrefix(of: [1, 2, 3])?.count == 2)
        #expect(cache.longestPrefix(of: [1, 2]) == nil)  // at least one token is left to prefill
        #expect(cache.longestPrefix(of: [2, 1, 3]) == nil)
        #expect(cache.hits == 2 && cache.misses == 2)
    }

    @Test("entries are evicted least recently used under the byte budget")
    func eviction() throws {
        let c = try Mamba2Config.load(path: fixture("tiny-hf") + "/config.json")
        let size = Mamba2State(config: c).byteCount
        var cache = PrefixStateCache(capacityBytes: 2 * size)
        cache.insert(tokens: [1], state: state(c, 1))
        cache.insert(tokens: [2], state: state(c, 2))
        _ = cache.longestPrefix(of: [1, 5])  // [1] is now the more recent
        cache.insert(tokens: [3], state: state(c, 3))
        #expect(cache.count == 2 && cache.usedBytes == 2 * size && cache.evictions == 1)
        #expect(cache.longestPrefix(of: [2, 5]) == nil)
        #expect(cache.longestPrefix(of: [1, 5]) != nil && cache.longestPrefix(of: [3, 5]) != nil)
        cache.insert(tokens: [3], state: state(c, 7))  // the same tokens replace their state
        #expect(cache.count == 2 && cache.longestPrefix(of: [3, 5])?.state == state(c, 7))
        var none = PrefixStateCache(capacityBytes: size - 1)
        none.insert(tokens: [1], state: state(c, 1))
        #expect(none.count == 0)
    }
}

@Suite("Continuous batcher") struct ContinuousBatcherTests {
    func run(_ b: ContinuousBatcher, _ prompt: [Int], _ p: GenerateParameters) async throws -> [SampledToken] {
        var out: [SampledToken] = []
        for try await e in try b.submit(prompt: prompt, parameters: p) { if case let .token(t) = e { out.append(t) } }
        return out
    }

    @Test("a follow-up that extends a finished request restores its state: same tokens and logprobs as a full prefill")
    func followUp() async throws {
        let path = try #require(LanguageModel.bundledModelPath)
        let cached = try LanguageModel.load(directory: path), plain = try LanguageModel.load(directory: path)
        let withCache = try ContinuousBatcher(backend: cached.backend, tokenizer: cached.tokenizer, options: .init(slots: 2, cacheBytes: 64 << 20))
        let without = try ContinuousBatcher(backend: plain.backend, tokenizer: plain.tokenizer, options: .init(slots: 2))
        defer { withCache.stop(); without.stop() }
        let tok = try #require(cached.tokenizer)
        let p = GenerateParameters(maxTokens: 24, temperature: 0, topLogprobs: 5)
        // Turn 1: a long prompt (several chunks of the model's 128), then its answer.
        let first = tok.encode(String(repeating: "And it came to pass in those days, that the king spake unto his servants. ", count: 8))
        let answer = try await run(withCache, first, p)
        #expect(withCache.metrics.cacheHits == 0)
        // Turn 2: the whole history and a new question.
        let second = first + answer.map(\.id) + tok.encode(" Then said the king,")
        let fast = try await run(withCache, second, p)
        let m = withCache.metrics
        #expect(m.cacheHits == 1)
        // The state at the end of turn 1 covers every token fed: the prompt and all but the last answer token.
        #expect(m.cachedTokens == first.count + answer.count - 1, "\(m)")
        let full = try await run(without, second, p)
        #expect(without.metrics.cacheHits == 0)
        // Restoring the state and prefilling the rest cuts the text into chunks at other places than a full
        // prefill; the float32 sums differ by rounding (~1e-6 relative per layer). 2e-4 on log-probabilities
        // (magnitudes up to ~10) is about 1e-5 relative.
        #expect(fast.map(\.id) == full.map(\.id))
        for (a, b) in zip(fast, full) {
            #expect(abs(a.logprob - b.logprob) <= 2e-4, "\(a.logprob) vs \(b.logprob)")
            for (x, y) in zip(a.top, b.top) { #expect(x.id == y.id && abs(x.logprob - y.logprob) <= 2e-4) }
        }
    }

    @Test("a dropped stream frees its slot; a full queue is refused; bad prompts are refused at submit")
    func slotsAndQueue() async throws {
        let path = try #require(LanguageModel.bundledModelPath)
        let lm = try LanguageModel.load(directory: path)
        let b = try ContinuousBatcher(backend: lm.backend, tokenizer: lm.tokenizer, options: .init(slots: 1, queueLimit: 1))
        defer { b.stop() }
        let p = GenerateParameters(maxTokens: 100_000, temperature: 0)
        var long: AsyncThrowingStream<Generation, Error>? = try b.submit(prompt: [65], parameters: p)
        for _ in 0..<500 where b.metrics.running == 0 { try await Task.sleep(for: .milliseconds(10)) }
        #expect(b.metrics.running == 1)
        let waiting = try b.submit(prompt: [66], parameters: .init(maxTokens: 3, temperature: 0))
        #expect(throws: ContinuousBatcher.SubmitError.self) { try b.submit(prompt: [67], parameters: p) }
        long = nil  // the reader goes away: its slot goes to the waiting request
        _ = long
        var n = 0
        for try await e in waiting { if case .token = e { n += 1 } }
        #expect(n == 3)
        #expect(throws: Mamba2Error.self) { try b.submit(prompt: [], parameters: p) }
        #expect(throws: Mamba2Error.self) { try b.submit(prompt: [1_000_000], parameters: p) }
        #expect(throws: Mamba2Error.self) { try b.submit(prompt: [1], parameters: .init(temperature: -1)) }
    }
}

@Suite("Continuous batcher: blocks, slow readers, draining") struct ContinuousBatcherBoundsTests {
    func collect(_ s: AsyncThrowingStream<Generation, Error>) async throws -> [SampledToken] {
        var out: [SampledToken] = []
        for try await e in s { if case let .token(t) = e { out.append(t) } }
        return out
    }

    @Test("a prompt sharing only the beginning of a long cached prompt restores the last block boundary: same logprobs as a full prefill")
    func blockSnapshots() async throws {
        let path = try #require(LanguageModel.bundledModelPath)
        let cached = try LanguageModel.load(directory: path), plain = try LanguageModel.load(directory: path)
        let chunk = cached.backend.config.chunkSize
        let withCache = try ContinuousBatcher(backend: cached.backend, tokenizer: cached.tokenizer,
                                              options: .init(slots: 2, cacheBytes: 256 << 20, cacheBlockTokens: chunk))
        let without = try ContinuousBatcher(backend: plain.backend, tokenizer: plain.tokenizer, options: .init(slots: 2))
        defer { withCache.stop(); without.stop() }
        let vocab = cached.backend.config.vocabSize
        // Fresh random token ids each run (a byte model: every id is a valid token).
        let shared = (0..<(3 * chunk + chunk / 2)).map { _ in Int.random(in: 1..<vocab) }
        let p = GenerateParameters(maxTokens: 6, temperature: 0, topLogprobs: 5)
        _ = try await collect(try withCache.submit(prompt: shared, parameters: p))
        // Kept: every block boundary of the first prompt, its end, and the end of its generation.
        #expect(withCache.metrics.cacheEntries == 3 + 1 + 1, "\(withCache.metrics)")
        let cut = 2 * chunk + chunk / 3
        let second = Array(shared[0..<cut]) + (0..<40).map { _ in Int.random(in: 1..<vocab) }
        let fast = try await collect(try withCache.submit(prompt: second, parameters: p))
        #expect(withCache.metrics.cacheHits == 1 && withCache.metrics.cachedTokens == 2 * chunk, "\(withCache.metrics)")
        let full = try await collect(try without.submit(prompt: second, parameters: p))
        // The restored state was reached by prefilling whole chunks from the first token, as the full prefill
        // cuts them too; what differs is only that the state crosses a call boundary in memory. Log-probabilities
        // of magnitude ≤ ~10 in float32 carry ~1e-6 of rounding; 1e-5 relative (of max(1, |value|)) allows
        // a few roundings' difference and no more.
        #expect(fast.map(\.id) == full.map(\.id))
        for (a, b) in zip(fast, full) {
            for (x, y) in zip(a.top, b.top) {
                #expect(x.id == y.id && abs(x.logprob - y.logprob) <= 1e-5 * max(1, abs(y.logprob)), "\(x.logprob) vs \(y.logprob)")
            }
        }
    }

    @Test("a reader that falls a whole buffer behind is ended with readerTooSlow and frees its slot")
    func slowReader() async throws {
        let path = try #require(LanguageModel.bundledModelPath)
        let lm = try LanguageModel.load(directory: path)
        let b = try ContinuousBatcher(backend: lm.backend, tokenizer: nil, options: .init(slots: 1, streamBufferLimit: 4))
        defer { b.stop() }
        let slow = try b.submit(prompt: [65, 66], parameters: .init(maxTokens: 10_000, temperature: 0))
        // Nobody reads: after four events the request is ended, long before 10,000 tokens.
        for _ in 0..<1000 where b.metrics.slowReaders == 0 { try await Task.sleep(for: .milliseconds(10)) }
        #expect(b.metrics.slowReaders == 1)
        #expect(b.metrics.generatedTokens < 100, "\(b.metrics)")
        var events = 0
        await #expect(throws: ContinuousBatcher.StreamError.self) {
            for try await _ in slow { events += 1 }
        }
        #expect(events == 4)
        // The slot is free for the next request.
        let next = try await collect(try b.submit(prompt: [67], parameters: .init(maxTokens: 3, temperature: 0)))
        #expect(next.count == 3)
    }

    @Test("draining refuses new requests and lets running ones go on; stop ends them")
    func draining() async throws {
        let path = try #require(LanguageModel.bundledModelPath)
        let lm = try LanguageModel.load(directory: path)
        let b = try ContinuousBatcher(backend: lm.backend, tokenizer: nil, options: .init(slots: 2))
        #expect(b.isIdle)
        let running = try b.submit(prompt: [65], parameters: .init(maxTokens: 1_000_000, temperature: 0))
        b.beginDraining()
        #expect(throws: ContinuousBatcher.SubmitError.self) { try b.submit(prompt: [66], parameters: .init(maxTokens: 1)) }
        try await Task.sleep(for: .milliseconds(50))
        #expect(!b.isIdle)
        b.stop()
        var info: GenerationInfo?
        for try await e in running { if case let .info(i) = e { info = i } }
        #expect(info?.stopReason == .cancelled)
        for _ in 0..<500 where !b.isIdle { try await Task.sleep(for: .milliseconds(10)) }
        #expect(b.isIdle)
    }
}

@Suite("Continuous batcher: rows") struct ContinuousBatcherRowTests {
    @Test("requests of different lengths through three slots: rows compact as they leave, tokens as alone")
    func compaction() async throws {
        let path = try #require(LanguageModel.bundledModelPath)
        let lm = try LanguageModel.load(directory: path), alone = try LanguageModel.load(directory: path)
        let tok = try #require(lm.tokenizer)
        // The server tests' prompts, whose greedy margins over 30 tokens they check (no near ties).
        let prompts = ["And it came to pass", "The quick brown fox", "A hacker is", "To install a package, run",
                       "In the beginning", "Q: What is", "The LORD said unto Moses", "Debian is"]
        let lengths = [5, 30, 12, 30, 1, 20, 8, 30]
        var expected: [[Int]] = []
        for (p, n) in zip(prompts, lengths) {
            var gen = try alone.tokenGenerator(prompt: tok.encode(p), parameters: .init(maxTokens: n, temperature: 0))
            var ids: [Int] = []
            while let s = try gen.next() { ids.append(s.token.id) }
            expected.append(ids)
        }
        let b = try ContinuousBatcher(backend: lm.backend, tokenizer: nil, options: .init(slots: 3))
        defer { b.stop() }
        let streams = try zip(prompts, lengths).map { try b.submit(prompt: tok.encode($0), parameters: .init(maxTokens: $1, temperature: 0)) }
        let got = try await collectTokens(streams)
        #expect(got == expected)
        #expect(b.metrics.rowsStepped > b.metrics.decodeSteps)
    }
}
