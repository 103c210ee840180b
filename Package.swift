// swift-tools-version:6.0
// Mamba-2 for Swift: the SSD layer, the Mamba-2 language model, and the `mamba2` command.
import PackageDescription

let package = Package(
    name: "Mamba2",
    platforms: [.macOS(.v15)],
    products: [
        // The core: math, the SSD layer, the model, checkpoints, the tokenizer, generation, the CPU backend.
        .library(name: "Mamba2", targets: ["Mamba2"]),
        // Training: gradients, AdamW, datasets, the trainer.
        .library(name: "Mamba2Training", targets: ["Mamba2Training"]),
        // NVIDIA GPUs: `.cuda(n)` as a device for LanguageModel.load, the GPU backend and kernels.
        .library(name: "Mamba2CUDA", targets: ["Mamba2CUDA"]),
        // Training on NVIDIA GPUs: the GPU's `TrainingBackend` for `Trainer`.
        .library(name: "Mamba2CUDATraining", targets: ["Mamba2CUDATraining"]),
        // Models from the Hugging Face Hub.
        .library(name: "Mamba2Hub", targets: ["Mamba2Hub"]),
        // Benchmarks and the GPU self-tests.
        .library(name: "Mamba2Diagnostics", targets: ["Mamba2Diagnostics"]),
        // An OpenAI-compatible HTTP server over a continuously batched backend.
        .library(name: "Mamba2Server", targets: ["Mamba2Server"]),
        .executable(name: "mamba2", targets: ["mamba2"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/swift-server/async-http-client", from: "1.37.0"),
        .package(url: "https://github.com/hummingbird-project/hummingbird", from: "2.28.1"),
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.2"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.1"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.13.0"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        // `swift package generate-documentation --target Mamba2`: the DocC catalog in Sources/Mamba2/Mamba2.docc.
        .package(url: "https://github.com/swiftlang/swift-docc-plugin", from: "1.5.0"),
    ],
    targets: [
        // Small C kernels (vectorized loops the SSD and the model run per element) and the door to the BLAS:
        // OpenBLAS on Linux (libopenblas-dev), Accelerate on macOS. No unsafe flags (SwiftPM refuses them in a
        // dependency): the floating-point licences the loops need are pragmas in their files.
        .target(
            name: "CMamba2Kernels",
            linkerSettings: [
                .linkedLibrary("pthread", .when(platforms: [.linux])),
                .linkedLibrary("dl", .when(platforms: [.linux])),
                .linkedFramework("Accelerate", .when(platforms: [.macOS])),
            ]
        ),
        // The door to NVIDIA GPUs: the driver API and NVRTC, loaded at run time with dlopen (no CUDA build).
        .target(name: "CMamba2CUDA"),
        // The core: math, SSD layer, model, checkpoints, tokenizer, generation, the backend protocol and the
        // CPU backend. No terminal I/O, no network, no GPU.
        .target(name: "Mamba2", dependencies: ["CMamba2Kernels"]),
        // Training on the CPU: the SSD and model backward, AdamW, datasets, the trainer and its checkpoints.
        .target(name: "Mamba2Training", dependencies: ["Mamba2", "CMamba2Kernels"]),
        // The GPU: devices, the kernel table and sources, the SSD and the model on the GPU, the GPU backend.
        .target(name: "Mamba2CUDA", dependencies: ["Mamba2", "CMamba2CUDA", "CMamba2Kernels"]),
        // Training on the GPU as a `TrainingBackend` (the step itself, `CUDATrainer`, is in Mamba2CUDA).
        .target(name: "Mamba2CUDATraining", dependencies: ["Mamba2", "Mamba2Training", "Mamba2CUDA"]),
        // Benchmarks behind `mamba2 bench` and the GPU self-tests behind `mamba2 selftest`.
        .target(name: "Mamba2Diagnostics", dependencies: ["Mamba2", "Mamba2Training", "Mamba2CUDA", "Mamba2CUDATraining", "CMamba2Kernels"]),
        // Models from the Hugging Face Hub, cached as huggingface_hub lays them out. Kept apart so the
        // core library needs no networking.
        .target(
            name: "Mamba2Hub",
            dependencies: ["Mamba2", .product(name: "AsyncHTTPClient", package: "async-http-client")]
        ),
        // The OpenAI-compatible server (`mamba2 serve`): HTTP routes on Hummingbird over the core's
        // ContinuousBatcher. Kept apart so the core needs no networking.
        .target(
            name: "Mamba2Server",
            dependencies: ["Mamba2", .product(name: "Hummingbird", package: "hummingbird"), .product(name: "NIOCore", package: "swift-nio"),
                           .product(name: "Prometheus", package: "swift-prometheus"),
                           .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                           .product(name: "Logging", package: "swift-log")]
        ),
        // The command line: parses arguments and calls the library. On Linux it links OpenBLAS's static
        // archive (the kernels' weak references then point into it), so the release binary starts on
        // machines without any BLAS shared library (the GPU machines have none). An executable's flags
        // are its own: no package that depends on the library sees them.
        // Fuzzing harnesses for the readers of untrusted files (scripts/fuzz builds them with libFuzzer).
        .executableTarget(name: "mamba2-fuzz", dependencies: ["Mamba2"]),
        .executableTarget(
            name: "mamba2",
            dependencies: ["Mamba2", "Mamba2Training", "Mamba2CUDA", "Mamba2CUDATraining", "Mamba2Hub", "Mamba2Diagnostics", "Mamba2Server",
                           .product(name: "ArgumentParser", package: "swift-argument-parser"),
                           .product(name: "Hummingbird", package: "hummingbird")],
            linkerSettings: [
                .unsafeFlags(["-Xlinker", "-u", "-Xlinker", "cblas_sgemm", "-Xlinker", "-u", "-Xlinker", "openblas_set_num_threads",
                              "-Xlinker", "-u", "-Xlinker", "openblas_get_config", "-Xlinker", "-u", "-Xlinker", "openblas_get_corename", "-Xlinker", "-l:libopenblas.a"], .when(platforms: [.linux])),
            ]
        ),
        // Test-only: counts heap allocations (decode must allocate nothing per token).
        .target(name: "CAllocCounter", path: "Tests/CAllocCounter"),
        // Test-only: fixtures' location, seeded random inputs, temporary files, the float64 SSD recurrence.
        .target(name: "Mamba2TestSupport", dependencies: ["Mamba2"], path: "Tests/Mamba2TestSupport"),
        // One test target per library target, and one for the command line.
        .testTarget(name: "Mamba2Tests", dependencies: ["Mamba2", "Mamba2TestSupport", "CAllocCounter", "CMamba2Kernels"], exclude: ["Fixtures"]),
        .testTarget(name: "Mamba2TrainingTests", dependencies: ["Mamba2Training", "Mamba2TestSupport"]),
        .testTarget(name: "Mamba2CUDATests", dependencies: ["Mamba2CUDA", "Mamba2TestSupport"]),
        .testTarget(name: "Mamba2CUDATrainingTests", dependencies: ["Mamba2CUDATraining", "Mamba2TestSupport"]),
        .testTarget(name: "Mamba2HubTests", dependencies: ["Mamba2Hub", "Mamba2TestSupport"]),
        .testTarget(name: "Mamba2DiagnosticsTests", dependencies: ["Mamba2Diagnostics", "Mamba2TestSupport"]),
        .testTarget(name: "Mamba2ServerTests", dependencies: ["Mamba2Server", "Mamba2TestSupport",
                                                           .product(name: "HummingbirdTesting", package: "hummingbird")]),
        .testTarget(name: "Mamba2CLITests", dependencies: ["Mamba2Training", "Mamba2TestSupport"]),
    ],
    swiftLanguageModes: [.v6]
)
