import Synchronization
import CMamba2Kernels
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The door to the matrix-multiply library (OpenBLAS on Linux, linked statically; Accelerate on macOS).
///
/// The BLAS runs single-threaded: the library splits work across cores itself (`Parallel`), so that many
/// small per-head GEMMs run side by side instead of each spinning up the BLAS's own threads.
public enum BLAS {
    /// Called once before first use (idempotent).
    static let configured: Bool = {
        mk_blas_set_threads(1)
        if let v = getenv("MAMBA2_BLAS"), String(cString: v) == "builtin" { mk_blas_use_builtin(1) }
        return true
    }()

    /// Row-major C = alpha·op(A)·op(B) + beta·C, with A (M×K) or its transpose, B (K×N) or its transpose.
    @inline(__always)
    public static func sgemm(
        transA: Bool = false, transB: Bool = false, m: Int, n: Int, k: Int, alpha: Float = 1,
        a: UnsafePointer<Float>, lda: Int, b: UnsafePointer<Float>, ldb: Int,
        beta: Float = 0, c: UnsafeMutablePointer<Float>, ldc: Int
    ) {
        profiled(threads: 1) {
            mk_sgemm(transA ? 1 : 0, transB ? 1 : 0, Int32(m), Int32(n), Int32(k), alpha, a, Int32(lda),
                     b, Int32(ldb), beta, c, Int32(ldc))
        }
    }

    /// A GEMM large enough to share: splits the N columns of C into one block per core. Same contract.
    public static func sgemmParallel(
        transA: Bool = false, transB: Bool = false, m: Int, n: Int, k: Int, alpha: Float = 1,
        a: UnsafePointer<Float>, lda: Int, b: UnsafePointer<Float>, ldb: Int,
        beta: Float = 0, c: UnsafeMutablePointer<Float>, ldc: Int
    ) {
        profiled(threads: Parallel.threadCount) {
            mk_sgemm_parallel(transA ? 1 : 0, transB ? 1 : 0, Int32(m), Int32(n), Int32(k), alpha, a, Int32(lda),
                              b, Int32(ldb), beta, c, Int32(ldc), Int32(Parallel.threadCount))
        }
    }

    /// Runs a GEMM; while benchmarks profile, adds its thread time (wall time × threads it used).
    @inline(__always)
    static func profiled(threads: Int, _ gemm: () -> Void) {
        _ = configured
        guard GEMMProfile.enabled else { gemm(); return }
        let t0 = monotonicSeconds()
        gemm()
        GEMMProfile.add((monotonicSeconds() - t0) * Double(threads))
    }

    /// Route every GEMM through the plain built-in loop (true) or the linked BLAS (false).
    /// Also settable at start-up with the environment variable MAMBA2_BLAS=builtin.
    public static var useBuiltin: Bool {
        get { _ = configured; return mk_blas_is_builtin() != 0 }
        set { _ = configured; mk_blas_use_builtin(newValue ? 1 : 0) }
    }

    /// The BLAS in use, e.g. "OpenBLAS 0.3.21 DYNAMIC_ARCH NO_AFFINITY SkylakeX MAX_THREADS=64".
    public static var name: String { _ = configured; return String(cString: mk_blas_name()) }
}

/// Thread time spent inside GEMMs, summed over threads, while enabled (benchmarks only; off by default
/// so the hot path pays one relaxed load).
package enum GEMMProfile {
    package static let nanos = Atomic<Int>(0)
    package static let flag = Atomic<Bool>(false)
    package static var enabled: Bool {
        get { flag.load(ordering: .relaxed) }
        set { flag.store(newValue, ordering: .relaxed) }
    }
    package static func reset() { nanos.store(0, ordering: .relaxed) }
    package static var seconds: Double { Double(nanos.load(ordering: .relaxed)) * 1e-9 }
    package static func add(_ seconds: Double) { nanos.add(Int(seconds * 1e9), ordering: .relaxed) }
}
