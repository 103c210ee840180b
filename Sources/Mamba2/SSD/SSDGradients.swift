/// Gradients of an SSD call with respect to every input: what the CPU's backward (`SSD.backward`,
/// `SSD.backwardReference` in the training target) and the GPU's return.
public struct SSDGradients: Sendable {
    public var x: Tensor              // (b, L, H, P)
    public var dt: Tensor             // (b, L, H): with respect to the raw dt, before bias/softplus/clamp
    public var dtBias: Tensor         // (H)
    public var A: Tensor              // (H)
    public var B: Tensor              // (b, L, G, N)
    public var C: Tensor              // (b, L, G, N)
    public var D: Tensor?             // like D
    public var z: Tensor?             // (b, L, H, P)
    public var initialStates: Tensor? // (b, H, P, N)

    public init(x: Tensor, dt: Tensor, dtBias: Tensor, A: Tensor, B: Tensor, C: Tensor, D: Tensor?, z: Tensor?, initialStates: Tensor?) {
        self.x = x; self.dt = dt; self.dtBias = dtBias; self.A = A; self.B = B; self.C = C; self.D = D; self.z = z
        self.initialStates = initialStates
    }

    /// Every gradient by the name of its input (`x`, `dt`, `dt_bias`, `A`, `B`, `C`, `D`, `z`, `initial_states`),
    /// nil where that input was absent.
    public var named: [(name: String, tensor: Tensor?)] {
        [("x", x), ("dt", dt), ("dt_bias", dtBias), ("A", A), ("B", B), ("C", C), ("D", D), ("z", z), ("initial_states", initialStates)]
    }
}
