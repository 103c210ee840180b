import ArgumentParser
import Mamba2
import Mamba2Training
import Mamba2CUDA
import Mamba2Diagnostics

struct SelfTestCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "selftest", abstract: "Checks inside the release binary (fresh random inputs): the GPU against the CPU, or the CPU's kernel paths.")
    @Option(help: "Device to check: cuda or cuda:N (GPU against CPU), or cpu (every CPU kernel path this host runs against float64 sums and the fixtures).")
    var device: DeviceChoice = .cuda(0)
    @Option(help: "Seed of the random inputs (default: fresh).") var seed: UInt64?
    @Option(help: "The reference fixtures (tiny-hf, tiny-hf-bf16, tiny-golden.safetensors, ssd-small*.safetensors) for the model and backward checks.")
    var fixtures: String = "Tests/Mamba2Tests/Fixtures"

    @Option(help: "Run only these groups of checks, comma-separated: ssd, model, backend, backward, training, tensor-parallel, collectives (default: all).")
    var only: String?

    @Option(help: "With --device cuda: also check the collectives (NCCL's all-reduce) and the tensor-parallel split across GPUs 0..<N of this machine.")
    var gpus: Int?

    @Option(help: "Write every CUDA module's source (NAME.cu) and entry points (kernels.json) into this folder and stop: what scripts/check_kernels.py compiles. Needs no GPU.")
    var dumpKernels: String?

    func run() throws {
        if let dumpKernels {
            try makeDirectories(dumpKernels)
            var manifest: [String] = []
            for m in CUDAKernelTable.all {
                try writeFileAtomically(Array(m.source.utf8), to: dumpKernels + "/" + m.name)
                manifest.append("{\"file\":\"\(m.name)\",\"kernels\":[" + m.kernels.map { "\"\($0)\"" }.joined(separator: ",") + "]}")
            }
            try writeFileAtomically(Array(("[" + manifest.joined(separator: ",\n") + "]\n").utf8), to: dumpKernels + "/kernels.json")
            print("\(CUDAKernelTable.all.count) modules written to \(dumpKernels)")
            return
        }
        let s = seed ?? UInt64.random(in: 0...UInt64.max)
        func checkFixtures() throws {
            guard MappedFile.exists(fixtures + "/tiny-golden.safetensors") else {
                throw ValidationError("the fixtures are not at \(fixtures) (tiny-golden.safetensors missing): run from the repository root or give --fixtures DIR")
            }
        }
        guard case let .cuda(ordinal) = device else {
            if only != nil { throw ValidationError("--only chooses among the GPU's groups; --device cpu runs the CPU kernel checks") }
            try checkFixtures()
            print("CPU kernels: this host runs \(CPUKernelLevel.supported.map(\.rawValue).joined(separator: ", ")); BLAS \(BLAS.coreDescription)")
            print("seed: \(s)")
            try report(CPUKernelSelfTest.gemmChecks(seed: s) + CPUKernelSelfTest.scanChecks(seed: s) + CPUKernelSelfTest.fixtureChecks(fixtures: fixtures))
            return
        }
        let gpu = try CUDADevice(ordinal: ordinal)
        let devices = try gpus.map { try CUDADevice.first($0, reusing: gpu) }
        print("device: \(gpu.name), \(bytesString(gpu.totalMemory)), compute capability \(gpu.computeCapability.major).\(gpu.computeCapability.minor), kernels built for \(gpu.architecture)")
        print("seed: \(s)")
        try checkFixtures()
        let groups = ["ssd", "model", "backend", "backward", "training", "tensor-parallel", "collectives"]
        // the collectives only with --gpus (which says across how many GPUs)
        let chosen = Set(only.map { $0.split(separator: ",").map { String($0) } } ?? groups.filter { $0 != "collectives" || gpus != nil })
        guard chosen.isSubset(of: groups) else { throw ValidationError("--only takes " + groups.joined(separator: ", ")) }
        if chosen.contains("collectives") && gpus == nil { throw ValidationError("the collectives group needs --gpus N (across how many GPUs)") }
        var checks: [CUDASelfTest.Check] = []
        if chosen.contains("ssd") { checks += try CUDASelfTest.run(device: gpu, seed: s) }
        if chosen.contains("model") { checks += try CUDASelfTest.modelChecks(device: gpu, fixtures: fixtures, seed: s) }
        if chosen.contains("backend") { checks += try CUDASelfTest.backendChecks(device: gpu, seed: s) }
        if chosen.contains("backward") { checks += try CUDASelfTest.backwardChecks(device: gpu, fixtures: fixtures, seed: s) }
        if chosen.contains("training") { checks += try CUDASelfTest.trainingChecks(device: gpu, fixtures: fixtures, seed: s) }
        if chosen.contains("tensor-parallel") { checks += try CUDASelfTest.tensorParallelChecks(device: gpu, devices: devices, seed: s) }
        if chosen.contains("collectives"), let devices {
            checks += try CUDASelfTest.collectiveChecks(devices: devices, seed: s)
            if let nccl = CUDACommunicator.library { print("NCCL: \(nccl.path), version \(nccl.version)") }
        }
        if !CUDAModel.blasPath.isEmpty { print("cuBLAS: \(CUDAModel.blasPath)") }
        let cached = gpu.compileLog.filter(\.fromCache).count
        print("kernels: \(gpu.compileLog.count) modules, \(cached) loaded from the on-disk cache, \(gpu.compileLog.count - cached) compiled by NVRTC; \(fixed(gpu.compileLog.reduce(0) { $0 + $1.seconds }, 2)) s in all")
        try report(checks)
    }

    /// Prints each check and the count; fails the command when one failed.
    func report(_ checks: [CUDASelfTest.Check]) throws {
        for c in checks {
            print("\(c.passed ? "PASS" : "FAIL")  \(c.name): rel. error \(sci(c.relativeError)) (tolerance \(sci(c.tolerance)))\(c.allWritten ? "" : ", some outputs never written")")
        }
        let failed = checks.filter { !$0.passed }.count
        print("\(checks.count - failed) passed, \(failed) failed")
        if failed > 0 { throw ExitCode.failure }
    }
}
