@testable import Mamba2
import Foundation
import Mamba2TestSupport
import Testing

@Suite("Random weights")
struct RandomWeightsTests {
    // mamba_ssm's initialization, drawn fresh each run: dt = softplus(dt_bias) in [1e-3, 0.1], A = exp(A_log) in
    // [1, 16], D and norms 1, conv uniform within ±1/√d_conv, matrices normal with std 0.02. Without matrices
    // (what the GPU draws on the device) every other parameter is there and only the matrices are missing.
    @Test("random weights follow mamba_ssm's init; the matrix-free set leaves out exactly the matrices")
    func randomWeights() throws {
        let c = Mamba2Config(dModel: 64, nLayer: 2, vocabSize: 1000, dState: 16, headDim: 16)
        let seed = UInt64.random(in: 0...UInt64.max)
        let all = Mamba2Weights.randomValues(c, seed: seed, matrices: true)
        let small = Mamba2Weights.randomValues(c, seed: seed, matrices: false)
        for (name, shape) in Mamba2Weights.expectedShapes(c) {
            #expect(all[name]?.count == shape.reduce(1, *), "\(name)")
            #expect((small[name] == nil) == Mamba2Weights.isMatrix(name), "\(name)")
        }
        for (name, v) in all {
            if name.hasSuffix("dt_bias") {
                let dt = v.map { log1p(exp(Double($0))) }
                #expect(dt.allSatisfy { $0 >= 1e-3 * 0.999 && $0 <= 0.1 * 1.001 }, "\(name) seed \(seed)")
            } else if name.hasSuffix("A_log") {
                #expect(v.allSatisfy { exp($0) >= 1 && exp($0) <= 16 }, "\(name) seed \(seed)")
            } else if name.hasSuffix(".D") || name.hasSuffix("norm.weight") {
                #expect(v.allSatisfy { $0 == 1 }, "\(name)")
            } else if name.hasSuffix("conv1d.weight") {
                #expect(v.allSatisfy { abs($0) <= 0.5 }, "\(name) seed \(seed)")
            } else if Mamba2Weights.isMatrix(name), v.count >= 50_000 {
                // Sample std of n ≥ 50,000 normals: its relative sd is 1/√(2n) ≤ 0.32%, so 3% is ~10 sd.
                let mean = v.reduce(0, +) / Float(v.count)
                let sd = (v.reduce(0) { $0 + ($1 - mean) * ($1 - mean) } / Float(v.count)).squareRoot()
                #expect(abs(sd - 0.02) < 0.0006, "\(name): sd \(sd), seed \(seed)")
            }
        }
        // The same seed gives the same weights.
        #expect(Mamba2Weights.random(c, seed: seed).embedding == all["backbone.embedding.weight"]!)
    }
}
