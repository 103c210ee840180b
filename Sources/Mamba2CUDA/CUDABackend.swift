import Mamba2
/// The model on an NVIDIA GPU behind the backend protocol: `CUDAModel`'s kernels, with the row table the
/// protocol asks for. Rows at zero prefill together through the chunked SSD (packed when their lengths
/// differ); a row that continues a state runs its new tokens through the recurrence, one decode step per
/// token (exact; the chunked path with initial states per packed sequence is later work). A step on rows
/// other than 0..<n first moves their states into those rows (swaps on the device) and back after.
public final class CUDABackend: Mamba2Backend, @unchecked Sendable {
    public let model: CUDAModel
    public var config: Mamba2Config { model.modelConfig }
    public var weightType: WeightType { model.precision }
    public var deviceDescription: String {
        let devices = model.rankDevices
        guard devices.count > 1 else { return "cuda:\(model.device.ordinal) (\(model.device.name))" }
        return "cuda:\(devices.map { String($0.ordinal) }.joined(separator: "+")) (\(model.device.name), tensor-parallel \(devices.count))"
    }
    public var rowCapacity: Int { rowTokens.count }
    public var ssmStateValueBytes: Int { model.stateBytes }
    /// Tokens each row has consumed.
    var rowTokens: [Int] = []
    /// Whether a row's state is all zeros (it then prefills through the chunked SSD).
    var atZero: [Bool] = []
    /// Rows reset whose device memory is not zeroed yet: a prefill from zero overwrites a row's whole state
    /// without reading it, so the 2 × layers fills of a reset wait until something reads the row.
    var needsZero: [Bool] = []

    public init(model: CUDAModel, rows: Int = 1) throws {
        self.model = model
        try reserveRows(max(rows, 1))
    }

    public convenience init(device: CUDADevice, model: Mamba2Model, weights: WeightType) throws {
        try self.init(model: try CUDAModel(device: device, model: model, precision: weights))
    }

    public func reserveRows(_ n: Int) throws {
        guard n > rowTokens.count else { return }
        try model.reserve(rows: n)
        atZero += [Bool](repeating: true, count: n - rowTokens.count)
        needsZero += [Bool](repeating: false, count: n - rowTokens.count)
        rowTokens += [Int](repeating: 0, count: n - rowTokens.count)
    }

    public func prefill(_ sequences: [[Int]], rows: [Int], lastLogits: UnsafeMutableBufferPointer<Float>?) throws {
        try checkRows(rows, count: sequences.count)
        if let lastLogits { try checkLogits(lastLogits, rows: rows.count) }
        for (i, s) in sequences.enumerated() {
            guard !s.isEmpty else { throw Mamba2Error.invalidArgument("sequences[\(i)]", reason: "empty sequence") }
            try config.checkTokens(s, argument: "sequences[\(i)]")
        }
        let V = config.paddedVocabSize
        let fresh = sequences.indices.filter { atZero[rows[$0]] }
        for i in fresh { needsZero[rows[i]] = false }  // overwritten whole
        try materialize(sequences.indices.filter { !atZero[rows[$0]] }.map { rows[$0] })
        if !fresh.isEmpty {
            let logits = try model.prefill(fresh.map { sequences[$0] }, into: fresh.map { rows[$0] }, logits: lastLogits == nil ? .none : .last)
            if let logits, let lastLogits {
                for (k, i) in fresh.enumerated() {
                    logits.data.withUnsafeBufferPointer { lastLogits.baseAddress!.advanced(by: i * V).update(from: $0.baseAddress! + k * V, count: V) }
                }
            }
        }
        for i in sequences.indices where !fresh.contains(i) {
            let out = lastLogits.map { UnsafeMutableBufferPointer(rebasing: $0[(i * V)..<((i + 1) * V)]) }
            try continueRow(rows[i], with: sequences[i], lastLogits: out, allLogits: nil)
        }
        for (i, r) in rows.enumerated() { rowTokens[r] += sequences[i].count; atZero[r] = false }
    }

    public func prefillAllLogits(_ sequences: [[Int]], rows: [Int]) throws -> [Tensor] {
        try checkRows(rows, count: sequences.count)
        let V = config.paddedVocabSize
        var out: [Tensor] = []
        for (i, s) in sequences.enumerated() {
            guard !s.isEmpty else { throw Mamba2Error.invalidArgument("sequences[\(i)]", reason: "empty sequence") }
            try config.checkTokens(s, argument: "sequences[\(i)]")
            if atZero[rows[i]] {
                needsZero[rows[i]] = false
                let t = try model.prefill([s], into: [rows[i]], logits: .all)!
                out.append(Tensor(shape: [s.count, V], data: t.data))
            } else {
                var all = [Float](repeating: 0, count: s.count * V)
                try all.withUnsafeMutableBufferPointer { try continueRow(rows[i], with: s, lastLogits: nil, allLogits: $0) }
                out.append(Tensor(shape: [s.count, V], data: all))
            }
            rowTokens[rows[i]] += s.count
            atZero[rows[i]] = false
        }
        return out
    }

    /// Feeds `tokens` to a row that holds a state, one decode step each.
    func continueRow(_ row: Int, with tokens: [Int], lastLogits: UnsafeMutableBufferPointer<Float>?,
                     allLogits: UnsafeMutableBufferPointer<Float>?) throws {
        let V = config.paddedVocabSize
        var scratch = [Float](repeating: 0, count: V)
        try scratch.withUnsafeMutableBufferPointer { buf in
            for (t, token) in tokens.enumerated() {
                let out = allLogits.map { UnsafeMutableBufferPointer(rebasing: $0[(t * V)..<((t + 1) * V)]) } ?? buf
                try stepRows([token], rows: [row], logits: out)
            }
            if let lastLogits, allLogits == nil { _ = lastLogits.update(fromContentsOf: buf) }
        }
    }

    public func step(_ tokens: [Int], rows: [Int], logits: UnsafeMutableBufferPointer<Float>) throws {
        try checkRows(rows, count: tokens.count)
        try checkLogits(logits, rows: rows.count)
        try stepRows(tokens, rows: rows, logits: logits)
        for r in rows { rowTokens[r] += 1; atZero[r] = false }
    }

    public func stepArgmax(_ tokens: [Int], rows: [Int]) throws -> [(id: Int, logprob: Float)]? {
        try checkRows(rows, count: tokens.count)
        try materialize(rows)
        let out = try withRowsLeading(rows) { try model.stepArgmax(leadingRows: tokens) }
        for r in rows { rowTokens[r] += 1; atZero[r] = false }
        return out
    }

    public func queueArgmaxStep(_ tokens: [Int]) throws -> Bool {
        let rows = Array(0..<tokens.count)
        try checkRows(rows, count: tokens.count)
        try materialize(rows)
        try model.queueArgmax(leadingRows: tokens)
        for r in rows { rowTokens[r] += 1; atZero[r] = false }
        return true
    }

    public func collectArgmaxStep() throws -> [(id: Int, logprob: Float)] { try model.collectArgmax() }

    /// Measured on an H200 at the 130m shape: a 19 MB state copied to the host takes about as long as
    /// prefilling ~500 tokens.
    public var snapshotBreakEvenTokens: Int { 512 }

    /// The decode step on any rows: their states swapped into rows 0..<n, stepped, swapped back.
    func stepRows(_ tokens: [Int], rows: [Int], logits: UnsafeMutableBufferPointer<Float>) throws {
        try materialize(rows)
        try withRowsLeading(rows) { try model.step(leadingRows: tokens, into: logits) }
    }

    /// Runs `body` with the states of `rows` in rows 0..<rows.count (swapped there on the device and back).
    func withRowsLeading<R>(_ rows: [Int], _ body: () throws -> R) throws -> R {
        let n = rows.count
        if rows == Array(0..<n) { return try body() }
        var holder = Array(0..<rowCapacity)  // holder[slot]: whose state the slot holds
        var slotOf = holder                   // slotOf[row]: where that row's state is
        var swaps: [(Int, Int)] = []
        for (k, r) in rows.enumerated() where slotOf[r] != k {
            let (a, b) = (k, slotOf[r])
            try model.swapStateRows(a, b)
            swaps.append((a, b))
            (holder[a], holder[b]) = (holder[b], holder[a])
            slotOf[holder[a]] = a
            slotOf[holder[b]] = b
        }
        var result: Result<R, Error>
        do { result = .success(try body()) } catch { result = .failure(error) }
        for (a, b) in swaps.reversed() { try model.swapStateRows(a, b) }
        return try result.get()
    }

    public func state(row: Int) throws -> Mamba2State {
        try checkRows([row], count: 1, argument: "row")
        try materialize([row])
        let (conv, ssm) = try model.downloadState(row: row)
        return Mamba2State(conv: conv, ssm: ssm, tokens: rowTokens[row])
    }

    public func setState(_ state: Mamba2State, row: Int) throws {
        try checkRows([row], count: 1, argument: "row")
        try state.check(config: config)
        try model.uploadState(row: row, conv: state.conv, ssm: state.ssm)
        needsZero[row] = false
        rowTokens[row] = state.tokens
        atZero[row] = (state.conv + state.ssm).allSatisfy { $0.allSatisfy { $0 == 0 } }
    }

    public func copyState(from source: Int, to destination: Int) throws {
        try checkRows([source], count: 1, argument: "source")
        try checkRows([destination], count: 1, argument: "destination")
        if needsZero[source] {
            needsZero[destination] = true
        } else {
            try model.copyStateRow(from: source, to: destination)
            needsZero[destination] = false
        }
        rowTokens[destination] = rowTokens[source]
        atZero[destination] = atZero[source]
    }

    /// Zeroes the device memory of those rows a reset left for later.
    func materialize(_ rows: [Int]) throws {
        for r in rows where needsZero[r] {
            try model.zeroStateRow(r)
            needsZero[r] = false
        }
    }

    public func resetState(row: Int) throws {
        try checkRows([row], count: 1, argument: "row")
        needsZero[row] = true
        rowTokens[row] = 0
        atZero[row] = true
    }

    /// Rows 0..<n: one CUDA graph per token, the argmax fed back on the device, nothing back on the host
    /// until the end. Other rows: swapped into 0..<n for the run and back.
    public func decodeGreedy(first: [Int], rows: [Int], steps: Int) throws -> [[Int]] {
        try checkRows(rows, count: first.count)
        guard steps >= 1 else { throw Mamba2Error.invalidArgument("steps", reason: "at least 1, got \(steps)") }
        try config.checkTokens(first, argument: "first")
        try materialize(rows)
        let out = try withRowsLeading(rows) { try model.decodeGreedy(first: first, steps: steps) }
        for r in rows { rowTokens[r] += steps; atZero[r] = false }
        return out
    }

    /// Device memory bandwidth as a copy on the device achieves it (1 GiB read and written), best of 3.
    public func measureReadBandwidth() throws -> Double {
        let n = 1 << 28
        let a = try CUDABuffer(count: n, on: model.device), b = try CUDABuffer(count: n, on: model.device)
        try a.fill(bitPattern: 0)
        try b.copy(bytes: n * 4, from: a)
        try model.device.synchronize()
        var best = 0.0
        for _ in 0..<3 {
            let t0 = monotonicSeconds()
            try b.copy(bytes: n * 4, from: a)
            try model.device.synchronize()
            best = max(best, Double(2 * n * 4) / (monotonicSeconds() - t0))
        }
        return best
    }

    public func profileDecode(rows: Int) throws -> [(part: String, microseconds: Double, bytes: Int)] {
        try refuseProfileOfRanks()
        try reserveRows(rows)
        defer { for r in 0..<rows { rowTokens[r] = 0; atZero[r] = false } }  // the profile leaves its states behind
        return try model.profileDecode(rows: rows).map { ($0.kernel, $0.microseconds, $0.bytes) }
    }

    public func profilePrefill(tokens: Int) throws -> [(part: String, milliseconds: Double, bytes: Int, flops: Double)] {
        try refuseProfileOfRanks()
        try reserveRows(1)
        defer { rowTokens[0] = 0; atZero[0] = false }  // the profile leaves its state behind
        return try model.profilePrefill(tokens: tokens)
    }

    /// Timing a decode step's or a prefill's parts alone is for one device.
    func refuseProfileOfRanks() throws {
        guard model.peers.isEmpty else {
            throw Mamba2Error.invalidArgument("profile", reason: "the parts of a tensor-parallel step are timed on one GPU only: profile without --tensor-parallel")
        }
    }
}

/// An NVIDIA GPU as a place to run a model: `.cuda(0)`; with `tensorParallel` N > 1, GPUs ordinal..<ordinal+N,
/// the model split across them (`CUDAModel.tensorParallel`).
public struct CUDAComputeDevice: ComputeDevice {
    public let ordinal: Int
    /// The decode state's element type of the models it makes.
    public var stateType: CUDAModel.StateType = .f32
    /// GPUs the model is split across (1: not split).
    public var tensorParallel = 1
    public init(ordinal: Int) { self.ordinal = ordinal }

    /// The GPUs of the split, each opened once; an error naming how many the driver sees when they are not there.
    func devices() throws -> [CUDADevice] {
        let present = CUDADevice.count
        if present == 0 { _ = try CUDADevice(ordinal: ordinal) }  // no GPU or driver: its own error says which
        guard tensorParallel >= 1 else { throw Mamba2Error.invalidArgument("tensor-parallel", reason: "must be at least 1, got \(tensorParallel)") }
        guard ordinal + tensorParallel <= present else {
            throw Mamba2Error.invalidArgument("tensor-parallel", reason: "GPUs \(ordinal)..<\(ordinal + tensorParallel) asked for; this machine's driver sees \(present)")
        }
        return try (ordinal..<(ordinal + tensorParallel)).map { try CUDADevice(ordinal: $0) }
    }

    public func makeBackend(model: Mamba2Model, weights: WeightType) throws -> any Mamba2Backend {
        let m = tensorParallel != 1
            ? try CUDAModel.tensorParallel(devices: try devices(), model: model, precision: weights)
            : try CUDAModel(device: try CUDADevice(ordinal: ordinal), model: model, precision: weights)
        m.stateType = stateType
        return try CUDABackend(model: m)
    }
    /// The large matrices are drawn on the device (`CUDAModel(randomWeights:)`): no host copy of them.
    public func makeBackend(randomWeights config: Mamba2Config, seed: UInt64, weights: WeightType) throws -> any Mamba2Backend {
        let m = tensorParallel != 1
            ? try CUDAModel.tensorParallel(devices: try devices(), randomWeights: config, seed: seed, precision: weights)
            : try CUDAModel(device: try CUDADevice(ordinal: ordinal), randomWeights: config, seed: seed, precision: weights)
        m.stateType = stateType
        return try CUDABackend(model: m)
    }
    public var defaultWeightType: WeightType { .bf16 }
    public var description: String { "cuda:\(ordinal)" }
}

extension ComputeDevice where Self == CUDAComputeDevice {
    /// GPU `ordinal` as the driver counts them.
    public static func cuda(_ ordinal: Int = 0) -> CUDAComputeDevice { CUDAComputeDevice(ordinal: ordinal) }
}
