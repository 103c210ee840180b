import CMamba2Kernels
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// How the next token is chosen from logits.
public struct GenerateParameters: Sendable {
    /// Tokens to generate at most.
    public var maxTokens: Int = 256
    /// 0 means greedy (argmax).
    public var temperature: Float = 0.8
    /// Keep the k most likely tokens (0: all).
    public var topK: Int = 0
    /// Keep the smallest set of tokens whose probability reaches p (1: all).
    public var topP: Float = 1
    /// Drop tokens less likely than min_p times the most likely one (0: none).
    public var minP: Float = 0
    /// > 1 discourages tokens already in the recent context (as transformers: logit/p if > 0, else ·p).
    public var repetitionPenalty: Float = 1
    /// How many recent tokens the repetition penalty looks at.
    public var repetitionContext: Int = 64
    /// Seed of the sampler; the same seed gives the same output.
    public var seed: UInt64 = 0
    /// Stop when the text contains one of these (the stop string is not emitted).
    public var stopStrings: [String] = []
    /// Stop after one of these ids (not emitted as text).
    public var stopTokenIDs: Set<Int> = []
    /// Also report the log-probabilities of this many most likely tokens per step (0: none).
    public var topLogprobs: Int = 0

    public init(maxTokens: Int = 256, temperature: Float = 0.8, topK: Int = 0, topP: Float = 1, minP: Float = 0,
                repetitionPenalty: Float = 1, seed: UInt64 = 0, stopStrings: [String] = [], stopTokenIDs: Set<Int> = [],
                topLogprobs: Int = 0) {
        self.maxTokens = maxTokens; self.temperature = temperature; self.topK = topK; self.topP = topP; self.minP = minP
        self.repetitionPenalty = repetitionPenalty; self.seed = seed; self.stopStrings = stopStrings
        self.stopTokenIDs = stopTokenIDs; self.topLogprobs = topLogprobs
    }

    /// The choice is the first index of the largest raw logit (greedy, no repetition penalty), so whoever
    /// holds the logits can make it.
    public var choosesArgmax: Bool { temperature == 0 && repetitionPenalty == 1 }

    public func validate() throws {
        guard maxTokens >= 0 else { throw Mamba2Error.invalidArgument("max_tokens", reason: "must be ≥ 0") }
        guard temperature >= 0, temperature.isFinite else { throw Mamba2Error.invalidArgument("temperature", reason: "must be ≥ 0") }
        guard topK >= 0 else { throw Mamba2Error.invalidArgument("top_k", reason: "must be ≥ 0") }
        guard topP > 0, topP <= 1 else { throw Mamba2Error.invalidArgument("top_p", reason: "must be in (0, 1]") }
        guard minP >= 0, minP < 1 else { throw Mamba2Error.invalidArgument("min_p", reason: "must be in [0, 1)") }
        guard repetitionPenalty > 0 else { throw Mamba2Error.invalidArgument("repetition_penalty", reason: "must be > 0") }
        guard topLogprobs >= 0 else { throw Mamba2Error.invalidArgument("logprobs", reason: "must be ≥ 0") }
    }
}

/// One chosen token with its log-probability (under the model's distribution, before temperature and
/// filters) and, on request, the most likely alternatives.
public struct SampledToken: Sendable, Equatable {
    public var id: Int
    public var logprob: Float
    public var top: [TokenLogprob]
}

public struct TokenLogprob: Sendable, Equatable {
    public var id: Int
    public var logprob: Float
}

/// Chooses tokens from logits. Holds its own random state and reusable buffers (no allocation per token
/// after the first, unless top-k/top-p sorting or logprobs are asked for).
public struct Sampler: Sendable {
    public let parameters: GenerateParameters
    var rng: SplitMix64
    var probs: [Float] = []
    var order: [Int32] = []

    public init(parameters: GenerateParameters) {
        self.parameters = parameters
        rng = SplitMix64(seed: parameters.seed)
    }

    /// Picks the next token from logits (vocab floats); `context` are the recent ids (repetition penalty).
    public mutating func sample(_ logits: UnsafeBufferPointer<Float>, context: ArraySlice<Int>) -> SampledToken {
        let p = parameters
        let V = logits.count
        // Log-softmax of the raw logits, for the reported log-probabilities (vectorized kernels: a libm exp
        // per logit cost ~300 µs a row at a 50K vocabulary).
        let maxLogit = mk_max_f32(Int32(V), logits.baseAddress!)
        let logZ = mk_log_sum_exp(Int32(V), logits.baseAddress!, maxLogit)
        if p.choosesArgmax {
            // The first index of the largest logit, no copy.
            return finish(Int(mk_first_index_f32(Int32(V), logits.baseAddress!, maxLogit)), logits, logZ)
        }
        if probs.count != V { probs = [Float](repeating: 0, count: V) }

        // Adjusted logits: repetition penalty, then temperature.
        for i in 0..<V { probs[i] = logits[i] }
        if p.repetitionPenalty != 1 {
            for id in context.suffix(p.repetitionContext) where id >= 0 && id < V {
                probs[id] = probs[id] > 0 ? probs[id] / p.repetitionPenalty : probs[id] * p.repetitionPenalty
            }
        }
        var chosen = 0
        if p.temperature == 0 {
            for i in 1..<V where probs[i] > probs[chosen] { chosen = i }
        } else {
            var m = -Float.infinity
            for v in probs where v > m { m = v }
            var total: Float = 0
            for i in 0..<V { probs[i] = expf((probs[i] - m) / p.temperature); total += probs[i] }
            for i in 0..<V { probs[i] /= total }
            if p.minP > 0 {
                var top: Float = 0
                for v in probs where v > top { top = v }
                let floor = top * p.minP
                for i in 0..<V where probs[i] < floor { probs[i] = 0 }
            }
            if p.topK > 0 || p.topP < 1 {
                if order.count != V { order = (0..<Int32(V)).map { $0 } }
                for i in 0..<V { order[i] = Int32(i) }
                let pr = probs
                order.sort { pr[Int($0)] > pr[Int($1)] }
                var keep = V
                if p.topK > 0 { keep = min(keep, p.topK) }
                if p.topP < 1 {
                    var mass: Float = 0
                    var total: Float = 0
                    for i in 0..<keep { total += probs[Int(order[i])] }
                    for i in 0..<keep {
                        mass += probs[Int(order[i])] / total
                        if mass >= p.topP { keep = i + 1; break }
                    }
                }
                for i in keep..<V { probs[Int(order[i])] = 0 }
            }
            var kept: Float = 0
            for v in probs { kept += v }
            var r = rng.uniform() * kept
            chosen = V - 1
            for i in 0..<V {
                r -= probs[i]
                if r < 0 && probs[i] > 0 { chosen = i; break }
            }
            if probs[chosen] == 0 { chosen = probs.indices.max { probs[$0] < probs[$1] }! }
        }
        return finish(chosen, logits, logZ)
    }

    /// The chosen token with its log-probability and, if asked, the most likely alternatives.
    func finish(_ chosen: Int, _ logits: UnsafeBufferPointer<Float>, _ logZ: Float) -> SampledToken {
        var top: [TokenLogprob] = []
        if parameters.topLogprobs > 0 {
            let ids = (0..<logits.count).sorted { logits[$0] > logits[$1] }.prefix(parameters.topLogprobs)
            top = ids.map { TokenLogprob(id: $0, logprob: logits[$0] - logZ) }
        }
        return SampledToken(id: chosen, logprob: logits[chosen] - logZ, top: top)
    }
}
