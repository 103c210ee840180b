/// A `tokenizer.json` decoder: token strings → text. Implemented: ByteLevel, Metaspace, ByteFallback,
/// Fuse, Strip, Replace, BPEDecoder, Sequence.
indirect enum TokenDecoder: Sendable {
    case byteLevel
    case metaspace(replacement: Character, prependNever: Bool)
    case byteFallback
    case fuse
    case strip(content: Unicode.Scalar, start: Int, stop: Int)
    case replace(Pattern, String)
    case bpe(suffix: String)
    case sequence([TokenDecoder])

    init(_ json: JSON, source: String) throws {
        guard let type = json["type"]?.stringValue else { throw TokenizerFormat.error(source, "decoder without a type") }
        switch type {
        case "ByteLevel": self = .byteLevel
        case "Metaspace":
            var scheme = json["prepend_scheme"]?.stringValue ?? "always"
            if json["prepend_scheme"] == nil, let add = json["add_prefix_space"]?.boolValue { scheme = add ? "always" : "never" }
            self = .metaspace(replacement: (json["replacement"]?.stringValue ?? "▁").first ?? "▁", prependNever: scheme == "never")
        case "ByteFallback": self = .byteFallback
        case "Fuse": self = .fuse
        case "Strip":
            self = .strip(content: (json["content"]?.stringValue ?? " ").unicodeScalars.first ?? " ", start: json["start"]?.intValue ?? 0,
                          stop: json["stop"]?.intValue ?? 0)
        case "Replace":
            self = .replace(try Pattern(json["pattern"], source: source, component: "decoder Replace"), json["content"]?.stringValue ?? "")
        case "BPEDecoder": self = .bpe(suffix: json["suffix"]?.stringValue ?? "</w>")
        case "Sequence": self = .sequence(try (json["decoders"]?.arrayValue ?? []).map { try TokenDecoder($0, source: source) })
        default: throw TokenizerFormat.unsupported(source, "decoder", type)
        }
    }

    /// Transforms the list of token strings (decode_chain of `tokenizers`).
    func apply(_ tokens: [String]) -> [String] {
        switch self {
        case .byteLevel:
            var bytes: [UInt8] = []
            for t in tokens {
                var mapped: [UInt8] = []
                var ok = true
                for u in t.unicodeScalars {
                    guard let b = byteLevelDecodeTable[u] else { ok = false; break }
                    mapped.append(b)
                }
                bytes += ok ? mapped : Array(t.utf8)
            }
            return [String(decoding: bytes, as: UTF8.self)]
        case let .metaspace(rep, never):
            let r = rep.unicodeScalars.first!
            return tokens.enumerated().map { i, t in
                var out = String.UnicodeScalarView()
                for u in t.unicodeScalars {
                    if u == r { if !(i == 0 && !never) { out.append(" ") } } else { out.append(u) }
                }
                return String(out)
            }
        case .byteFallback:
            var out: [String] = []
            var pending: [UInt8] = []
            func flush() {
                guard !pending.isEmpty else { return }
                if let s = String(validating: pending, as: UTF8.self) { out.append(s) } else {
                    out += [String](repeating: "\u{FFFD}", count: pending.count)
                }
                pending = []
            }
            for t in tokens {
                let u = Array(t.utf8)
                if u.count == 6, u[0..<3].elementsEqual("<0x".utf8), u[5] == UInt8(ascii: ">"),
                   let b = UInt8(String(decoding: u[3..<5], as: UTF8.self), radix: 16) {
                    pending.append(b)
                } else { flush(); out.append(t) }
            }
            flush()
            return out
        case .fuse:
            return [tokens.joined()]
        case let .strip(content, start, stop):
            return tokens.map { t in  // scalar by scalar, as the Rust decoder strips chars
                var chars = Array(t.unicodeScalars)
                var a = 0
                while a < start, a < chars.count, chars[a] == content { a += 1 }
                chars.removeFirst(a)
                var b = 0
                while b < stop, let l = chars.last, l == content { chars.removeLast(); b += 1 }
                return String(String.UnicodeScalarView(chars))
            }
        case let .replace(p, content):
            return tokens.map { p.replaceAll(in: $0, with: content) }
        case let .bpe(suffix):
            return tokens.enumerated().map { i, t in
                t.replacingAll(suffix, with: i == tokens.count - 1 ? "" : " ")
            }
        case let .sequence(list):
            return list.reduce(tokens) { $1.apply($0) }
        }
    }
}

extension String {
    package func replacingAll(_ needle: String, with replacement: String) -> String {
        guard !needle.isEmpty else { return self }
        var out = ""
        var last = startIndex
        for r in ranges(ofLiteral: needle) { out += scalars(last..<r.lowerBound); out += replacement; last = r.upperBound }
        out += scalars(last..<endIndex)
        return out
    }
}

/// A `tokenizer.json` post-processor: adds special tokens around an encoding (add_special_tokens).
/// Implemented: TemplateProcessing (single sequences), RobertaProcessing, BertProcessing, ByteLevel
/// (changes offsets only), Sequence.
indirect enum PostProcessor: Sendable {
    case template(before: [Int], after: [Int])
    case none
    case sequence([PostProcessor])

    init(_ json: JSON, source: String) throws {
        guard let type = json["type"]?.stringValue else { throw TokenizerFormat.error(source, "post_processor without a type") }
        switch type {
        case "ByteLevel": self = .none
        case "TemplateProcessing":
            guard let single = json["single"]?.arrayValue else { throw TokenizerFormat.error(source, "TemplateProcessing without 'single'") }
            let specials = json["special_tokens"]?.objectValue ?? [:]
            var before: [Int] = [], after: [Int] = [], seenSequence = false
            for item in single {
                if item["Sequence"] != nil { seenSequence = true; continue }
                guard let name = item["SpecialToken"]?["id"]?.stringValue else {
                    throw TokenizerFormat.error(source, "TemplateProcessing item \(item.serialized) is neither Sequence nor SpecialToken")
                }
                guard let idsJ = specials[name]?["ids"]?.arrayValue else {
                    throw TokenizerFormat.error(source, "TemplateProcessing names special token '\(name)' without ids")
                }
                let ids = try idsJ.map { try TokenizerFormat.tokenID($0, source, "TemplateProcessing special token '\(name)'") }
                if seenSequence { after += ids } else { before += ids }
            }
            self = .template(before: before, after: after)
        case "RobertaProcessing", "BertProcessing":
            guard let cls = json["cls"]?.arrayValue, cls.count == 2, let sep = json["sep"]?.arrayValue, sep.count == 2 else {
                throw TokenizerFormat.error(source, "\(type) without cls/sep [token, id] pairs")
            }
            let clsID = try TokenizerFormat.tokenID(cls[1], source, "\(type) cls"), sepID = try TokenizerFormat.tokenID(sep[1], source, "\(type) sep")
            self = .template(before: [clsID], after: [sepID])
        case "Sequence":
            self = .sequence(try (json["processors"]?.arrayValue ?? []).map { try PostProcessor($0, source: source) })
        default: throw TokenizerFormat.unsupported(source, "post_processor", type)
        }
    }

    func apply(_ ids: [Int]) -> [Int] {
        switch self {
        case let .template(before, after): return before + ids + after
        case .none: return ids
        case let .sequence(list): return list.reduce(ids) { $1.apply($0) }
        }
    }
}
