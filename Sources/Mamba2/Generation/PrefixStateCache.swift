/// Snapshots of sequence states keyed by the tokens they cover, evicted least recently used under a byte
/// budget. A Mamba-2 sequence's whole history is one state of fixed size, so a request that extends a
/// cached prefix (a conversation re-sending its history, a shared system prompt) restores that state and
/// prefills only the rest.
///
/// Lookups compare whole token prefixes (a hash of each entry's tokens finds the candidates; the tokens
/// themselves decide), so a hit is never a different text.
public struct PrefixStateCache: Sendable {
    struct Entry: Sendable {
        var tokens: [Int]
        var state: Mamba2State
        var lastUse: UInt64
    }

    /// The budget: the sum of the entries' state sizes stays at or below it.
    public let capacityBytes: Int
    public private(set) var usedBytes = 0
    var entries: [Entry] = []
    var clock: UInt64 = 0
    public private(set) var hits = 0, misses = 0, evictions = 0

    public init(capacityBytes: Int) { self.capacityBytes = max(capacityBytes, 0) }

    public var count: Int { entries.count }

    /// The longest cached prefix of `tokens` that is shorter than it (at least one token must be left to
    /// prefill, for the next-token logits), and its state.
    public mutating func longestPrefix(of tokens: [Int]) -> (count: Int, state: Mamba2State)? {
        var best = -1
        for (i, e) in entries.enumerated() where e.tokens.count < tokens.count && (best < 0 || e.tokens.count > entries[best].tokens.count) {
            if tokens.starts(with: e.tokens) { best = i }
        }
        guard best >= 0 else { misses += 1; return nil }
        clock += 1
        entries[best].lastUse = clock
        hits += 1
        return (entries[best].tokens.count, entries[best].state)
    }

    /// Keeps `state` as the state after `tokens`, replacing an entry for the same tokens; evicts the least
    /// recently used entries until it fits. A state larger than the whole budget is not kept.
    public mutating func insert(tokens: [Int], state: Mamba2State) {
        let bytes = state.byteCount
        guard !tokens.isEmpty, bytes <= capacityBytes else { return }
        clock += 1
        if let i = entries.firstIndex(where: { $0.tokens == tokens }) {
            usedBytes -= entries[i].state.byteCount
            entries[i].state = state
            entries[i].lastUse = clock
            usedBytes += bytes
            return
        }
        while usedBytes + bytes > capacityBytes, let oldest = entries.indices.min(by: { entries[$0].lastUse < entries[$1].lastUse }) {
            usedBytes -= entries[oldest].state.byteCount
            entries.remove(at: oldest)
            evictions += 1
        }
        entries.append(Entry(tokens: tokens, state: state, lastUse: clock))
        usedBytes += bytes
    }
}
