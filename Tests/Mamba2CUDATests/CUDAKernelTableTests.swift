import Mamba2
import Mamba2CUDA
import Mamba2TestSupport
import Testing

// What can be checked of the GPU code without a GPU (scripts/check_kernels.py compiles the table's sources
// with NVRTC; the GPU itself is checked by `mamba2 selftest --device cuda`).
@Suite("CUDA without a GPU")
struct CUDAWithoutGPUTests {
    @Test("the kernel table: unique names, every entry point defined in its source")
    func table() {
        let all = CUDAKernelTable.all
        #expect(all.count == WeightType.allCases.count + 1 + 2 * CUDAKernelTable.tensorCoreStateSizes.count)
        #expect(Set(all.map(\.name)).count == all.count)
        for m in all {
            for k in m.kernels {
                #expect(m.source.contains("__global__") && m.source.range(of: " " + k + "(") != nil, "\(m.name): \(k) not defined")
            }
        }
        // Each precision's model module takes its own element type.
        #expect(CUDAKernelTable.model(.bf16).source.hasPrefix("#define ACT 1\n"))
        #expect(CUDAKernelTable.model(.f16).source.hasPrefix("#define ACT 2\n"))
    }

    @Test("asking for a GPU where there is none is an error that names what is missing")
    func noGPU() {
        if CUDADevice.count > 0 { return }  // a machine with a GPU: the self-test covers it
        do {
            _ = try LanguageModel.load(directory: fixture("tiny-hf"), device: .cuda(0))
            Issue.record("a GPU model loaded without a GPU")
        } catch {
            #expect("\(error)".contains("CUDA driver") || "\(error)".contains("NVRTC"), "\(error)")
        }
        #expect(throws: (any Error).self) { try CUDADevice(ordinal: 3) }
    }
}
