import CMamba2Kernels

/// A `tokenizer.json` normalizer: text → text before splitting. Implemented: NFC, NFKC, Lowercase,
/// Replace, Prepend, Strip, Sequence. Others are refused by name when the file is loaded.
indirect enum Normalizer: Sendable {
    case nfc, nfkc, lowercase
    case replace(Pattern, String)
    case prepend(String)
    case strip(left: Bool, right: Bool)
    case sequence([Normalizer])

    init(_ json: JSON, source: String) throws {
        guard let type = json["type"]?.stringValue else { throw TokenizerFormat.error(source, "normalizer without a type") }
        switch type {
        case "NFC": self = .nfc
        case "NFKC": self = .nfkc
        case "Lowercase": self = .lowercase
        case "Prepend": self = .prepend(json["prepend"]?.stringValue ?? "")
        case "Strip": self = .strip(left: json["strip_left"]?.boolValue ?? true, right: json["strip_right"]?.boolValue ?? true)
        case "Replace":
            self = .replace(try Pattern(json["pattern"], source: source, component: "normalizer Replace"), json["content"]?.stringValue ?? "")
        case "Sequence":
            self = .sequence(try (json["normalizers"]?.arrayValue ?? []).map { try Normalizer($0, source: source) })
        default:
            throw TokenizerFormat.unsupported(source, "normalizer", type)
        }
    }

    func apply(_ s: String) -> String {
        switch self {
        case .nfc: return nfcNormalize(s)
        case .nfkc: return nfkcNormalize(s)
        case .lowercase: return s.lowercased()
        case let .replace(p, content): return p.replaceAll(in: s, with: content)
        case let .prepend(p): return s.isEmpty ? s : p + s
        case let .strip(left, right):
            var scalars = Array(s.unicodeScalars)
            if right { while let l = scalars.last, l.properties.isWhitespace { scalars.removeLast() } }
            if left { let k = scalars.prefix { $0.properties.isWhitespace }.count; scalars.removeFirst(k) }
            return String(String.UnicodeScalarView(scalars))
        case let .sequence(list): return list.reduce(s) { $1.apply($0) }
        }
    }
}

/// Python's `tokenizers` normalizes with the Unicode 9.0 data of its `unicode-normalization-alignments`
/// crate: a character assigned later is, to it, an unassigned code point, which neither decomposes, nor
/// composes, nor moves in canonical ordering (found by differential fuzzing: U+07FD, Unicode 11, ccc 220,
/// was moved before U+034B by the standard library's newer NFC). Such characters are kept where they are.
func isNewerThanTokenizersUnicode(_ u: Unicode.Scalar) -> Bool {
    guard u.value >= 0x370, let age = u.properties.age else { return false }  // below U+0370 all predate 1.1
    return age.major > 9 || (age.major == 9 && age.minor > 0)
}

/// The canonical decomposition of the four characters whose decomposition starts with a non-starter
/// (U+0344, U+0F73, U+0F75, U+0F81): the standard library's NFC takes them as starters and leaves a mark before
/// them unordered ("\u{309}\u{F73}" stayed so, where NFC gives U+0F71 U+0F72 U+0309; found by differential
/// fuzzing). They are excluded from composition, so decomposing them first changes nothing else.
func nonStarterDecomposition(_ u: Unicode.Scalar) -> [Unicode.Scalar]? {
    switch u.value {
    case 0x0344: return ["\u{0308}", "\u{0301}"]
    case 0x0F73: return ["\u{0F71}", "\u{0F72}"]
    case 0x0F75: return ["\u{0F71}", "\u{0F74}"]
    case 0x0F81: return ["\u{0F71}", "\u{0F80}"]
    default: return nil
    }
}

/// Canonical composition through the standard library's NFC (ASCII passes untouched). Characters newer than
/// Unicode 9.0 stay where they are (`isNewerThanTokenizersUnicode`): the text is composed in the runs between
/// them. The non-starter decompositions are made first. One pass finds whether either is needed.
func nfcNormalize(_ s: String) -> String {
    if s.utf8.allSatisfy({ $0 < 0x80 }) { return s }
    var special = false
    for u in s.unicodeScalars where u.value >= 0x344 && (nonStarterDecomposition(u) != nil || isNewerThanTokenizersUnicode(u)) {
        special = true
        break
    }
    guard special else { return String(decoding: s._nfcCodeUnits, as: UTF8.self) }
    var out = String.UnicodeScalarView(), segment = String.UnicodeScalarView()
    func flush() {
        guard !segment.isEmpty else { return }
        out.append(contentsOf: String(decoding: String(segment)._nfcCodeUnits, as: UTF8.self).unicodeScalars)
        segment.removeAll()
    }
    for u in s.unicodeScalars {
        if let d = nonStarterDecomposition(u) { segment.append(contentsOf: d) }
        else if isNewerThanTokenizersUnicode(u) { flush(); out.append(u) }
        else { segment.append(u) }
    }
    flush()
    return String(out)
}

/// NFKC: compatibility decompositions from the generated table, then NFC.
func nfkcNormalize(_ s: String) -> String {
    if s.utf8.allSatisfy({ $0 < 0x80 }) { return s }
    var out = String.UnicodeScalarView()
    for u in s.unicodeScalars {
        var p: UnsafePointer<UInt32>? = nil
        let n = isNewerThanTokenizersUnicode(u) ? 0 : Int(mk_nfkc_decompose(u.value, &p))
        if n == 0 { out.append(u); continue }
        for k in 0..<n { out.append(Unicode.Scalar(p![k])!) }
    }
    return nfcNormalize(String(out))
}

/// A pattern of `tokenizer.json`: `{"String": "..."}` (literal) or `{"Regex": "..."}`.
struct Pattern: @unchecked Sendable {
    let literal: String?
    let regex: Regex<AnyRegexOutput>?

    init(_ json: JSON?, source: String, component: String) throws {
        if let s = json?["String"]?.stringValue {
            literal = s; regex = nil
        } else if let r = json?["Regex"]?.stringValue {
            do { regex = try Regex(r).matchingSemantics(.unicodeScalar) } catch {
                throw TokenizerFormat.error(source, "\(component): regex '\(r)' is not supported: \(error)")
            }
            literal = nil
        } else {
            throw TokenizerFormat.error(source, "\(component): pattern must be {\"String\": ...} or {\"Regex\": ...}")
        }
    }

    /// Non-overlapping matches, as ranges of unicode-scalar offsets.
    func matches(in s: String) -> [Range<String.Index>] {
        if let literal {
            guard !literal.isEmpty else { return [] }
            return s.ranges(ofLiteral: literal)
        }
        return s.matches(of: regex!).map(\.range).filter { !$0.isEmpty }
    }

    func replaceAll(in s: String, with content: String) -> String {
        var out = ""
        var last = s.startIndex
        for r in matches(in: s) {
            out += s.scalars(last..<r.lowerBound)
            out += content
            last = r.upperBound
        }
        out += s.scalars(last..<s.endIndex)
        return out
    }
}

extension String {
    /// Ranges of non-overlapping occurrences of a literal, compared by unicode scalars (as Rust compares bytes).
    /// The text between two indices of the Unicode-scalar view. Tokenizers work on scalars (Rust `char`s),
    /// not grapheme clusters: subscripting the String itself would round an index that falls inside a
    /// cluster (a space before a combining mark) down to the cluster's start.
    func scalars(_ r: Range<String.Index>) -> String { String(Substring(unicodeScalars[r])) }

    /// Whether the text starts with `prefix`, scalar by scalar (`hasPrefix` compares grapheme clusters:
    /// " \u{301}x" does not start with " " for it).
    func startsWithScalars(_ prefix: String) -> Bool { unicodeScalars.starts(with: prefix.unicodeScalars) }

    func ranges(ofLiteral needle: String) -> [Range<String.Index>] {
        let hay = unicodeScalars, pat = Array(needle.unicodeScalars)
        var out: [Range<String.Index>] = []
        var i = hay.startIndex
        while i < hay.endIndex {
            var j = i, k = 0
            while k < pat.count, j < hay.endIndex, hay[j] == pat[k] { j = hay.index(after: j); k += 1 }
            if k == pat.count { out.append(i..<j); i = j } else { i = hay.index(after: i) }
        }
        return out
    }
}

enum TokenizerFormat {
    static func error(_ source: String, _ reason: String) -> Mamba2Error { .json(source: source, reason: reason) }
    /// A token id from the file: an integer in 0 ... 2^31 − 1 (ids index tables and are packed into 32 bits).
    static func tokenID(_ j: JSON?, _ source: String, _ what: @autoclosure () -> String) throws -> Int {
        guard let v = j?.intValue else { throw error(source, "\(what()) has no integer id") }
        guard v >= 0, v <= Int(Int32.max) else { throw error(source, "\(what()) has id \(v), outside 0 ... \(Int32.max)") }
        return v
    }
    static func unsupported(_ source: String, _ component: String, _ type: String) -> Mamba2Error {
        .json(source: source, reason: "unsupported \(component) '\(type)'")
    }
}
