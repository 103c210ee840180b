import CMamba2Kernels

/// The prefill's matrix products Y (rows, N) = X (rows, K) · Wᵀ (+ bias) through the project's own kernels
/// (`mk_gemm`), with W in the type the model holds it (float32, bf16, fp16, Q8_0 or Q4_0 blocks, row-major).
///
/// Which products take them: bf16 weights where the host has AMX or AVX512-BF16 (bf16 tile or pair products,
/// activations rounded to bf16, float32 sums: on an AMX host about 3× OpenBLAS's float32 GEMM); and every
/// product when the BLAS is switched off (`BLAS.useBuiltin`), where the float32 kernels (AVX-512, AVX2 or
/// portable) replace the plain loop. Otherwise the float32 copy of the weights goes through the BLAS, which
/// measured 10–25% faster than these float32 kernels on both AVX2 and AVX-512 hosts.
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
        guard takes(type, k: k) else { return BLAS.core.map { "OpenBLAS (\($0))" } ?? BLAS.name }
        return level(type, k: k).rawValue
    }

    /// y (rows, n) = x (rows, k) · Wᵀ + bias, W (n, k) of `type` at `w`.
    package static func multiply(rows: Int, n: Int, k: Int, x: UnsafePointer<Float>, w: UnsafeRawPointer, type: WeightType,
                                 bias: UnsafePointer<Float>?, y: UnsafeMutablePointer<Float>) {
        let rc = BLAS.profiled(threads: Parallel.threadCount) {
            mk_gemm(Int32(rows), Int32(n), Int32(k), x, Int32(k), w, type.code, bias, y, Int32(n), Int32(Parallel.threadCount))
        }
        // -1 (bad arguments) cannot happen from the model, whose sizes are checked at load; -2 is a failed
        // allocation of a few hundred KB of scratch, treated as the out-of-memory it is.
        precondition(rc == 0, "mk_gemm failed (\(rc)): out of memory for its scratch")
    }
}
