import Mamba2
import Mamba2CUDA
import Mamba2Training
import Synchronization

/// Measures the SSD forms on one layer shape, for `mamba2 bench ssd`. Inputs are drawn as a model's
/// (dt through softplus with a small bias, A in [−16, −1]); every form is credited 5·H·P·N flops per
/// token (the recurrence's work), so tokens/s and GFLOP/s compare across forms.
public struct SSDBenchmark {
    public struct Row: Sendable {
        public var form: String
        public var length: Int
        public var seconds: Double
        public var tokensPerSecond: Double
        public var gflops: Double
        /// For the chunked form (and `auto` when it chose chunked): share of thread time inside GEMMs.
        public var gemmShare: Double?
        /// For `auto`: the form it picked.
        public var chose: String?
    }

    public var heads = 24, headDim = 64, stateSize = 128, groups = 1, chunkSize = 256
    public var lengths = [512, 2048, 8192, 32768]
    /// The quadratic form keeps an L×L matrix per thread; above this it is skipped.
    public var quadraticMaxLength = 8192
    public var repetitions = 3

    public init() {}

    /// Runs every form at every length; `progress` hears each finished row.
    public func run(progress: (Row) -> Void = { _ in }) throws -> [Row] {
        var rows: [Row] = []
        for L in lengths {
            let input = SSDInput.synthetic(L: L, H: heads, P: headDim, G: groups, N: stateSize)
            let flops = 5.0 * Double(heads * headDim * stateSize) * Double(L)
            for form in [SSDForm.recurrent, .quadratic, .chunked, .auto] {
                if form == .quadratic && L > quadraticMaxLength { continue }
                let options = SSDOptions(form: form, chunkSize: chunkSize, dtSoftplus: true)
                var best = Double.infinity
                var share: Double? = nil
                var chose: SSDForm = form
                for _ in 0..<repetitions {
                    GEMMProfile.reset()
                    GEMMProfile.enabled = true
                    let t0 = monotonicSeconds()
                    let out = try SSD.run(input, options: options)
                    let dt = monotonicSeconds() - t0
                    GEMMProfile.enabled = false
                    chose = out.form
                    if dt < best {
                        best = dt
                        if out.form == .chunked || out.form == .quadratic {
                            share = min(1, GEMMProfile.seconds / (dt * Double(Parallel.threadCount)))
                        }
                    }
                }
                let row = Row(form: form.rawValue, length: L, seconds: best, tokensPerSecond: Double(L) / best,
                              gflops: flops / best / 1e9, gemmShare: share, chose: form == .auto ? chose.rawValue : nil)
                rows.append(row)
                progress(row)
            }
        }
        return rows
    }

    /// The machine's single-call sgemm rate (GFLOP/s) on an n×n×n product split across all threads.
    public static func measureSgemm(n: Int = 1024, repetitions: Int = 3) -> Double {
        let a = [Float](repeating: 0.5, count: n * n), b = [Float](repeating: 0.25, count: n * n)
        var c = [Float](repeating: 0, count: n * n)
        var best = Double.infinity
        for _ in 0..<repetitions {
            let t0 = monotonicSeconds()
            a.withUnsafeBufferPointer { ap in b.withUnsafeBufferPointer { bp in c.withUnsafeMutableBufferPointer { cp in
                BLAS.sgemmParallel(m: n, n: n, k: n, a: ap.baseAddress!, lda: n, b: bp.baseAddress!, ldb: n,
                                   c: cp.baseAddress!, ldc: n)
            }}}
            best = min(best, monotonicSeconds() - t0)
        }
        return 2.0 * Double(n * n * n) / best / 1e9
    }
}
