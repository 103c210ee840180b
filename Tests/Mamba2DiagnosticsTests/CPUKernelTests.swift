import Foundation
import Mamba2
import Mamba2Diagnostics
import Mamba2TestSupport
import Testing

/// The CPU's own kernels: every instruction-set path this host runs, each weight type, against float64 sums
/// and the reference fixtures; the path chosen for the host; the cap that turns paths off.
@Suite("CPU kernel paths", .serialized)
struct CPUKernelTests {
    // Every path the host runs × f32/bf16/f16/Q8_0/Q4_0 × seven shapes that cross the kernels' edges, and the BLAS
    // on widened rows of each type (mk_gemm_widened), fresh inputs;
    // the bounds are stated in CPUKernelSelfTest.gemmChecks (float32 sums: (K + 2)·2⁻²⁴ of Σ|x·w|; the bf16
    // paths 2⁻⁸ more).
    @Test("every path's products agree with float64 sums")
    func products() {
        let seed = UInt64.random(in: 0...UInt64.max)
        let checks = CPUKernelSelfTest.gemmChecks(seed: seed)
        // 7 shapes for f32, bf16, f16 and the 6 with k a multiple of 32 for Q8_0 and Q4_0, per level; then the
        // widened BLAS path once, with one shape more (8 and 7): none skipped.
        #expect(checks.count == CPUKernelLevel.supported.count * (3 * 7 + 2 * 6) + 3 * 8 + 2 * 7)
        for c in checks { #expect(c.passed, "seed \(seed): \(c.name): \(c.relativeError) > \(c.tolerance), all written \(c.allWritten)") }
    }

    // The SSD recurrence at every level (the transposed form where the host has AVX2 / AVX-512, the plain one
    // below its threshold and at `generic`) × seven edge-crossing shapes against a float64 recurrence, fresh
    // inputs; each error over its bound (stated in CPUKernelSelfTest.scanChecks) must stay ≤ 1.
    @Test("every SSD scan path agrees with a float64 recurrence")
    func scans() {
        let seed = UInt64.random(in: 0...UInt64.max)
        let checks = CPUKernelSelfTest.scanChecks(seed: seed)
        #expect(checks.count == CPUKernelLevel.supported.count * 7)
        for c in checks { #expect(c.passed, "seed \(seed): \(c.name): \(c.relativeError) > \(c.tolerance), all written \(c.allWritten)") }
        // The fast form is the one in use where the host allows it (the 130m head: P = 64).
        if CPUKernelLevel.host >= .avx2 { #expect(SSDRecurrent.scanPath(tokens: 512, headDim: 64).hasPrefix("transposed")) }
        #expect(SSDRecurrent.scanPath(tokens: 1, headDim: 64) == "plain")
    }

    // The tiny model's prefill logits through each path (the BLAS off, so the float32 products take the own
    // kernels too) against mamba_ssm's: 1e-4 for float32 weights, 1e-2 for bf16 weights.
    @Test("the reference fixtures pass through every path")
    func fixtures() throws {
        let checks = try CPUKernelSelfTest.fixtureChecks(fixtures: fixturesDir)
        #expect(checks.count == 2 * (CPUKernelLevel.supported.count + 1))
        for c in checks { #expect(c.passed, "\(c.name): \(c.relativeError) > \(c.tolerance)") }
    }

    // The level found from cpuid agrees with the kernel's own report of the CPU's features: on a host with
    // AVX2 + FMA (or AVX-512) the kernels are never the generic ones.
    @Test("the host's level follows /proc/cpuinfo")
    func hostLevel() throws {
        guard let info = try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8),
              let line = info.split(separator: "\n").first(where: { $0.hasPrefix("flags") }) else {
            // Not Linux: the level is still one of the known ones and at least generic.
            #expect(CPUKernelLevel.supported.first == .generic)
            return
        }
        let flags = Set(line.split(separator: " ").map(String.init))
        let host = CPUKernelLevel.host
        if flags.isSuperset(of: ["avx2", "fma"]) { #expect(host >= .avx2, "\(host)") }
        if flags.isSuperset(of: ["avx512f", "avx512bw", "avx512vl"]) { #expect(host >= .avx512, "\(host)") }
        if flags.contains("avx512_bf16") { #expect(host >= .avx512BF16, "\(host)") }
        if !flags.contains("avx2") { #expect(host == .generic) }
        if !flags.contains("avx512f") { #expect(host <= .avx2) }
        if !flags.contains("amx_bf16") { #expect(host < .amx) }
    }

    // The cap: each supported level in force when set, the host's best when lifted; under `generic` the decode
    // GEMV leaves its hand-written AVX2 kernel for the portable (vector-extension) ones.
    @Test("the cap turns paths off and back on")
    func cap() {
        defer { CPUKernelLevel.limit = nil }
        for level in CPUKernelLevel.supported {
            CPUKernelLevel.limit = level
            #expect(CPUKernelLevel.current == level)
        }
        CPUKernelLevel.limit = .generic
        #expect(CPUBackend.decodeKernelPath(rows: 4) != "avx2-fma 3x4")
        CPUKernelLevel.limit = nil
        #expect(CPUKernelLevel.current == CPUKernelLevel.host)
        #expect(CPUKernelLevel.limit == nil)
    }
}
