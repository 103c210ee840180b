/// Snapshots of sequence states keyed by the tokens they cover, evicted least recently used under a byte
/// budget. A Mamba-2 sequence's whole history is one state of fixed size, so a request that extends a
/// cached prefix (a conversation re-sending its history, a shared system prompt) restores that state and
/// prefills only the rest.
///
/// Keys are chained hashes: the hash of a prefix of n tokens is the hash of the first n − 1 combined with
/// token n, so one pass over a prompt gives the key of every prefix. A lookup walks the prompt once and,
/// at each length some entry has, looks its key up; the tokens themselves then decide, so a hit is never a
/// different text.
public struct PrefixStateCache: Sendable {
    struct Entry: Sendable {
        var tokens: [Int]
        var state: Mamba2State
        var lastUse: UInt64
    }

    struct Key: Hashable, Sendable {
        var count: Int
        var hash: UInt64
    }

    /// The budget: the sum of the entries' state sizes stays at or below it.
    public let capacityBytes: Int
    public private(set) var usedBytes = 0
    var entries: [Key: Entry] = [:]
    /// How many entries cover each prefix length (a lookup checks only these lengths).
    var lengths: [Int: Int] = [:]
    var clock: UInt64 = 0
    public private(set) var hits = 0, misses = 0, evictions = 0

    public init(capacityBytes: Int) { self.capacityBytes = max(capacityBytes, 0) }

    public var count: Int { entries.count }

    /// One link of the chain (FNV-1a over the token's 8 bytes, then a final mix): h(n) = link(h(n−1), t[n−1]).
    static func link(_ h: UInt64, _ token: Int) -> UInt64 {
        var x = h
        var t = UInt64(bitPattern: Int64(token))
        for _ in 0..<8 { x = (x ^ (t & 0xff)) &* 0x100_0000_01b3; t >>= 8 }
        return x
    }

    static let seed: UInt64 = 0xcbf2_9ce4_8422_2325

    static func key(_ tokens: some Collection<Int>) -> Key {
        Key(count: tokens.count, hash: tokens.reduce(seed, link))
    }

    /// The longest cached prefix of `tokens` that is shorter than it (at least one token must be left to
    /// prefill, for the next-token logits), and its state.
    public mutating func longestPrefix(of tokens: [Int]) -> (count: Int, state: Mamba2State)? {
        var best: Key?
        var h = Self.seed
        for n in 1..<max(tokens.count, 1) {
            h = Self.link(h, tokens[n - 1])
            guard lengths[n] != nil else { continue }
            let k = Key(count: n, hash: h)
            if let e = entries[k], e.tokens.elementsEqual(tokens[..<n]) { best = k }
        }
        guard let best else { misses += 1; return nil }
        clock += 1
        entries[best]!.lastUse = clock
        hits += 1
        return (best.count, entries[best]!.state)
    }

    /// Whether a state for exactly these tokens is kept (it is not marked used).
    public func contains(_ tokens: [Int]) -> Bool {
        entries[Self.key(tokens)]?.tokens == tokens
    }

    /// Keeps `state` as the state after `tokens`, replacing an entry for the same tokens; evicts the least
    /// recently used entries until it fits. A state larger than the whole budget is not kept.
    public mutating func insert(tokens: [Int], state: Mamba2State) {
        let bytes = state.byteCount
        guard !tokens.isEmpty, bytes <= capacityBytes else { return }
        clock += 1
        let k = Self.key(tokens)
        if let old = entries[k] {
            if old.tokens == tokens {
                usedBytes += bytes - old.state.byteCount
                entries[k] = Entry(tokens: tokens, state: state, lastUse: clock)
                return
            }
            remove(k)  // a 64-bit collision between two texts of one length: the newer one stays
        }
        while usedBytes + bytes > capacityBytes, let oldest = entries.min(by: { $0.value.lastUse < $1.value.lastUse })?.key {
            remove(oldest)
            evictions += 1
        }
        entries[k] = Entry(tokens: tokens, state: state, lastUse: clock)
        lengths[k.count, default: 0] += 1
        usedBytes += bytes
    }

    mutating func remove(_ k: Key) {
        guard let e = entries.removeValue(forKey: k) else { return }
        usedBytes -= e.state.byteCount
        if lengths[k.count]! == 1 { lengths[k.count] = nil } else { lengths[k.count]! -= 1 }
    }
}
