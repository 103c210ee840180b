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
}

/// The element type a backend holds its weight matrices in (arithmetic and states stay float32).
public enum WeightType: String, Sendable, CaseIterable, Codable {
    case f32, bf16, f16
    /// The code the C and CUDA kernels take (0 f32, 1 bf16, 2 f16).
    package var code: Int32 { switch self { case .f32: 0; case .bf16: 1; case .f16: 2 } }
    /// Bytes of one matrix element.
    public var byteCount: Int { self == .f32 ? 4 : 2 }
}

/// A place to run a model: `.cpu`, or `.cuda(ordinal)` once `Mamba2CUDA` is imported. It turns a loaded
/// model into a backend; `LanguageModel.load(directory:device:weights:)` takes one.
public protocol ComputeDevice: Sendable, CustomStringConvertible {
    func makeBackend(model: Mamba2Model, weights: WeightType) throws -> any Mamba2Backend
    /// The weight type a user who names none gets here (f32 on the CPU, bf16 on a GPU).
    var defaultWeightType: WeightType { get }
}

/// The host's cores.
public struct CPUDevice: ComputeDevice {
    public init() {}
    public func makeBackend(model: Mamba2Model, weights: WeightType) throws -> any Mamba2Backend {
        try CPUBackend(model: model.weightType == weights ? model : Mamba2Model(config: model.config, weights: model.weights, weightType: weights))
    }
    public var defaultWeightType: WeightType { .f32 }
    public var description: String { "cpu" }
}

extension ComputeDevice where Self == CPUDevice {
    /// The host's cores.
    public static var cpu: CPUDevice { CPUDevice() }
}

extension Mamba2Backend {
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
