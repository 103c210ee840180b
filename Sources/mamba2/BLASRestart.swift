import Mamba2
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// OpenBLAS chooses its kernels once, as the program loads: from `OPENBLAS_CORETYPE`, else from its own
/// detection, which in Debian's 0.3.21 does not know CPUs newer than it and falls back to generic SSE
/// kernels without a word (prefill a third as fast on an AVX-512 host). So before anything runs:
///   1. when the family OpenBLAS took is narrower than the CPU's (cpuid) and the user set no core type,
///      the command restarts itself once with `OPENBLAS_CORETYPE` set to the CPU's family;
///   2. the products are checked against the built-in loop (`BLAS.agreesWithBuiltin`, some OpenBLAS builds
///      compute wrong products with the kernels of some CPUs): wrong after a restart to AVX-512 kernels, it
///      restarts once more with the AVX2 ones; wrong otherwise, the built-in GEMM runs, with a warning.
/// `MAMBA2_BLAS_RESTARTED` marks the later starts, so nothing loops. `mamba2 bench` prints the family in use.
enum BLASRestart {
    static func ifNeeded() {
        let mark = getenv("MAMBA2_BLAS_RESTARTED").map { String(cString: $0) }
        if mark == nil, let want = BLAS.coreToRequest(current: BLAS.core, preferred: BLAS.preferredCore,
                                                      userSet: getenv("OPENBLAS_CORETYPE") != nil) {
            restart(coreType: want, mark: "1")
        }
        guard !BLAS.useBuiltin, !BLAS.agreesWithBuiltin() else { return }
        if mark == "1", BLAS.core.flatMap(BLAS.coreLevel) == 3 { restart(coreType: "Haswell", mark: "2") }
        BLAS.useBuiltin = true
        warn("mamba2: OpenBLAS's \(BLAS.core ?? "?") kernels give wrong matrix products on this CPU; using the built-in GEMM "
             + "(slower). Set OPENBLAS_CORETYPE to another kernel family to try that one.\n")
    }

    /// Runs this same command again with `OPENBLAS_CORETYPE` set; returns only if that failed.
    static func restart(coreType: String, mark: String) {
        setenv("OPENBLAS_CORETYPE", coreType, 1)
        setenv("MAMBA2_BLAS_RESTARTED", mark, 1)
        execv("/proc/self/exe", CommandLine.unsafeArgv)
        unsetenv("OPENBLAS_CORETYPE")
        warn("mamba2: restarting with OPENBLAS_CORETYPE=\(coreType) failed (\(String(cString: strerror(errno)))); "
             + "OpenBLAS keeps its \(BLAS.core ?? "?") kernels\n")
    }

    static func warn(_ text: String) {
        var bytes = Array(text.utf8)
        _ = write(2, &bytes, bytes.count)
    }
}
