import Mamba2

/// The SSD backward on the GPU's tensor cores for 16-bit inputs (`CUDAKernelSource.ssdTensorCoreBackward`),
/// beside the plain float32 `CUDASSDBackward`, its reference. Same inputs as `CUDATensorCoreSSD` (head
/// dimension 64, N = 32, 64, 96 or 128, chunks of 128 tokens); the output gradient dy is taken in the
/// 16-bit type, and dx, dz, dB and dC come back in it; dt, dt_bias, A, D and the initial states' gradients
/// are float32.
///
/// What the forward keeps for the backward, per token and head: dt after its transform and the
/// chunk-local cumulative decay (float32, 8 bytes), and with a gate the output before it (16-bit, 2·P bytes);
/// per chunk and head the incoming state (16-bit, 2·P·N bytes, i.e. 2·P·N/128 bytes a token: 128 at
/// N = 128, the size of x). The chunk states themselves and C·Bᵀ are recomputed, as in the reference.
public final class CUDATensorCoreSSDBackward: @unchecked Sendable {
    public let forward: CUDATensorCoreSSD
    let kernels: TensorCoreSSDBackwardKernels
    let shared: (dstates: Int, chunk: Int, dbc: Int)
    public var device: CUDADevice { forward.device }

    /// Head parts of the chunk kernel for the next `prepare` instead of `headSplits`' choice (the self-test
    /// checks both one part and several); ignored unless it divides the heads per group.
    package var headSplitsOverride: Int?

    public init(device: CUDADevice, elementType: CUDATensorCoreSSD.ElementType, stateSize N: Int) throws {
        forward = try CUDATensorCoreSSD(device: device, elementType: elementType, stateSize: N)
        forward.path = .chunks  // the backward reads the three kernels' dt, cum and incoming states
        kernels = try TensorCoreSSDBackwardKernels(device: device, f16: elementType == .f16, stateSize: N)
        shared = CUDAKernelSource.tensorCoreBackwardShared(stateSize: N)
        try kernels.dstates.allowSharedMemory(shared.dstates)
        try kernels.chunk.allowSharedMemory(shared.chunk)
        try kernels.dbc.allowSharedMemory(shared.dbc)
    }

    /// The forward's inputs and saved values, the output gradients, every intermediate and the gradients.
    public struct Prepared {
        package var fwd: CUDATensorCoreSSD.Prepared
        let gradY: CUDABuffer            // 16-bit (b, L, H, P)
        let gradFinal: CUDABuffer?       // float32 (b, H, P, N)
        let dYp: CUDABuffer              // 16-bit: gradY itself without a gate
        let dHout: CUDABuffer            // 16-bit (b, H, chunks, P, N), divided by dHscale
        let dHscale: CUDABuffer          // float32 (b, H, chunks): exp(cum at the chunk's first token)
        let dStates: CUDABuffer          // 16-bit (b, H, chunks, P, N), divided by gScale
        let gScale: CUDABuffer           // float32 (b, H, chunks): a bound on the size of g_c
        let ddecayPart: CUDABuffer       // (b, H, chunks, parts)
        let parts: Int
        let dCBsum: CUDABuffer           // 16-bit (b, G, hsplit, chunks, 128, 128)
        /// Parts the heads of a group are split into in the chunk kernel (`headSplits`).
        package let hsplit: Int
        package let dcumP, ddtP, wdw, offP: CUDABuffer  // float32 (b, H, L); offP a plane per part of N
        let dApart, dBiasPart: CUDABuffer       // (b, H, chunks)
        let Dpart: CUDABuffer?           // (b, chunks, H, P)
        // the gradients
        package let dX, dB, dC: CUDABuffer      // 16-bit
        package let dRaw, dBias, dA: CUDABuffer // float32
        package let dD, dz, dInitial: CUDABuffer?
        package var gradientBuffers: [CUDABuffer] { [dX, dB, dC, dRaw, dBias, dA] + [dD, dz, dInitial].compactMap { $0 } }
    }

    public func prepare(_ input: SSDInput, options: SSDOptions, gradY: Tensor, gradFinalStates: Tensor?) throws -> Prepared {
        var fwd = try forward.prepare(input, options: options)
        fwd.fullIncomingStates = true  // the backward reads every chunk's incoming state
        let (b, L, H, G, nchunks) = (fwd.b, fwd.L, fwd.H, fwd.G, fwd.nchunks)
        let (P, N, Q) = (CUDATensorCoreSSD.headDim, forward.stateSize, CUDATensorCoreSSD.chunk)
        guard gradY.shape == [b, L, H, P] else { throw Mamba2Error.shape(argument: "grad_y", expected: "(b, L, H, P)", got: gradY.shape) }
        if let g = gradFinalStates, g.shape != [b, H, P, N] {
            throw Mamba2Error.shape(argument: "grad_final_states", expected: "(b, H, P, N)", got: g.shape)
        }
        let tokens = b * L
        func halves(_ n: Int) throws -> CUDABuffer { try CUDABuffer(count: max((n + 1) / 2, 1), on: device) }
        func floats(_ n: Int) throws -> CUDABuffer { try CUDABuffer(count: max(n, 1), on: device) }
        if input.z != nil { fwd.yPre = try halves(tokens * H * P) }
        let gy = try CUDABuffer(halves: forward.halves(gradY.data), on: device)
        let parts = P * N / 512 * 8
        var hsplit = Self.headSplits(rows: b, chunks: nchunks, heads: H, groups: G, multiprocessors: device.multiprocessors)
        if let o = headSplitsOverride, o >= 1, (H / G) % o == 0 { hsplit = o }
        return Prepared(
            fwd: fwd, gradY: gy, gradFinal: try gradFinalStates.map { try CUDABuffer($0.data, on: device) },
            dYp: input.z == nil ? gy : try halves(tokens * H * P),
            dHout: try halves(b * H * nchunks * P * N), dHscale: try floats(b * H * nchunks), dStates: try halves(b * H * nchunks * P * N),
            gScale: try floats(b * H * nchunks),
            ddecayPart: try floats(b * H * nchunks * parts), parts: parts, dCBsum: try halves(b * G * hsplit * nchunks * Q * Q), hsplit: hsplit,
            dcumP: try floats(b * H * L), ddtP: try floats(b * H * L), wdw: try floats(b * H * L), offP: try floats(N / Self.splitWidth(stateSize: N) * b * H * L),
            dApart: try floats(b * H * nchunks), dBiasPart: try floats(b * H * nchunks),
            Dpart: input.D == nil ? nil : try floats(b * nchunks * Self.dPartPlanes * H * P),
            dX: try halves(tokens * H * P), dB: try halves(tokens * G * N), dC: try halves(tokens * G * N),
            dRaw: try floats(tokens * H), dBias: try floats(H), dA: try floats(H),
            dD: try input.D.map { try floats($0.count) }, dz: input.z == nil ? nil : try halves(tokens * H * P),
            dInitial: input.initialStates == nil ? nil : try floats(b * H * P * N))
    }

    /// Launches the forward (which saves what the backward reads) and the backward, asynchronously.
    public func launch(_ p: Prepared) throws {
        try forward.launch(p.fwd)
        try launchBackward(p)
    }

    /// Parts the chunk kernel splits each group's heads into: the fewest (a divisor of the heads per group)
    /// that make at least two blocks per SM, else one head a block. Each part repeats the chunk's C·Bᵀ and
    /// writes its own dCB, summed by the dB/dC kernel. (Long inputs have chunks enough: 1 part; a 1.3b
    /// training batch of 4 × 2,048 tokens has 64 chunks of 64 heads, which in one part each left half the
    /// H200's SMs idle.)
    static func headSplits(rows b: Int, chunks: Int, heads H: Int, groups G: Int, multiprocessors: Int) -> Int {
        let hpg = H / G
        return (1...hpg).first { hpg % $0 == 0 && b * chunks * G * $0 >= 2 * multiprocessors } ?? hpg
    }

    /// D's per-chunk gradient is written in this many planes, a quarter of the chunk's tokens each (DPARTS in the source).
    package static let dPartPlanes = 4

    /// The dB/dC kernel's blocks take N in parts of this many columns (NH in the source).
    static func splitWidth(stateSize N: Int) -> Int { N % 64 == 0 ? 64 : 32 }

    /// The backward's kernels in order (for timing each with `launchBackward(_:only:)`).
    public static let kernelNames = ["gate", "dstates", "passing", "chunk", "dbc", "finish", "heads"]

    /// The backward alone, after `forward.launch(p.fwd)`; `only` launches one kernel (an index of `kernelNames`).
    public func launchBackward(_ p: Prepared, only: Int? = nil) throws {
        func run(_ k: Int) -> Bool { only == nil || only == k }
        let f = p.fwd
        let (b, L, H, G, nchunks) = (f.b, f.L, f.H, f.G, f.nchunks)
        let (P, N) = (CUDATensorCoreSSD.headDim, forward.stateSize)
        let seqStart = f.packed?.seqStart.pointer ?? 0
        if run(0), let z = f.z, let yPre = f.yPre, let dz = p.dz {
            let n2 = b * L * H * P / 2
            let a = KernelArguments()
            a.add(Int64(n2)); a.add(p.gradY); a.add(z); a.add(yPre); a.add(p.dYp); a.add(dz)
            try kernels.gate.launch(grid: ((n2 + 255) / 256, 1, 1), block: (256, 1, 1), arguments: a)
        }
        let a1 = KernelArguments()
        for v in [L, H, G, nchunks, f.hb] { a1.add(Int32(v)) }
        a1.add(p.dYp); a1.add(f.C); a1.add(f.cumOut); a1.add(seqStart); a1.add(p.dHout); a1.add(p.dHscale)
        if run(1) { try kernels.dstates.launch(grid: (nchunks, b, G * (H / G / f.hb)), block: (256, 1, 1), sharedBytes: shared.dstates, arguments: a1) }

        let a2 = KernelArguments()
        a2.add(Int32(H)); a2.add(Int32(nchunks)); a2.add(p.dHout); a2.add(p.dHscale); a2.add(f.chunkDecay); a2.add(f.statesIn)
        a2.add(p.gradFinal?.pointer ?? 0); a2.add(p.dStates); a2.add(p.gScale); a2.add(p.ddecayPart); a2.add(p.dInitial?.pointer ?? 0)
        if run(2) { try kernels.passing.launch(grid: (P * N / 512, H, b), block: (256, 1, 1), arguments: a2) }

        let a3 = KernelArguments()
        for v in [L, H, G, nchunks] { a3.add(Int32(v)) }
        a3.add(f.x); a3.add(p.dYp); a3.add(f.B); a3.add(f.C); a3.add(f.D?.pointer ?? 0); a3.add(Int32(f.dPerChannel ? 1 : 0))
        a3.add(f.dtOut); a3.add(f.cumOut); a3.add(p.dStates); a3.add(p.gScale); a3.add(seqStart); a3.add(p.dX); a3.add(p.dCBsum)
        a3.add(p.dcumP); a3.add(p.ddtP); a3.add(p.wdw); a3.add(p.Dpart?.pointer ?? 0); a3.add(Int32(p.hsplit))
        if run(3) { try kernels.chunk.launch(grid: (nchunks, b, G * p.hsplit), block: (256, 1, 1), sharedBytes: shared.chunk, arguments: a3) }

        let a4 = KernelArguments()
        for v in [L, H, G, nchunks] { a4.add(Int32(v)) }
        a4.add(f.x); a4.add(p.dYp); a4.add(f.B); a4.add(f.C); a4.add(f.dtOut); a4.add(f.cumOut); a4.add(f.statesIn); a4.add(p.dStates)
        a4.add(p.gScale); a4.add(p.dCBsum); a4.add(seqStart); a4.add(p.dB); a4.add(p.dC); a4.add(p.offP); a4.add(Int32(p.hsplit))
        let splits = N / Self.splitWidth(stateSize: N)
        if run(4) { try kernels.dbc.launch(grid: (nchunks * G * 2 * splits, b, 1), block: (256, 1, 1), sharedBytes: shared.dbc, arguments: a4) }

        let a5 = KernelArguments()
        for v in [L, H, nchunks, p.parts] { a5.add(Int32(v)) }
        a5.add(f.dt); a5.add(f.dtBias?.pointer ?? 0); a5.add(f.A); a5.add(Int32(f.softplus ? 1 : 0)); a5.add(f.lo); a5.add(f.hi)
        a5.add(f.dtOut); a5.add(f.chunkDecay); a5.add(p.ddecayPart); a5.add(p.dcumP); a5.add(p.ddtP); a5.add(p.wdw); a5.add(p.offP)
        a5.add(p.dRaw); a5.add(p.dApart); a5.add(p.dBiasPart)
        if run(5) { try kernels.finish.launch(grid: (nchunks, b, H), block: (CUDATensorCoreSSD.chunk, 1, 1), arguments: a5) }

        let a6 = KernelArguments()
        a6.add(Int32(b)); a6.add(Int32(H)); a6.add(Int32(nchunks)); a6.add(p.dApart); a6.add(p.dBiasPart); a6.add(p.Dpart?.pointer ?? 0)
        a6.add(Int32(f.dPerChannel ? 1 : 0)); a6.add(p.dA); a6.add(p.dBias); a6.add(p.dD?.pointer ?? 0)
        if run(6) { try kernels.heads.launch(grid: (H, 1, 1), block: (256, 1, 1), arguments: a6) }
    }

    /// The gradients, downloaded (16-bit ones widened to float32).
    public func gradients(_ p: Prepared, input: SSDInput) throws -> SSDGradients {
        func wide(_ buffer: CUDABuffer, _ like: Tensor) throws -> Tensor {
            Tensor(shape: like.shape, data: forward.floats(try buffer.download(like.count, as: UInt16.self)))
        }
        func plain(_ buffer: CUDABuffer, _ like: Tensor) throws -> Tensor {
            Tensor(shape: like.shape, data: try buffer.download(like.count, as: Float.self))
        }
        return SSDGradients(
            x: try wide(p.dX, input.x), dt: try plain(p.dRaw, input.dt), dtBias: try plain(p.dBias, input.A), A: try plain(p.dA, input.A),
            B: try wide(p.dB, input.B), C: try wide(p.dC, input.C), D: try input.D.map { try plain(p.dD!, $0) },
            z: try input.z.map { try wide(p.dz!, $0) }, initialStates: try input.initialStates.map { try plain(p.dInitial!, $0) })
    }

    /// Forward and backward: every input's gradient.
    public func run(_ input: SSDInput, options: SSDOptions, gradY: Tensor, gradFinalStates: Tensor? = nil) throws -> SSDGradients {
        let p = try prepare(input, options: options, gradY: gradY, gradFinalStates: gradFinalStates)
        try launch(p)
        try device.synchronize()
        return try gradients(p, input: input)
    }
}
