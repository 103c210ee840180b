// The SSD layer's interface, as `mamba_chunk_scan_combined` of the original `mamba_ssm`.
//
// Glossary (the paper's letters):
//   b  batch rows            L  sequence length (tokens per row)
//   H  heads                 P  head dimension (channels per head)
//   G  groups of B and C     N  state size
//   Q  chunk size of the chunked form
// Head h reads group h / (H / G).

/// How the SSD layer is computed. All forms give the same numbers (float32 rounding aside).
public enum SSDForm: String, Sendable, CaseIterable {
    /// Pick by shape: the per-token recurrence for short inputs, the chunked form otherwise.
    case auto
    /// h_t = exp(dt_t·A)·h_{t−1} + dt_t·x_t⊗B_t, y_t = h_t·C_t. Linear in L, constant memory.
    case recurrent
    /// Y = (L ∘ C·Bᵀ)·(dt·X) + exp(cum)·C·h₀: masked attention, quadratic in L, all matrix products.
    case quadratic
    /// Quadratic blocks of Q tokens joined by the recurrence over chunk states.
    case chunked
}

/// Inputs of one SSD call. Shapes use the glossary above; optional inputs default to "absent".
public struct SSDInput: Sendable {
    /// (b, L, H, P)
    public var x: Tensor
    /// (b, L, H): the raw step, before dt_bias, softplus and the dt_limit clamp.
    public var dt: Tensor
    /// (H): negative decay rates (−exp(A_log) in a model).
    public var A: Tensor
    /// (b, L, G, N)
    public var B: Tensor
    /// (b, L, G, N)
    public var C: Tensor
    /// (H) or (H, P): skip connection y += D·x. Absent: no skip.
    public var D: Tensor?
    /// (b, L, H, P): gate, y ← y·silu(z) after the D term. Absent: no gate.
    public var z: Tensor?
    /// (H): added to dt before softplus.
    public var dtBias: Tensor?
    /// (b, H, P, N): state before the first token of each row. Absent: zeros.
    public var initialStates: Tensor?
    /// (S, H, P, N): a state for every sequence of a packed input (S sequences over all rows, in order),
    /// for continuing several prompts at once. Takes the place of `initialStates`. Absent: zeros.
    public var sequenceInitialStates: Tensor?
    /// (b, L): sequence index per token for packed variable-length rows; the state resets wherever the
    /// index changes. Indices must not decrease along a row. The initial state (if any) belongs to the
    /// first sequence of its row. Absent: each row is one sequence.
    public var seqIdx: [Int32]?

    public init(x: Tensor, dt: Tensor, A: Tensor, B: Tensor, C: Tensor, D: Tensor? = nil, z: Tensor? = nil,
                dtBias: Tensor? = nil, initialStates: Tensor? = nil, sequenceInitialStates: Tensor? = nil,
                seqIdx: [Int32]? = nil) {
        self.x = x; self.dt = dt; self.A = A; self.B = B; self.C = C; self.D = D; self.z = z
        self.dtBias = dtBias; self.initialStates = initialStates
        self.sequenceInitialStates = sequenceInitialStates; self.seqIdx = seqIdx
    }
}

/// How to compute: the form, its chunk size, and the dt transform.
public struct SSDOptions: Sendable {
    public var form: SSDForm
    /// Q of the chunked form. The reference models use 256.
    public var chunkSize: Int
    /// dt ← softplus(dt + dt_bias) when true (threshold 20, as the reference).
    public var dtSoftplus: Bool
    /// dt ← clamp(dt, lo, hi) after softplus; (0, ∞) means no clamp, as in the reference.
    public var dtLimit: (lo: Float, hi: Float)

    public init(form: SSDForm = .auto, chunkSize: Int = 256, dtSoftplus: Bool = false,
                dtLimit: (lo: Float, hi: Float) = (0, .infinity)) {
        self.form = form; self.chunkSize = chunkSize; self.dtSoftplus = dtSoftplus; self.dtLimit = dtLimit
    }
}

/// Outputs of one SSD call.
public struct SSDOutput: Sendable {
    /// (b, L, H, P)
    public var y: Tensor
    /// (b, H, P, N): the state after the last token of each row.
    public var finalStates: Tensor
    /// (S, H, P, N): the state at the end of every sequence, rows in order then sequences in order
    /// (S = b when no seqIdx is given; then equal to finalStates).
    public var sequenceStates: Tensor
    /// The form that ran (`auto` resolved).
    public var form: SSDForm
}

extension SSDInput {
    /// A fixed synthetic input of one sequence (the same numbers every call): what the `auto` form times
    /// itself on, and what the SSD benchmarks run.
    public static func synthetic(L: Int, H: Int, P: Int, G: Int, N: Int) -> SSDInput {
        var g = SyntheticNumbers(seed: 42)
        func next() -> Float { g.next() }
        func normalish(_ n: Int) -> [Float] { (0..<n).map { _ in (next() + next() + next() - 1.5) * 2 } }
        return SSDInput(x: Tensor(shape: [1, L, H, P], data: normalish(L * H * P)),
                        dt: Tensor(shape: [1, L, H], data: normalish(L * H)),
                        A: Tensor(shape: [H], data: (0..<H).map { _ in -1 - 15 * next() }),
                        B: Tensor(shape: [1, L, G, N], data: normalish(L * G * N)),
                        C: Tensor(shape: [1, L, G, N], data: normalish(L * G * N)),
                        D: Tensor(shape: [H], data: normalish(H)),
                        dtBias: Tensor(repeating: -4, shape: [H]))
    }

    /// A deterministic stand-in output gradient shaped like `t` (values in about [−3, 3]), for timing backwards.
    public static func syntheticGradient(like t: Tensor) -> Tensor {
        var g = SyntheticNumbers(seed: 7)
        return Tensor(shape: t.shape, data: (0..<t.count).map { _ in g.next() * 6 - 3 })
    }
}

/// The fixed sequence of the synthetic inputs: a 64-bit LCG, its top 24 bits as a float in [0, 1).
struct SyntheticNumbers {
    var seed: UInt64
    mutating func next() -> Float {
        seed = seed &* 6364136223846793005 &+ 1442695040888963407
        return Float(seed >> 40) / Float(1 << 24)
    }
}
