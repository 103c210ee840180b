import CMamba2Kernels
import Mamba2
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The CPU kernels' checks for `mamba2 selftest --device cpu` and the tests: every instruction-set path this
/// host runs (generic … amx), each weight type, against float64 sums; and the reference fixtures (mamba_ssm's
/// logits of the tiny model) through each path. Inputs are fresh for each seed.
public enum CPUKernelSelfTest {
    public typealias Check = CUDASelfTest.Check

    /// Products of shapes that cross every edge (rows past a strip, columns past a panel, k past a block, k
    /// not a multiple of 32 for the float32 paths) for each level and weight type. The error of an element is
    /// |y − Σ x·w (float64, on the weights as held)| over Σ |x·w| + |bias|; its bound: (K + 2)·2⁻²⁴ for float32
    /// sums in any order, plus 2⁻⁹ where the bf16 paths round x to bf16 (relative 2⁻⁹ per term at most; the
    /// products of bf16 values are exact in float32, their sums are the first term).
    public static func gemmChecks(seed: UInt64, levels: [CPUKernelLevel] = CPUKernelLevel.supported) -> [Check] {
        var rng = SplitMix64(seed: seed)
        var checks: [Check] = []
        atEachLevel(levels) { level in
            for type in WeightType.allCases {
                for (m, n, k) in gemmShapes where !type.isBlockQuantized || k % 32 == 0 {
                    let path = PrefillGEMM.level(type, k: k)
                    let bound = Double(k + 2) * 0x1p-24 + (path >= .avx512BF16 ? 0x1p-9 : 0)
                    checks.append(productCheck(name: "gemm \(level.rawValue) \(type.rawValue) \(m)×\(n)×\(k) (path \(path.rawValue))",
                                               m: m, n: n, k: k, type: type, bound: bound, rng: &rng, product: mk_gemm))
                }
            }
        }
        // The BLAS on rows widened from each type up to 512 at a time (mk_gemm_widened: the prefill of a model held in
        // 16 bits or blocks where the own kernels are not the faster), float32 sums: (K + 2)·2⁻²⁴. One shape more
        // than the kernels' list: 4,500 columns, whose 8 parts (2 threads) of 560–576 columns are each widened in
        // two chunks (at most 512 rows a chunk).
        for type in WeightType.allCases {
            for (m, n, k) in gemmShapes + [(3, 4500, 64)] where !type.isBlockQuantized || k % 32 == 0 {
                checks.append(productCheck(name: "gemm widened \(type.rawValue) \(m)×\(n)×\(k) (\(BLAS.core.map { "OpenBLAS \($0)" } ?? BLAS.name))",
                                           m: m, n: n, k: k, type: type, bound: Double(k + 2) * 0x1p-24, rng: &rng, product: mk_gemm_widened))
            }
        }
        return checks
    }

    /// Products of shapes that cross every edge (rows past a strip, columns past a panel, k past a block, k not a
    /// multiple of 32 for the float32 paths).
    static let gemmShapes = [(1, 16, 32), (5, 33, 64), (37, 100, 96), (33, 45, 70), (70, 50, 2048), (100, 300, 512), (129, 77, 1536)]

    /// One product Y (m, n) = X · Wᵀ + bias of fresh normal inputs, W held as `type`, by `product` (mk_gemm's
    /// arguments, 2 threads), against float64 sums on the weights as held; the error of an element is over
    /// Σ |x·w| + |bias|.
    static func productCheck(
        name: String, m: Int, n: Int, k: Int, type: WeightType, bound: Double, rng: inout SplitMix64,
        product: (Int32, Int32, Int32, UnsafePointer<Float>?, Int32, UnsafeRawPointer?, Int32, UnsafePointer<Float>?,
                  UnsafeMutablePointer<Float>?, Int32, Int32) -> Int32
    ) -> Check {
        let x = (0..<(m * k)).map { _ in rng.normal() }
        let w = (0..<(n * k)).map { _ in rng.normal() }
        let bias = (0..<n).map { _ in rng.normal() }
        let (held, exact) = heldWeights(w, rows: n, k: k, type: type)
        var y = [Float](repeating: .nan, count: m * n)
        let rc = held.withUnsafeBytes { product(Int32(m), Int32(n), Int32(k), x, Int32(k), $0, type.code, bias, &y, Int32(n), 2) }
        var worst = 0.0, written = rc == 0
        for i in 0..<m {
            for j in 0..<n {
                var sum = Double(bias[j]), scale = abs(Double(bias[j]))
                for t in 0..<k {
                    let p = Double(x[i * k + t]) * Double(exact[j * k + t])
                    sum += p; scale += abs(p)
                }
                let got = Double(y[i * n + j])
                if got.isNaN { written = false }
                worst = max(worst, abs(got - sum) / scale)
            }
        }
        return Check(name: name + ": error over Σ|x·w|", relativeError: worst, tolerance: bound, allWritten: written)
    }

    /// The SSD recurrence of one head (`mk_ssd_scan`: the transposed form on AVX2 / AVX-512 hosts for L ≥ 8, else
    /// the plain one) at each level, on shapes that cross its edges (one token, L odd and below the transposed
    /// form's threshold, P not a multiple of a vector, blocks of 64 columns and single vectors, N = 1), against a
    /// float64 recurrence from a random state. Scales: S_t = decay_t·S_{t−1} + |dt_t·x_t|·|B_t| (S_0 = |state|,
    /// float64), which bounds |state_t| and the size of what its rounding acts on. Bounds: the state (2L + 2)·2⁻²⁴
    /// of S (at most two roundings per step of every element, each carried on with a decay ≤ 1, and the last);
    /// y_t (2L + N + 4)·2⁻²⁴ of Σ_n S_t[p, n]·|C_t[n]| (the state's error, and N + 2 more for the sum over n).
    public static func scanChecks(seed: UInt64, levels: [CPUKernelLevel] = CPUKernelLevel.supported) -> [Check] {
        var rng = SplitMix64(seed: seed)
        var checks: [Check] = []
        let shapes = [(1, 64, 128), (7, 64, 128), (8, 16, 1), (37, 48, 17), (64, 64, 128), (129, 80, 64), (33, 24, 16)]
        atEachLevel(levels) { level in
            for (L, P, N) in shapes {
                let x = (0..<(L * P)).map { _ in rng.normal() }
                let B = (0..<(L * N)).map { _ in rng.normal() }, C = (0..<(L * N)).map { _ in rng.normal() }
                let dt = (0..<L).map { _ in Float(rng.uniform() * 0.1 + 1e-3) }
                let a = Float(-1 - 15 * rng.uniform())
                let decay = dt.map { Float(exp(Double($0 * a))) }
                let start = (0..<(P * N)).map { _ in rng.normal() }
                var state = start
                var y = [Float](repeating: .nan, count: L * P)
                mk_ssd_scan(Int32(L), Int32(P), Int32(N), &state, decay, dt, x, P, B, N, C, N, &y, P)
                let form = SSDRecurrent.scanPath(tokens: L, headDim: P)
                var s = start.map(Double.init), mag = start.map { abs(Double($0)) }
                var yErr = 0.0, written = !y.contains { $0.isNaN }
                for t in 0..<L {
                    let d = Double(decay[t]), xs = (0..<P).map { Double(dt[t]) * Double(x[t * P + $0]) }
                    for p in 0..<P {
                        var want = 0.0, scale = 0.0
                        for n in 0..<N {
                            let i = p * N + n, b = Double(B[t * N + n]), c = Double(C[t * N + n])
                            s[i] = d * s[i] + xs[p] * b
                            mag[i] = d * mag[i] + abs(xs[p] * b)
                            want += s[i] * c
                            scale += mag[i] * abs(c)
                        }
                        yErr = max(yErr, abs(Double(y[t * P + p]) - want) / (scale * Double(2 * L + N + 4) * 0x1p-24))
                    }
                }
                var sErr = 0.0
                for i in 0..<(P * N) where mag[i] > 0 {
                    sErr = max(sErr, abs(Double(state[i]) - s[i]) / (mag[i] * Double(2 * L + 2) * 0x1p-24))
                }
                if state.contains(where: { $0.isNaN }) { written = false }
                // Each error is over its own bound, so both must stay ≤ 1.
                checks.append(Check(name: "ssd scan \(level.rawValue) L=\(L) P=\(P) N=\(N) (form \(form)): error over its bound (y, state)",
                                    relativeError: max(yErr, sErr), tolerance: 1, allWritten: written))
            }
        }
        return checks
    }

    /// Runs body with the kernels capped at each level in turn, then restores the cap in force before.
    static func atEachLevel(_ levels: [CPUKernelLevel], _ body: (CPUKernelLevel) throws -> Void) rethrows {
        let saved = CPUKernelLevel.limit
        defer { CPUKernelLevel.limit = saved }
        for level in levels {
            CPUKernelLevel.limit = level
            try body(level)
        }
    }

    /// Weights rows × k as a model holds them in `type` (the bytes mk_gemm reads) and their exact values: the held
    /// bytes read back by the GGUF reader, an implementation apart from the kernels' own conversions.
    static func heldWeights(_ w: [Float], rows: Int, k: Int, type: WeightType) -> (held: HeldMatrix, exact: [Float]) {
        let held = HeldMatrix(w, rows: rows, cols: k, type: type)
        let stored: [WeightType: GGUFFile.TensorType] = [.bf16: .bf16, .f16: .f16, .q8_0: .q8_0, .q4_0: .q4_0]
        guard let t = stored[type] else { return (held, w) }
        return (held, held.withUnsafeBytes { GGUFFile.decode(t, $0, count: w.count) })
    }

    /// The tiny model's prefill logits (2 × 37 tokens) against mamba_ssm's through each level's kernels, the
    /// BLAS switched off so that the float32 products take them too: float32 weights against `logits`, bf16
    /// weights against `logits_bf16_weights` (mamba_ssm's float32 run on the bf16-rounded weights), both 1e-4 (the
    /// GPU's float32 bound) except where the bf16 paths round the activations to bf16: 1e-2, the GPU's bf16 bound.
    public static func fixtureChecks(fixtures: String, levels: [CPUKernelLevel] = CPUKernelLevel.supported) throws -> [Check] {
        let golden = try SafeTensorsFile(path: fixtures + "/tiny-golden.safetensors")
        let flat = golden["input_ids"]!.ints()
        let ids = [Array(flat[0..<37]), Array(flat[37..<74])]
        let savedBuiltin = BLAS.useBuiltin
        defer { BLAS.useBuiltin = savedBuiltin }
        var checks: [Check] = []
        try atEachLevel(levels) { level in
            for builtin in [true, false] where builtin || level == CPUKernelLevel.host {
                BLAS.useBuiltin = builtin
                for (dir, type, key) in [("tiny-hf", WeightType.f32, "logits"), ("tiny-hf-bf16", .bf16, "logits_bf16_weights")] {
                    let model = try Mamba2Model.load(directory: fixtures + "/" + dir, weightType: type)
                    // 1e-2 only where the products round the activations to bf16; float32 products on bf16
                    // weights compute what mamba_ssm's float32 run on those weights did.
                    let tol = PrefillGEMM.level(type, k: model.config.dModel) >= .avx512BF16 ? 1e-2 : 1e-4
                    var states = ids.map { _ in model.newState() }
                    let got = try model.prefill(ids, states: &states, logits: .all).flatMap(\.data)
                    let want = try golden.tensor(key).data
                    let err = Tensor(shape: [got.count], data: got).relativeError(to: Tensor(shape: [want.count], data: want))
                    let path = PrefillGEMM.path(type, k: model.config.dModel)
                    checks.append(Check(name: "model \(dir) \(type.rawValue), kernels \(level.rawValue), prefill products \(path): logits of 2 × 37 tokens vs mamba_ssm's",
                                        relativeError: err, tolerance: tol, allWritten: !got.contains { $0.isNaN }))
                }
            }
        }
        return checks
    }
}
