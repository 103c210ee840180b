/// A piece of text between added tokens, on its way to the model. `atStart` is true for the piece that
/// begins the input (Metaspace's "first" prepend scheme looks at it).
struct Piece {
    var text: String
    var atStart: Bool
}

/// How a Split keeps what its pattern matched.
enum SplitBehavior: String, Sendable {
    case removed = "Removed", isolated = "Isolated", mergedWithPrevious = "MergedWithPrevious"
    case mergedWithNext = "MergedWithNext", contiguous = "Contiguous"
}

/// A `tokenizer.json` pre-tokenizer: splits text into words for the model. Implemented: ByteLevel (with
/// the GPT-2 pattern hand-written, no regex engine on the hot path), Metaspace, Split, Digits,
/// Whitespace, WhitespaceSplit, Sequence.
indirect enum PreTokenizer: Sendable {
    case byteLevel(addPrefixSpace: Bool, useRegex: Bool)
    case metaspace(replacement: Character, prepend: String, split: Bool)
    case split(Pattern, SplitBehavior, invert: Bool)
    case digits(individual: Bool)
    case whitespace, whitespaceSplit
    case sequence([PreTokenizer])

    init(_ json: JSON, source: String) throws {
        guard let type = json["type"]?.stringValue else { throw TokenizerFormat.error(source, "pre_tokenizer without a type") }
        switch type {
        case "ByteLevel":
            self = .byteLevel(addPrefixSpace: json["add_prefix_space"]?.boolValue ?? true, useRegex: json["use_regex"]?.boolValue ?? true)
        case "Metaspace":
            let rep = json["replacement"]?.stringValue ?? "▁"
            guard rep.count == 1 else { throw TokenizerFormat.error(source, "Metaspace replacement must be one character") }
            var scheme = json["prepend_scheme"]?.stringValue ?? "always"
            if json["prepend_scheme"] == nil, let add = json["add_prefix_space"]?.boolValue { scheme = add ? "always" : "never" }
            guard ["always", "first", "never"].contains(scheme) else { throw TokenizerFormat.unsupported(source, "Metaspace prepend_scheme", scheme) }
            self = .metaspace(replacement: rep.first!, prepend: scheme, split: json["split"]?.boolValue ?? true)
        case "Split":
            let b = json["behavior"]?.stringValue ?? "Isolated"
            guard let behavior = SplitBehavior(rawValue: b) else { throw TokenizerFormat.unsupported(source, "Split behavior", b) }
            self = .split(try Pattern(json["pattern"], source: source, component: "pre_tokenizer Split"), behavior,
                          invert: json["invert"]?.boolValue ?? false)
        case "Digits": self = .digits(individual: json["individual_digits"]?.boolValue ?? false)
        case "Whitespace": self = .whitespace
        case "WhitespaceSplit": self = .whitespaceSplit
        case "Sequence":
            self = .sequence(try (json["pretokenizers"]?.arrayValue ?? []).map { try PreTokenizer($0, source: source) })
        default:
            throw TokenizerFormat.unsupported(source, "pre_tokenizer", type)
        }
    }

    func apply(_ pieces: [Piece]) -> [Piece] {
        switch self {
        case let .sequence(list):
            return list.reduce(pieces) { $1.apply($0) }
        case let .byteLevel(addPrefixSpace, useRegex):
            return pieces.flatMap { p -> [Piece] in
                var text = p.text
                if addPrefixSpace && !text.startsWithScalars(" ") { text = " " + text }
                let words = useRegex ? gpt2Split(text) : [text]
                return words.map { Piece(text: byteLevelEncode($0), atStart: p.atStart) }
            }
        case let .metaspace(rep, prepend, split):
            return pieces.flatMap { p -> [Piece] in
                let repScalar = rep.unicodeScalars.first!
                var text = String(String.UnicodeScalarView(p.text.unicodeScalars.map { $0 == " " ? repScalar : $0 }))
                if (prepend == "always" || (prepend == "first" && p.atStart)) && !text.startsWithScalars(String(rep)) {
                    text = String(rep) + text
                }
                guard split else { return [Piece(text: text, atStart: p.atStart)] }
                return splitPieces(text, ranges: text.ranges(ofLiteral: String(rep)), behavior: .mergedWithNext)
                    .map { Piece(text: $0, atStart: p.atStart) }
            }
        case let .split(pattern, behavior, invert):
            return pieces.flatMap { p in
                splitPieces(p.text, ranges: pattern.matches(in: p.text), behavior: behavior, invert: invert).map { Piece(text: $0, atStart: p.atStart) }
            }
        case let .digits(individual):
            return pieces.flatMap { p in
                splitPieces(p.text, ranges: scalarRuns(p.text, individual: individual) { $0.value >= 0x30 && $0.value <= 0x39 },
                            behavior: individual ? .isolated : .contiguous).map { Piece(text: $0, atStart: p.atStart) }
            }
        case .whitespace:
            // \w+|[^\w\s]+
            return pieces.flatMap { p in
                let s = Array(p.text.unicodeScalars)
                var out: [Piece] = []
                var i = 0
                while i < s.count {
                    if isWhite(s[i]) { i += 1; continue }
                    let word = isWordChar(s[i])
                    var j = i
                    while j < s.count, !isWhite(s[j]), isWordChar(s[j]) == word { j += 1 }
                    out.append(Piece(text: String(String.UnicodeScalarView(s[i..<j])), atStart: p.atStart))
                    i = j
                }
                return out
            }
        case .whitespaceSplit:
            return pieces.flatMap { p in
                p.text.unicodeScalars.split(whereSeparator: isWhite).map { Piece(text: String(String.UnicodeScalarView($0)), atStart: p.atStart) }
            }
        }
    }
}

/// Ranges of runs (or single scalars when `individual`) satisfying `pred`.
func scalarRuns(_ s: String, individual: Bool, _ pred: (Unicode.Scalar) -> Bool) -> [Range<String.Index>] {
    var out: [Range<String.Index>] = []
    let u = s.unicodeScalars
    var i = u.startIndex
    while i < u.endIndex {
        if pred(u[i]) {
            var j = u.index(after: i)
            if !individual { while j < u.endIndex, pred(u[j]) { j = u.index(after: j) } }
            out.append(i..<j)
            i = j
        } else { i = u.index(after: i) }
    }
    return out
}

/// Splits `s` at matched ranges, keeping matches as `behavior` says (as tokenizers' split does).
func splitPieces(_ s: String, ranges: [Range<String.Index>], behavior: SplitBehavior, invert: Bool = false) -> [String] {
    // Alternate (range, matched) covering the whole string.
    var parts: [(Range<String.Index>, Bool)] = []
    var last = s.startIndex
    for r in ranges {
        if last < r.lowerBound { parts.append((last..<r.lowerBound, false)) }
        parts.append((r, true))
        last = r.upperBound
    }
    if last < s.endIndex { parts.append((last..<s.endIndex, false)) }
    if invert { parts = parts.map { ($0.0, !$0.1) } }
    var out: [String] = []
    switch behavior {
    case .removed:
        out = parts.filter { !$0.1 }.map { s.scalars($0.0) }
    case .isolated:
        out = parts.map { s.scalars($0.0) }
    case .contiguous:
        var cur = "", curMatched: Bool? = nil
        for (r, m) in parts {
            if m && curMatched == true { cur += s.scalars(r) } else {
                if !cur.isEmpty { out.append(cur) }
                cur = s.scalars(r); curMatched = m
            }
        }
        if !cur.isEmpty { out.append(cur) }
    case .mergedWithPrevious:
        var cur = ""
        for (r, m) in parts {
            cur += s.scalars(r)
            if m { out.append(cur); cur = "" }
        }
        if !cur.isEmpty { out.append(cur) }
    case .mergedWithNext:
        var cur = ""
        for (r, m) in parts {
            if m && !cur.isEmpty { out.append(cur); cur = "" }
            cur += s.scalars(r)
        }
        if !cur.isEmpty { out.append(cur) }
    }
    return out.filter { !$0.isEmpty }
}

// MARK: - GPT-2 pattern

/// Whether the regex engine of Python's `tokenizers` (Oniguruma, Unicode 16.0) sees an unassigned code point
/// where the standard library (a newer Unicode) sees a character: such scalars are in no class but \S
/// (found by differential fuzzing: CJK Extension J, Unicode 17, split from the symbols beside it).
@inline(__always) func isNewerThanTokenizersRegex(_ u: Unicode.Scalar) -> Bool {
    guard let age = u.properties.age else { return false }
    return age.major > 16
}

/// Character classes of the GPT-2 pattern, with an ASCII table in front of the Unicode lookups.
@inline(__always) func isLetter(_ u: Unicode.Scalar) -> Bool {
    if u.value < 0x80 { return (u.value | 0x20) >= 0x61 && (u.value | 0x20) <= 0x7A }
    switch u.properties.generalCategory {
    case .uppercaseLetter, .lowercaseLetter, .titlecaseLetter, .modifierLetter, .otherLetter: return !isNewerThanTokenizersRegex(u)
    default: return false
    }
}
@inline(__always) func isNumber(_ u: Unicode.Scalar) -> Bool {
    if u.value < 0x80 { return u.value >= 0x30 && u.value <= 0x39 }
    switch u.properties.generalCategory {
    case .decimalNumber, .letterNumber, .otherNumber: return !isNewerThanTokenizersRegex(u)
    default: return false
    }
}
@inline(__always) func isWhite(_ u: Unicode.Scalar) -> Bool {
    if u.value < 0x80 { return u.value == 0x20 || (u.value >= 0x09 && u.value <= 0x0D) }
    return u.properties.isWhitespace && !isNewerThanTokenizersRegex(u)
}
/// \w of Rust's regex: alphabetic, digit, mark, connector punctuation, join control.
@inline(__always) func isWordChar(_ u: Unicode.Scalar) -> Bool {
    if u.value < 0x80 { return isLetter(u) || isNumber(u) || u == "_" }
    if isNewerThanTokenizersRegex(u) { return false }
    let p = u.properties
    if p.isAlphabetic || p.isJoinControl { return true }
    switch p.generalCategory {
    case .decimalNumber, .nonspacingMark, .spacingMark, .enclosingMark, .connectorPunctuation: return true
    default: return false
    }
}

/// `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+`, leftmost-first, as the
/// regex engine of `tokenizers` matches it.
func gpt2Split(_ text: String) -> [String] {
    let s = Array(text.unicodeScalars)
    let n = s.count
    var out: [String] = []
    out.reserveCapacity(n / 4 + 1)
    var i = 0
    func emit(_ a: Int, _ b: Int) { out.append(String(String.UnicodeScalarView(s[a..<b]))) }
    while i < n {
        let c = s[i]
        // Contractions.
        if c == "'" && i + 1 < n {
            let d = s[i + 1]
            if d == "s" || d == "t" || d == "m" || d == "d" { emit(i, i + 2); i += 2; continue }
            if i + 2 < n {
                let e = s[i + 2]
                if (d == "r" && e == "e") || (d == "v" && e == "e") || (d == "l" && e == "l") { emit(i, i + 3); i += 3; continue }
            }
        }
        // Optional space, then a run of one class.
        let j = c == " " ? i + 1 : i
        if j < n {
            let cj = s[j]
            if isLetter(cj) {
                var k = j + 1
                while k < n, isLetter(s[k]) { k += 1 }
                emit(i, k); i = k; continue
            }
            if isNumber(cj) {
                var k = j + 1
                while k < n, isNumber(s[k]) { k += 1 }
                emit(i, k); i = k; continue
            }
            if !isWhite(cj) {
                var k = j + 1
                while k < n, !isWhite(s[k]), !isLetter(s[k]), !isNumber(s[k]) { k += 1 }
                emit(i, k); i = k; continue
            }
        }
        // Whitespace: the run, less its last character when a non-space follows (\s+(?!\S)).
        if isWhite(c) {
            var k = i + 1
            while k < n, isWhite(s[k]) { k += 1 }
            if k < n && k - i >= 2 { k -= 1 }
            emit(i, k); i = k; continue
        }
        emit(i, i + 1); i += 1
    }
    return out
}

// MARK: - byte-level alphabet

/// GPT-2's byte → printable character map: printable Latin-1 bytes map to themselves, the rest to
/// U+0100 onwards in byte order.
package let byteLevelAlphabet: [Character] = {
    var table = [Character](repeating: " ", count: 256)
    var n: UInt32 = 0
    for b in 0..<256 {
        let printable = (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF)
        if printable { table[b] = Character(Unicode.Scalar(UInt8(b))) } else { table[b] = Character(Unicode.Scalar(256 + n)!); n += 1 }
    }
    return table
}()

/// The inverse map, character → byte.
let byteLevelDecodeTable: [Unicode.Scalar: UInt8] = {
    var d: [Unicode.Scalar: UInt8] = [:]
    for (b, c) in byteLevelAlphabet.enumerated() { d[c.unicodeScalars.first!] = UInt8(b) }
    return d
}()

func byteLevelEncode(_ s: String) -> String {
    var out = String.UnicodeScalarView()
    for b in s.utf8 { out.append(byteLevelAlphabet[Int(b)].unicodeScalars.first!) }
    return String(out)
}
