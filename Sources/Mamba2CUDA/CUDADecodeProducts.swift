import Mamba2
import CMamba2CUDA

/// Decode's products on cuBLAS (2–64 rows of 16-bit weights where neither m_gemv, the streaming products nor the
/// persistent kernel serve), each shape's algorithm chosen by timing. cublasGemmEx picks by its own heuristic,
/// which at decode's shapes can take split-K with a separate reduction kernel (2.7b's out_proj at 16 rows: a
/// 10.6 µs product and a 3.3 µs reduction, cold, under ncu) or tiles that read the weights below the card's
/// bandwidth. So, once per row count, before its decode graph is captured: cuBLASLt's heuristic candidates for
/// each product (in_proj, out_proj, head) and cublasGemmEx are timed on this model's own weights, every layer's
/// in turn so that they come from memory as in a decode step, and the fastest runs that product from then on.

/// cuBLASLt's candidate algorithms for one product shape (`mkc_lt_plan`); with `slices` > 1, the product cut along its
/// input into that many equal slices, run as one batched product whose partial outputs lie `rows · out` values apart
/// (their consumer adds them: `DecodeProductShape.sliceable`).
final class CUDALtPlan {
    let pointer: OpaquePointer
    let count: Int

    /// Nil where cuBLASLt is not loaded or has no candidate for the shape (cublasGemmEx then stays).
    init?(device: CUDADevice, rows: Int, out: Int, in: Int, slices: Int = 1, precision: WeightType, maxAlgorithms: Int) {
        var p: OpaquePointer?
        guard slices >= 1, `in` % slices == 0 else { return nil }
        let k = `in` / slices  // a slice's inputs, and the distance between slices in A's and B's rows
        let partial = rows.multipliedReportingOverflow(by: out)  // the distance between partial products
        guard !partial.overflow, let m = Int32(exactly: out), let n = Int32(exactly: rows), let kk = Int32(exactly: k),
              let lda = Int32(exactly: `in`),
              mkc_lt_plan_create(device.handle, 1, 0, m, n, kk, lda, lda, m, precision.code, 0, Int32(slices), Int64(k), Int64(k),
                                 Int64(partial.partialValue), Int32(maxAlgorithms), &p) == 0, let p else { return nil }
        pointer = p
        count = Int(mkc_lt_plan_count(p))
    }

    deinit { mkc_lt_plan_destroy(pointer) }
}

extension CUDAModel {
    /// One decode product's shape: y (rows, out) (+)= x (rows, in) · Wᵀ. `sliceable`: its consumer adds up
    /// partial products (`DecodeProductChoice.slices` of them, `rows · out` values apart), so the product may be
    /// cut along its input.
    package struct DecodeProductShape: Hashable, Sendable {
        package let rows, out, `in`: Int
        package let accumulate: Bool
        package let sliceable: Bool
    }

    /// How a decode product runs: cublasGemmEx (`lt` nil), or candidate `index` of a cuBLASLt plan, over `slices`
    /// slices of its input; with the times measured (µs a product) for `bench --profile`: the chosen one's,
    /// cublasGemmEx's, and the fastest at each slice count timed.
    package struct DecodeProductChoice {
        let lt: (plan: CUDALtPlan, index: Int)?
        package let slices: Int
        package let microseconds: Double
        package let gemmEx: Double
        package let bestBySlices: [Int: Double]
        /// The cuBLASLt candidate taken (nil: cublasGemmEx).
        package var candidate: Int? { lt?.index }
        /// The choice in words, for `bench --profile`.
        package var words: String {
            lt.map { "cuBLASLt candidate \($0.index)" + (slices > 1 ? ", \(slices) slices of k" : "") } ?? "cublasGemmEx"
        }
    }

    /// Rows up to which decode's cuBLAS products are tuned (beyond, cublasGemmEx): each new row count costs its
    /// timing once (tens of milliseconds on the H200: `bench --profile` times it).
    package static let decodeTuneRows = 64

    /// cuBLASLt candidates timed per product shape and slice count.
    static let decodeTuneCandidates = 8

    /// Slice counts timed for a sliceable product (besides 1), where its input divides into slices of whole 16-byte
    /// groups. Why: cuBLAS runs 2.7b's out_proj (2,560 × 5,120) at 8–16 rows as split-K with a reduction kernel of
    /// its own at 2.0–2.1 TB/s; the same product as 4 batched slices of 1,280 took 10.0 µs against 13.1 (PyTorch's
    /// cuBLAS on the H200, CUDA graphs, 8 layers' weights in turn; 1.3b's 2,048 × 4,096: 7.6 against 10.9), and the
    /// next norm, which reads the product anyway, adds the slices instead of the reduction kernel. Not 8: the norm (a
    /// block a row) reads the slices in turn, and with 8 allowed tuning took them for 2.7b (9.45 µs against 9.58 in 2)
    /// while the whole step lost (3,594 µs against 3,553 unsliced, same run); with 2 and 4, 3,495–3,511 against 3,556.
    static let decodeSliceCounts = [2, 4]

    /// The most slices a sliceable product's output buffer has room for (`outProduct1`).
    static var decodeMaxSlices: Int { decodeSliceCounts.max() ?? 1 }

    /// y (rows, out) (+)= x · Wᵀ for decode, on the algorithm chosen for its shape (cublasGemmEx until tuned). A
    /// sliceable product may leave `decodeSlices` partial products in y, `rows · out` values apart, for its consumer.
    func decodeGEMM(rows n: Int, out: Int, in: Int, x: CUDABuffer, w: CUDABuffer, y: CUDABuffer, accumulate: Bool,
                    sliceable: Bool = false) throws {
        let shape = DecodeProductShape(rows: n, out: out, in: `in`, accumulate: accumulate, sliceable: sliceable)
        guard let lt = decodeProducts[shape]?.lt else {
            return try gemm(rows: n, out: out, in: `in`, x: x, w: w, y: y, accumulate: accumulate)
        }
        try ltProduct(lt.plan, lt.index, x: x, w: w, y: y, accumulate: accumulate)
    }

    /// out_proj's shape at n rows when its product is handed over to the next norm (`gateHandOver`), which adds it
    /// into the residual and so may take it in slices.
    func handedOverOutProjShape(rows n: Int) -> DecodeProductShape {
        DecodeProductShape(rows: n, out: config.dModel, in: config.dSSM, accumulate: false, sliceable: true)
    }

    /// The partial products out_proj leaves for the next norm at n rows, handed over (1 until tuned).
    func decodeSlices(rows n: Int) -> Int { decodeProducts[handedOverOutProjShape(rows: n)]?.slices ?? 1 }

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
            ("in_proj", DecodeProductShape(rows: n, out: c.inProjSize, in: c.dModel, accumulate: false, sliceable: false), normed1, zx1,
             layers.map(\.inProj)),
            // handed over, out_proj's product waits for the next norm, which adds its slices (`rmsnorm(pending:)`)
            ("out_proj", handOver ? handedOverOutProjShape(rows: n)
                                  : DecodeProductShape(rows: n, out: c.dModel, in: c.dSSM, accumulate: true, sliceable: false),
             handOver ? xhSSM : normed1, handOver ? outProduct1 : residual1, layers.map(\.outProj)),
            ("head", DecodeProductShape(rows: n, out: c.paddedVocabSize, in: c.dModel, accumulate: false, sliceable: false), normed1, logits1,
             [lmHead]),
        ]
    }

    /// Whether decode of n rows runs its products on cuBLAS with tuning: 16-bit weights, one GPU, rows past m_gemv's
    /// and within `decodeTuneRows`, not on the streaming or persistent path.
    package func tunesDecodeProducts(rows n: Int) -> Bool {
        decodeProductTuning && tensorParallel == nil && precision != .f32 && n > plainGEMVRows && n <= Self.decodeTuneRows
            && !streams(rows: n) && !persistent(rows: n)
    }

    /// Times each product decode of n rows runs on cuBLAS, cublasGemmEx against cuBLASLt's candidates (and for a
    /// sliceable product, its candidates at each of `decodeSliceCounts`), and keeps the fastest (once per shape).
    /// Runs the products on the decode buffers, whose contents no step carries over (the step starts from the
    /// embedding); call it outside a graph capture. `decodeProductCandidate` and `decodeProductSliceCount` force a
    /// candidate and a slice count whatever their speed (the self-test).
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
            let forcedSlices = s.sliceable ? decodeProductSliceCount : nil
            // cublasGemmEx unless a candidate is faster (or forced); a forced slice count rules cublasGemmEx out.
            var taken: (lt: (plan: CUDALtPlan, index: Int)?, slices: Int, microseconds: Double) = (nil, 1, forcedSlices == nil ? gemmEx : .infinity)
            var bestBySlices = [1: gemmEx]
            // (A sliceable product is handed over, so at most gateHandOverRows rows: outProduct1's room for slices.)
            let sliceCounts = [1] + (s.sliceable ? Self.decodeSliceCounts.filter { s.in % (8 * $0) == 0 } : [])
            for slices in sliceCounts where forcedSlices == nil || forcedSlices == slices {
                guard let plan = CUDALtPlan(device: device, rows: s.rows, out: s.out, in: s.in, slices: slices, precision: precision,
                                            maxAlgorithms: Self.decodeTuneCandidates) else { continue }
                for i in 0..<plan.count where decodeProductCandidate == nil || decodeProductCandidate == i {
                    // A candidate that fails (cuBLASLt may offer one this shape's sizes or alignment refuse) is skipped.
                    guard let t = try? microseconds({ try ltProduct(plan, i, x: p.x, w: $0, y: p.y, accumulate: s.accumulate) }) else { continue }
                    bestBySlices[slices] = min(bestBySlices[slices] ?? .infinity, t)
                    if t < taken.microseconds || decodeProductCandidate != nil { taken = ((plan, i), slices, t) }
                }
            }
            decodeProducts[p.shape] = DecodeProductChoice(lt: taken.lt, slices: taken.slices, microseconds: taken.microseconds, gemmEx: gemmEx,
                                                          bestBySlices: bestBySlices)
        }
    }

    /// What tuning chose for decode of n rows, a line per product, for `bench --profile` and the self-test: the
    /// product's name, the weight bytes it reads, and the choice.
    package func decodeProductChoices(rows n: Int) -> [(name: String, bytes: Int, choice: DecodeProductChoice)] {
        decodeCuBLASProducts(rows: n).compactMap { p in
            decodeProducts[p.shape].map { (p.name, p.shape.out * p.shape.in * (precision == .f32 ? 4 : 2), $0) }
        }
    }
}
