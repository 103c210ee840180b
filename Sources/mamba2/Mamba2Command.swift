import ArgumentParser
import Mamba2
import Mamba2Training
import Mamba2CUDA
import Mamba2Diagnostics

@main
struct Mamba2Command: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "mamba2",
        abstract: "Mamba-2 state space models in Swift: the SSD layer, checkpoints, inference.",
        subcommands: [GenerateCommand.self, DemoCommand.self, TrainCommand.self, InfoCommand.self, LogitsCommand.self, PerplexityCommand.self, TokenizeCommand.self, DetokenizeCommand.self, ServeCommand.self, BenchCommand.self, SelfTestCommand.self]
    )

    /// The kernels of the host first (`BLASRestart`), then the command.
    static func main() async {
        BLASRestart.ifNeeded()
        await main(nil)
    }
}

/// Options every compute command shares.
struct ComputeOptions: ParsableArguments {
    @Option(name: .long, help: "Threads to use (default: all cores).")
    var threads: Int?

    @Option(name: .long, help: "Cap the CPU kernels' instruction set: generic, avx2, avx512, avx512-bf16, amx (default: the best this host runs, found from cpuid).")
    var cpuKernels: CPUKernelLevel?

    func apply() throws {
        if let cpuKernels {
            guard cpuKernels <= CPUKernelLevel.host else {
                throw ValidationError("--cpu-kernels \(cpuKernels.rawValue): this host runs at most \(CPUKernelLevel.host.rawValue)")
            }
            CPUKernelLevel.limit = cpuKernels
        }
        if let threads {
            guard (1...Parallel.maxThreads).contains(threads) else {
                throw ValidationError("--threads must be between 1 and \(Parallel.maxThreads), got \(threads)")
            }
            Parallel.threadCount = threads
        }
    }
}

/// The element type the weight matrices are held in: on the CPU those the decode step reads (default f32;
/// arithmetic stays f32), on the GPU also the matrix products' inputs (default bf16).
struct DecodeWeightOptions: ParsableArguments {
    @Option(help: "Element type the weight matrices are held in, once, for prefill and decode alike (arithmetic stays f32): f32, bf16, f16, q8_0, q4_0 (default: f32 on the CPU; q8_0 and q4_0, llama.cpp's 8- and 4-bit blocks, are CPU-only; bf16 with --device cuda, where the matrix products' inputs take it too).")
    var weightsDtype: WeightType?

    /// The type asked for, else the device's default.
    func parsed(for device: any ComputeDevice) -> WeightType { weightsDtype ?? device.defaultWeightType }
}

extension WeightType: ExpressibleByArgument {}
extension CPUKernelLevel: ExpressibleByArgument {}
extension CUDAModel.StateType: ExpressibleByArgument {}
extension CUDATrainer.Precision: ExpressibleByArgument {}

/// `--device cpu`, `cuda` (GPU 0) or `cuda:N`.
enum DeviceChoice: ExpressibleByArgument, Equatable, CustomStringConvertible {
    case cpu
    case cuda(Int)

    init?(argument: String) {
        if argument == "cpu" { self = .cpu; return }
        if argument == "cuda" { self = .cuda(0); return }
        guard argument.hasPrefix("cuda:"), let n = Int(argument.dropFirst(5)), n >= 0, n < 1 << 16 else { return nil }
        self = .cuda(n)
    }

    static var allValueStrings: [String] { ["cpu", "cuda", "cuda:N"] }
    var description: String { switch self { case .cpu: "cpu"; case let .cuda(n): "cuda:\(n)" } }

    /// The place to run, for the library.
    var computeDevice: any ComputeDevice {
        switch self {
        case .cpu: CPUDevice()
        case let .cuda(n): CUDAComputeDevice(ordinal: n)
        }
    }
}

/// Where the model runs: the CPU, or an NVIDIA GPU through CUDA (loaded at run time).
struct DeviceOptions: ParsableArguments {
    @Option(help: "cpu, cuda or cuda:N: run on an NVIDIA GPU (needs its driver, NVRTC and cuBLAS).")
    var device: DeviceChoice = .cpu

    @Option(help: "With --device cuda: the decode state's element type, f32 or bf16 (as mamba_ssm keeps it for a bf16 model: half the state's bytes per token, the state rounded once per token).")
    var stateDtype: CUDAModel.StateType = .f32

    @Option(help: "With --device cuda:N: split the model across GPUs N..<N+K (heads and groups, as the paper's tensor parallelism; one all-reduce a layer through NCCL). The heads must divide by K.")
    var tensorParallel: Int = 1

    /// The place the options name, its state type and split set.
    func place() throws -> any ComputeDevice {
        switch device {
        case .cpu:
            guard stateDtype == .f32 else { throw ValidationError("--state-dtype \(stateDtype.rawValue) is for --device cuda: the CPU keeps its state in float32") }
            guard tensorParallel == 1 else { throw ValidationError("--tensor-parallel is for --device cuda: the CPU runs the model whole") }
            return CPUDevice()
        case let .cuda(n):
            var d = CUDAComputeDevice(ordinal: n)
            d.stateType = stateDtype
            d.tensorParallel = tensorParallel
            return d
        }
    }

}
