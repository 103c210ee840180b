import Mamba2
import Mamba2TestSupport
import Testing



@Suite("Tokenizer")
struct TokenizerTests {
    static let tokenizers = [
        ("neox-style", fixture("tokenizers/neox-style.json")),
        ("gpt2-style", fixture("tokenizers/gpt2-style.json")),
        ("llama-style", fixture("tokenizers/llama-style.json")),
        ("gpt-neox-20b", repoRoot + "/Tokenizers/gpt-neox-20b/tokenizer.json"),
    ]

    // Every corpus string encodes id for id as Python's tokenizers (encode with add_special_tokens) and
    // decodes to its decode (skip_special_tokens). Exact: token ids admit no tolerance.
    @Test("matches tokenizers on the corpus", arguments: tokenizers)
    func corpus(name: String, path: String) throws {
        try compare(name: name, path: path, corpus: "corpus.jsonl", expected: "expected-\(name).jsonl")
    }

    // Strings where Unicode scalars and grapheme clusters disagree (a space, or the Metaspace replacement,
    // followed by a combining mark, an emoji modifier or a ZWJ; at the start, after an added token, between
    // words): tokenizers works on scalars, and so must every prefix test, split and strip of ours
    // (scripts/make_grapheme_fixtures.py).
    @Test("matches tokenizers on grapheme edges", arguments: tokenizers)
    func graphemeEdges(name: String, path: String) throws {
        try compare(name: name, path: path, corpus: "grapheme-edges.jsonl", expected: "expected-grapheme-\(name).jsonl")
    }

    func compare(name: String, path: String, corpus: String, expected expectedFile: String) throws {
        let tok = try Tokenizer(path: path)
        let strings = try loadLines(fixture("tokenizers/" + corpus)).map { try JSON.parse($0, source: "corpus").stringValue! }
        let expected = try loadLines(fixture("tokenizers/" + expectedFile)).map { try JSON.parse($0, source: "expected") }
        #expect(strings.count >= 2000)
        #expect(strings.count == expected.count)
        var encodeMismatches = 0, decodeMismatches = 0
        for (s, e) in zip(strings, expected) {
            let ids = tok.encode(s)
            let want = e["ids"]!.arrayValue!.map { $0.intValue! }
            if ids != want {
                encodeMismatches += 1
                if encodeMismatches <= 3 { Issue.record("\(name): encode(\(JSON.string(s).serialized)) = \(ids), tokenizers gives \(want)") }
            }
            let text = tok.decode(want)
            if text != e["decoded"]!.stringValue! {
                decodeMismatches += 1
                if decodeMismatches <= 3 { Issue.record("\(name): decode(\(want)) = \(JSON.string(text).serialized), tokenizers gives \(e["decoded"]!.serialized)") }
            }
        }
        #expect(encodeMismatches == 0, "\(name): \(encodeMismatches) of \(strings.count) strings encode differently")
        #expect(decodeMismatches == 0, "\(name): \(decodeMismatches) of \(strings.count) strings decode differently")
    }

    // The byte-fallback tokenizer really falls back: characters outside its ASCII-trained vocabulary
    // become <0xXX> tokens, and decoding restores the text.
    @Test("byte fallback fires on characters outside the vocabulary")
    func byteFallback() throws {
        let tok = try Tokenizer(path: fixture("tokenizers/llama-style.json"))
        let ids = tok.encode("日本 👩‍👩‍👧", addSpecialTokens: false)
        let byteTokens = ids.compactMap { tok.token(for: $0) }.filter { $0.hasPrefix("<0x") }
        #expect(byteTokens.count >= 6)
        #expect(tok.decode(ids) == "日本 👩‍👩‍👧")
    }

    // Streaming decode emits text only in whole characters and, joined, equals the full decode.
    @Test("streaming decode equals the full decode", arguments: tokenizers)
    func streaming(name: String, path: String) throws {
        let tok = try Tokenizer(path: path)
        for s in ["héllo wörld 日本語 👩‍👩‍👧‍👦 done", "plain ascii text", "🇯🇵🇯🇵 ½ ﬁ", ""] {
            let ids = tok.encode(s)
            var stream = StreamingDecoder(tokenizer: tok)
            var pieces: [String] = []
            for id in ids { if let p = stream.push(id) { pieces.append(p) } }
            if let rest = stream.finish() { pieces.append(rest) }
            #expect(pieces.joined() == tok.decode(ids), "\(name): \(s)")
            #expect(!pieces.contains { $0.contains("\u{FFFD}") }, "\(name): a piece split a character")
        }
    }

    @Test("invalid UTF-8 becomes U+FFFD, never a crash")
    func invalidUTF8() throws {
        let tok = try Tokenizer(path: repoRoot + "/Tokenizers/gpt-neox-20b/tokenizer.json")
        let ids = tok.encode(bytes: [0x48, 0x69, 0xFF, 0xC3, 0x28, 0xE2, 0x82])
        #expect(ids == tok.encode("Hi\u{FFFD}\u{FFFD}(\u{FFFD}"))
    }

    @Test("unsupported or malformed tokenizer files are refused by name")
    func unsupported() throws {
        func expectError(_ json: String, mentions word: String) {
            do {
                _ = try Tokenizer(json: try JSON.parse(json, source: "test.json"), source: "test.json")
                Issue.record("no error for \(word)")
            } catch { #expect("\(error)".contains(word), "\(error)") }
        }
        let bpe = #""model": {"type": "BPE", "vocab": {"a": 0, "b": 1, "ab": 2}, "merges": ["a b"]}"#
        expectError(#"{"model": {"type": "WordPiece", "vocab": {}}}"#, mentions: "WordPiece")
        expectError(#"{"normalizer": {"type": "BertNormalizer"}, \#(bpe)}"#, mentions: "BertNormalizer")
        expectError(#"{"pre_tokenizer": {"type": "UnicodeScripts"}, \#(bpe)}"#, mentions: "UnicodeScripts")
        expectError(#"{"decoder": {"type": "CTC"}, \#(bpe)}"#, mentions: "CTC")
        expectError(#"{"model": {"type": "BPE", "vocab": {"a": 0}, "merges": ["a b"]}}"#, mentions: "missing from the vocab")
        do { _ = try Tokenizer(path: "/nonexistent/tokenizer.model"); Issue.record("no error") } catch { #expect("\(error)".contains("SentencePiece")) }
        do { _ = try JSON.parse("{\"model\": ", source: "x"); Issue.record("no error") } catch { #expect("\(error)".contains("end of input")) }
    }
}
