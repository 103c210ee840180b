import Mamba2
/// Training text as one token stream with document numbers, split into training and validation
/// documents, and the batches drawn from it.
///
/// Documents: each file is one document, and a line holding only `<|endoftext|>` separates documents
/// within a file (the usual convention of GPT-2-style corpora). Every document ends with the
/// end-of-text token when the vocabulary has one, so a model learns where text ends. Every k-th
/// document (k = round(1 / validationFraction)) is held out for validation.
public struct TextDataset: Sendable {
    /// How text becomes ids.
    public enum Encoding: Sendable {
        case tokenizer(Tokenizer)
        /// UTF-8 bytes, ids 0–255, end of text 256 (`ByteTokenizer`).
        case bytes

        var endOfText: Int? {
            switch self {
            case .bytes: ByteTokenizer.endOfText
            case let .tokenizer(t): t.endOfTextID
            }
        }
        func encode(_ text: String) -> [Int] {
            switch self {
            case .bytes: text.utf8.map(Int.init)
            case let .tokenizer(t): t.encode(text, addSpecialTokens: false)
            }
        }
    }

    /// Training tokens, documents one after another.
    public let train: [Int]
    /// Document number of each training token.
    public let trainDocuments: [Int32]
    public let validation: [Int]
    public let validationDocuments: [Int32]
    /// Largest id in the data plus one.
    public let idLimit: Int

    public init(files: [String], encoding: Encoding, validationFraction: Double = 0.02) throws {
        guard !files.isEmpty else { throw Mamba2Error.invalidArgument("data", reason: "no text files given") }
        var documents: [[Int]] = []
        for path in files {
            let bytes = try MappedFile.readText(path)
            guard let text = String(validating: bytes, as: UTF8.self) else {
                throw Mamba2Error.io(path: path, reason: "not valid UTF-8 text")
            }
            for part in text.split(separator: "\n<|endoftext|>\n", omittingEmptySubsequences: true) {
                var ids = encoding.encode(String(part))
                if ids.isEmpty { continue }
                if let eot = encoding.endOfText { ids.append(eot) }
                documents.append(ids)
            }
        }
        guard documents.count >= 2 else {
            throw Mamba2Error.invalidArgument("data", reason: "\(documents.count) document(s): need at least 2 (one is held out for validation); separate documents with a line '<|endoftext|>' or give several files")
        }
        let every = max(2, Int((1 / max(validationFraction, 1e-6)).rounded()))
        var tr: [Int] = [], trD: [Int32] = [], va: [Int] = [], vaD: [Int32] = []
        for (i, d) in documents.enumerated() {
            if i % every == every - 1 {
                va += d; vaD += [Int32](repeating: Int32(i), count: d.count)
            } else {
                tr += d; trD += [Int32](repeating: Int32(i), count: d.count)
            }
        }
        if va.isEmpty, let last = documents.last {  // fewer documents than `every`: hold out the last
            tr.removeLast(last.count); trD.removeLast(last.count)
            va = last; vaD = [Int32](repeating: Int32(documents.count - 1), count: last.count)
        }
        train = tr; trainDocuments = trD; validation = va; validationDocuments = vaD
        idLimit = (documents.lazy.flatMap { $0 }.max() ?? 0) + 1
    }

    /// A fingerprint of the token stream (FNV-1a over the training and validation ids), saved with a
    /// checkpoint so that a resumed run can tell whether its data changed.
    public var fingerprint: String {
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        for ids in [train, validation] {
            for id in ids { h = (h ^ UInt64(truncatingIfNeeded: id)) &* 0x0000_0100_0000_01B3 }
            h = (h ^ 0xFF) &* 0x0000_0100_0000_01B3
        }
        return String(h, radix: 16)
    }

    /// The batch of a training step: `rows` windows of `length` tokens at positions drawn from
    /// (seed, step) alone, so a resumed run draws exactly the batches an uninterrupted one would.
    public func batch(step: Int, rows: Int, length: Int, seed: UInt64) throws -> TrainingBatch {
        guard train.count > length else {
            throw Mamba2Error.invalidArgument("length", reason: "\(length) tokens per row, but the training text has only \(train.count) tokens")
        }
        // A generator per step from a hash of (seed, step): SplitMix64 seeded with seed + step·γ would hand
        // step s + 1 the windows of step s shifted by one row (its stream is the same sequence, one later).
        var hash = SplitMix64(seed: seed ^ (UInt64(step) &* 0xD1B5_4A32_D192_ED03))
        var rng = SplitMix64(seed: hash.next())
        var tokens: [Int] = [], docs: [Int32] = []
        for _ in 0..<rows {
            let start = Int(rng.next() % UInt64(train.count - length + 1))
            tokens += train[start..<(start + length)]
            docs += trainDocuments[start..<(start + length)]
        }
        return try TrainingBatch(rows: rows, length: length, tokens: tokens, documents: docs)
    }

    /// Validation batches: consecutive windows over the held-out text (the same every time), at most
    /// `maxBatches` of `rows` × `length`. A short validation text gives one shorter row.
    public func validationBatches(rows: Int, length: Int, maxBatches: Int) throws -> [TrainingBatch] {
        var out: [TrainingBatch] = []
        var pos = 0
        while out.count < maxBatches && pos + 2 <= validation.count {
            var tokens: [Int] = [], docs: [Int32] = []
            var r = 0
            let n = min(length, validation.count - pos)
            while r < rows && pos + n <= validation.count {
                tokens += validation[pos..<(pos + n)]
                docs += validationDocuments[pos..<(pos + n)]
                pos += n
                r += 1
            }
            out.append(try TrainingBatch(rows: r, length: n, tokens: tokens, documents: docs))
        }
        return out
    }
}
