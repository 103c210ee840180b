import Mamba2
import Mamba2CUDA
import Mamba2Training
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
        public init(name: String, relativeError: Double, tolerance: Double, allWritten: Bool) {
            self.name = name; self.relativeError = relativeError; self.tolerance = tolerance; self.allWritten = allWritten
        }
        /// `got` against `want`: the relative error of the whole; a NaN left in `got` (an output never written
        /// over its poison) fails whatever the error.
        public init(name: String, got: [Float], want: [Float], tolerance: Double) {
            let error = Tensor(shape: [got.count], data: got).relativeError(to: Tensor(shape: [want.count], data: want))
            self.init(name: name, relativeError: error, tolerance: tolerance, allWritten: !got.contains { $0.isNaN })
        }
        /// A comparison whose path was not taken (the model or device does not allow it): a failure, not a skip.
        public static func notTaken(_ name: String, path: String) -> Check {
            Check(name: name + " (\(path) NOT taken)", relativeError: 1, tolerance: 0, allWritten: true)
        }
    }

    public static func run(device: CUDADevice, seed: UInt64) throws -> [Check] {
        // The model's own decode step kernels (float32 build), fed as the model feeds it: x, B, C in one row
        // (x | B | C, conv_dim = H·P + 2·G·N), dt raw in another (ld = H, offset 0).
        let kernels = try ModelKernels(device: device, precision: .f32)
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
            let stateGPU = try CUDABuffer(stateCPU, on: device)
            mk_ssd_decode_step(Int32(H), Int32(P), Int32(N), Int32(G), dtRaw, dtBias, A, 0, .infinity, x, B, C, D,
                               perChannel ? 1 : 0, &stateCPU, &yCPU, 1)
            let yGPU = try CUDABuffer([Float](repeating: .nan, count: H * P), on: device)  // poisoned: every element must be written
            let args = KernelArguments()
            for v in [H, P, N, G, H * P, H * P + 2 * G * N] { args.add(Int32(v)) }
            args.add(try CUDABuffer(x + B + C, on: device)); args.add(try CUDABuffer(dtRaw, on: device)); args.add(Int32(H)); args.add(Int32(0))
            args.add(try CUDABuffer(dtBias, on: device)); args.add(try CUDABuffer(A, on: device)); args.add(Float(0)); args.add(Float.infinity)
            args.add(try CUDABuffer(D, on: device)); args.add(Int32(perChannel ? 1 : 0)); args.add(stateGPU); args.add(Int32(0)); args.add(yGPU)
            args.add(UInt64(0)); args.add(Int32(0)); args.add(UInt64(0)); args.add(UInt64(0))  // no hand-over to a streaming out_proj
            // The 130m shape takes m_ssd_step_n128 (64 channels a block), the odd one m_ssd_step (32, masked).
            let n128 = N == 128 && P % 64 == 0
            try (n128 ? kernels.ssdStepN128 : kernels.ssdStep).launch(grid: (H * ((P + (n128 ? 63 : 31)) / (n128 ? 64 : 32)), 1, 1),
                                                                      block: (256, 1, 1), arguments: args)
            try device.synchronize()
            let y = try yGPU.download(), s = try stateGPU.download()
            checks.append(Check(name: "ssd decode step H=\(H) P=\(P) N=\(N) G=\(G)\(perChannel ? " D per channel" : "") y",
                                relativeError: Tensor(shape: [y.count], data: y).relativeError(to: Tensor(shape: [y.count], data: yCPU)),
                                tolerance: 1e-5, allWritten: !y.contains { $0.isNaN }))
            checks.append(Check(name: "ssd decode step H=\(H) P=\(P) N=\(N) G=\(G) state",
                                relativeError: Tensor(shape: [s.count], data: s).relativeError(to: Tensor(shape: [s.count], data: stateCPU)),
                                tolerance: 1e-5, allWritten: !s.contains { $0.isNaN }))
        }
        // The chunked SSD forward against the CPU's, with every option, on fresh inputs; y poisoned first.
        let ssd = try CUDASSD(device: device)
        for (b, L, H, P, G, N, Q, packed) in [(2, 300, 6, 5, 3, 7, 64, false), (1, 2048, 24, 64, 1, 128, 256, false), (2, 300, 6, 5, 3, 7, 64, true)] {
            func normal(_ shape: [Int]) -> Tensor { Tensor(shape: shape, data: (0..<shape.reduce(1, *)).map { _ in rng.normal() }) }
            var input = SSDInput(x: normal([b, L, H, P]), dt: normal([b, L, H]),
                                 A: Tensor(shape: [H], data: (0..<H).map { _ in -1 - 15 * rng.uniform() }),
                                 B: normal([b, L, G, N]), C: normal([b, L, G, N]), D: normal([H, P]), z: normal([b, L, H, P]),
                                 dtBias: Tensor(shape: [H], data: (0..<H).map { _ in -4 + rng.uniform() }),
                                 initialStates: normal([b, H, P, N]))
            if L == 2048 { input.D = normal([H]); input.z = nil }
            if packed { input.seqIdx = packedSequences(rows: b, length: L, rng: &rng) }
            let options = SSDOptions(form: .chunked, chunkSize: Q, dtSoftplus: true, dtLimit: L == 300 && !packed ? (0.001, 0.1) : (0, .infinity))
            let cpu = try SSD.run(input, options: options)
            let prepared = try ssd.prepare(input, options: options)
            try prepared.y.upload([Float](repeating: .nan, count: prepared.y.count))
            try ssd.launch(prepared)
            try device.synchronize()
            let y = try prepared.y.download(), s = try prepared.finalStates.download()
            let label = "chunked SSD b=\(b) L=\(L) H=\(H) P=\(P) G=\(G) N=\(N) Q=\(Q)\(packed ? " packed \(cpu.sequenceStates.shape[0]) sequences" : "")"
            checks.append(Check(name: label + " y", relativeError: Tensor(shape: cpu.y.shape, data: y).relativeError(to: cpu.y),
                                tolerance: 1e-5, allWritten: !y.contains { $0.isNaN }))
            checks.append(Check(name: label + " final states",
                                relativeError: Tensor(shape: cpu.finalStates.shape, data: s).relativeError(to: cpu.finalStates),
                                tolerance: 1e-5, allWritten: !s.contains { $0.isNaN }))
            if let out = prepared.sequenceStates {
                let q = try out.download()
                checks.append(Check(name: label + " sequence states",
                                    relativeError: Tensor(shape: cpu.sequenceStates.shape, data: q).relativeError(to: cpu.sequenceStates),
                                    tolerance: 1e-5, allWritten: q.count == cpu.sequenceStates.count && !q.contains { $0.isNaN }))
            }
        }
        checks += try tensorCoreChecks(device: device, rng: &rng)
        return checks
    }

    /// The tensor-core SSD (16-bit inputs) against the CPU run on the same 16-bit-rounded inputs, for both
    /// element types, N = 64 and 128, with every option (groups, D per channel, gate, initial states,
    /// dt clamp) and lengths that are not a multiple of the 128-token chunk. y is poisoned (NaN) first.
    /// Tolerance: the rounding of the kernel's 16-bit operands and output, 2^-8 (bf16) or 2^-11 (fp16)
    /// relative per element, a few of them compounded: 1e-2 (bf16), 2e-3 (fp16) on y; the final states
    /// (float32 output, 16-bit operands) the same.
    static func tensorCoreChecks(device: CUDADevice, rng: inout SplitMix64) throws -> [Check] {
        var checks: [Check] = []
        for type in [CUDATensorCoreSSD.ElementType.bf16, .f16] {
            for N in [64, 128] {
                let tc = try CUDATensorCoreSSD(device: device, elementType: type, stateSize: N)
                // (the last two: packed rows in one range of chunks and, at 3,000 tokens, in 6 ranges of the Hopper chain
                // kernel, as 2,048 and 8,000 tokens are in 4 and 13: CUDATensorCoreSSD.chainPlan)
                for (b, L, H, G, options, packed) in [(2, 300, 4, 2, true, false), (1, 2048, 24, 1, false, false), (3, 8000, 8, 1, true, false),
                                                      (2, 300, 4, 1, true, true), (2, 3000, 4, 1, true, true)] {
                    func normal(_ shape: [Int]) -> Tensor { Tensor(shape: shape, data: (0..<shape.reduce(1, *)).map { _ in rng.normal() }) }
                    func rounded(_ t: Tensor) -> Tensor { Tensor(shape: t.shape, data: tc.floats(tc.halves(t.data))) }
                    let P = 64
                    var input = SSDInput(x: rounded(normal([b, L, H, P])), dt: normal([b, L, H]),
                                         A: Tensor(shape: [H], data: (0..<H).map { _ in -1 - 15 * rng.uniform() }),
                                         B: rounded(normal([b, L, G, N])), C: rounded(normal([b, L, G, N])), D: normal([H]),
                                         dtBias: Tensor(shape: [H], data: (0..<H).map { _ in -4 + rng.uniform() }))
                    if options {
                        input.D = normal([H, P]); input.z = rounded(normal([b, L, H, P])); input.initialStates = normal([b, H, P, N])
                    }
                    if packed {
                        // steep decays as well (dt ≈ 1.5 to 3.5, A down to −16: a 16-token tile's decay
                        // underflows), for the factored decay of the tiles left of the diagonal
                        input.seqIdx = packedSequences(rows: b, length: L, rng: &rng)
                        input.dtBias = Tensor(shape: [H], data: (0..<H).map { _ in 1 + 2 * rng.uniform() })
                    }
                    let opts = SSDOptions(form: .chunked, chunkSize: 256, dtSoftplus: true, dtLimit: options && !packed ? (0.001, 0.1) : (0, .infinity))
                    let cpu = try SSD.run(input, options: opts)
                    let tol = type == .bf16 ? 1e-2 : 2e-3
                    let what = packed ? " packed \(cpu.sequenceStates.shape[0]) sequences, steep decay, D per channel, z, h0" : options ? " D per channel, z, h0, dt clamp" : ""
                    // The three kernels on mma.sync, then (where they apply) on warp-group products and the fused kernel,
                    // each against the CPU and against the first: they compute the same values but for the order of
                    // float32 sums (within the products, over chunks, and of the state weights w, which each kernel makes
                    // in its own code). So y, rounded to 16 bits last, may differ by one 16-bit rounding of some outputs:
                    // at most 2^-8 (bf16) or 2^-11 (fp16) relative; and a chunk state, rounded to 16 bits when stored, may
                    // round to the neighbouring value, so the final states take the same bound. (Before 2026-12-04 the
                    // fused kernel's final states had a bound of 1e-5, for sums of identical 16-bit chunk states; they
                    // are not always identical: 4.5e-6 and 6.0e-6 were seen, and 1.78e-5 once, the size of a few of
                    // 196,608 elements one bf16 rounding apart.)
                    var chunksOut: (y: [Float], s: [Float])? = nil
                    let forms: [(CUDATensorCoreSSD.Path, CUDATensorCoreSSD.Products)] = [(.chunks, .warp), (.chunks, .warpGroup), (.fused, .warp)]
                    for (path, products) in forms {
                        tc.path = path
                        tc.products = products
                        if path == .fused && !tc.fusedApplies(packed: packed) { continue }
                        if path == .chunks && products != tc.productsInUse { continue }
                        let p = try tc.prepare(input, options: opts)
                        let nan: UInt16 = type == .bf16 ? 0x7FC0 : 0x7E00
                        try p.y.upload([UInt16](repeating: nan, count: b * L * H * P))
                        try p.finalStates.fill(bitPattern: 0x7FC0_0000)
                        try tc.launch(p)
                        try device.synchronize()
                        let y = tc.floats(try p.y.download(b * L * H * P, as: UInt16.self)), s = try p.finalStates.download()
                        let label = "tensor-core SSD \(path == .fused ? "fused" : "3 kernels, \(products.rawValue),") \(type.rawValue) b=\(b) L=\(L) H=\(H) P=\(P) G=\(G) N=\(N)" + what
                        if let c = chunksOut {
                            let bound = type == .bf16 ? 0x1p-8 : 0x1p-11
                            checks.append(Check(name: label + " y against the 3 kernels (mma)", relativeError: Tensor(shape: cpu.y.shape, data: y).relativeError(to: Tensor(shape: cpu.y.shape, data: c.y)),
                                                tolerance: bound, allWritten: !y.contains { $0.isNaN }))
                            checks.append(Check(name: label + " final states against the 3 kernels (mma)",
                                                relativeError: Tensor(shape: cpu.finalStates.shape, data: s).relativeError(to: Tensor(shape: cpu.finalStates.shape, data: c.s)),
                                                tolerance: bound, allWritten: !s.contains { $0.isNaN }))
                        } else {
                            chunksOut = (y, s)
                        }
                        checks.append(Check(name: label + " y", relativeError: Tensor(shape: cpu.y.shape, data: y).relativeError(to: cpu.y),
                                            tolerance: tol, allWritten: !y.contains { $0.isNaN }))
                        checks.append(Check(name: label + " final states",
                                            relativeError: Tensor(shape: cpu.finalStates.shape, data: s).relativeError(to: cpu.finalStates),
                                            tolerance: tol, allWritten: !s.contains { $0.isNaN }))
                        if let out = p.sequenceStates {
                            // the states of sequences ending inside a row go through one 16-bit incoming chunk state more
                            let q = try out.download()
                            checks.append(Check(name: label + " sequence states",
                                                relativeError: Tensor(shape: cpu.sequenceStates.shape, data: q).relativeError(to: cpu.sequenceStates),
                                                tolerance: tol, allWritten: q.count == cpu.sequenceStates.count && !q.contains { $0.isNaN }))
                        }
                    }
                }
            }
        }
        return checks
    }

    /// seq_idx for packed rows of 300 tokens: row 0 with boundaries on the edges of the kernels' chunks
    /// (64 for the float32 test, 128 for the tensor cores) and sequences of one and five tokens; the other
    /// rows with 1 to 4 boundaries drawn at random.
    static func packedSequences(rows b: Int, length L: Int, rng: inout SplitMix64) -> [Int32] {
        var seq: [Int32] = []
        var id: Int32 = 0
        for r in 0..<b {
            var cuts: Set<Int> = r == 0 ? [1, 63, 64, 127, 128, 133, 134] : []
            if r > 0 { for _ in 0..<(1 + Int(rng.uniform() * 4)) { cuts.insert(1 + Int(rng.uniform() * Float(L - 1))) } }
            for t in 0..<L {
                if cuts.contains(t) { id += 1 }
                seq.append(id)
            }
            id += 1
        }
        return seq
    }
}
