import Mamba2
/// The SSD layer on the GPU: the chunked forward of `CUDAKernelSource.ssdChunked`, same inputs and outputs
/// as `SSD.run`, packed rows (seqIdx) included; a state per sequence (`sequenceInitialStates`) is not taken yet.
public final class CUDASSD: @unchecked Sendable {
    let device: CUDADevice
    let kernels: PlainSSDKernels

    public init(device: CUDADevice) throws {
        self.device = device
        kernels = try PlainSSDKernels(device: device)
    }

    /// Inputs uploaded once, for timing the kernels alone.
    public struct Prepared {
        let b, L, H, P, G, N, Q, nchunks: Int
        package let x, dt, A, B, C, y, dtOut, cumOut, chunkStates, chunkDecay, statesIn, finalStates, CB: CUDABuffer
        let dtBias, D, z, initial: CUDABuffer?
        /// The output before the gate (b, L, H, P), written only where asked for (the backward's z gradient).
        package var yPre: CUDABuffer? = nil
        let dPerChannel, softplus: Bool
        let lo, hi: Float
        /// Packed rows, and the (S, H, P, N) state at the end of each of their sequences.
        var packed: CUDAPackedRows? = nil
        package var sequenceStates: CUDABuffer? = nil
    }

    public func prepare(_ input: SSDInput, options: SSDOptions) throws -> Prepared {
        let problem = try SSDProblem(input, options: options)  // the CPU's shape and seq_idx checks
        guard input.sequenceInitialStates == nil else {
            throw Mamba2Error.invalidArgument("sequence_initial_states", reason: "a state per packed sequence is not supported on the GPU yet (initial_states per row is)")
        }
        let packed = try CUDAPackedRows(on: device, problem)
        let (b, L, H, P) = (input.x.shape[0], input.x.shape[1], input.x.shape[2], input.x.shape[3])
        let (G, N) = (input.B.shape[2], input.B.shape[3])
        let Q = min(options.chunkSize, 256)
        let nchunks = (L + Q - 1) / Q
        return Prepared(
            b: b, L: L, H: H, P: P, G: G, N: N, Q: Q, nchunks: nchunks,
            x: try CUDABuffer(input.x.data, on: device), dt: try CUDABuffer(input.dt.data, on: device), A: try CUDABuffer(input.A.data, on: device),
            B: try CUDABuffer(input.B.data, on: device), C: try CUDABuffer(input.C.data, on: device), y: try CUDABuffer(count: b * L * H * P, on: device),
            dtOut: try CUDABuffer(count: b * H * L, on: device), cumOut: try CUDABuffer(count: 2 * b * H * L, on: device),  // float64
            chunkStates: try CUDABuffer(count: b * H * nchunks * P * N, on: device), chunkDecay: try CUDABuffer(count: b * H * nchunks, on: device),
            statesIn: try CUDABuffer(count: b * H * nchunks * P * N, on: device), finalStates: try CUDABuffer(count: b * H * P * N, on: device),
            CB: try CUDABuffer(count: b * G * nchunks * Q * Q, on: device),
            dtBias: try input.dtBias.map { try CUDABuffer($0.data, on: device) }, D: try input.D.map { try CUDABuffer($0.data, on: device) },
            z: try input.z.map { try CUDABuffer($0.data, on: device) }, initial: try input.initialStates.map { try CUDABuffer($0.data, on: device) },
            dPerChannel: input.D?.shape.count == 2, softplus: options.dtSoftplus, lo: options.dtLimit.lo, hi: options.dtLimit.hi,
            packed: packed, sequenceStates: try packed.map { try CUDABuffer(count: $0.count * H * P * N, on: device) })
    }

    /// Launches the three kernels (asynchronously; call cudaSynchronize to wait).
    public func launch(_ p: Prepared) throws {
        let a1 = KernelArguments()
        for v in [p.L, p.H, p.P, p.G, p.N, p.Q] { a1.add(Int32(v)) }
        a1.add(p.x); a1.add(p.dt); a1.add(p.dtBias?.pointer ?? 0); a1.add(p.A); a1.add(Int32(p.softplus ? 1 : 0))
        a1.add(p.lo); a1.add(p.hi); a1.add(p.B); a1.add(p.packed?.seqStart.pointer ?? 0); a1.add(p.dtOut); a1.add(p.cumOut); a1.add(p.chunkStates); a1.add(p.chunkDecay)
        try kernels.chunkState.launch(grid: (p.nchunks, p.H, p.b), block: (256, 1, 1), sharedBytes: p.Q * 4, arguments: a1)

        let a2 = KernelArguments()
        for v in [p.H, p.P, p.N, p.nchunks] { a2.add(Int32(v)) }
        a2.add(p.chunkStates); a2.add(p.chunkDecay); a2.add(p.initial?.pointer ?? 0); a2.add(p.statesIn); a2.add(p.finalStates)
        try kernels.statePassing.launch(grid: (p.H, p.b, 1), block: (256, 1, 1), arguments: a2)

        let ab = KernelArguments()
        for v in [p.L, p.G, p.N, p.Q] { ab.add(Int32(v)) }
        ab.add(p.B); ab.add(p.C); ab.add(p.CB)
        try kernels.bmm.launch(grid: (p.nchunks, p.G, p.b), block: (256, 1, 1), arguments: ab)

        let a3 = KernelArguments()
        for v in [p.L, p.H, p.P, p.G, p.N, p.Q] { a3.add(Int32(v)) }
        a3.add(p.x); a3.add(p.z?.pointer ?? 0); a3.add(p.CB); a3.add(p.C); a3.add(p.D?.pointer ?? 0); a3.add(Int32(p.dPerChannel ? 1 : 0))
        a3.add(p.dtOut); a3.add(p.cumOut); a3.add(p.statesIn); a3.add(p.packed?.seqStart.pointer ?? 0); a3.add(p.y); a3.add(p.yPre?.pointer ?? 0)
        // Shared memory: the (16, Q) mask tile and the (N, P) incoming state; larger layers than fit
        // (P·N over 8192 floats) are refused until the kernel tiles over N.
        let tiles = (p.Q + 15) / 16
        let shared = (16 * p.Q + p.P * p.N) * 4
        guard shared <= 48 * 1024 else {
            throw Mamba2Error.invalidArgument("state", reason: "P·N = \(p.P * p.N) is too large for the GPU chunk-scan kernel's shared memory yet")
        }
        try kernels.chunkScan.launch(grid: (p.nchunks * tiles, p.H, p.b), block: (256, 1, 1), sharedBytes: shared, arguments: a3)
        if let packed = p.packed, let out = p.sequenceStates {
            try packed.launchSequenceStates(kernels.sequenceStates, L: p.L, H: p.H, P: p.P, G: p.G, N: p.N, Q: p.Q,
                                            nchunks: p.nchunks, x: p.x, B: p.B, dtOut: p.dtOut, cumOut: p.cumOut, statesIn: p.statesIn,
                                            initial: p.initial, finalStates: p.finalStates, out: out)
        }
    }

    /// Runs the layer: y, the final states of the rows and of every sequence (as `SSD.run`'s).
    public func run(_ input: SSDInput, options: SSDOptions) throws -> (y: Tensor, finalStates: Tensor, sequenceStates: Tensor) {
        let p = try prepare(input, options: options)
        try launch(p)
        try device.synchronize()
        let finalStates = Tensor(shape: [p.b, p.H, p.P, p.N], data: try p.finalStates.download())
        let sequenceStates = try p.sequenceStates.map { Tensor(shape: [p.packed!.count, p.H, p.P, p.N], data: try $0.download()) } ?? finalStates
        return (Tensor(shape: [p.b, p.L, p.H, p.P], data: try p.y.download()), finalStates, sequenceStates)
    }
}
