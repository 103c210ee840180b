/// A token of `added_tokens`: matched in the text before the model runs, leftmost-longest.
struct AddedToken: Sendable {
    let id: Int
    let content: String
    let special: Bool
    let singleWord: Bool
    let lstrip: Bool
    let rstrip: Bool
    /// Matched on the normalized text (true) or on the raw text (false).
    let normalized: Bool
}

/// Finds added tokens in text, as `tokenizers`' AddedVocabulary does: leftmost-longest matches over the
/// unicode scalars; `single_word` rejects a match touching a word character; `lstrip`/`rstrip` take
/// the whitespace beside a match into it.
struct AddedTokenMatcher: Sendable {
    /// Trie over unicode scalars; node 0 is the root.
    private var children: [[UInt32: Int]] = [[:]]
    private var terminal: [Int?] = [nil]
    let tokens: [AddedToken]

    init(_ tokens: [AddedToken], contentOf: (AddedToken) -> String) {
        self.tokens = tokens
        for (i, t) in tokens.enumerated() {
            let content = contentOf(t)
            if content.isEmpty { continue }
            var node = 0
            for u in content.unicodeScalars {
                if let n = children[node][u.value] { node = n } else {
                    children.append([:]); terminal.append(nil)
                    children[node][u.value] = children.count - 1
                    node = children.count - 1
                }
            }
            if terminal[node] == nil { terminal[node] = i }
        }
    }

    var isEmpty: Bool { children[0].isEmpty }

    /// Splits text into (text, token index or nil) parts.
    func split(_ text: String) -> [(String, Int?)] {
        if isEmpty || text.isEmpty { return [(text, nil)] }
        let s = Array(text.unicodeScalars)
        var parts: [(Int, Int, Int?)] = []   // scalar ranges
        var cursor = 0   // end of the last accepted match
        var i = 0
        while i < s.count {
            // Longest match starting at i.
            var node = 0, k = i
            var best: (end: Int, token: Int)? = nil
            while k < s.count, let n = children[node][s[k].value] {
                node = n; k += 1
                if let t = terminal[node] { best = (k, t) }
            }
            guard let (end0, ti) = best else { i += 1; continue }
            let t = tokens[ti]
            var start = i, end = end0
            if t.singleWord {
                let before = start > 0 && isWordChar(s[start - 1])
                let after = end < s.count && isWordChar(s[end])
                if before || after { i = end0; continue }
            }
            if t.lstrip { while start > cursor, isWhite(s[start - 1]) { start -= 1 } }
            if t.rstrip { while end < s.count, isWhite(s[end]) { end += 1 } }
            if cursor < start { parts.append((cursor, start, nil)) }
            parts.append((start, end, ti))
            cursor = end
            i = end
        }
        if cursor < s.count { parts.append((cursor, s.count, nil)) }
        return parts.map { (String(String.UnicodeScalarView(s[$0.0..<$0.1])), $0.2) }
    }
}
