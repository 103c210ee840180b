import CMamba2Kernels

/// A validated SSD call: sizes checked, dt transformed, rows split into sequences and chunks.
/// Every form reads its inputs from here, so shape checks and the dt transform live in one place.
package struct SSDProblem {
    package let b: Int, L: Int, H: Int, P: Int, G: Int, N: Int
    /// Heads per group, H / G.
    package let headsPerGroup: Int
    package let input: SSDInput
    /// (b, L, H): dt after bias, softplus and clamp.
    let dt: [Float]
    /// (H)
    package let A: [Float]
    /// One span of tokens [start, end) of one row that lies within one sequence.
    package struct Segment { package let start: Int, end: Int; package let ordinal: Int; package let first: Bool }
    /// segments[row]: the sequences of that row in order.
    package let segments: [[Segment]]
    /// Number of sequences over all rows.
    let sequenceCount: Int

    package init(_ input: SSDInput, options: SSDOptions) throws {
        let xs = input.x.shape
        guard xs.count == 4 else { throw Mamba2Error.shape(argument: "x", expected: "(b, L, H, P)", got: xs) }
        let (b, L, H, P) = (xs[0], xs[1], xs[2], xs[3])
        guard b > 0 else { throw Mamba2Error.invalidArgument("x", reason: "batch size b must be at least 1") }
        guard L > 0 else { throw Mamba2Error.invalidArgument("x", reason: "empty sequence: length L must be at least 1") }
        guard H > 0, P > 0 else { throw Mamba2Error.invalidArgument("x", reason: "H and P must be at least 1, got H=\(H), P=\(P)") }
        guard input.dt.shape == [b, L, H] else {
            throw Mamba2Error.shape(argument: "dt", expected: "(b, L, H) = \([b, L, H])", got: input.dt.shape)
        }
        guard input.A.shape == [H] else { throw Mamba2Error.shape(argument: "A", expected: "(H) = [\(H)]", got: input.A.shape) }
        let bs = input.B.shape
        guard bs.count == 4, bs[0] == b, bs[1] == L else {
            throw Mamba2Error.shape(argument: "B", expected: "(b, L, G, N) with b=\(b), L=\(L)", got: bs)
        }
        let (G, N) = (bs[2], bs[3])
        guard G > 0, N > 0 else { throw Mamba2Error.invalidArgument("B", reason: "G and N must be at least 1, got G=\(G), N=\(N)") }
        guard H % G == 0 else {
            throw Mamba2Error.invalidArgument("B", reason: "heads H=\(H) must be divisible by groups G=\(G)")
        }
        guard input.C.shape == bs else { throw Mamba2Error.shape(argument: "C", expected: "(b, L, G, N) = \(bs)", got: input.C.shape) }
        if let D = input.D, D.shape != [H], D.shape != [H, P] {
            throw Mamba2Error.shape(argument: "D", expected: "(H) = [\(H)] or (H, P) = [\(H), \(P)]", got: D.shape)
        }
        if let z = input.z, z.shape != xs { throw Mamba2Error.shape(argument: "z", expected: "(b, L, H, P) = \(xs)", got: z.shape) }
        if let bias = input.dtBias, bias.shape != [H] {
            throw Mamba2Error.shape(argument: "dt_bias", expected: "(H) = [\(H)]", got: bias.shape)
        }
        if let h0 = input.initialStates, h0.shape != [b, H, P, N] {
            throw Mamba2Error.shape(argument: "initial_states", expected: "(b, H, P, N) = \([b, H, P, N])", got: h0.shape)
        }
        guard options.chunkSize >= 1 else {
            throw Mamba2Error.invalidArgument("chunk_size", reason: "must be at least 1, got \(options.chunkSize)")
        }
        guard options.dtLimit.lo <= options.dtLimit.hi else {
            throw Mamba2Error.invalidArgument("dt_limit", reason: "lower bound \(options.dtLimit.lo) exceeds upper bound \(options.dtLimit.hi)")
        }
        if input.A.data.contains(where: { !($0 <= 0) }) {
            throw Mamba2Error.invalidArgument("A", reason: "decay rates must be ≤ 0 (A = −exp(A_log)); a positive A makes the state grow without bound")
        }

        // Sequences: runs of equal seqIdx along each row.
        var segments: [[Segment]] = []
        var ordinal = 0
        if let seq = input.seqIdx {
            guard seq.count == b * L else {
                throw Mamba2Error.shape(argument: "seq_idx", expected: "(b, L) = \([b, L])", got: [seq.count])
            }
            for r in 0..<b {
                var row: [Segment] = []
                var start = 0
                for t in 1...L {
                    if t == L || seq[r * L + t] != seq[r * L + t - 1] {
                        if t < L && seq[r * L + t] < seq[r * L + t - 1] {
                            throw Mamba2Error.invalidArgument("seq_idx", reason: "indices decrease in row \(r) at position \(t)")
                        }
                        row.append(Segment(start: start, end: t, ordinal: ordinal, first: start == 0))
                        ordinal += 1
                        start = t
                    }
                }
                segments.append(row)
            }
        } else {
            for r in 0..<b { segments.append([Segment(start: 0, end: L, ordinal: r, first: true)]) }
            ordinal = b
        }

        // dt ← clamp(softplus(dt + dt_bias)) as the reference's _chunk_cumsum_fwd.
        var dt = input.dt.data
        let bias = input.dtBias?.data
        let clamp = !(options.dtLimit.lo == 0 && options.dtLimit.hi == .infinity)
        for i in 0..<dt.count {
            var v = dt[i]
            if let bias { v += bias[i % H] }
            if options.dtSoftplus { v = mk_softplus(v) }
            if clamp { v = min(max(v, options.dtLimit.lo), options.dtLimit.hi) }
            dt[i] = v
        }
        if dt.contains(where: { !$0.isFinite || $0 < 0 }) {
            throw Mamba2Error.invalidArgument("dt", reason: "after bias, softplus and clamp, dt must be finite and ≥ 0 (enable softplus or a dt_limit)")
        }

        if let s0 = input.sequenceInitialStates {
            guard s0.shape == [ordinal, H, P, N] else {
                throw Mamba2Error.shape(argument: "sequence_initial_states", expected: "(S, H, P, N) = \([ordinal, H, P, N]) for \(ordinal) sequences", got: s0.shape)
            }
            guard input.initialStates == nil else {
                throw Mamba2Error.invalidArgument("sequence_initial_states", reason: "give either initial_states or sequence_initial_states, not both")
            }
        }
        self.b = b; self.L = L; self.H = H; self.P = P; self.G = G; self.N = N
        self.headsPerGroup = H / G
        self.input = input
        self.dt = dt
        self.A = input.A.data
        self.segments = segments
        self.sequenceCount = ordinal
    }

    /// True when the sequence starts from a given (non-zero) state.
    package func hasInitialState(_ seg: Segment) -> Bool {
        input.sequenceInitialStates != nil || (seg.first && input.initialStates != nil)
    }

    /// state (P, N) ← the given state of this sequence and head, or zeros.
    package func loadInitialState(row r: Int, head h: Int, segment seg: Segment, into state: UnsafeMutablePointer<Float>) {
        let size = P * N
        if let s0 = input.sequenceInitialStates {
            s0.data.withUnsafeBufferPointer { state.update(from: $0.baseAddress! + (seg.ordinal * H + h) * size, count: size) }
        } else if seg.first, let h0 = input.initialStates {
            h0.data.withUnsafeBufferPointer { state.update(from: $0.baseAddress! + (r * H + h) * size, count: size) }
        } else {
            state.initialize(repeating: 0, count: size)
        }
    }

    /// 5·H·P·N flops per token: what every form is credited with in benchmarks (the recurrence's work).
    var flopsPerToken: Double { 5.0 * Double(H * P * N) }
}

/// The SSD's inputs as raw pointers for the forms' worker threads (read only).
package struct SSDPointers {
    package let x: SharedPointer<Float>, B: SharedPointer<Float>, C: SharedPointer<Float>, dt: SharedPointer<Float>
}

extension SSDProblem {
    /// Runs body with pointers to x, B, C and the transformed dt, valid for the call.
    package func withInputPointers<R>(_ body: (SSDPointers) -> R) -> R {
        input.x.data.withUnsafeBufferPointer { xb in
        input.B.data.withUnsafeBufferPointer { bb in
        input.C.data.withUnsafeBufferPointer { cb in
        dt.withUnsafeBufferPointer { db in
            body(SSDPointers(x: SharedPointer(xb.baseAddress!), B: SharedPointer(bb.baseAddress!),
                             C: SharedPointer(cb.baseAddress!), dt: SharedPointer(db.baseAddress!)))
        }}}}
    }
}

/// A raw pointer that may cross into the worker threads of `Parallel.forEach`. Each worker writes a
/// disjoint part (its own head, or its own rows), which is what makes sharing it sound.
package struct SharedPointer<T>: @unchecked Sendable {
    package let p: UnsafeMutablePointer<T>
    package init(_ p: UnsafeMutablePointer<T>) { self.p = p }
    package init(_ p: UnsafePointer<T>) { self.p = UnsafeMutablePointer(mutating: p) }
}
