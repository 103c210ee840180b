#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Next-token negative log-likelihood of token streams, streamed through the recurrent state in windows
/// so that memory stays bounded by the window, not the text.
public struct PerplexityResult: Sendable {
    /// Σ −log p(token_{t+1} | tokens_≤t) over all predicted positions.
    public var totalNLL: Double
    /// Number of predicted positions.
    public var count: Int
    public var meanNLL: Double { count == 0 ? .nan : totalNLL / Double(count) }
    public var perplexity: Double { exp(meanNLL) }
}

extension Mamba2Model {
    /// NLL of each sequence's tokens 1..<n given their prefixes, `window` tokens per prefill.
    public func perplexity(_ sequences: [[Int]], window: Int = 512) throws -> PerplexityResult {
        guard window >= 1 else { throw Mamba2Error.invalidArgument("window", reason: "must be at least 1") }
        var result = PerplexityResult(totalNLL: 0, count: 0)
        let V = config.paddedVocabSize
        for seq in sequences where seq.count >= 2 {
            var state = [newState()]
            var start = 0
            while start < seq.count - 1 {
                let end = min(seq.count - 1, start + window)  // logits at positions start..<end predict start+1...end
                let logits = try prefill([Array(seq[start..<end])], states: &state, logits: .all)[0].data
                for t in start..<end {
                    let row = logits[((t - start) * V)..<((t - start + 1) * V)]
                    let m = row.max()!
                    var sum = 0.0
                    for v in row { sum += exp(Double(v - m)) }
                    result.totalNLL += log(sum) + Double(m) - Double(row[row.startIndex + seq[t + 1]])
                    result.count += 1
                }
                start = end
            }
        }
        return result
    }
}
