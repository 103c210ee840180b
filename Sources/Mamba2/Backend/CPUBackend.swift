import CMamba2Kernels

/// The model on the host's cores: `Mamba2Model` (the plain reference of every other backend) with a
/// table of states. Decode allocates nothing per token once the rows are reserved.
public final class CPUBackend: Mamba2Backend, @unchecked Sendable {
    public let model: Mamba2Model
    public var config: Mamba2Config { model.config }
    public var weightType: WeightType { model.weightType }
    public var deviceDescription: String { "cpu (\(Parallel.threadCount) threads)" }
    public var rowCapacity: Int { states.count }
    /// The SSD form prefill uses (`.auto`: chosen per length from measurements).
    public var form: SSDForm = .auto

    /// One state per row.
    var states: [Mamba2State]
    /// The decode step's buffers, for up to rowCapacity rows.
    var workspace: DecodeWorkspace
    /// The states of a step's rows, moved (not copied) out of `states` for the step and back.
    var gathered: [Mamba2State] = []

    public init(model: Mamba2Model, rows: Int = 1) throws {
        self.model = model
        states = (0..<max(rows, 1)).map { _ in model.newState() }
        workspace = DecodeWorkspace(config: model.config, batch: max(rows, 1))
        gathered.reserveCapacity(max(rows, 1))
    }

    public func reserveRows(_ n: Int) throws {
        guard n > states.count else { return }
        try checkedRowBytes(n)
        states += (states.count..<n).map { _ in model.newState() }
        workspace = DecodeWorkspace(config: config, batch: n)
        gathered.reserveCapacity(n)
    }

    /// Refuses a table whose states would not fit in memory's address space (a clear error, not a trap).
    func checkedRowBytes(_ n: Int) throws {
        let (bytes, overflow) = n.multipliedReportingOverflow(by: config.stateFloatsPerSequence * 4)
        guard !overflow, bytes < Int(1) << 46 else { throw Mamba2Error.invalidArgument("rows", reason: "\(n) rows of state do not fit in memory") }
    }

    /// Runs `body` on the states of `rows`, in that order, moved out of the table and back.
    func withStates<R>(_ rows: [Int], _ body: (inout [Mamba2State]) throws -> R) rethrows -> R {
        if rows.count == states.count, rows.indices.allSatisfy({ rows[$0] == $0 }) { return try body(&states) }
        gathered.removeAll(keepingCapacity: true)
        for r in rows {
            gathered.append(Mamba2State.placeholder)
            swap(&gathered[gathered.count - 1], &states[r])
        }
        defer { for (k, r) in rows.enumerated() { swap(&gathered[k], &states[r]) } }
        return try body(&gathered)
    }

    public func prefill(_ sequences: [[Int]], rows: [Int], lastLogits: UnsafeMutableBufferPointer<Float>?) throws {
        try checkRows(rows, count: sequences.count)
        if let lastLogits { try checkLogits(lastLogits, rows: rows.count) }
        let out = try withStates(rows) { try model.prefill(sequences, states: &$0, logits: lastLogits == nil ? .none : .last, form: form) }
        guard let lastLogits else { return }
        let V = config.paddedVocabSize
        for (i, t) in out.enumerated() {
            t.data.withUnsafeBufferPointer { lastLogits.baseAddress!.advanced(by: i * V).update(from: $0.baseAddress!, count: V) }
        }
    }

    public func prefillAllLogits(_ sequences: [[Int]], rows: [Int]) throws -> [Tensor] {
        try checkRows(rows, count: sequences.count)
        return try withStates(rows) { try model.prefill(sequences, states: &$0, logits: .all, form: form) }
    }

    public func step(_ tokens: [Int], rows: [Int], logits: UnsafeMutableBufferPointer<Float>) throws {
        try checkRows(rows, count: tokens.count)
        try checkLogits(logits, rows: rows.count)
        let ws = workspace
        try withStates(rows) { try model.step(tokens, states: &$0, workspace: ws) }
        ws.logits.withUnsafeBufferPointer { logits.baseAddress!.update(from: $0.baseAddress!, count: logits.count) }
    }

    public func state(row: Int) throws -> Mamba2State {
        try checkRows([row], count: 1, argument: "row")
        return states[row]
    }

    public func setState(_ state: Mamba2State, row: Int) throws {
        try checkRows([row], count: 1, argument: "row")
        try state.check(config: config)
        states[row] = state
    }

    public func copyState(from source: Int, to destination: Int) throws {
        try checkRows([source], count: 1, argument: "source")
        try checkRows([destination], count: 1, argument: "destination")
        states[destination] = states[source]
    }

    public func resetState(row: Int) throws {
        try checkRows([row], count: 1, argument: "row")
        states[row] = model.newState()
    }

    /// The decode GEMV's kernel for `rows` rows on this host (chosen from cpuid), in words.
    public static func decodeKernelPath(rows: Int) -> String { String(cString: mk_gemv_path_name(Int32(rows))) }

    /// The host's read bandwidth: a plain streaming read (`mk_stream_read`) over 512 MiB, far past the caches,
    /// with all threads, best of 5. It is measured apart from the decode GEMV so that a decode's share of the
    /// floor it sets (bytes a token reads / this rate) says how far the GEMV is from the memory; measured with
    /// the GEMV itself, as before, the decode was at "100%" of its own rate by construction.
    public func measureReadBandwidth() throws -> Double {
        let words = 64 << 20
        let p = UnsafeMutablePointer<UInt64>.allocate(capacity: words)
        defer { p.deallocate() }
        p.initialize(repeating: 0x0101_0101_0101_0101, count: words)  // every page touched before the timing
        var best = 0.0
        for _ in 0..<5 {
            let t0 = monotonicSeconds()
            let sum = mk_stream_read(p, words, Int32(Parallel.threadCount))
            let dt = monotonicSeconds() - t0
            guard sum == 0x0101_0101_0101_0101 &* UInt64(words) else {
                throw Mamba2Error.invalidArgument("bandwidth", reason: "the streaming read summed \(sum), not what the buffer holds")
            }
            best = max(best, Double(words * 8) / dt)
        }
        return best
    }
}

extension Mamba2State {
    /// A state of no layers: what a table slot holds while its state is lent out (allocates nothing).
    static var placeholder: Mamba2State { Mamba2State(conv: [], ssm: [], tokens: 0) }

    /// Throws unless every layer's conv window and SSM state has the size `config` gives it.
    public func check(config c: Mamba2Config) throws {
        let conv = (c.dConv - 1) * c.convDim, ssm = c.nHeads * c.headDim * c.dState
        guard self.conv.count == c.nLayer, self.ssm.count == c.nLayer,
              self.conv.allSatisfy({ $0.count == conv }), self.ssm.allSatisfy({ $0.count == ssm }) else {
            throw Mamba2Error.invalidArgument("state", reason: "does not fit this model (\(c.nLayer) layers of \(conv) conv and \(ssm) SSM values)")
        }
    }
}
