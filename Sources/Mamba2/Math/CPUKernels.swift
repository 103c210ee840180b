import CMamba2Kernels

/// The instruction sets the CPU's own kernels may use, best last. The host's best is found from cpuid at
/// run time (with the OS's saved register state, and for AMX the kernel's permission to use the tiles);
/// `limit` turns the better ones off so that every path can be run, tested and timed on one host.
public enum CPUKernelLevel: String, CaseIterable, Comparable, Sendable {
    case generic, avx2, avx512, avx512BF16 = "avx512-bf16", amx

    var code: Int32 {
        switch self { case .generic: Int32(MK_CPU_GENERIC); case .avx2: Int32(MK_CPU_AVX2); case .avx512: Int32(MK_CPU_AVX512)
        case .avx512BF16: Int32(MK_CPU_AVX512BF16); case .amx: Int32(MK_CPU_AMX) }
    }

    package init(code: Int32) { self = Self.allCases.first { $0.code == code } ?? .generic }

    public static func < (a: Self, b: Self) -> Bool { a.code < b.code }

    /// The best this host runs.
    public static var host: CPUKernelLevel { CPUKernelLevel(code: mk_cpu_host_level()) }

    /// The levels this host runs, worst first: each one a path the tests and the self-test take.
    public static var supported: [CPUKernelLevel] { allCases.filter { $0 <= host } }

    /// The cap in force (nil: the host's best). `generic` also turns off the decode GEMV's hand-written AVX2 kernel.
    /// A cap above the host's best means the host's best.
    public static var limit: CPUKernelLevel? {
        get { current == host ? nil : current }
        set { mk_cpu_limit(newValue?.code ?? Int32(MK_CPU_AUTO)) }
    }

    /// The level the kernels use now: the host's best, capped by `limit`.
    public static var current: CPUKernelLevel { CPUKernelLevel(code: mk_cpu_level()) }
}
