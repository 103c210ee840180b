import Mamba2

/// The SSD backward on the GPU in plain float32 (`CUDAKernelSource.ssdBackward`): the reference of the
/// tensor-core backward, as `CUDASSD` is of the tensor-core forward. Same contract as the CPU's
/// `SSD.backward`: gradients of every input from dLoss/dy and (optionally) dLoss/d(final states); packed
/// rows (seqIdx) included, `sequenceInitialStates` not taken.
///
/// What is kept and what is recomputed: the backward reruns the plain forward (chunk states, state
/// passing, C·Bᵀ and, with a gate, the output before it), as the reference implementation recomputes its
/// chunk states; nothing per token is saved between forward and backward but the inputs.
public final class CUDASSDBackward: @unchecked Sendable {
    public let device: CUDADevice
    let forward: CUDASSD
    let kernels: PlainSSDBackwardKernels

    public init(device: CUDADevice) throws {
        self.device = device
        forward = try CUDASSD(device: device)
        kernels = try PlainSSDBackwardKernels(device: device)
    }

    /// Inputs, output gradients and every intermediate on the device, for timing the kernels alone.
    public struct Prepared {
        package let fwd: CUDASSD.Prepared
        let gradY: CUDABuffer
        let gradFinal: CUDABuffer?
        // intermediates
        let dYp, dHout, dStates, ddecay, dCB, Z, gdt, dApart, dRaw64, dBh, dCh: CUDABuffer
        // the gradients
        package let dX, dRaw, dBias, dA, dB, dC: CUDABuffer
        package let dD, dz, dInitial: CUDABuffer?
        /// Every gradient's buffer (for poisoning them before a check).
        package var gradientBuffers: [CUDABuffer] { [dX, dRaw, dBias, dA, dB, dC] + [dD, dz, dInitial].compactMap { $0 } }
    }

    public func prepare(_ input: SSDInput, options: SSDOptions, gradY: Tensor, gradFinalStates: Tensor?) throws -> Prepared {
        var fwd = try forward.prepare(input, options: options)
        let (b, L, H, P, G, N, nchunks, Q) = (fwd.b, fwd.L, fwd.H, fwd.P, fwd.G, fwd.N, fwd.nchunks, fwd.Q)
        guard gradY.shape == [b, L, H, P] else { throw Mamba2Error.shape(argument: "grad_y", expected: "(b, L, H, P)", got: gradY.shape) }
        if let g = gradFinalStates, g.shape != [b, H, P, N] {
            throw Mamba2Error.shape(argument: "grad_final_states", expected: "(b, H, P, N)", got: g.shape)
        }
        if input.z != nil { fwd.yPre = try CUDABuffer(count: b * L * H * P, on: device) }
        let tokens = b * L
        let chunkStates = b * H * nchunks * P * N, squares = b * H * nchunks * Q * Q
        func buf(_ n: Int) throws -> CUDABuffer { try CUDABuffer(count: max(n, 1), on: device) }
        return Prepared(
            fwd: fwd, gradY: try CUDABuffer(gradY.data, on: device),
            gradFinal: try gradFinalStates.map { try CUDABuffer($0.data, on: device) },
            dYp: try buf(tokens * H * P), dHout: try buf(chunkStates), dStates: try buf(chunkStates), ddecay: try buf(b * H * nchunks),
            // Z, d dt, the raw dt's gradient for the dt_bias sum and the A parts in float64
            dCB: try buf(squares), Z: try buf(2 * squares), gdt: try buf(2 * tokens * H), dApart: try buf(2 * b * H * nchunks),
            dRaw64: try buf(2 * tokens * H),
            dBh: try buf(H * tokens * N), dCh: try buf(H * tokens * N),
            dX: try buf(tokens * H * P), dRaw: try buf(tokens * H), dBias: try buf(H), dA: try buf(H),
            dB: try buf(tokens * G * N), dC: try buf(tokens * G * N),
            dD: try input.D.map { try buf($0.count) }, dz: input.z == nil ? nil : try buf(tokens * H * P),
            dInitial: input.initialStates == nil ? nil : try buf(b * H * P * N))
    }

    /// Launches the forward's recomputation and the backward (asynchronously; synchronize waits).
    public func launch(_ p: Prepared) throws {
        let f = p.fwd
        let (b, L, H, P, G, N, Q, nchunks) = (f.b, f.L, f.H, f.P, f.G, f.N, f.Q, f.nchunks)
        try forward.launch(f)
        let seqStart = f.packed?.seqStart.pointer ?? 0
        let n = b * L * H * P

        let a1 = KernelArguments()
        a1.add(Int64(n)); a1.add(Int32(H)); a1.add(Int32(P)); a1.add(p.gradY); a1.add(f.z?.pointer ?? 0); a1.add(f.yPre?.pointer ?? 0)
        a1.add(f.D?.pointer ?? 0); a1.add(Int32(f.dPerChannel ? 1 : 0)); a1.add(p.dYp); a1.add(p.dz?.pointer ?? 0); a1.add(p.dX)
        try kernels.gate.launch(grid: ((n + 255) / 256, 1, 1), block: (256, 1, 1), arguments: a1)

        let a2 = KernelArguments()
        for v in [L, H, P, G, N, Q] { a2.add(Int32(v)) }
        a2.add(p.dYp); a2.add(f.C); a2.add(f.cumOut); a2.add(seqStart); a2.add(p.dHout)
        try kernels.dstatesOut.launch(grid: (nchunks, H, b), block: (256, 1, 1), sharedBytes: Q * 4, arguments: a2)

        let a3 = KernelArguments()
        for v in [H, P, N, nchunks] { a3.add(Int32(v)) }
        a3.add(f.chunkDecay); a3.add(f.statesIn); a3.add(p.dHout); a3.add(p.gradFinal?.pointer ?? 0); a3.add(p.dStates)
        a3.add(p.ddecay); a3.add(p.dInitial?.pointer ?? 0)
        try kernels.statePassing.launch(grid: (H, b, 1), block: (256, 1, 1), arguments: a3)

        let a4 = KernelArguments()
        for v in [L, H, P, G, N, Q] { a4.add(Int32(v)) }
        a4.add(f.x); a4.add(p.dYp); a4.add(f.B); a4.add(f.C); a4.add(f.CB); a4.add(f.A); a4.add(f.dtOut); a4.add(f.cumOut)
        a4.add(f.statesIn); a4.add(p.dStates); a4.add(f.chunkDecay); a4.add(p.ddecay); a4.add(seqStart)
        a4.add(p.dCB); a4.add(p.Z); a4.add(p.dX); a4.add(p.dBh); a4.add(p.dCh); a4.add(p.gdt); a4.add(p.dApart)
        try kernels.chunk.launch(grid: (nchunks, H, b), block: (256, 1, 1), sharedBytes: 12 * Q * 4, arguments: a4)

        let a5 = KernelArguments()
        for v in [b, L, H] { a5.add(Int32(v)) }
        a5.add(f.dt); a5.add(f.dtBias?.pointer ?? 0); a5.add(Int32(f.softplus ? 1 : 0)); a5.add(f.lo); a5.add(f.hi)
        a5.add(p.gdt); a5.add(p.dRaw); a5.add(p.dRaw64)
        try kernels.dt.launch(grid: ((b * L * H + 255) / 256, 1, 1), block: (256, 1, 1), arguments: a5)

        let a6 = KernelArguments()
        for v in [b, L, H, P, nchunks] { a6.add(Int32(v)) }
        a6.add(p.dRaw64); a6.add(p.dApart); a6.add(p.dYp); a6.add(f.x); a6.add(Int32(f.D == nil ? 0 : 1))
        a6.add(Int32(f.dPerChannel ? 1 : 0)); a6.add(p.dBias); a6.add(p.dA); a6.add(p.dD?.pointer ?? 0)
        try kernels.heads.launch(grid: (H, 1, 1), block: (256, 1, 1), arguments: a6)

        let a7 = KernelArguments()
        a7.add(Int64(b * L)); a7.add(Int32(H)); a7.add(Int32(G)); a7.add(Int32(N)); a7.add(p.dBh); a7.add(p.dCh); a7.add(p.dB); a7.add(p.dC)
        try kernels.groups.launch(grid: ((b * L * G * N + 255) / 256, 1, 1), block: (256, 1, 1), arguments: a7)
    }

    /// The gradients, downloaded.
    public func gradients(_ p: Prepared, input: SSDInput) throws -> SSDGradients {
        SSDGradients(
            x: Tensor(shape: input.x.shape, data: try p.dX.download(input.x.count, as: Float.self)),
            dt: Tensor(shape: input.dt.shape, data: try p.dRaw.download(input.dt.count, as: Float.self)),
            dtBias: Tensor(shape: [p.fwd.H], data: try p.dBias.download(p.fwd.H, as: Float.self)),
            A: Tensor(shape: [p.fwd.H], data: try p.dA.download(p.fwd.H, as: Float.self)),
            B: Tensor(shape: input.B.shape, data: try p.dB.download(input.B.count, as: Float.self)),
            C: Tensor(shape: input.C.shape, data: try p.dC.download(input.C.count, as: Float.self)),
            D: try input.D.map { Tensor(shape: $0.shape, data: try p.dD!.download($0.count, as: Float.self)) },
            z: try input.z.map { Tensor(shape: $0.shape, data: try p.dz!.download($0.count, as: Float.self)) },
            initialStates: try input.initialStates.map { Tensor(shape: $0.shape, data: try p.dInitial!.download($0.count, as: Float.self)) })
    }

    /// Runs forward and backward: every input's gradient.
    public func run(_ input: SSDInput, options: SSDOptions, gradY: Tensor, gradFinalStates: Tensor? = nil) throws -> SSDGradients {
        let p = try prepare(input, options: options, gradY: gradY, gradFinalStates: gradFinalStates)
        try launch(p)
        try device.synchronize()
        return try gradients(p, input: input)
    }
}

