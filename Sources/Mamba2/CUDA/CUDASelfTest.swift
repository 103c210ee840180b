import CMamba2Kernels

/// GPU-versus-CPU checks for `mamba2 selftest --device cuda`: fresh random inputs, every output element
/// poisoned (NaN) before the kernel runs and checked written, results compared with the CPU kernels.
public enum CUDASelfTest {
    public struct Check: Sendable {
        public var name: String
        public var relativeError: Double
        public var tolerance: Double
        public var allWritten: Bool
        public var passed: Bool { allWritten && relativeError <= tolerance }
    }

    public static func run(device: CUDADevice, seed: UInt64) throws -> [Check] {
        let kernels = try device.compile(CUDAKernelSource.ssdDecodeStep, name: "ssd_decode_step.cu", kernels: ["ssd_decode_step"])
        var rng = SplitMix64(seed: seed)
        var checks: [Check] = []
        // The mamba2-130m decode shape, and an odd one with groups and D per channel.
        for (H, P, N, G, perChannel) in [(24, 64, 128, 1, false), (12, 33, 17, 3, true)] {
            func normal(_ n: Int) -> [Float] { (0..<n).map { _ in rng.normal() } }
            func uniform(_ n: Int, _ lo: Float, _ hi: Float) -> [Float] { (0..<n).map { _ in lo + (hi - lo) * rng.uniform() } }
            let dtRaw: [Float] = normal(H)
            let dtBias: [Float] = uniform(H, -4, -3)
            let A: [Float] = uniform(H, -16, -1)
            let x: [Float] = normal(H * P), B: [Float] = normal(G * N), C: [Float] = normal(G * N)
            let D: [Float] = normal(perChannel ? H * P : H)
            var stateCPU: [Float] = normal(H * P * N)
            var yCPU = [Float](repeating: 0, count: H * P)
            let stateGPU = try CUDABuffer(stateCPU)
            mk_ssd_decode_step(Int32(H), Int32(P), Int32(N), Int32(G), dtRaw, dtBias, A, 0, .infinity, x, B, C, D,
                               perChannel ? 1 : 0, &stateCPU, &yCPU, 1)
            let yGPU = try CUDABuffer([Float](repeating: .nan, count: H * P))  // poisoned: every element must be written
            let args = KernelArguments()
            args.add(Int32(H)); args.add(Int32(P)); args.add(Int32(N)); args.add(Int32(G))
            for v in [dtRaw, dtBias, A] { args.add(try CUDABuffer(v)) }
            args.add(Float(0)); args.add(Float.infinity)
            for v in [x, B, C, D] { args.add(try CUDABuffer(v)) }
            args.add(Int32(perChannel ? 1 : 0)); args.add(stateGPU); args.add(yGPU)
            try kernels["ssd_decode_step"]!.launch(grid: (H, (P + 127) / 128, 1), block: (min(P, 128), 1, 1), arguments: args)
            try cudaSynchronize()
            let y = try yGPU.download(), s = try stateGPU.download()
            checks.append(Check(name: "ssd decode step H=\(H) P=\(P) N=\(N) G=\(G)\(perChannel ? " D per channel" : "") y",
                                relativeError: Tensor(shape: [y.count], data: y).relativeError(to: Tensor(shape: [y.count], data: yCPU)),
                                tolerance: 1e-5, allWritten: !y.contains { $0.isNaN }))
            checks.append(Check(name: "ssd decode step H=\(H) P=\(P) N=\(N) G=\(G) state",
                                relativeError: Tensor(shape: [s.count], data: s).relativeError(to: Tensor(shape: [s.count], data: stateCPU)),
                                tolerance: 1e-5, allWritten: !s.contains { $0.isNaN }))
        }
        return checks
    }
}
