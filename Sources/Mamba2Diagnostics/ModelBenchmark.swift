import Mamba2
import Mamba2CUDA
import Mamba2Training
import CMamba2Kernels

/// `mamba2 bench`, in the style of llama-bench: prompt processing (ppN: N prompt tokens in one prefill,
/// tokens/s) and text generation (tgN: N tokens one at a time after a short prompt, tokens/s), with
/// repetitions (mean ± sd), batched decode, the machine's read bandwidth and the share of the decode
/// floor (bytes each token must read / bandwidth) reached.
public struct ModelBenchmark {
    public struct Result: Sendable {
        public var test: String          // "pp512", "tg128", "tg128 b4"
        public var batch: Int
        public var tokensPerSecond: [Double]
        /// ppN on the CPU: per repetition, the share of the prefill's thread time spent in matrix products
        /// (the projections and the head; `GEMMProfile`). Empty elsewhere.
        public var productShare: [Double] = []
        public var mean: Double { tokensPerSecond.reduce(0, +) / Double(max(tokensPerSecond.count, 1)) }
        public var sd: Double {
            let m = mean
            let n = Double(tokensPerSecond.count)
            return n < 2 ? 0 : (tokensPerSecond.reduce(0) { $0 + ($1 - m) * ($1 - m) } / (n - 1)).squareRoot()
        }
        public var median: Double {
            let s = tokensPerSecond.sorted()
            return s.isEmpty ? 0 : s[s.count / 2]
        }
        /// The median call's time in ms: a prefill of `prompt` tokens, or `generate` tokens of each row.
        public func medianMilliseconds(prompt: Int, generate: Int) -> Double {
            Double(test.hasPrefix("pp") ? prompt : generate * batch) / max(median, 1e-12) * 1000
        }
    }

    public let backend: any Mamba2Backend
    public var promptTokens = 512
    public var generateTokens = 128
    public var repetitions = 3
    public var batches = [1]

    /// On any backend (the CPU, a GPU: the same tests, the same table).
    public init(backend: any Mamba2Backend) { self.backend = backend }

    /// On the CPU with `model`'s weights.
    public init(model: Mamba2Model) throws { self.init(backend: try CPUBackend(model: model)) }

    /// Bytes one decode step must read per row (see `Mamba2Backend.bytesPerDecodedToken`).
    public var bytesPerDecodedToken: Int { backend.bytesPerDecodedToken }

    /// ppN: one prefill of N tokens on a row at zero (the last token's logits back on the host); tgN: N
    /// greedy tokens per row after a 16-token prompt (`decodeGreedy`: on the GPU one CUDA graph per token).
    public func run(progress: (Result) -> Void = { _ in }) throws -> [Result] {
        let V = backend.config.vocabSize
        var rng = SplitMix64(seed: 1234)
        func randomTokens(_ n: Int) -> [Int] { (0..<n).map { _ in Int(rng.next() % UInt64(V)) } }
        var results: [Result] = []
        try backend.reserveRows(max(batches.max() ?? 1, 1))
        var logits = [Float](repeating: 0, count: backend.config.paddedVocabSize)
        func prefillOne(_ prompt: [Int]) throws {
            try logits.withUnsafeMutableBufferPointer { try backend.prefill([prompt], rows: [0], lastLogits: $0) }
        }
        // Warm-up: first touches of weights and buffers, the pool's start, kernels and graphs.
        try backend.resetState(row: 0)
        try prefillOne(randomTokens(16))
        for b in batches {
            for r in 0..<b { try backend.resetState(row: r) }
            try backend.prefill((0..<b).map { _ in randomTokens(16) }, rows: Array(0..<b), lastLogits: nil)
            _ = try backend.decodeGreedy(first: randomTokens(b), rows: Array(0..<b), steps: 2)
        }

        var pp = Result(test: "pp\(promptTokens)", batch: 1, tokensPerSecond: [])
        var tgs = batches.map { Result(test: $0 == 1 ? "tg\(generateTokens)" : "tg\(generateTokens) b\($0)", batch: $0, tokensPerSecond: []) }
        // Repetitions interleave the tests, so that a slow phase of a shared machine hits all of them.
        for _ in 0..<repetitions {
            let prompt = randomTokens(promptTokens)
            try backend.resetState(row: 0)  // outside the timing: the row back at zero, as a new request finds it
            GEMMProfile.reset()
            GEMMProfile.enabled = true
            let t0 = monotonicSeconds()
            try prefillOne(prompt)
            let elapsed = monotonicSeconds() - t0
            GEMMProfile.enabled = false
            pp.tokensPerSecond.append(Double(promptTokens) / elapsed)
            if GEMMProfile.seconds > 0 { pp.productShare.append(GEMMProfile.seconds / (elapsed * Double(Parallel.threadCount))) }
            for (k, b) in batches.enumerated() {
                let rows = Array(0..<b)
                for r in rows { try backend.resetState(row: r) }
                try backend.prefill(rows.map { _ in randomTokens(16) }, rows: rows, lastLogits: nil)
                let first = randomTokens(b)
                let t1 = monotonicSeconds()
                _ = try backend.decodeGreedy(first: first, rows: rows, steps: generateTokens)
                tgs[k].tokensPerSecond.append(Double(generateTokens * b) / (monotonicSeconds() - t1))
            }
        }
        results.append(pp)
        progress(pp)
        for t in tgs { results.append(t); progress(t) }
        return results
    }
}
