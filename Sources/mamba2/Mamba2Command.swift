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

/// The element type the weight matrices are held in: on the CPU those the decode step reads (default f32;
/// arithmetic stays f32), on the GPU also the matrix products' inputs (default bf16).
struct DecodeWeightOptions: ParsableArguments {
    @Option(help: "Element type of the weight matrices: f32, bf16, f16 (default: f32 on the CPU, where only the decode step reads them so and arithmetic stays f32; bf16 with --device cuda, where the matrix products' inputs take it too).")
    var weightsDtype: String?

    func validate() throws {
        if let weightsDtype, Mamba2Model.DecodeWeights(rawValue: weightsDtype) == nil {
            throw ValidationError("--weights-dtype must be f32, bf16 or f16, got '\(weightsDtype)'")
        }
    }

    func parsed(gpu: Bool = false) -> Mamba2Model.DecodeWeights {
        weightsDtype.flatMap(Mamba2Model.DecodeWeights.init(rawValue:)) ?? (gpu ? .bf16 : .f32)
    }
}

/// Where the model runs: the CPU, or an NVIDIA GPU through CUDA (loaded at run time).
struct DeviceOptions: ParsableArguments {
    @Option(help: "cpu, or cuda: run on an NVIDIA GPU (needs its driver, NVRTC and cuBLAS).")
    var device: String = "cpu"

    var isCUDA: Bool { device == "cuda" }

    func validate() throws {
        guard device == "cpu" || device == "cuda" else { throw ValidationError("--device must be cpu or cuda, got '\(device)'") }
    }

    /// The model on the GPU, or nil for the CPU.
    func gpuModel(_ model: Mamba2Model, precision: CUDAModel.Precision) throws -> CUDAModel? {
        guard isCUDA else { return nil }
        return try CUDAModel(device: try CUDADevice(), model: model, precision: precision)
    }
}
