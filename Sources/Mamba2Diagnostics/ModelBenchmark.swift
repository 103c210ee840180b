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
        public var mean: Double { tokensPerSecond.reduce(0, +) / Double(max(tokensPerSecond.count, 1)) }
        public var sd: Double {
            let m = mean
            let n = Double(tokensPerSecond.count)
            return n < 2 ? 0 : (tokensPerSecond.reduce(0) { $0 + ($1 - m) * ($1 - m) } / (n - 1)).squareRoot()
        }
    }

    public let model: Mamba2Model
    public var promptTokens = 512
    public var generateTokens = 128
    public var repetitions = 3
    public var batches = [1]

    public init(model: Mamba2Model) { self.model = model }

    /// Bytes one decode step must read: every weight once (the tied head reads the embedding) plus the
    /// state read and written.
    public var bytesPerDecodedToken: Int {
        let c = model.config
        return model.decodeWeightBytes + 2 * c.stateFloatsPerSequence * 4
    }

    public func run(progress: (Result) -> Void = { _ in }) throws -> [Result] {
        let V = model.config.vocabSize
        var rng = SplitMix64(seed: 1234)
        func randomTokens(_ n: Int) -> [Int] { (0..<n).map { _ in Int(rng.next() % UInt64(V)) } }
        var results: [Result] = []
        // Warm-up: first touches of weights and buffers, pool start.
        var warm = [model.newState()]
        _ = try model.prefill([randomTokens(16)], states: &warm, logits: .last)

        var pp = Result(test: "pp\(promptTokens)", batch: 1, tokensPerSecond: [])
        var tgs = batches.map { Result(test: $0 == 1 ? "tg\(generateTokens)" : "tg\(generateTokens) b\($0)", batch: $0, tokensPerSecond: []) }
        // Repetitions interleave the tests, so that a slow phase of a shared machine hits all of them.
        for _ in 0..<repetitions {
            var states = [model.newState()]
            let prompt = randomTokens(promptTokens)
            let t0 = monotonicSeconds()
            _ = try model.prefill([prompt], states: &states, logits: .last)
            pp.tokensPerSecond.append(Double(promptTokens) / (monotonicSeconds() - t0))
            for (k, b) in batches.enumerated() {
                var st = (0..<b).map { _ in model.newState() }
                _ = try model.prefill((0..<b).map { _ in randomTokens(4) }, states: &st, logits: .last)
                let ws = DecodeWorkspace(config: model.config, batch: b)
                var tokens = randomTokens(b)
                let t1 = monotonicSeconds()
                for _ in 0..<generateTokens {
                    try model.step(tokens, states: &st, workspace: ws)
                    tokens = ws.argmaxRows(b)
                }
                tgs[k].tokensPerSecond.append(Double(generateTokens * b) / (monotonicSeconds() - t1))
            }
        }
        results.append(pp)
        progress(pp)
        for t in tgs { results.append(t); progress(t) }
        return results
    }

    /// Read bandwidth of this machine in bytes/s, as the decode step's access pattern achieves it: the
    /// decode GEMV streaming a 512 MiB float32 matrix once with all threads, best of 3.
    public static func measureReadBandwidth() -> Double {
        let (rows, cols) = (65536, 2048)
        let w = UnsafeMutablePointer<Float>.allocate(capacity: rows * cols)
        defer { w.deallocate() }
        w.initialize(repeating: 0.5, count: rows * cols)
        let x = [Float](repeating: 1, count: cols)
        var y = [Float](repeating: 0, count: rows)
        var best = 0.0
        for _ in 0..<3 {
            let t0 = monotonicSeconds()
            mk_gemv_rows(1, Int32(rows), Int32(cols), x, Int32(cols), w, 0, nil, &y, Int32(rows), Int32(Parallel.threadCount))
            best = max(best, Double(rows * cols * 4) / (monotonicSeconds() - t0))
        }
        return best
    }
}

extension DecodeWorkspace {
    /// Argmax of each of the first `rows` logit rows (greedy continuation for benchmarks).
    func argmaxRows(_ rows: Int) -> [Int] {
        let V = logits.count / batch
        return (0..<rows).map { r in
            var best = 0
            var bv = -Float.infinity
            for i in 0..<V where logits[r * V + i] > bv { bv = logits[r * V + i]; best = i }
            return best
        }
    }
}
