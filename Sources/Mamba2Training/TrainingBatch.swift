import Mamba2
/// Rows of packed training tokens with their document boundaries.
///
/// Each row holds `length` tokens; `documents` gives each token's document number, non-decreasing
/// along a row. Where it changes a new document starts: the SSD state and the causal conv reset there,
/// and the last token of a document is not asked to predict the first of the next. A token predicts
/// the next token of its own document (next-token cross-entropy).
public struct TrainingBatch: Sendable {
    public let rows: Int
    public let length: Int
    /// (rows, length) token ids.
    public var tokens: [Int]
    /// (rows, length) document number per token.
    public var documents: [Int32]

    public init(rows: Int, length: Int, tokens: [Int], documents: [Int32]) throws {
        guard rows >= 1, length >= 2 else {
            throw Mamba2Error.invalidArgument("batch", reason: "needs at least 1 row of at least 2 tokens, got \(rows)×\(length)")
        }
        guard tokens.count == rows * length, documents.count == rows * length else {
            throw Mamba2Error.shape(argument: "batch", expected: "\(rows * length) tokens and document numbers",
                                    got: [tokens.count, documents.count])
        }
        for r in 0..<rows {
            for t in 1..<length where documents[r * length + t] < documents[r * length + t - 1] {
                throw Mamba2Error.invalidArgument("documents", reason: "document numbers decrease in row \(r) at position \(t)")
            }
        }
        self.rows = rows; self.length = length; self.tokens = tokens; self.documents = documents
    }

    /// Each sequence its own document, one after another in a single row (the reference fixture's loss:
    /// every next-token position of every sequence counts once).
    public init(sequences: [[Int]]) throws {
        var docs: [Int32] = []
        for (i, s) in sequences.enumerated() { docs += [Int32](repeating: Int32(i), count: s.count) }
        try self.init(rows: 1, length: docs.count, tokens: sequences.flatMap { $0 }, documents: docs)
    }

    /// True when token t (a flat index) has a next token of the same document to predict.
    @inline(__always)
    public func hasTarget(_ t: Int) -> Bool {
        (t + 1) % length != 0 && documents[t + 1] == documents[t]
    }

    /// Positions with a target: the count the loss is averaged over.
    public var targetCount: Int { (0..<(rows * length)).reduce(0) { $0 + (hasTarget($1) ? 1 : 0) } }

    /// The documents of every row, in order, as separate token sequences (a document cut by a row's end
    /// is two sequences, as the model sees it).
    public func documentSequences() -> [[Int]] {
        var out: [[Int]] = []
        for t in 0..<(rows * length) {
            if t % length == 0 || documents[t] != documents[t - 1] { out.append([]) }
            out[out.count - 1].append(tokens[t])
        }
        return out
    }

    /// Flat index of the first token of t's document (never before its row's start).
    public func documentStarts() -> [Int] {
        var starts = [Int](repeating: 0, count: rows * length)
        for t in 0..<(rows * length) {
            starts[t] = (t % length == 0 || documents[t] != documents[t - 1]) ? t : starts[t - 1]
        }
        return starts
    }
}
