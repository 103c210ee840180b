import Mamba2
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// AdamW as the reference trains Mamba-2: decoupled weight decay, except on A_log, D and dt_bias (the
/// mixer's `_no_weight_decay` parameters) and on norms and biases; gradient clipping by global norm;
/// a linear warmup then cosine decay of the learning rate.
public struct AdamW: Sendable {
    public struct Options: Sendable {
        public var learningRate: Float = 1e-3
        public var minLearningRate: Float = 1e-4
        public var warmupSteps: Int = 100
        public var totalSteps: Int = 10_000
        public var beta1: Float = 0.9
        public var beta2: Float = 0.95
        public var epsilon: Float = 1e-8
        public var weightDecay: Float = 0.1
        /// Clip the global gradient norm to this (0: no clipping).
        public var clipNorm: Float = 1.0
        public init() {}
    }

    public let options: Options
    public private(set) var step = 0
    var m: [String: [Float]] = [:]
    var v: [String: [Float]] = [:]

    public init(options: Options = Options()) { self.options = options }

    /// Restores a saved optimizer: its step count and its moments ("m.NAME", "v.NAME" as `stateTensors`).
    public init(options: Options, step: Int, state: [String: [Float]]) {
        self.options = options
        self.step = step
        (m, v) = AdamW.splitMoments(state)
    }

    /// The moments by parameter, for saving ("m.NAME" and "v.NAME").
    public var stateTensors: [(String, Tensor)] { AdamW.momentTensors(m: m, v: v) }

    /// Moments by parameter name as a checkpoint names them ("m.NAME", "v.NAME"): the one naming of every
    /// training backend's optimizer state.
    public static func momentTensors(m: [String: [Float]], v: [String: [Float]]) -> [(String, Tensor)] {
        m.map { ("m." + $0.key, Tensor(shape: [$0.value.count], data: $0.value)) }
            + v.map { ("v." + $0.key, Tensor(shape: [$0.value.count], data: $0.value)) }
    }

    /// A checkpoint's optimizer tensors back into the moments by parameter name.
    public static func splitMoments(_ state: [String: [Float]]) -> (m: [String: [Float]], v: [String: [Float]]) {
        var m: [String: [Float]] = [:], v: [String: [Float]] = [:]
        for (key, value) in state {
            if key.hasPrefix("m.") { m[String(key.dropFirst(2))] = value }
            if key.hasPrefix("v.") { v[String(key.dropFirst(2))] = value }
        }
        return (m, v)
    }

    /// No weight decay for the SSM's own parameters, norms and biases (as mamba_ssm's optimizer groups).
    public static func decays(_ name: String) -> Bool {
        !(name.hasSuffix("A_log") || name.hasSuffix(".D") || name.hasSuffix("dt_bias") || name.hasSuffix("bias")
          || name.hasSuffix("norm.weight") || name.hasSuffix("norm_f.weight"))
    }

    /// Learning rate at a step (1-based): linear warmup, then cosine down to the minimum.
    public func learningRate(at step: Int) -> Float {
        let o = options
        if step <= o.warmupSteps { return o.learningRate * Float(step) / Float(max(o.warmupSteps, 1)) }
        let progress = min(1, Float(step - o.warmupSteps) / Float(max(o.totalSteps - o.warmupSteps, 1)))
        return o.minLearningRate + 0.5 * (o.learningRate - o.minLearningRate) * (1 + cos(Float.pi * progress))
    }

    /// One update of `parameters` by `gradients` (both by name). Returns the gradient's global norm
    /// before clipping.
    @discardableResult
    public mutating func update(_ parameters: inout [String: [Float]], gradients: [String: [Float]]) -> Float {
        step += 1
        let o = options
        var sq = 0.0
        for g in gradients.values { for x in g { sq += Double(x) * Double(x) } }
        let norm = Float(sq.squareRoot())
        let clip: Float = o.clipNorm > 0 && norm > o.clipNorm ? o.clipNorm / norm : 1
        let lr = learningRate(at: step)
        let bc1 = 1 - pow(o.beta1, Float(step)), bc2 = 1 - pow(o.beta2, Float(step))
        for (name, g) in gradients {
            guard var p = parameters[name] else { continue }
            var mm = m[name] ?? [Float](repeating: 0, count: g.count)
            var vv = v[name] ?? [Float](repeating: 0, count: g.count)
            let decay = AdamW.decays(name) ? o.weightDecay : 0
            for i in 0..<g.count {
                let gi = g[i] * clip
                mm[i] = o.beta1 * mm[i] + (1 - o.beta1) * gi
                vv[i] = o.beta2 * vv[i] + (1 - o.beta2) * gi * gi
                p[i] -= lr * (decay * p[i] + (mm[i] / bc1) / ((vv[i] / bc2).squareRoot() + o.epsilon))
            }
            parameters[name] = p
            m[name] = mm
            v[name] = vv
        }
        return norm
    }
}
