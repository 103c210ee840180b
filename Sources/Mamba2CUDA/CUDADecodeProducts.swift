import Mamba2
import CMamba2CUDA

/// Decode's products on cuBLAS (2–64 rows of 16-bit weights where neither m_gemv, the streaming products nor the
/// persistent kernel serve), each shape's algorithm chosen by timing. cublasGemmEx picks by its own heuristic,
/// which at decode's shapes can take split-K with a separate reduction kernel (2.7b's out_proj at 16 rows: a
/// 10.6 µs product and a 3.3 µs reduction, cold, under ncu) or tiles that read the weights below the card's
/// bandwidth. So, once per row count, before its decode graph is captured: cuBLASLt's heuristic candidates for
/// each product (in_proj, out_proj, head) and cublasGemmEx are timed on this model's own weights, every layer's
/// in turn so that they come from memory as in a decode step, and the fastest runs that product from then on.

/// cuBLASLt's candidate algorithms for one product shape (`mkc_lt_plan`).
final class CUDALtPlan {
    let pointer: OpaquePointer
    let count: Int

    /// Nil where cuBLASLt is not loaded or has no candidate for the shape (cublasGemmEx then stays).
    init?(device: CUDADevice, rows: Int, out: Int, in: Int, precision: WeightType, maxAlgorithms: Int) {
        var p: OpaquePointer?
        guard let m = Int32(exactly: out), let n = Int32(exactly: rows), let k = Int32(exactly: `in`),
              mkc_lt_plan_create(device.handle, 1, 0, m, n, k, k, k, m, precision.code, 0, Int32(maxAlgorithms), &p) == 0, let p else { return nil }
        pointer = p
        count = Int(mkc_lt_plan_count(p))
    }

    deinit { mkc_lt_plan_destroy(pointer) }
}

extension CUDAModel {
    /// One decode product's shape: y (rows, out) (+)= x (rows, in) · Wᵀ.
    package struct DecodeProductShape: Hashable, Sendable {
        package let rows, out, `in`: Int
        package let accumulate: Bool
    }

    /// How a decode product runs: cublasGemmEx, or candidate `index` of a cuBLASLt plan; with the times measured
    /// (µs a product: cublasGemmEx's and the chosen one's) for `bench --profile`.
    enum DecodeProductChoice {
        case gemmEx(microseconds: Double)
        case lt(CUDALtPlan, index: Int, microseconds: Double, gemmEx: Double)
    }

    /// Rows up to which decode's cuBLAS products are tuned (beyond, cublasGemmEx): each new row count costs its
    /// timing once (`decodeTuneSeconds`).
    package static let decodeTuneRows = 64

    /// cuBLASLt candidates timed per product shape.
    static let decodeTuneCandidates = 8

    /// y (rows, out) (+)= x · Wᵀ for decode, on the algorithm chosen for its shape (cublasGemmEx until tuned).
    func decodeGEMM(rows n: Int, out: Int, in: Int, x: CUDABuffer, w: CUDABuffer, y: CUDABuffer, accumulate: Bool) throws {
        let shape = DecodeProductShape(rows: n, out: out, in: `in`, accumulate: accumulate)
        guard case .lt(let plan, let index, _, _)? = decodeProducts[shape] else {
            return try gemm(rows: n, out: out, in: `in`, x: x, w: w, y: y, accumulate: accumulate)
        }
        try ltProduct(plan, index, x: x, w: w, y: y, accumulate: accumulate)
    }

    private func ltProduct(_ plan: CUDALtPlan, _ index: Int, x: CUDABuffer, w: CUDABuffer, y: CUDABuffer, accumulate: Bool) throws {
        let r = mkc_lt_matmul(device.handle, plan.pointer, Int32(index), 1, UnsafeRawPointer(bitPattern: UInt(w.pointer)),
                              UnsafeRawPointer(bitPattern: UInt(x.pointer)), accumulate ? 1 : 0, UnsafeMutableRawPointer(bitPattern: UInt(y.pointer)))
        guard r == 0 else { throw Mamba2Error.invalidArgument("device", reason: "cuBLASLt product (algorithm \(index)) failed with status \(r)") }
    }

    /// The cuBLAS products decode of n rows runs, with the operands each uses and every weight it is run with.
    func decodeCuBLASProducts(rows n: Int) -> [(name: String, shape: DecodeProductShape, x: CUDABuffer, y: CUDABuffer, weights: [CUDABuffer])] {
        let c = config
        let handOver = gateHandOver(rows: n)
        return [
            ("in_proj", DecodeProductShape(rows: n, out: c.inProjSize, in: c.dModel, accumulate: false), normed1, zx1, layers.map(\.inProj)),
            ("out_proj", DecodeProductShape(rows: n, out: c.dModel, in: c.dSSM, accumulate: !handOver), handOver ? xhSSM : normed1,
             handOver ? outProduct1 : residual1, layers.map(\.outProj)),
            ("head", DecodeProductShape(rows: n, out: c.paddedVocabSize, in: c.dModel, accumulate: false), normed1, logits1, [lmHead]),
        ]
    }

    /// Whether decode of n rows runs its products on cuBLAS with tuning: 16-bit weights, one GPU, rows past m_gemv's
    /// and within `decodeTuneRows`, not on the streaming or persistent path.
    package func tunesDecodeProducts(rows n: Int) -> Bool {
        decodeProductTuning && tensorParallel == nil && precision != .f32 && n > plainGEMVRows && n <= Self.decodeTuneRows
            && !streams(rows: n) && !persistent(rows: n)
    }

    /// Times each product decode of n rows runs on cuBLAS, cublasGemmEx against cuBLASLt's candidates, and keeps the
    /// fastest (once per shape). Runs the products on the decode buffers, whose contents no step carries over
    /// (the step starts from the embedding); call it outside a graph capture.
    package func tuneDecodeProducts(rows n: Int) throws {
        guard tunesDecodeProducts(rows: n) else { return }
        for p in decodeCuBLASProducts(rows: n) where decodeProducts[p.shape] == nil {
            // Up to 8 layers' weights in turn, 8 products a launch, as a decode step meets them (from memory: 8 of the
            // smallest released model's in_proj are 41 MB, 2.7b's 430 MB, against the H200's 50 MB of L2).
            let weights = Array(p.weights.prefix(8))
            let reps = (8 + weights.count - 1) / weights.count
            func microseconds(_ run: (CUDABuffer) throws -> Void) throws -> Double {
                let g = try CUDAGraph(on: device) { for _ in 0..<reps { for w in weights { try run(w) } } }
                try g.launch(); try device.synchronize()
                var best = Double.infinity
                for _ in 0..<3 {
                    let t0 = monotonicSeconds()
                    try g.launch(); try device.synchronize()
                    best = min(best, monotonicSeconds() - t0)
                }
                return best / Double(reps * weights.count) * 1e6
            }
            let s = p.shape
            let gemmEx = try microseconds { try gemm(rows: s.rows, out: s.out, in: s.in, x: p.x, w: $0, y: p.y, accumulate: s.accumulate) }
            var choice = DecodeProductChoice.gemmEx(microseconds: gemmEx)
            var best = gemmEx
            if let plan = CUDALtPlan(device: device, rows: s.rows, out: s.out, in: s.in, precision: precision, maxAlgorithms: Self.decodeTuneCandidates) {
                for i in 0..<plan.count where decodeProductCandidate == nil || decodeProductCandidate == i {
                    // A candidate that fails (cuBLASLt may offer one this shape's sizes or alignment refuse) is skipped.
                    guard let t = try? microseconds({ try ltProduct(plan, i, x: p.x, w: $0, y: p.y, accumulate: s.accumulate) }) else { continue }
                    if t < best || decodeProductCandidate != nil { best = t; choice = .lt(plan, index: i, microseconds: t, gemmEx: gemmEx) }
                }
            }
            decodeProducts[p.shape] = choice
        }
    }

    /// What tuning chose for decode of n rows, a line per product, for `bench --profile`: (name, µs chosen, µs of
    /// cublasGemmEx, the choice, the weight bytes a product reads).
    package func decodeProductChoices(rows n: Int) -> [(name: String, microseconds: Double, gemmEx: Double, choice: String, bytes: Int)] {
        decodeCuBLASProducts(rows: n).compactMap { p in
            let bytes = p.shape.out * p.shape.in * (precision == .f32 ? 4 : 2)
            switch decodeProducts[p.shape] {
            case .gemmEx(let t)?: return (p.name, t, t, "cublasGemmEx", bytes)
            case .lt(_, let i, let t, let g)?: return (p.name, t, g, "cuBLASLt candidate \(i)", bytes)
            case nil: return nil
            }
        }
    }
}
