import Mamba2
/// A byte-level vocabulary for small models: ids 0–255 are the bytes of UTF-8 text, id 256 is
/// `<|endoftext|>` (ends a document). Written as a standard `tokenizer.json` (ByteLevel BPE without
/// merges, GPT-2's byte-to-character map `byteLevelAlphabet`), so `Tokenizer`, and Python's `tokenizers`, read it as is.
public enum ByteTokenizer {
    public static let endOfText = 256
    /// Configured vocabulary (bytes + end of text).
    public static let vocabularySize = 257

    /// The `tokenizer.json` text.
    public static func json() -> String {
        var vocab: [String: JSON] = [:]
        for b in 0..<256 { vocab[String(byteLevelAlphabet[b])] = .number(Double(b)) }
        vocab["<|endoftext|>"] = .number(Double(endOfText))
        let eot: JSON = .object(["id": .number(Double(endOfText)), "content": .string("<|endoftext|>"), "single_word": .bool(false),
                                 "lstrip": .bool(false), "rstrip": .bool(false), "normalized": .bool(false), "special": .bool(true)])
        let byteLevel: JSON = .object(["type": .string("ByteLevel"), "add_prefix_space": .bool(false), "trim_offsets": .bool(true),
                                       "use_regex": .bool(false)])
        let root: JSON = .object([
            "version": .string("1.0"), "truncation": .null, "padding": .null, "added_tokens": .array([eot]),
            "normalizer": .null, "pre_tokenizer": byteLevel, "post_processor": .null, "decoder": byteLevel,
            "model": .object(["type": .string("BPE"), "dropout": .null, "unk_token": .null, "continuing_subword_prefix": .null,
                              "end_of_word_suffix": .null, "fuse_unk": .bool(false), "byte_fallback": .bool(false),
                              "vocab": .object(vocab), "merges": .array([])]),
        ])
        return root.serialized
    }
}
