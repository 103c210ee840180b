import ArgumentParser
import Mamba2

@main
struct Mamba2Command: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "mamba2",
        abstract: "Mamba-2 state space models in Swift: the SSD layer, checkpoints, inference.",
        subcommands: [GenerateCommand.self, DemoCommand.self, TrainCommand.self, InfoCommand.self, LogitsCommand.self, PerplexityCommand.self, TokenizeCommand.self, DetokenizeCommand.self, BenchCommand.self, SelfTestCommand.self]
    )
}

/// Options every compute command shares.
struct ComputeOptions: ParsableArguments {
    @Option(name: .long, help: "Threads to use (default: all cores).")
    var threads: Int?

    func apply() throws {
        if let threads {
            guard threads >= 1 else { throw ValidationError("--threads must be at least 1") }
            Parallel.threadCount = threads
        }
    }
}

/// The element type the decode step reads its weight matrices in.
struct DecodeWeightOptions: ParsableArguments {
    @Option(help: "Element type of the weight matrices the decode step reads: f32, bf16, f16 (arithmetic stays f32).")
    var weightsDtype: String = "f32"

    func parsed() throws -> Mamba2Model.DecodeWeights {
        guard let dw = Mamba2Model.DecodeWeights(rawValue: weightsDtype) else { throw ValidationError("--weights-dtype must be f32, bf16 or f16") }
        return dw
    }
}

/// Where the model runs: the CPU, or an NVIDIA GPU through CUDA (loaded at run time).
struct DeviceOptions: ParsableArguments {
    @Option(help: "cpu, or cuda: run the whole model on the GPU (needs an NVIDIA driver, NVRTC and cuBLAS).")
    var device: String = "cpu"
    @Option(help: "With --device cuda: the type of the weight matrices and of the matrix products' inputs: f32, bf16, f16 (accumulation, residual and states stay f32).")
    var precision: String = "bf16"

    var isCUDA: Bool { device == "cuda" }

    func validate() throws {
        guard device == "cpu" || device == "cuda" else { throw ValidationError("--device must be cpu or cuda, got '\(device)'") }
        guard CUDAModel.Precision(rawValue: precision) != nil else { throw ValidationError("--precision must be f32, bf16 or f16, got '\(precision)'") }
    }

    /// The model on the GPU, or nil for the CPU.
    func gpuModel(_ model: Mamba2Model) throws -> CUDAModel? {
        guard isCUDA else { return nil }
        return try CUDAModel(device: try CUDADevice(), model: model, precision: CUDAModel.Precision(rawValue: precision)!)
    }
}
