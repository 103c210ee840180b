/// Weights of one Mamba-2 block (pre-norm + mixer), float32, row-major as PyTorch stores them.
public struct Mamba2LayerWeights: Sendable {
    public var norm: [Float]          // (d_model)                 block RMSNorm
    public var inProj: [Float]        // (in_proj_size, d_model)   [z0 | x0 | z | xBC | dt] ← hidden
    public var inProjBias: [Float]?   // (in_proj_size)
    public var convWeight: [Float]    // (conv_dim, d_conv)        depthwise, one filter per channel
    public var convBias: [Float]?     // (conv_dim)
    public var dtBias: [Float]        // (H)
    public var aLog: [Float]          // (H)                       A = −exp(A_log)
    public var D: [Float]             // (H) or (d_ssm)
    public var gateNorm: [Float]      // (d_ssm)                   gated RMSNorm weight
    public var outProj: [Float]       // (d_model, d_inner)
    public var outProjBias: [Float]?  // (d_model)
}

/// All weights of a Mamba-2 language model, float32.
public struct Mamba2Weights: Sendable {
    public var embedding: [Float]     // (padded_vocab, d_model)
    public var layers: [Mamba2LayerWeights]
    public var normF: [Float]         // (d_model)
    public var lmHead: [Float]?       // (padded_vocab, d_model); nil when tied to the embedding
    /// dtype of the bulk of the stored weights ("F32", "BF16", "F16").
    public var storedDType: String

    /// Every parameter with its shape, in the state-spaces naming, in model order.
    public static func expectedShapes(_ c: Mamba2Config) -> [(String, [Int])] {
        var out: [(String, [Int])] = [("backbone.embedding.weight", [c.paddedVocabSize, c.dModel])]
        for i in 0..<c.nLayer {
            let p = "backbone.layers.\(i)."
            out.append((p + "norm.weight", [c.dModel]))
            out.append((p + "mixer.in_proj.weight", [c.inProjSize, c.dModel]))
            if c.projBias { out.append((p + "mixer.in_proj.bias", [c.inProjSize])) }
            out.append((p + "mixer.conv1d.weight", [c.convDim, 1, c.dConv]))
            if c.convBias { out.append((p + "mixer.conv1d.bias", [c.convDim])) }
            out.append((p + "mixer.dt_bias", [c.nHeads]))
            out.append((p + "mixer.A_log", [c.nHeads]))
            out.append((p + "mixer.D", [c.dHasHeadDim ? c.dSSM : c.nHeads]))
            out.append((p + "mixer.norm.weight", [c.dSSM]))
            out.append((p + "mixer.out_proj.weight", [c.dModel, c.dInner]))
            if c.projBias { out.append((p + "mixer.out_proj.bias", [c.dModel])) }
        }
        out.append(("backbone.norm_f.weight", [c.dModel]))
        if !c.tieEmbeddings { out.append(("lm_head.weight", [c.paddedVocabSize, c.dModel])) }
        return out
    }

    /// Parameter count (a tied head counted once).
    public static func parameterCount(_ c: Mamba2Config) -> Int {
        expectedShapes(c).reduce(0) { $0 + $1.1.reduce(1, *) }
    }

    /// The weights under their state-spaces names (for saving and for training).
    public func namedTensors(_ c: Mamba2Config) -> [(String, Tensor)] {
        var values: [String: [Float]] = ["backbone.embedding.weight": embedding, "backbone.norm_f.weight": normF]
        if let lmHead { values["lm_head.weight"] = lmHead }
        for (i, l) in layers.enumerated() {
            let p = "backbone.layers.\(i)."
            values[p + "norm.weight"] = l.norm
            values[p + "mixer.in_proj.weight"] = l.inProj
            values[p + "mixer.in_proj.bias"] = l.inProjBias
            values[p + "mixer.conv1d.weight"] = l.convWeight
            values[p + "mixer.conv1d.bias"] = l.convBias
            values[p + "mixer.dt_bias"] = l.dtBias
            values[p + "mixer.A_log"] = l.aLog
            values[p + "mixer.D"] = l.D
            values[p + "mixer.norm.weight"] = l.gateNorm
            values[p + "mixer.out_proj.weight"] = l.outProj
            values[p + "mixer.out_proj.bias"] = l.outProjBias
        }
        return Mamba2Weights.expectedShapes(c).map { name, shape in (name, Tensor(shape: shape, data: values[name]!)) }
    }

    /// Builds from named float arrays (state-spaces names; every expected name present with its size, except
    /// those in `heldApart`, which are left empty: matrices a model holds in another type).
    public init(_ c: Mamba2Config, values v: [String: [Float]], storedDType: String) throws {
        try self.init(c, values: v, storedDType: storedDType, heldApart: [])
    }

    package init(_ c: Mamba2Config, values given: [String: [Float]], storedDType: String, heldApart: Set<String>) throws {
        var v = given
        for (name, shape) in Mamba2Weights.expectedShapes(c) {
            if heldApart.contains(name) { v[name] = []; continue }
            guard let a = v[name] else { throw Mamba2Error.invalidArgument(name, reason: "missing from the weights") }
            guard a.count == shape.reduce(1, *) else {
                throw Mamba2Error.invalidArgument(name, reason: "\(a.count) values, expected \(shape.reduce(1, *)) for shape \(shape)")
            }
        }
        embedding = v["backbone.embedding.weight"]!
        normF = v["backbone.norm_f.weight"]!
        lmHead = c.tieEmbeddings ? nil : v["lm_head.weight"]!
        layers = (0..<c.nLayer).map { i in
            let p = "backbone.layers.\(i)."
            return Mamba2LayerWeights(
                norm: v[p + "norm.weight"]!, inProj: v[p + "mixer.in_proj.weight"]!, inProjBias: v[p + "mixer.in_proj.bias"],
                convWeight: v[p + "mixer.conv1d.weight"]!, convBias: v[p + "mixer.conv1d.bias"],
                dtBias: v[p + "mixer.dt_bias"]!, aLog: v[p + "mixer.A_log"]!, D: v[p + "mixer.D"]!,
                gateNorm: v[p + "mixer.norm.weight"]!, outProj: v[p + "mixer.out_proj.weight"]!,
                outProjBias: v[p + "mixer.out_proj.bias"])
        }
        self.storedDType = storedDType
    }

    /// Float32 values held in all the arrays.
    package var floatCount: Int {
        embedding.count + normF.count + (lmHead?.count ?? 0) + layers.reduce(0) { n, l in
            n + l.norm.count + l.inProj.count + (l.inProjBias?.count ?? 0) + l.convWeight.count + (l.convBias?.count ?? 0)
                + l.dtBias.count + l.aLog.count + l.D.count + l.gateNorm.count + l.outProj.count + (l.outProjBias?.count ?? 0)
        }
    }

    /// Empties the matrices a model holds in another type (`Mamba2Model.heldMatrixShapes`): every projection and
    /// the head (the embedding when tied).
    package mutating func releaseHeldMatrices(_ c: Mamba2Config) {
        for i in layers.indices { layers[i].inProj = []; layers[i].outProj = [] }
        if c.tieEmbeddings { embedding = [] } else { lmHead = [] }
    }

    /// `random`'s weights with every per-channel parameter random too (both norms' weights, D, dt_bias, A, every
    /// bias; `c.projBias` sets whether the projections have biases), and the projections scaled by `inScale` and
    /// `outScale`: checks of a split or a kernel where a value taken from the wrong channel must show (the
    /// defaults' ones and zeros hide it), the SSD and the norms working on activations of order one.
    public static func randomPerChannel(_ c: Mamba2Config, seed: UInt64, inScale: Float, outScale: Float) -> Mamba2Weights {
        var w = random(c, seed: seed)
        var rng = SplitMix64(seed: seed ^ 0x7E45_0A11)
        func normal(_ n: Int, mean: Float, sd: Float) -> [Float] { (0..<n).map { _ in mean + sd * rng.normal() } }
        for i in w.layers.indices {
            w.layers[i].norm = normal(c.dModel, mean: 1, sd: 0.3)
            w.layers[i].gateNorm = normal(c.dSSM, mean: 1, sd: 0.3)
            w.layers[i].D = normal(w.layers[i].D.count, mean: 1, sd: 0.5)
            w.layers[i].dtBias = w.layers[i].dtBias.map { $0 + 0.5 * rng.normal() }
            w.layers[i].aLog = normal(c.nHeads, mean: 1, sd: 0.5)
            if c.projBias {
                w.layers[i].inProjBias = normal(c.inProjSize, mean: 0, sd: 0.1)
                w.layers[i].outProjBias = normal(c.dModel, mean: 0, sd: 0.1)
            }
            if c.convBias { w.layers[i].convBias = normal(c.convDim, mean: 0, sd: 0.2) }
            w.layers[i].inProj = w.layers[i].inProj.map { $0 * inScale }
            w.layers[i].outProj = w.layers[i].outProj.map { $0 * outScale }
        }
        return w
    }

    /// Random weights initialized as `mamba_ssm` does (for benchmarks of a named shape, and training from
    /// scratch): dt_bias = softplus⁻¹(log-uniform dt in [1e-3, 0.1]), A_log = log U(1, 16), D = 1,
    /// norms 1, projections and embedding normal with std 0.02.
    public static func random(_ c: Mamba2Config, seed: UInt64) -> Mamba2Weights {
        // The values were made from expectedShapes, so they always fit.
        try! Mamba2Weights(c, values: randomValues(c, seed: seed, matrices: true), storedDType: "F32")
    }

    /// The names of the large matrices (embedding, projections, head), which `randomValues` can leave out.
    static func isMatrix(_ name: String) -> Bool {
        name.hasSuffix("embedding.weight") || name.hasSuffix("proj.weight") || name == "lm_head.weight"
    }

    /// `random`'s values by name; without `matrices` the large matrices (normal, std 0.02) are left out,
    /// for the GPU to draw on the device.
    package static func randomValues(_ c: Mamba2Config, seed: UInt64, matrices: Bool) -> [String: [Float]] {
        var rng = SplitMix64(seed: seed)
        var v: [String: [Float]] = [:]
        for (name, shape) in expectedShapes(c) {
            let n = shape.reduce(1, *)
            if name.hasSuffix("dt_bias") {
                v[name] = (0..<n).map { _ in
                    let dt = Float(exp(Double(rng.uniform()) * (log(0.1) - log(1e-3)) + log(1e-3)))
                    return dt + log(-expm1(-dt))  // softplus⁻¹
                }
            } else if name.hasSuffix("A_log") {
                v[name] = (0..<n).map { _ in log(1 + 15 * rng.uniform()) }
            } else if name.hasSuffix(".D") || name.hasSuffix("norm.weight") || name.hasSuffix("norm_f.weight") {
                v[name] = [Float](repeating: 1, count: n)
            } else if name.hasSuffix("bias") {
                v[name] = [Float](repeating: 0, count: n)
            } else if name.hasSuffix("conv1d.weight") {
                let bound = 1 / Float(c.dConv).squareRoot()
                v[name] = (0..<n).map { _ in (2 * rng.uniform() - 1) * bound }
            } else if matrices {
                precondition(isMatrix(name), "\(name) would be drawn as a matrix")
                v[name] = (0..<n).map { _ in 0.02 * rng.normal() }
            }
        }
        return v
    }
}

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A small seeded generator for reproducible weights and sampling (SplitMix64).
public struct SplitMix64: RandomNumberGenerator, Sendable {
    public var state: UInt64
    public init(seed: UInt64) { state = seed }
    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
    /// Uniform in [0, 1).
    public mutating func uniform() -> Float { Float(next() >> 40) / Float(1 << 24) }
    /// Standard normal (Box–Muller).
    public mutating func normal() -> Float {
        let u1 = max(Double(next() >> 11) / Double(1 << 53), 1e-300)
        let u2 = Double(next() >> 11) / Double(1 << 53)
        return Float((-2 * log(u1)).squareRoot() * cos(2 * Double.pi * u2))
    }
}
