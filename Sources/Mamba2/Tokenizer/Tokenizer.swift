/// A Hugging Face `tokenizer.json` tokenizer, exact to Python's `tokenizers` for the components real
/// Mamba-2 and other SSM tokenizers use. Encoding: added tokens → normalizer → pre-tokenizer → BPE →
/// post-processor. Decoding: ids → token strings → decoder chain. No Python, no regex engine on the
/// GPT-2 hot path. Unsupported components are refused by name when the file is loaded.
public final class Tokenizer: Sendable {
    let normalizer: Normalizer?
    let preTokenizer: PreTokenizer?
    let model: BPEModel
    let postProcessor: PostProcessor?
    let decoder: TokenDecoder?
    let added: [AddedToken]
    let addedByID: [Int: AddedToken]
    let rawMatcher: AddedTokenMatcher
    let normalizedMatcher: AddedTokenMatcher

    /// Loads a `tokenizer.json`. A SentencePiece `tokenizer.model` is refused with a clear error.
    public convenience init(path: String) throws {
        if path.hasSuffix(".model") {
            throw Mamba2Error.io(path: path, reason: "SentencePiece tokenizer.model files are not supported; use the tokenizer.json of the model (Hugging Face format)")
        }
        try self.init(json: try JSON.parse(try MappedFile.readAll(path), source: path), source: path)
    }

    public convenience init(json: JSON, source: String) throws {
        try self.init(json: json, source: source, skipUnknownMerges: false)
    }

    /// `skipUnknownMerges`: leave out merges that name tokens the vocabulary lacks instead of refusing the
    /// file (a GGUF's vocabulary may be cut to the embedding's rows while its merges are not).
    init(json: JSON, source: String, skipUnknownMerges: Bool) throws {
        guard json.objectValue != nil else { throw TokenizerFormat.error(source, "tokenizer.json is not a JSON object") }
        guard let modelJ = json["model"], modelJ != .null else { throw TokenizerFormat.error(source, "no 'model'") }
        if let t = modelJ["type"], t.stringValue == nil { throw TokenizerFormat.error(source, "model.type \(t.serialized) is not a string") }
        let type = modelJ["type"]?.stringValue ?? (modelJ["merges"] != nil ? "BPE" : "?")
        guard type == "BPE" else { throw TokenizerFormat.unsupported(source, "model", type) }
        model = try BPEModel(modelJ, source: source, skipUnknownMerges: skipUnknownMerges)
        func opt<T>(_ key: String, _ make: (JSON) throws -> T) throws -> T? {
            guard let j = json[key], j != .null else { return nil }
            return try make(j)
        }
        let normalizer = try opt("normalizer") { try Normalizer($0, source: source) }
        self.normalizer = normalizer
        preTokenizer = try opt("pre_tokenizer") { try PreTokenizer($0, source: source) }
        postProcessor = try opt("post_processor") { try PostProcessor($0, source: source) }
        decoder = try opt("decoder") { try TokenDecoder($0, source: source) }
        var added: [AddedToken] = []
        for a in json["added_tokens"]?.arrayValue ?? [] {
            guard let content = a["content"]?.stringValue else {
                throw TokenizerFormat.error(source, "added token \(a.serialized) needs an id and a content")
            }
            let id = try TokenizerFormat.tokenID(a["id"], source, "added token '\(content)'")
            added.append(AddedToken(id: id, content: content, special: a["special"]?.boolValue ?? false,
                                    singleWord: a["single_word"]?.boolValue ?? false, lstrip: a["lstrip"]?.boolValue ?? false,
                                    rstrip: a["rstrip"]?.boolValue ?? false, normalized: a["normalized"]?.boolValue ?? !(a["special"]?.boolValue ?? false)))
        }
        self.added = added
        addedByID = Dictionary(added.map { ($0.id, $0) }, uniquingKeysWith: { a, _ in a })
        rawMatcher = AddedTokenMatcher(added.filter { !$0.normalized }, contentOf: { $0.content })
        normalizedMatcher = AddedTokenMatcher(added.filter { $0.normalized }, contentOf: { normalizer?.apply($0.content) ?? $0.content })
    }

    /// Empties the word cache (benchmarks measure from a cold cache).
    public func clearCache() { model.cache.withLock { $0.removeAll() } }

    /// Number of ids (model vocabulary and added tokens).
    public var vocabularySize: Int { max((model.idToToken.keys.max() ?? -1), (addedByID.keys.max() ?? -1)) + 1 }

    public func id(for token: String) -> Int? {
        added.first { $0.content.utf8.elementsEqual(token.utf8) }?.id ?? model.vocab[TokenKey(token)]
    }

    /// The end-of-text token (`<|endoftext|>`, else `</s>`), if the vocabulary has one: where generation stops
    /// and what ends each training document.
    public var endOfTextID: Int? { id(for: "<|endoftext|>") ?? id(for: "</s>") }

    public func token(for id: Int) -> String? { addedByID[id]?.content ?? model.idToToken[id] }

    /// Ids of the special added tokens (e.g. `<|endoftext|>`).
    public var specialTokenIDs: Set<Int> { Set(added.filter(\.special).map(\.id)) }

    /// Encodes text as `tokenizers`' `encode(text, add_special_tokens=...)`.
    public func encode(_ text: String, addSpecialTokens: Bool = true) -> [Int] {
        var ids: [Int] = []
        var atStart = true
        for (rawPiece, token) in rawMatcher.split(text) {
            if let token { ids.append(rawMatcher.tokens[token].id); atStart = false; continue }
            let normalized = normalizer?.apply(rawPiece) ?? rawPiece
            for (piece, ntoken) in normalizedMatcher.split(normalized) {
                if let ntoken { ids.append(normalizedMatcher.tokens[ntoken].id); atStart = false; continue }
                if piece.isEmpty { continue }
                let words = preTokenizer?.apply([Piece(text: piece, atStart: atStart)]) ?? [Piece(text: piece, atStart: atStart)]
                for w in words where !w.text.isEmpty { ids += model.encode(w.text) }
                atStart = false
            }
        }
        return addSpecialTokens ? (postProcessor?.apply(ids) ?? ids) : ids
    }

    /// Encodes bytes that may not be valid UTF-8: invalid sequences become U+FFFD first.
    public func encode(bytes: [UInt8], addSpecialTokens: Bool = true) -> [Int] {
        encode(String(decoding: bytes, as: UTF8.self), addSpecialTokens: addSpecialTokens)
    }

    /// Decodes as `tokenizers`' `decode(ids, skip_special_tokens=...)`. Unknown ids are skipped.
    public func decode(_ ids: [Int], skipSpecialTokens: Bool = true) -> String {
        let tokens = ids.compactMap { id -> String? in
            if let a = addedByID[id] { return skipSpecialTokens && a.special ? nil : a.content }
            return model.idToToken[id]
        }
        return (decoder?.apply(tokens) ?? tokens).joined()
    }
}

/// Streaming decode: feed ids one at a time, get text as soon as it forms whole characters (the
/// algorithm of `tokenizers`' DecodeStream: decode a short window, emit what grew, hold back an
/// incomplete UTF-8 tail shown as U+FFFD).
public struct StreamingDecoder: Sendable {
    let tokenizer: Tokenizer
    let skipSpecialTokens: Bool
    var ids: [Int] = []
    var prefixIndex = 0
    var readIndex = 0
    var prefix = ""

    public init(tokenizer: Tokenizer, skipSpecialTokens: Bool = true) {
        self.tokenizer = tokenizer
        self.skipSpecialTokens = skipSpecialTokens
    }

    /// Adds one id; returns new text, or nil while the bytes so far end inside a character.
    public mutating func push(_ id: Int) -> String? {
        ids.append(id)
        let text = tokenizer.decode(Array(ids[prefixIndex...]), skipSpecialTokens: skipSpecialTokens)
        guard text.utf8.count > prefix.utf8.count, text.unicodeScalars.last != "\u{FFFD}" else { return nil }
        let new = String(decoding: Array(text.utf8)[prefix.utf8.count...], as: UTF8.self)
        // Keep a short window: the ids from readIndex on form the next prefix.
        prefixIndex = readIndex
        readIndex = ids.count
        prefix = tokenizer.decode(Array(ids[prefixIndex...]), skipSpecialTokens: skipSpecialTokens)
        return new
    }

    /// Whatever is left at the end (an incomplete character decodes to U+FFFD).
    public mutating func finish() -> String? {
        let text = tokenizer.decode(Array(ids[prefixIndex...]), skipSpecialTokens: skipSpecialTokens)
        guard text.utf8.count > prefix.utf8.count else { return nil }
        let new = String(decoding: Array(text.utf8)[prefix.utf8.count...], as: UTF8.self)
        prefixIndex = ids.count; readIndex = ids.count; prefix = ""
        return new
    }
}
