/// Where a Mamba-2 language model runs: its weights, and a table of state rows (one sequence each).
///
/// The CPU (`CPUBackend`) and the GPU (`CUDABackend`, in `Mamba2CUDA`) implement it; generation, the
/// commands and the coming server use nothing else, so none of them knows which one runs.
///
/// A row holds one sequence's fixed-size state (conv window + SSM state per layer). Rows are numbered
/// 0..<rowCapacity; `reserveRows` grows the table without touching rows in use. A backend is used by one
/// thread at a time (generation holds it for a whole stream; `LanguageModel` serializes).
public protocol Mamba2Backend: AnyObject, Sendable {
    /// The model's config: the weights were built from it, so the two cannot disagree.
    var config: Mamba2Config { get }
    /// The matrices' type (`.f32` keeps the loaded values; 16-bit types round them).
    var weightType: WeightType { get }
    /// "cpu", "cuda:0 (NVIDIA H200)": for logs and the CLI.
    var deviceDescription: String { get }
    /// Rows the table holds now.
    var rowCapacity: Int { get }
    /// Makes room for at least `n` rows; rows already there keep their states, new rows start at zero.
    func reserveRows(_ n: Int) throws

    /// Runs `sequences[i]` through the model on row `rows[i]`, continuing that row's state (a row at zero
    /// starts a new sequence). Rows must be distinct. With `lastLogits`, writes the logits of each
    /// sequence's last token there: (sequences, padded vocab).
    func prefill(_ sequences: [[Int]], rows: [Int], lastLogits: UnsafeMutableBufferPointer<Float>?) throws
    /// The same, returning every token's logits: per sequence (length, padded vocab). For scoring
    /// (perplexity, `mamba2 logits`), not for generation.
    func prefillAllLogits(_ sequences: [[Int]], rows: [Int]) throws -> [Tensor]
    /// One token per row, continuing each row's state; logits (rows, padded vocab) into `logits`.
    func step(_ tokens: [Int], rows: [Int], logits: UnsafeMutableBufferPointer<Float>) throws

    /// A copy of a row's state (to save, cache, or move to another backend).
    func state(row: Int) throws -> Mamba2State
    /// Replaces a row's state.
    func setState(_ state: Mamba2State, row: Int) throws
    /// Copies row `source`'s state into row `destination`.
    func copyState(from source: Int, to destination: Int) throws
    /// Sets a row to the state before any token.
    func resetState(row: Int) throws

    /// Greedy decoding: feeds `first` (a token per row), then each row's argmax, `steps` times; returns the
    /// `steps` tokens chosen per row. (A device may keep the whole loop on itself: the GPU replays one CUDA
    /// graph per token.) The default steps through `step` and takes the argmax on the host.
    func decodeGreedy(first: [Int], rows: [Int], steps: Int) throws -> [[Int]]
    /// One step whose next token per row is chosen where the logits are, by argmax, with its
    /// log-probability (log-softmax of the raw logits), so that a device need not send the logits back: a
    /// server whose running requests are all greedy steps through this. nil where the backend has nothing
    /// faster than `step` and a host argmax (the default).
    func stepArgmax(_ tokens: [Int], rows: [Int]) throws -> [(id: Int, logprob: Float)]?
    /// `stepArgmax` in two halves, so that the host can work while the device steps: queues the step of
    /// rows 0..<tokens.count and returns at once (false: not supported, nothing queued; the default), and
    /// `collectArgmaxStep` waits for it and returns its choices. Anything else done to the backend in
    /// between runs after the queued step.
    func queueArgmaxStep(_ tokens: [Int]) throws -> Bool
    func collectArgmaxStep() throws -> [(id: Int, logprob: Float)]
    /// Sequences shorter than this are cheaper to prefill again than to snapshot with `state(row:)`: a
    /// cache of prefix states keeps none shorter (1, the default: on a CPU prefilling is far slower than
    /// copying a state; a GPU copies it to the host over the bus).
    var snapshotBreakEvenTokens: Int { get }
    /// The read bandwidth of the memory the decode step streams the weights from, in bytes/s, as a
    /// decode-like access achieves it: the floor of a decode step is its bytes over this.
    func measureReadBandwidth() throws -> Double
    /// The time of each part of a decode step of `rows` rows, with the bytes each reads, where the device
    /// can time its parts alone (the GPU); else an error that says so.
    func profileDecode(rows: Int) throws -> [(part: String, microseconds: Double, bytes: Int)]
    /// The time of each part of one layer's prefill of `tokens` tokens and of the whole prefill, with the bytes
    /// each must move and the products' operations, where the device can time its parts alone; else an error.
    func profilePrefill(tokens: Int) throws -> [(part: String, milliseconds: Double, bytes: Int, flops: Double)]
    /// Bytes of one SSM state value as decode keeps it (4, the default; 2 for a GPU's bf16 state).
    var ssmStateValueBytes: Int { get }
}

/// The element type a backend holds its weight matrices in (arithmetic and states stay float32). `q8_0` and
/// `q4_0` are llama.cpp's block types (per 32 weights an fp16 scale and 32 int8, or 32 4-bit values: 8.5 and 4.5
/// bits a weight), CPU only.
public enum WeightType: String, Sendable, CaseIterable, Codable {
    case f32, bf16, f16, q8_0, q4_0
    /// The code the C and CUDA kernels take (0 f32, 1 bf16, 2 f16, 3 Q8_0, 4 Q4_0).
    package var code: Int32 { switch self { case .f32: 0; case .bf16: 1; case .f16: 2; case .q8_0: 3; case .q4_0: 4 } }
    /// Bytes of `count` matrix elements (for the block types a multiple of 32).
    public func bytes(_ count: Int) -> Int {
        switch self { case .f32: count * 4; case .bf16, .f16: count * 2; case .q8_0: count / 32 * 34; case .q4_0: count / 32 * 18 }
    }
    /// Whether the type is one of llama.cpp's blocks of 32 (rows must be multiples of 32 long).
    public var isBlockQuantized: Bool { self == .q8_0 || self == .q4_0 }
    /// The types a GPU holds matrices in (Q8_0 and Q4_0 are CPU types).
    public static let floatingPoint: [WeightType] = [.f32, .bf16, .f16]
}

/// A place to run a model: `.cpu`, or `.cuda(ordinal)` once `Mamba2CUDA` is imported. It turns a loaded
/// model into a backend; `LanguageModel.load(directory:device:weights:)` takes one.
public protocol ComputeDevice: Sendable, CustomStringConvertible {
    func makeBackend(model: Mamba2Model, weights: WeightType) throws -> any Mamba2Backend
    /// A backend of random weights of `config` (`Mamba2Weights.random`'s distributions): benchmarks of the
    /// released shapes with no checkpoint. A device may draw the large matrices itself.
    func makeBackend(randomWeights config: Mamba2Config, seed: UInt64, weights: WeightType) throws -> any Mamba2Backend
    /// The weight type a user who names none gets here (f32 on the CPU, bf16 on a GPU).
    var defaultWeightType: WeightType { get }
}

/// The host's cores.
public struct CPUDevice: ComputeDevice {
    public init() {}
    public func makeBackend(model: Mamba2Model, weights: WeightType) throws -> any Mamba2Backend {
        try CPUBackend(model: model.weightType == weights ? model : Mamba2Model(config: model.config, weights: model.weights, weightType: weights))
    }
    public func makeBackend(randomWeights config: Mamba2Config, seed: UInt64, weights: WeightType) throws -> any Mamba2Backend {
        try CPUBackend(model: Mamba2Model(config: config, weights: .random(config, seed: seed), weightType: weights))
    }
    public var defaultWeightType: WeightType { .f32 }
    public var description: String { "cpu" }
}

extension ComputeDevice where Self == CPUDevice {
    /// The host's cores.
    public static var cpu: CPUDevice { CPUDevice() }
}

extension Mamba2Backend {
    public func stepArgmax(_ tokens: [Int], rows: [Int]) throws -> [(id: Int, logprob: Float)]? { nil }
    public func queueArgmaxStep(_ tokens: [Int]) throws -> Bool { false }
    public var snapshotBreakEvenTokens: Int { 1 }
    public func collectArgmaxStep() throws -> [(id: Int, logprob: Float)] {
        throw Mamba2Error.invalidArgument("collectArgmaxStep", reason: "no step was queued")
    }

    public func decodeGreedy(first: [Int], rows: [Int], steps: Int) throws -> [[Int]] {
        try checkRows(rows, count: first.count)
        guard steps >= 1 else { throw Mamba2Error.invalidArgument("steps", reason: "at least 1, got \(steps)") }
        let V = config.paddedVocabSize
        var logits = [Float](repeating: 0, count: rows.count * V)
        var tokens = first
        var out = [[Int]](repeating: [], count: rows.count)
        for _ in 0..<steps {
            try logits.withUnsafeMutableBufferPointer { try step(tokens, rows: rows, logits: $0) }
            for r in rows.indices {
                var best = 0
                for i in 1..<V where logits[r * V + i] > logits[r * V + best] { best = i }
                tokens[r] = best
                out[r].append(best)
            }
        }
        return out
    }

    public func profileDecode(rows: Int) throws -> [(part: String, microseconds: Double, bytes: Int)] {
        throw Mamba2Error.invalidArgument("profile", reason: "timing the parts of a decode step alone is implemented for the GPU (\(deviceDescription) has none)")
    }

    public func profilePrefill(tokens: Int) throws -> [(part: String, milliseconds: Double, bytes: Int, flops: Double)] {
        throw Mamba2Error.invalidArgument("profile", reason: "timing the parts of a prefill alone is implemented for the GPU (\(deviceDescription) has none)")
    }

    /// Bytes one decode step of one row reads: every weight once in the backend's matrix type (the tied head
    /// reads the embedding), plus the row's state read and written.
    public var bytesPerDecodedToken: Int {
        let ssm = config.nLayer * config.nHeads * config.headDim * config.dState
        return Mamba2Model.decodeWeightBytes(config, matrices: weightType) + 2 * ((config.stateFloatsPerSequence - ssm) * 4 + ssm * ssmStateValueBytes)
    }

    public var ssmStateValueBytes: Int { 4 }

    /// Prefills one sequence on `row`, taking a copy of the state after each of `offsets` tokens (each in
    /// 1..<sequence.count, increasing): what a prefix cache keeps. Choose offsets on chunk boundaries
    /// (multiples of `config.chunkSize`) so that the state a restored prefix reaches is the one a full
    /// prefill reaches. Returns the snapshots in order; `lastLogits` as in `prefill`.
    public func prefill(_ sequence: [Int], row: Int, snapshotsAt offsets: [Int],
                        lastLogits: UnsafeMutableBufferPointer<Float>?) throws -> [Mamba2State] {
        var start = 0
        var snapshots: [Mamba2State] = []
        for o in offsets {
            guard o > start, o < sequence.count else {
                throw Mamba2Error.invalidArgument("offsets", reason: "\(o) is not increasing within 1..<\(sequence.count)")
            }
            try prefill([Array(sequence[start..<o])], rows: [row], lastLogits: nil)
            snapshots.append(try state(row: row))
            start = o
        }
        try prefill([Array(sequence[start...])], rows: [row], lastLogits: lastLogits)
        return snapshots
    }

    /// Checks a row list against the table: in range, distinct, as many as `count`.
    package func checkRows(_ rows: [Int], count: Int, argument: String = "rows") throws {
        guard rows.count == count, count > 0 else {
            throw Mamba2Error.invalidArgument(argument, reason: "\(rows.count) rows for \(count) sequences")
        }
        for r in rows where r < 0 || r >= rowCapacity {
            throw Mamba2Error.invalidArgument(argument, reason: "row \(r) is outside 0..<\(rowCapacity) (reserveRows first)")
        }
        guard Set(rows).count == rows.count else { throw Mamba2Error.invalidArgument(argument, reason: "rows \(rows) repeat") }
    }

    /// Checks a logits buffer holds `rows` rows of the padded vocabulary.
    package func checkLogits(_ logits: UnsafeMutableBufferPointer<Float>, rows: Int) throws {
        let need = rows * config.paddedVocabSize
        guard logits.count == need else {
            throw Mamba2Error.invalidArgument("logits", reason: "room for \(logits.count) values, \(rows) rows need \(need)")
        }
    }
}
