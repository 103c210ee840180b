import CMamba2Kernels

/// The prefill's matrix products Y (rows, N) = X (rows, K) · Wᵀ (+ bias), with W in the type the model holds it
/// (float32, bf16, fp16, Q8_0 or Q4_0 blocks, row-major), on one of three paths:
///
/// - the project's own kernels (`mk_gemm`): bf16 weights where the host has AMX or AVX512-BF16 (bf16 tile or
///   pair products, activations rounded to bf16, float32 sums: on an AMX host about 3× OpenBLAS's float32
///   GEMM), and every product when the BLAS is switched off (`BLAS.useBuiltin`), where the float32 kernels
///   (AVX-512, AVX2 or portable) replace the plain loop;
/// - float32 weights otherwise: the BLAS, which measured 10–25% faster than these float32 kernels on both AVX2
///   and AVX-512 hosts;
/// - weights of the other types otherwise: the BLAS on rows widened to float32 up to 512 at a time
///   (`mk_gemm_widened`), so that the model needs no float32 copy of its matrices.
package enum PrefillGEMM {
    /// Whether a product with weights of `type` and rows of length `k` takes the own kernels on this host.
    package static func takes(_ type: WeightType, k: Int) -> Bool {
        BLAS.useBuiltin || level(type, k: k) >= .avx512BF16
    }

    /// The level mk_gemm runs a product at (the bf16 ones only for bf16 weights and k a multiple of 32).
    package static func level(_ type: WeightType, k: Int) -> CPUKernelLevel {
        CPUKernelLevel(code: mk_gemm_path(type.code, Int32(k)))
    }

    /// The path a product with weights of `type` takes, in words ("amx", "OpenBLAS (SkylakeX)", ...).
    package static func path(_ type: WeightType, k: Int) -> String {
        guard takes(type, k: k) else {
            let blas = BLAS.core.map { "OpenBLAS (\($0))" } ?? BLAS.name
            return type == .f32 ? blas : blas + ", widened"
        }
        return level(type, k: k).rawValue
    }

    /// y (rows, n) = x (rows, k) · Wᵀ + bias, W (n, k) of `type` at `w`.
    package static func multiply(rows: Int, n: Int, k: Int, x: UnsafePointer<Float>, w: UnsafeRawPointer, type: WeightType,
                                 bias: UnsafePointer<Float>?, y: UnsafeMutablePointer<Float>) {
        let own = takes(type, k: k)
        if !own && type == .f32 {
            multiplyThroughBLAS(rows: rows, n: n, k: k, x: x, w: w.assumingMemoryBound(to: Float.self), bias: bias, y: y)
            return
        }
        let product = own ? mk_gemm : mk_gemm_widened
        let rc = BLAS.profiled(threads: Parallel.threadCount) {
            product(Int32(rows), Int32(n), Int32(k), x, Int32(k), w, type.code, bias, y, Int32(n), Int32(Parallel.threadCount))
        }
        // -1 (bad arguments) cannot happen from the model, whose sizes are checked at load; -2 is a failed
        // allocation of scratch (a few hundred KB, or 512 rows of W in float32 when widened), treated as the
        // out-of-memory it is.
        precondition(rc == 0, "\(own ? "mk_gemm" : "mk_gemm_widened") failed (\(rc)): out of memory for its scratch")
    }

    /// y (rows, n) = x · Wᵀ + bias through the BLAS, W (n, k) float32: the float32 product of the prefill where the
    /// BLAS is the faster, and of the plain references and training (`Mamba2Model.project`).
    package static func multiplyThroughBLAS(rows: Int, n: Int, k: Int, x: UnsafePointer<Float>, w: UnsafePointer<Float>,
                                            bias: UnsafePointer<Float>?, y: UnsafeMutablePointer<Float>) {
        BLAS.sgemmParallel(transB: true, m: rows, n: n, k: k, a: x, lda: k, b: w, ldb: k, c: y, ldc: n)
        if let bias { for t in 0..<rows { for j in 0..<n { y[t * n + j] += bias[j] } } }
    }
}
