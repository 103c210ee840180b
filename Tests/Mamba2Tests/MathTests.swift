@testable import Mamba2
import Foundation
import CMamba2Kernels
import Mamba2TestSupport
import Testing

@Suite("Math backend")
struct MathTests {
    // The built-in GEMM (the fallback when OpenBLAS is not wanted) equals OpenBLAS on random products,
    // every transpose combination (1e-5 relative: float32 sums in different orders).
    @Test("built-in GEMM equals OpenBLAS", arguments: [(false, false), (true, false), (false, true), (true, true)])
    func builtinGEMM(transA: Bool, transB: Bool) {
        var rng = SeededRNG()
        let (m, n, k) = (37, 70, 53)
        let a = rng.normal([m * k]).data, b = rng.normal([k * n]).data
        let c0 = rng.normal([m * n]).data
        func run(_ builtin: Bool) -> Tensor {
            BLAS.useBuiltin = builtin
            defer { BLAS.useBuiltin = false }
            var c = c0
            a.withUnsafeBufferPointer { ap in b.withUnsafeBufferPointer { bp in c.withUnsafeMutableBufferPointer { cp in
                BLAS.sgemm(transA: transA, transB: transB, m: m, n: n, k: k, alpha: 0.7, a: ap.baseAddress!, lda: transA ? m : k,
                           b: bp.baseAddress!, ldb: transB ? k : n, beta: 0.3, c: cp.baseAddress!, ldc: n)
            }}}
            return Tensor(shape: [m, n], data: c)
        }
        let reference = run(false), builtin = run(true)
        #expect(builtin.relativeError(to: reference) < 1e-5, "seed \(rng.seed)")
    }

    // The whole chunked SSD through the built-in GEMM reproduces the fixture as OpenBLAS does.
    @Test("SSD on the built-in GEMM reproduces the fixture")
    func builtinSSD() throws {
        let f = try SafeTensorsFile(path: fixture("ssd-small.safetensors"))
        let input = SSDInput(x: try f.tensor("x"), dt: try f.tensor("dt"), A: try f.tensor("A"), B: try f.tensor("B"),
                             C: try f.tensor("C"), D: try f.tensor("D"), z: try f.tensor("z"),
                             dtBias: try f.tensor("dt_bias"), initialStates: try f.tensor("initial_states"))
        BLAS.useBuiltin = true
        defer { BLAS.useBuiltin = false }
        let out = try SSD.run(input, options: SSDOptions(form: .chunked, chunkSize: 32, dtSoftplus: true))
        #expect(out.y.relativeError(to: try f.tensor("y")) < 2e-5)
    }

    // The parallel GEMM split and the decode GEMV equal a single-threaded GEMM.
    @Test("parallel GEMM and decode GEMV equal the plain GEMM")
    func parallelGEMM() {
        var rng = SeededRNG()
        let (m, n, k) = (3, 1000, 700)
        let a = rng.normal([m * k]).data, w = rng.normal([n * k]).data
        var plain = [Float](repeating: 0, count: m * n), par = plain
        a.withUnsafeBufferPointer { ap in w.withUnsafeBufferPointer { wp in
            plain.withUnsafeMutableBufferPointer { cp in
                BLAS.sgemm(transB: true, m: m, n: n, k: k, a: ap.baseAddress!, lda: k, b: wp.baseAddress!, ldb: k, c: cp.baseAddress!, ldc: n)
            }
            par.withUnsafeMutableBufferPointer { cp in
                BLAS.sgemmParallel(transB: true, m: m, n: n, k: k, a: ap.baseAddress!, lda: k, b: wp.baseAddress!, ldb: k, c: cp.baseAddress!, ldc: n)
            }
        }}
        #expect(Tensor(shape: [m, n], data: par).relativeError(to: Tensor(shape: [m, n], data: plain)) < 1e-6)
    }

    // Every kernel path of the decode GEMV on this host (the one cpuid picks, and the portable one) at batch
    // sizes that hit each remainder (1; 2–3 rows of a block of 4; whole blocks; a block and one row), odd
    // weight-row counts (a tile's and a pair's last row alone) and K not a multiple of the vector width, with
    // a bias, against the plain GEMM: float32 dot products of length ~700 summed in other orders differ by
    // ~1e-7 relative each; 1e-5 bounds the whole output's relative error.
    @Test("decode GEMV, every kernel path and remainder, equals the plain GEMM", arguments: [1, 2, 3, 4, 5, 16, 17])
    func decodeGEMV(rows m: Int) {
        var rng = SeededRNG()
        for (n, k) in [(1001, 700), (1000, 768), (7, 19)] {
            let a = rng.normal([m * k]).data, w = rng.normal([n * k]).data, bias = rng.normal([n]).data
            var plain = [Float](repeating: 0, count: m * n)
            a.withUnsafeBufferPointer { ap in w.withUnsafeBufferPointer { wp in plain.withUnsafeMutableBufferPointer { cp in
                BLAS.sgemm(transB: true, m: m, n: n, k: k, a: ap.baseAddress!, lda: k, b: wp.baseAddress!, ldb: k, c: cp.baseAddress!, ldc: n)
            }}}
            for i in 0..<m { for j in 0..<n { plain[i * n + j] += bias[j] } }
            for path in [nil, CPUKernelLevel.generic] {  // the host's kernels, then the portable ones
                CPUKernelLevel.limit = path
                defer { CPUKernelLevel.limit = nil }
                var out = [Float](repeating: .nan, count: m * n)
                a.withUnsafeBufferPointer { ap in w.withUnsafeBufferPointer { wp in bias.withUnsafeBufferPointer { bp in
                    out.withUnsafeMutableBufferPointer { cp in
                        mk_gemv_rows(Int32(m), Int32(n), Int32(k), ap.baseAddress!, Int32(k), wp.baseAddress!, 0, bp.baseAddress!,
                                     cp.baseAddress!, Int32(n), 2)
                    }
                }}}
                let name = String(cString: mk_gemv_path_name(Int32(m)))
                #expect(Tensor(shape: [m, n], data: out).relativeError(to: Tensor(shape: [m, n], data: plain)) < 1e-5,
                        "cap \(path?.rawValue ?? "none") (\(name)), \(m)×\(n)×\(k)")
            }
        }
    }

    @Test("the bandwidth probe's streaming read sums every word once, whatever the length and threads")
    func streamRead() {
        var rng = SeededRNG()
        // lengths around the 16-word vector loop and its tail, and one that leaves threads without words
        for count in [0, 1, 2, 15, 16, 17, 31, 1000, 100_003] {
            let words = (0..<count).map { _ in rng.next() }
            let want = words.reduce(0, &+)
            for threads in [1, 2, 3, 7] {
                let got = words.withUnsafeBufferPointer { mk_stream_read($0.baseAddress, count, Int32(threads)) }
                #expect(got == want, "\(count) words on \(threads) threads (seed \(rng.seed))")
            }
        }
    }

    @Test("the host's read bandwidth is measured, not assumed")
    func readBandwidth() throws {
        let backend = try CPUBackend(model: Mamba2Model.load(directory: fixture("tiny-hf")))
        let b = try backend.measureReadBandwidth()
        // between 100 MB/s (slower than any host this runs on) and 10 TB/s (faster than any CPU memory)
        #expect(b > 1e8 && b < 1e13, "\(b) bytes/s")
    }

    // The Q8_0 decode GEMV: each block's 32 int8 and fp16 scale as the plain GEMM sees them after
    // dequantizing (w = d·q, by the GGUF reader), at every batch remainder and odd row counts, K a multiple of 32, with a bias.
    // Same products as the float32 path on the dequantized weights, summed in other orders: 1e-5 as above.
    // The quantization itself: d = fp16(max|w|/127) and every weight within 0.57·d of its original (half a
    // step of the unrounded scale, plus 127 times d's fp16 rounding of at most 2⁻¹¹·d).
    @Test("decode GEMV on Q8_0 blocks equals the plain GEMM on their values", arguments: [1, 2, 3, 4, 5, 16, 17])
    func decodeGEMVQ8(rows m: Int) {
        var rng = SeededRNG()
        for (n, k) in [(1001, 768), (7, 32), (130, 1536)] {
            let a = rng.normal([m * k]).data, w = rng.normal([n * k]).data, bias = rng.normal([n]).data
            var blocks = [UInt8](repeating: 0, count: n * k / 32 * 34)
            w.withUnsafeBufferPointer { wp in mk_quantize_q8_0(n, k, wp.baseAddress!, &blocks) }
            let deq = blocks.withUnsafeBytes { GGUFFile.decode(.q8_0, $0.baseAddress!, count: n * k) }
            for b in 0..<(n * k / 32) {
                let d = halfToFloat(UInt16(blocks[b * 34]) | UInt16(blocks[b * 34 + 1]) << 8)
                let amax = w[(b * 32)..<(b * 32 + 32)].map { abs($0) }.max()!
                #expect(d == halfToFloat(roundedTo16Bits([amax / 127], bfloat: false)[0]))
                for j in 0..<32 { #expect(abs(deq[b * 32 + j] - w[b * 32 + j]) <= 0.57 * d) }
            }
            expectBlockGEMV(m: m, n: n, k: k, a: a, blocks: blocks, type: .q8_0, values: deq, bias: bias)
        }
    }

    // Q4_0 as llama.cpp makes it: d = (the value of largest magnitude)/−8 in fp16, and every weight within |d| of
    // its value: q = trunc(w/d + 8.5) rounds w/d to the nearest step (half a step), except that a value of the
    // largest magnitude with the other sign (w/d up to 8) clamps at q = 15 (a whole step); d's fp16 rounding
    // (2⁻¹¹ relative) times |q − 8| ≤ 8 adds 2⁻⁸ of d, and taking |d| from the rounded d another 2⁻¹⁰ of room.
    // The GEMV on the blocks equals the plain GEMM on their values (1e-5, the float32 sums' order), the values
    // read by the GGUF reader's dequantization.
    @Test("decode GEMV on Q4_0 blocks equals the plain GEMM on their values", arguments: [1, 3, 4, 5, 16])
    func decodeGEMVQ4(rows m: Int) {
        var rng = SeededRNG()
        for (n, k) in [(1001, 768), (7, 32), (130, 1536)] {
            let a = rng.normal([m * k]).data, w = rng.normal([n * k]).data, bias = rng.normal([n]).data
            var blocks = [UInt8](repeating: 0, count: n * k / 32 * 18)
            w.withUnsafeBufferPointer { wp in mk_quantize_q4_0(n, k, wp.baseAddress!, &blocks) }
            let deq = blocks.withUnsafeBytes { GGUFFile.decode(.q4_0, $0.baseAddress!, count: n * k) }
            for b in 0..<(n * k / 32) {
                let d = halfToFloat(UInt16(blocks[b * 18]) | UInt16(blocks[b * 18 + 1]) << 8)
                let extreme = w[(b * 32)..<(b * 32 + 32)].max { abs($0) < abs($1) }!
                #expect(d == halfToFloat(roundedTo16Bits([extreme / -8], bfloat: false)[0]))
                for j in 0..<32 {
                    #expect(abs(deq[b * 32 + j] - w[b * 32 + j]) <= abs(d) * (1 + 0x1p-8) * (1 + 0x1p-10), "block \(b) weight \(j)")
                }
            }
            expectBlockGEMV(m: m, n: n, k: k, a: a, blocks: blocks, type: .q4_0, values: deq, bias: bias)
        }
    }

    /// The decode GEMV (mk_gemv_rows) on weights held as `blocks` of `type` equals the plain GEMM on their
    /// `values` within 1e-5 relative (the float32 sums' order).
    func expectBlockGEMV(m: Int, n: Int, k: Int, a: [Float], blocks: [UInt8], type: WeightType, values deq: [Float], bias: [Float]) {
        var plain = [Float](repeating: 0, count: m * n)
        a.withUnsafeBufferPointer { ap in deq.withUnsafeBufferPointer { wp in plain.withUnsafeMutableBufferPointer { cp in
            BLAS.sgemm(transB: true, m: m, n: n, k: k, a: ap.baseAddress!, lda: k, b: wp.baseAddress!, ldb: k, c: cp.baseAddress!, ldc: n)
        }}}
        for i in 0..<m { for j in 0..<n { plain[i * n + j] += bias[j] } }
        var out = [Float](repeating: .nan, count: m * n)
        a.withUnsafeBufferPointer { ap in blocks.withUnsafeBufferPointer { wp in bias.withUnsafeBufferPointer { bp in
            out.withUnsafeMutableBufferPointer { cp in
                mk_gemv_rows(Int32(m), Int32(n), Int32(k), ap.baseAddress!, Int32(k), wp.baseAddress!, type.code, bp.baseAddress!,
                             cp.baseAddress!, Int32(n), 2)
            }
        }}}
        #expect(Tensor(shape: [m, n], data: out).relativeError(to: Tensor(shape: [m, n], data: plain)) < 1e-5, "\(type) \(m)×\(n)×\(k)")
    }

    // A parallel section started inside another runs (serially) instead of deadlocking on the busy pool;
    // sections from several threads at once take turns.
    @Test("nested and concurrent parallel sections complete", .timeLimit(.minutes(1)))
    func nested() async {
        let total = UnsafeMutablePointer<Int>.allocate(capacity: 64)
        total.initialize(repeating: 0, count: 64)
        let t = SharedPointer(total)
        Parallel.forEach(8) { i in Parallel.forEach(8) { j in t.p[i * 8 + j] += 1 } }
        #expect((0..<64).allSatisfy { total[$0] == 1 })
        await withTaskGroup(of: Void.self) { group in
            for _ in 0..<4 { group.addTask { Parallel.forEach(100) { _ in } } }
        }
        total.deallocate()
    }

    // Parallel.forEach runs every index exactly once, for counts below, at and above the thread count.
    @Test("thread pool runs every index once")
    func pool() {
        for count in [1, 2, 3, 17, 1000] {
            let hits = UnsafeMutablePointer<Int>.allocate(capacity: count)
            hits.initialize(repeating: 0, count: count)
            let h = SharedPointer(hits)
            Parallel.forEach(count) { h.p[$0] += 1 }
            #expect((0..<count).allSatisfy { hits[$0] == 1 })
            hits.deallocate()
        }
    }
}

@Suite("Sampler kernels") struct SamplerKernelTests {
    // The vectorized log-sum-exp against a float64 sum of libm exps, over logits spread as a model's are
    // (and a few far below the maximum, where exp underflows): the polynomial's 2e-7 relative error per
    // term bounds the sum's; 1e-6 of the normalizer's magnitude allows for the float32 lanes' rounding.
    @Test("log-sum-exp, max and argmax equal their plain definitions", arguments: [1, 15, 16, 17, 50_280])
    func reductions(n: Int) {
        var g = SystemRandomNumberGenerator()
        var x = (0..<n).map { _ in Float.random(in: -12...12, using: &g) }
        if n > 3 { x[n / 3] = -200; x[n - 1] = 30 }  // an underflowing term; the maximum last
        if n > 3 { x[1] = 30 }                         // …and first at index 1: the first index wins
        let m = x.max()!
        let exact = Double(m) + log(x.reduce(0.0) { $0 + exp(Double($1) - Double(m)) })
        x.withUnsafeBufferPointer { p in
            #expect(mk_max_f32(Int32(n), p.baseAddress!) == m)
            #expect(Int(mk_first_index_f32(Int32(n), p.baseAddress!, m)) == x.firstIndex(of: m)!)
            let got = Double(mk_log_sum_exp(Int32(n), p.baseAddress!, m))
            #expect(abs(got - exact) <= 1e-6 * max(1, abs(exact)), "\(got) vs \(exact)")
        }
    }
}
