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
    static func profiled<R>(threads: Int, _ gemm: () -> R) -> R {
        _ = configured
        guard GEMMProfile.enabled else { return gemm() }
        let t0 = monotonicSeconds()
        let r = gemm()
        GEMMProfile.add((monotonicSeconds() - t0) * Double(threads))
        return r
    }

    /// Route every GEMM through the plain built-in loop (true) or the linked BLAS (false).
    /// Also settable at start-up with the environment variable MAMBA2_BLAS=builtin.
    public static var useBuiltin: Bool {
        get { _ = configured; return mk_blas_is_builtin() != 0 }
        set { _ = configured; mk_blas_use_builtin(newValue ? 1 : 0) }
    }

    /// The BLAS in use, e.g. "OpenBLAS 0.3.21 DYNAMIC_ARCH NO_AFFINITY SkylakeX MAX_THREADS=64".
    public static var name: String { _ = configured; return String(cString: mk_blas_name()) }

    /// OpenBLAS's kernel family as it chose it when the program loaded ("Haswell", "Prescott", ...); nil
    /// without OpenBLAS or with the built-in GEMM.
    public static var core: String? { _ = configured; return mk_blas_core().map { String(cString: $0) } }

    /// The family this CPU should run, from cpuid: "SkylakeX" (AVX-512), "Haswell" (AVX2 + FMA), or nil.
    public static var preferredCore: String? { mk_blas_preferred_core().map { String(cString: $0) } }

    /// A family's vector width: 3 AVX-512, 2 AVX2, 1 AVX, 0 SSE only, nil for a name not known here.
    public static func coreLevel(_ name: String) -> Int? {
        let v = mk_blas_core_level(name)
        return v < 0 ? nil : Int(v)
    }

    /// The core type to restart OpenBLAS with, or nil: only when the user set none (`userSet`), the CPU's
    /// family is known and OpenBLAS's own is a known one of narrower vectors (Debian's 0.3.21 serves CPUs
    /// newer than it with its generic "Prescott" kernels: a third of the prefill speed on AVX-512 hosts).
    public static func coreToRequest(current: String?, preferred: String?, userSet: Bool) -> String? {
        guard !userSet, let current, let preferred, let have = coreLevel(current), let want = coreLevel(preferred) else { return nil }
        return have < want ? preferred : nil
    }

    /// Whether the linked BLAS's products agree with the built-in loop's (relative error under 1e-4, the
    /// float32 roundings of K ≤ 300 terms summed in another order staying under 1e-5) on three random
    /// shapes, among them ones that take OpenBLAS's small-matrix and transposed paths. Some OpenBLAS builds
    /// compute wrong products with the kernels of some CPUs; a fraction of a millisecond tells.
    public static func agreesWithBuiltin() -> Bool {
        _ = configured
        var g = SplitMix64(seed: 0x5eed)
        for (m, n, k, tA, tB) in [(7, 33, 5, false, false), (64, 96, 300, false, true), (129, 70, 65, true, false)] {
            let a = (0..<(m * k)).map { _ in g.normal() }, b = (0..<(k * n)).map { _ in g.normal() }
            var fast = [Float](repeating: 0, count: m * n), plain = fast
            let lda = tA ? m : k, ldb = tB ? k : n
            mk_sgemm(tA ? 1 : 0, tB ? 1 : 0, Int32(m), Int32(n), Int32(k), 1, a, Int32(lda), b, Int32(ldb), 0, &fast, Int32(n))
            mk_sgemm_builtin(tA ? 1 : 0, tB ? 1 : 0, Int32(m), Int32(n), Int32(k), 1, a, Int32(lda), b, Int32(ldb), 0, &plain, Int32(n))
            var num = 0.0, den = 0.0
            for i in 0..<(m * n) { num += Double((fast[i] - plain[i]) * (fast[i] - plain[i])); den += Double(plain[i] * plain[i]) }
            if !(num <= 1e-8 * den) { return false }
        }
        return true
    }

    /// One line for reports: the family OpenBLAS runs and the CPU's ("kernels Haswell (this CPU: Haswell)").
    public static var coreDescription: String {
        let cpu = preferredCore ?? "no AVX2"
        guard let core else { return useBuiltin ? "built-in GEMM (this CPU: \(cpu))" : "kernels not reported (this CPU: \(cpu))" }
        let chosen = getenv("MAMBA2_BLAS_RESTARTED") != nil ? " chosen from cpuid at start" : " set by the user"
        let how = getenv("OPENBLAS_CORETYPE").map { ", OPENBLAS_CORETYPE=\(String(cString: $0))" + chosen } ?? ""
        return "kernels \(core) (this CPU: \(cpu)\(how))"
    }
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
