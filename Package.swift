// swift-tools-version:6.0
// Mamba-2 for Swift: the SSD layer, the Mamba-2 language model, and the `mamba2` command.
import PackageDescription

let package = Package(
    name: "Mamba2",
    platforms: [.macOS(.v15)],
    products: [
        .library(name: "Mamba2", targets: ["Mamba2"]),
        .library(name: "Mamba2Hub", targets: ["Mamba2Hub"]),
        .executable(name: "mamba2", targets: ["mamba2"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/swift-server/async-http-client", from: "1.37.0"),
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
        // The library: math, SSD layer, model, checkpoints. No terminal I/O.
        .target(
            name: "Mamba2",
            dependencies: ["CMamba2Kernels", "CMamba2CUDA"],
            swiftSettings: []
        ),
        // Models from the Hugging Face Hub, cached as huggingface_hub lays them out. Kept apart so the
        // core library needs no networking.
        .target(
            name: "Mamba2Hub",
            dependencies: ["Mamba2", .product(name: "AsyncHTTPClient", package: "async-http-client")]
        ),
        // The command line: parses arguments and calls the library. On Linux it links OpenBLAS's static
        // archive (the kernels' weak references then point into it), so the release binary starts on
        // machines without any BLAS shared library (the GPU machines have none). An executable's flags
        // are its own: no package that depends on the library sees them.
        .executableTarget(
            name: "mamba2",
            dependencies: ["Mamba2", "Mamba2Hub", .product(name: "ArgumentParser", package: "swift-argument-parser")],
            linkerSettings: [
                .unsafeFlags(["-Xlinker", "-u", "-Xlinker", "cblas_sgemm", "-Xlinker", "-u", "-Xlinker", "openblas_set_num_threads",
                              "-Xlinker", "-u", "-Xlinker", "openblas_get_config", "-Xlinker", "-l:libopenblas.a"], .when(platforms: [.linux])),
            ]
        ),
        // Test-only: counts heap allocations (decode must allocate nothing per token).
        .target(name: "CAllocCounter", path: "Tests/CAllocCounter"),
        .testTarget(
            name: "Mamba2Tests",
            dependencies: ["Mamba2", "Mamba2Hub", "CAllocCounter"],
            exclude: ["Fixtures"]
        ),
    ],
    swiftLanguageModes: [.v6]
)
