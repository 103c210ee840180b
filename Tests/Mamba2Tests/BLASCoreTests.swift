import Mamba2
import Mamba2TestSupport
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// OpenBLAS's kernel family against the CPU's: the rule that restarts the command with OPENBLAS_CORETYPE,
/// and what the command really runs on this host.
@Suite("BLAS kernels for the host")
struct BLASCoreTests {
    // The rule, on names as OpenBLAS 0.3.21 reports them: restart only to a wider known family, never when
    // the user chose one, never on a name it does not know.
    @Test("the core type to request")
    func rule() {
        #expect(BLAS.coreToRequest(current: "Prescott", preferred: "SkylakeX", userSet: false) == "SkylakeX")
        #expect(BLAS.coreToRequest(current: "Prescott", preferred: "Haswell", userSet: false) == "Haswell")
        #expect(BLAS.coreToRequest(current: "Haswell", preferred: "SkylakeX", userSet: false) == "SkylakeX")
        #expect(BLAS.coreToRequest(current: "Sandybridge", preferred: "Haswell", userSet: false) == "Haswell")
        #expect(BLAS.coreToRequest(current: "SkylakeX", preferred: "SkylakeX", userSet: false) == nil)
        #expect(BLAS.coreToRequest(current: "Cooperlake", preferred: "SkylakeX", userSet: false) == nil)
        #expect(BLAS.coreToRequest(current: "Zen", preferred: "Haswell", userSet: false) == nil)
        #expect(BLAS.coreToRequest(current: "Prescott", preferred: "SkylakeX", userSet: true) == nil)
        #expect(BLAS.coreToRequest(current: "SomeFutureCore", preferred: "SkylakeX", userSet: false) == nil)
        #expect(BLAS.coreToRequest(current: "Prescott", preferred: nil, userSet: false) == nil)
        #expect(BLAS.coreToRequest(current: nil, preferred: "Haswell", userSet: false) == nil)
        #expect(BLAS.coreLevel("prescott") == 0 && BLAS.coreLevel("ZEN") == 2 && BLAS.coreLevel("SapphireRapids") == 3)
    }

    // The linked BLAS's products agree with the built-in loop's here (the check the command makes at start).
    @Test("OpenBLAS agrees with the built-in GEMM on this host")
    func agrees() {
        #expect(BLAS.agreesWithBuiltin())
    }

    // What `mamba2 bench` reports the command runs: with no core type set, a family at least as wide as
    // the CPU's (so on an AVX-512 host not the generic "Prescott" that OpenBLAS 0.3.21 picks for CPUs it does
    // not know); with one set (some CI hosts set it, and the command must keep it), that family.
    @Test("the command's BLAS kernels fit the host")
    func commandKernels() throws {
        let r = try runCLI(["bench", "ssd", "--lengths", "64", "--heads", "2", "--head-dim", "8", "--state-size", "8",
                            "--repetitions", "1", "--threads", "1"])
        #expect(r.status == 0, "\(r.err)")
        let line = try #require(r.out.split(separator: "\n").first { $0.hasPrefix("BLAS:") }.map(String.init), "\(r.out)")
        func word(after marker: String) -> String? {
            guard let range = line.range(of: marker) else { return nil }
            return line[range.upperBound...].split(whereSeparator: { $0 == " " || $0 == ")" || $0 == "," || $0 == ";" }).first.map(String.init)
        }
        let core = try #require(word(after: "kernels "), "\(line)")
        if let set = getenv("OPENBLAS_CORETYPE").map({ String(cString: $0) }) {
            #expect(core.lowercased() == set.lowercased() || BLAS.coreLevel(core) == BLAS.coreLevel(set), "\(line)")
        } else if let cpu = BLAS.preferredCore {
            #expect((BLAS.coreLevel(core) ?? -1) >= BLAS.coreLevel(cpu)!, "\(line)")
        } else {
            #expect(BLAS.coreLevel(core) != nil, "\(line)")
        }
    }
}
