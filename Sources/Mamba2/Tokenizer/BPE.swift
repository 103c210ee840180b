import Synchronization

/// The byte-pair-encoding model of `tokenizer.json`: a vocabulary, ranked merges, and the options real
/// files use (byte_fallback, unk_token with fuse_unk, continuing_subword_prefix, end_of_word_suffix,
/// ignore_merges). Merges apply lowest rank first, leftmost first on ties, as `tokenizers` does.
/// A string compared and hashed by its unicode scalars (UTF-8 bytes), as Rust compares strings.
/// Swift's String equality is canonical equivalence ("Å" U+212B == "Å" U+00C5), which would let one
/// token's id stand for another's.
struct TokenKey: Hashable, Sendable {
    let string: String
    init(_ s: String) { string = s }
    static func == (a: TokenKey, b: TokenKey) -> Bool { a.string.utf8.elementsEqual(b.string.utf8) }
    func hash(into h: inout Hasher) {
        var s = string
        s.withUTF8 { h.combine(bytes: UnsafeRawBufferPointer($0)) }
    }
}

final class BPEModel: Sendable {
    let vocab: [TokenKey: Int]
    let idToToken: [Int: String]
    /// (left id, right id) packed into 64 bits → (rank, merged id).
    let merges: [UInt64: (rank: Int32, id: Int32)]
    let unkID: Int?
    let fuseUnk: Bool
    let byteFallback: Bool
    let ignoreMerges: Bool
    let prefix: String?
    let suffix: String?
    /// Ids of the 256 `<0xXX>` byte tokens (byte_fallback), -1 where absent.
    let byteTokens: [Int]
    /// Word → ids, shared between calls (a word's ids never change).
    let cache = Mutex<[TokenKey: [Int]]>([:])

    init(_ json: JSON, source: String, skipUnknownMerges: Bool = false) throws {
        guard let v = json["vocab"]?.objectValue else { throw TokenizerFormat.error(source, "BPE model without a vocab object") }
        var vocab: [TokenKey: Int] = [:]
        vocab.reserveCapacity(v.count)
        for (k, idJ) in v {
            vocab[TokenKey(k)] = try TokenizerFormat.tokenID(idJ, source, "vocab entry '\(k)'")
        }
        self.vocab = vocab
        idToToken = Dictionary(vocab.map { ($0.value, $0.key.string) }, uniquingKeysWith: { a, _ in a })
        prefix = json["continuing_subword_prefix"]?.stringValue
        suffix = json["end_of_word_suffix"]?.stringValue
        var merges: [UInt64: (rank: Int32, id: Int32)] = [:]
        for (rank, m) in (json["merges"]?.arrayValue ?? []).enumerated() {
            let a: String, b: String
            if let s = m.stringValue {
                // "a b": split at the first space (tokens never contain a space in this form).
                guard let sp = s.firstIndex(of: " ") else { throw TokenizerFormat.error(source, "merge '\(s)' is not two tokens") }
                a = String(s[..<sp]); b = String(s[s.index(after: sp)...])
            } else if let pair = m.arrayValue, pair.count == 2, let x = pair[0].stringValue, let y = pair[1].stringValue {
                a = x; b = y
            } else { throw TokenizerFormat.error(source, "merge #\(rank) is neither \"a b\" nor [\"a\", \"b\"]") }
            guard let ia = vocab[TokenKey(a)], let ib = vocab[TokenKey(b)] else {
                if skipUnknownMerges { continue }
                throw TokenizerFormat.error(source, "merge #\(rank) ('\(a)', '\(b)') names a token missing from the vocab")
            }
            let mergedName = a + (prefix.map { b.startsWithScalars($0) ? String(String.UnicodeScalarView(b.unicodeScalars.dropFirst($0.unicodeScalars.count))) : b } ?? b)
            guard let im = vocab[TokenKey(mergedName)] else {
                if skipUnknownMerges { continue }
                throw TokenizerFormat.error(source, "merge #\(rank) makes '\(mergedName)', which is missing from the vocab")
            }
            let key = UInt64(UInt32(ia)) << 32 | UInt64(UInt32(ib))
            if merges[key] == nil { merges[key] = (Int32(rank), Int32(im)) }
        }
        self.merges = merges
        if let unk = json["unk_token"]?.stringValue {
            guard let id = vocab[TokenKey(unk)] else { throw TokenizerFormat.error(source, "unk_token '\(unk)' is not in the vocab") }
            unkID = id
        } else { unkID = nil }
        fuseUnk = json["fuse_unk"]?.boolValue ?? false
        byteFallback = json["byte_fallback"]?.boolValue ?? false
        ignoreMerges = json["ignore_merges"]?.boolValue ?? false
        byteTokens = (0..<256).map { b in
            let hex = String(b, radix: 16, uppercase: true)
            return vocab[TokenKey("<0x" + (hex.count == 1 ? "0" + hex : hex) + ">")] ?? -1
        }
        if json["dropout"]?.doubleValue.map({ $0 > 0 }) == true {
            throw TokenizerFormat.error(source, "BPE dropout is a training-time option; refusing a tokenizer that would encode randomly")
        }
    }

    /// Ids of one pre-tokenized word.
    func encode(_ word: String) -> [Int] {
        let key = TokenKey(word)
        if let hit = cache.withLock({ $0[key] }) { return hit }
        let ids = encodeUncached(word)
        cache.withLock { c in
            if c.count > 200_000 { c.removeAll(keepingCapacity: true) }
            c[key] = ids
        }
        return ids
    }

    func encodeUncached(_ word: String) -> [Int] {
        if ignoreMerges, let id = vocab[TokenKey(word)] { return [id] }
        // Initial symbols: one per character (unicode scalar), with prefix/suffix where configured.
        var ids: [Int] = []
        let scalars = Array(word.unicodeScalars)
        var lastWasUnk = false
        for (i, u) in scalars.enumerated() {
            var s = String(Character(u))
            if i > 0, let prefix { s = prefix + s }
            if i == scalars.count - 1, let suffix { s += suffix }
            if let id = vocab[TokenKey(s)] { ids.append(id); lastWasUnk = false; continue }
            if byteFallback {
                let bytes = Array(String(Character(u)).utf8).map { byteTokens[Int($0)] }
                if !bytes.contains(-1) { ids += bytes; lastWasUnk = false; continue }
            }
            if let unkID {
                if !(fuseUnk && lastWasUnk) { ids.append(unkID) }
                lastWasUnk = true
            }
        }
        return merge(ids)
    }

    /// Applies merges by rank with a heap of candidate pairs; stale entries are skipped when popped.
    func merge(_ initial: [Int]) -> [Int] {
        let n = initial.count
        if n < 2 { return initial }
        var id = initial
        var next = Array(1...n)        // n means none
        var prev = Array(-1..<(n - 1))
        var alive = [Bool](repeating: true, count: n)
        var heap = PairHeap()
        func push(_ i: Int) {
            let j = next[i]
            guard j < n else { return }
            if let m = merges[UInt64(UInt32(id[i])) << 32 | UInt64(UInt32(id[j]))] {
                heap.push(rank: m.rank, pos: Int32(i), left: Int32(id[i]), right: Int32(id[j]))
            }
        }
        for i in 0..<(n - 1) { push(i) }
        while let top = heap.pop() {
            let i = Int(top.pos)
            guard alive[i], id[i] == Int(top.left) else { continue }
            let j = next[i]
            guard j < n, id[j] == Int(top.right) else { continue }
            guard let m = merges[UInt64(UInt32(id[i])) << 32 | UInt64(UInt32(id[j]))] else { continue }
            id[i] = Int(m.id)
            alive[j] = false
            next[i] = next[j]
            if next[j] < n { prev[next[j]] = i }
            if prev[i] >= 0 { push(prev[i]) }
            push(i)
        }
        var out: [Int] = []
        var i = 0
        while i < n { out.append(id[i]); i = next[i] }
        return out
    }
}

/// A binary min-heap of merge candidates ordered by (rank, position).
struct PairHeap {
    struct Item { var rank: Int32; var pos: Int32; var left: Int32; var right: Int32 }
    var items: [Item] = []

    @inline(__always) static func less(_ a: Item, _ b: Item) -> Bool { a.rank != b.rank ? a.rank < b.rank : a.pos < b.pos }

    mutating func push(rank: Int32, pos: Int32, left: Int32, right: Int32) {
        items.append(Item(rank: rank, pos: pos, left: left, right: right))
        var c = items.count - 1
        while c > 0 {
            let p = (c - 1) / 2
            if PairHeap.less(items[c], items[p]) { items.swapAt(c, p); c = p } else { break }
        }
    }

    mutating func pop() -> Item? {
        guard let first = items.first else { return nil }
        let last = items.removeLast()
        if !items.isEmpty {
            items[0] = last
            var p = 0
            while true {
                let l = 2 * p + 1, r = l + 1
                var m = p
                if l < items.count && PairHeap.less(items[l], items[m]) { m = l }
                if r < items.count && PairHeap.less(items[r], items[m]) { m = r }
                if m == p { break }
                items.swapAt(p, m); p = m
            }
        }
        return first
    }
}
