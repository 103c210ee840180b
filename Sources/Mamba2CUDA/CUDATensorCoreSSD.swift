import Mamba2
import CMamba2Kernels

/// The SSD layer on the GPU's tensor cores for 16-bit inputs (`CUDAKernelSource.ssdTensorCore`): the
/// fast path beside the plain float32 `CUDASSD`, which stays as its reference. Inputs x, B, C (and z)
/// are rounded to bf16 or fp16 on upload, dt, A, D and dt_bias stay float32; accumulation is float32.
/// Head dimension 64 and state sizes 32, 64, 96 or 128 (the released Mamba-2 models use 128); chunks of
/// 128 tokens whatever the options' chunk size (the result does not depend on it).
/// Packed rows (seqIdx) included; a state per sequence (`sequenceInitialStates`) is not taken yet.
/// Two forwards (`path`): the three kernels (state, passing, scan; the default) and the fused kernel of
/// `CUDAKernelSource.ssdFused` (one pass, the chunk states handed over by a look-back between blocks). The three
/// kernels' state and scan products (`products`): Hopper's `wgmma` where the device has it (N = 64 or 128,
/// `CUDAKernelSource.ssdHopper`: the states and their passing as one kernel that carries each head's state from
/// chunk to chunk on chip), else `mma.sync`, which stays as their reference.
public final class CUDATensorCoreSSD: @unchecked Sendable {
    public enum ElementType: String, Sendable { case bf16, f16 }
    public let device: CUDADevice
    public let elementType: ElementType
    public let stateSize: Int
    let kernels: TensorCoreSSDKernels
    let shared: (state: Int, scan: Int)
    /// ssd_wg_chain's blocks a multiprocessor runs at once, by warp groups a block (1 … chainGroupsMax).
    let chainBlocksPerSM: [Int]
    /// Dynamic shared memory of the warp-group chain (chunk states, for its largest blocks) and scan kernels (`kernels.warpGroup`).
    let warpGroupShared: (chain: Int, scan: Int)
    static let chunk = 128, headDim = 64
    /// At most this many heads per block (the state kernel keeps a row of weights per head in shared memory).
    static let maxHeadsPerBlock = 32

    public init(device: CUDADevice, elementType: ElementType, stateSize N: Int) throws {
        guard N % 32 == 0, N >= 32, N <= 128 else {
            throw Mamba2Error.invalidArgument("state size", reason: "the tensor-core SSD takes N = 32, 64, 96 or 128, got \(N)")
        }
        self.device = device
        self.elementType = elementType
        stateSize = N
        kernels = try TensorCoreSSDKernels(device: device, f16: elementType == .f16, stateSize: N)
        shared = CUDAKernelSource.tensorCoreShared(stateSize: N)
        try kernels.state.allowSharedMemory(shared.state)
        try kernels.scan.allowSharedMemory(shared.scan)
        warpGroupShared = (CUDAKernelSource.hopperChainShared(stateSize: N), CUDAKernelSource.hopperScanShared(stateSize: N))
        try kernels.warpGroup?.chain.allowSharedMemory(warpGroupShared.chain)
        let chain = kernels.warpGroup?.chain
        chainBlocksPerSM = try (1...CUDAKernelSource.chainGroupsMax).map { g in
            try chain.map { try $0.blocksPerMultiprocessor(threads: 128 * g, sharedBytes: CUDAKernelSource.hopperChainShared(stateSize: N, groups: g)) } ?? 1
        }
        try kernels.warpGroup?.scan.allowSharedMemory(warpGroupShared.scan)
        try kernels.fused?.allowSharedMemory(CUDAKernelSource.fusedSSDShared(stateSize: N, headsPerBlock: Self.maxHeadsPerBlock))
    }

    /// Float32 values as 16-bit patterns of this element type.
    public func halves(_ v: [Float]) -> [UInt16] { roundedTo16Bits(v, bfloat: elementType == .bf16) }

    /// 16-bit patterns of this element type as float32.
    public func floats(_ h: [UInt16]) -> [Float] {
        floatsFrom16Bits(h, bfloat: elementType == .bf16)
    }

    /// Inputs uploaded once, for timing the kernels alone.
    public struct Prepared {
        let b, L, H, G, nchunks: Int
        /// Heads per block of the state and scan kernels.
        let hb: Int
        package let x, dt, A, B, C, y, dtOut, cumOut, states, statesIn, chunkDecay, finalStates: CUDABuffer
        let dtBias, D, z, initial: CUDABuffer?
        let dPerChannel, softplus: Bool
        /// The 16-bit output before the gate, written only where given (the backward's gradient of z needs it).
        package var yPre: CUDABuffer? = nil
        let lo, hi: Float
        /// Packed rows, and the (S, H, P, N) state at the end of each of their sequences.
        var packed: CUDAPackedRows? = nil
        package var sequenceStates: CUDABuffer? = nil
        /// Set: `launch` runs the fused kernel (`ssd_tc_fused`) with these look-back buffers instead of the three
        /// kernels (`states` then holds the published chunk states, in the fused kernel's own layout).
        package var fused: FusedBuffers? = nil
        /// Whether `statesIn` must hold every chunk's whole incoming state after `launch`, for a reader after it (the
        /// backward; the default, so that a caller who builds this for its backward gets them). False lets the Hopper
        /// chain leave a long row's ranges' incoming states for the scan to add (`CUDAKernelSource.ssdHopper`'s
        /// ssd_range_states), saving a pass over the chunk states; `prepare` sets it so. Packed rows take whole
        /// incoming states either way: `launch` reads them for the sequences' end states.
        package var fullIncomingStates = true
    }

    /// The fused kernel's look-back buffers: each chunk's state after it in float32 (b, H, chunks, P·N), and a
    /// ticket counter followed by a flag word per (row, head, chunk, warp), zeroed before each launch.
    package struct FusedBuffers {
        let inclusive, flags: CUDABuffer
        let flagWords: Int
        package init(rows b: Int, heads H: Int, chunks nchunks: Int, stateSize N: Int, on device: CUDADevice) throws {
            func product(_ v: [Int]) throws -> Int {
                try v.reduce(1) { acc, d in
                    let (m, o) = acc.multipliedReportingOverflow(by: d)
                    guard !o else { throw Mamba2Error.invalidArgument("x", reason: "the fused SSD's look-back buffers overflow Int") }
                    return m
                }
            }
            let stateCount = try product([b, H, nchunks, CUDATensorCoreSSD.headDim, N])
            flagWords = try product([2, 1 + (try product([b, H, nchunks, 8]))])
            inclusive = try CUDABuffer(count: stateCount, on: device)
            flags = try CUDABuffer(count: flagWords, on: device)
        }
    }

    /// Which forward `prepare` sets up: `.chunks`, the three kernels (the default, and the fused kernel's
    /// reference), or `.fused`, the one-kernel forward where it applies (rows of one sequence each, N = 64 or
    /// 128; else the three). The fused kernel is not the default: on the H200 it ran 0.73–0.82 ms against the
    /// three kernels' 0.67–0.69 at N = 64 and 0.98–1.12 against 0.96–0.97 at N = 128 (65,536 tokens, 32 heads;
    /// benchmarks/results/gpu-ssd-fused.txt).
    public enum Path: String, Sendable, CaseIterable { case fused, chunks }
    public var path: Path = .chunks

    /// The products of the three kernels' chunk states and scan: `.warpGroup`, Hopper's warp-group products
    /// (`ssd_wg_chain`, the chunk states with the passing fused into them, and `ssd_wg_scan`: sm_90 devices, N = 64 or
    /// 128; the default where they apply), or `.warp`,
    /// `mma.sync` (`ssd_tc_state`, `ssd_tc_scan`: every device and state size, and the reference of the others in
    /// the self-test). Both give the same results but for the order of float32 sums.
    public enum Products: String, Sendable, CaseIterable { case warpGroup = "wgmma", warp = "mma" }
    public var products: Products = .warpGroup
    /// The products `launch` uses: those asked for where they apply, else the warp's.
    public var productsInUse: Products { products == .warpGroup && kernels.warpGroup != nil ? .warpGroup : .warp }

    /// Whether `prepare` sets up the fused kernel: asked for, compiled for this state size, and rows of one sequence
    /// each (packed rows go to the three kernels).
    public func fusedApplies(packed: Bool) -> Bool { path == .fused && kernels.fused != nil && !packed }

    /// Heads per block: as many as keep at least 256 blocks (two per SM on an H100/H200), since C·Bᵀ is
    /// made once per block (measured on the H200, 65,536 tokens in 512 chunks: 32 heads per block 1.03 ms,
    /// 8: 1.08, 2: 1.29; 2,048 tokens of 24 heads: 2 heads per block 0.055 ms, 24: 0.27).
    static func headsPerBlock(rows b: Int, chunks nchunks: Int, heads H: Int, groups G: Int) throws -> Int {
        let hpg = H / G
        let divisors = (1...hpg).filter { hpg % $0 == 0 && $0 <= Self.maxHeadsPerBlock }.reversed()
        var hb = divisors.first { nchunks * b * G * (hpg / $0) >= 256 } ?? 1
        if let v = environment("MAMBA2_TC_HEADS_PER_BLOCK"), let want = Int(v), want >= 1, hpg % want == 0 { hb = want }
        guard hb <= Self.maxHeadsPerBlock else {
            throw Mamba2Error.invalidArgument("x", reason: "\(hpg) heads per group: the tensor-core SSD needs a power-of-two factor bringing it to \(Self.maxHeadsPerBlock) or fewer")
        }
        return hb
    }

    /// The most heads (warp groups) a block of ssd_wg_chain takes.
    package static var chainHeadsMax: Int { CUDAKernelSource.chainGroupsMax }

    /// How ssd_wg_chain splits its work: `heads` warp groups a block (the most, up to `chainGroupsMax`, that divide a
    /// group's heads; they share B), and the chunks of a row in `ranges` ranges of `rangeLength`, each a chain of its
    /// own. A range's time is its length, and the blocks (one a multiprocessor: its shared memory) run in waves, so
    /// this takes the fewest ranges that minimize waves × range length (`blocksPerMultiprocessor` of a block of so many
    /// warp groups: 1 for 4 groups at N = 64 and 128, more for smaller blocks): rows × heads enough to fill the card take one
    /// range (no hand-over); one row of 16,384 tokens and 32 heads takes 4 of 32 chunks (128 blocks, one wave).
    /// Several ranges are at least 4 chunks long, so that what the hand-over keeps of them fits in the room of the
    /// chunk states (`launch`).
    package static func chainPlan(rows b: Int, chunks nchunks: Int, heads H: Int, groups G: Int, multiprocessors: Int,
                                  blocksPerMultiprocessor: (Int) -> Int = { _ in 1 }) -> (heads: Int, rangeLength: Int, ranges: Int) {
        let hpg = H / G
        let hc = stride(from: CUDAKernelSource.chainGroupsMax, through: 1, by: -1).first { hpg % $0 == 0 }!
        let blocksPerRange = b * H / hc, sms = max(1, multiprocessors * blocksPerMultiprocessor(hc))
        var best = (cost: Int.max, length: nchunks, ranges: 1)
        for length in stride(from: nchunks, through: min(4, nchunks), by: -1) {
            let ranges = (nchunks + length - 1) / length
            if ranges > 1 && 4 * ranges > nchunks { continue }
            let (blocks, o1) = blocksPerRange.multipliedReportingOverflow(by: ranges)
            guard !o1 else { break }
            let (cost, o2) = ((blocks + sms - 1) / sms).multipliedReportingOverflow(by: length)
            if !o2 && cost < best.cost { best = (cost, length, ranges) }
        }
        return (hc, best.length, best.ranges)
    }

    public func prepare(_ input: SSDInput, options: SSDOptions) throws -> Prepared {
        let pr = try SSDProblem(input, options: options)  // the CPU's shape and seq_idx checks
        guard input.sequenceInitialStates == nil else {
            throw Mamba2Error.invalidArgument("sequence_initial_states", reason: "a state per packed sequence is not supported on the GPU yet (initial_states per row is)")
        }
        guard pr.P == Self.headDim else {
            throw Mamba2Error.invalidArgument("x", reason: "the tensor-core SSD takes head dimension 64, got \(pr.P)")
        }
        guard pr.N == stateSize else {
            throw Mamba2Error.invalidArgument("B", reason: "state size \(pr.N), but these kernels were compiled for \(stateSize)")
        }
        let nchunks = (pr.L + Self.chunk - 1) / Self.chunk
        let (b, L, H, P, G, N) = (pr.b, pr.L, pr.H, pr.P, pr.G, pr.N)
        let packed = try CUDAPackedRows(on: device, pr)
        let fused = fusedApplies(packed: packed != nil)
        let hb = try Self.headsPerBlock(rows: b, chunks: nchunks, heads: H, groups: G)
        var p = Prepared(
            b: b, L: L, H: H, G: G, nchunks: nchunks, hb: hb,
            x: try CUDABuffer(halves: halves(input.x.data), on: device), dt: try CUDABuffer(input.dt.data, on: device), A: try CUDABuffer(input.A.data, on: device),
            B: try CUDABuffer(halves: halves(input.B.data), on: device), C: try CUDABuffer(halves: halves(input.C.data), on: device),
            y: try CUDABuffer(count: (b * L * H * P + 1) / 2, on: device), dtOut: try CUDABuffer(count: b * H * L, on: device),
            cumOut: try CUDABuffer(count: b * H * L, on: device), states: try CUDABuffer(count: (b * H * nchunks * P * N + 1) / 2, on: device),
            statesIn: try CUDABuffer(count: (b * H * nchunks * P * N + 1) / 2, on: device),
            chunkDecay: try CUDABuffer(count: b * H * nchunks, on: device), finalStates: try CUDABuffer(count: b * H * P * N, on: device),
            dtBias: try input.dtBias.map { try CUDABuffer($0.data, on: device) }, D: try input.D.map { try CUDABuffer($0.data, on: device) },
            z: try input.z.map { try CUDABuffer(halves: halves($0.data), on: device) }, initial: try input.initialStates.map { try CUDABuffer($0.data, on: device) },
            dPerChannel: input.D?.shape.count == 2, softplus: options.dtSoftplus, lo: options.dtLimit.lo, hi: options.dtLimit.hi,
            packed: packed, sequenceStates: try packed.map { try CUDABuffer(count: $0.count * H * P * N, on: device) })
        if fused { p.fused = try FusedBuffers(rows: b, heads: H, chunks: nchunks, stateSize: N, on: device) }
        p.fullIncomingStates = false
        return p
    }

    /// Launches the fused kernel where `p.fused` is set, else the three kernels (asynchronously; cudaSynchronize
    /// waits); `only` launches one of the three (0, 1, 2: state, passing, scan), for timing each. A pre-gate output
    /// asked for after `prepare` (`yPre`) takes the three kernels, which write it.
    public func launch(_ p: Prepared, only: Int? = nil) throws {
        let N = stateSize
        if let f = p.fused, let kernel = kernels.fused, only == nil, p.packed == nil, p.yPre == nil {
            try f.flags.fill(words: f.flagWords, bitPattern: 0)
            let a = KernelArguments()
            for v in [p.b, p.L, p.H, p.G, p.nchunks, p.hb] { a.add(Int32(v)) }
            a.add(p.x); a.add(p.dt); a.add(p.dtBias?.pointer ?? 0); a.add(p.A); a.add(Int32(p.softplus ? 1 : 0)); a.add(p.lo); a.add(p.hi)
            a.add(p.B); a.add(p.C); a.add(p.D?.pointer ?? 0); a.add(Int32(p.dPerChannel ? 1 : 0)); a.add(p.z?.pointer ?? 0)
            a.add(p.initial?.pointer ?? 0); a.add(p.finalStates); a.add(p.states); a.add(f.inclusive); a.add(f.flags); a.add(p.y)
            let blocks = p.b * p.nchunks * p.G * (p.H / p.G / p.hb)
            try kernel.launch(grid: (blocks, 1, 1), block: (512, 1, 1),
                                     sharedBytes: CUDAKernelSource.fusedSSDShared(stateSize: N, headsPerBlock: p.hb), arguments: a)
            return
        }
        let blocksZ = p.G * (p.H / p.G / p.hb)
        let warpGroup = productsInUse == .warpGroup ? kernels.warpGroup : nil
        // With several ranges of chunks (chainPlan), the room of `states`, unused by this path, holds the ranges' end
        // states (float32), their incoming states (16-bit) and each chunk's α (float32); chainPlan keeps ranges to at
        // most a quarter of the chunks, so they fit.
        var scanRanges: (length: Int, count: Int, states: CUDABuffer, alpha: CUDABuffer)? = nil
        if let warpGroup {
            // The chunk states with their passing (ssd_wg_chain), then the ranges' hand-over where there are several.
            let plan = Self.chainPlan(rows: p.b, chunks: p.nchunks, heads: p.H, groups: p.G, multiprocessors: device.multiprocessors,
                                      blocksPerMultiprocessor: { chainBlocksPerSM[$0 - 1] })
            let endCount = p.b * p.H * plan.ranges * Self.headDim * N, alphaCount = p.b * p.H * p.nchunks
            guard plan.ranges == 1 || p.states.count >= endCount + endCount / 2 + alphaCount else {
                throw Mamba2Error.invalidArgument("states", reason: "room for \(p.states.count) floats, the chain's \(plan.ranges) ranges need \(endCount + endCount / 2 + alphaCount)")
            }
            let ends = plan.ranges == 1 ? p.finalStates : p.states.view(at: 0, count: endCount)
            if only == nil || only == 0 {
                let a = KernelArguments()
                for v in [p.L, p.H, p.G, p.nchunks, plan.heads, plan.rangeLength, plan.ranges] { a.add(Int32(v)) }
                a.add(p.x); a.add(p.dt); a.add(p.dtBias?.pointer ?? 0); a.add(p.A); a.add(Int32(p.softplus ? 1 : 0)); a.add(p.lo); a.add(p.hi)
                a.add(p.B); a.add(p.packed?.seqStart.pointer ?? 0); a.add(p.initial?.pointer ?? 0)
                a.add(p.dtOut); a.add(p.cumOut); a.add(p.chunkDecay); a.add(p.statesIn); a.add(ends)
                try warpGroup.chain.launch(grid: (plan.ranges, p.b, p.G * (p.H / p.G / plan.heads)), block: (128 * plan.heads, 1, 1),
                                           sharedBytes: CUDAKernelSource.hopperChainShared(stateSize: N, groups: plan.heads), arguments: a)
            }
            if plan.ranges > 1 {
                let a = KernelArguments()
                for v in [p.H, p.nchunks, plan.rangeLength, plan.ranges] { a.add(Int32(v)) }
                a.add(ends); a.add(p.chunkDecay); a.add(p.finalStates)
                let grid = (Self.headDim * N / 512, p.H, p.b)
                if p.fullIncomingStates || p.packed != nil {
                    a.add(p.statesIn)
                    if only == nil || only == 1 { try warpGroup.segmentPassing.launch(grid: grid, block: (256, 1, 1), arguments: a) }
                } else {
                    let states = p.states.view(at: endCount, count: endCount / 2), alpha = p.states.view(at: endCount + endCount / 2, count: alphaCount)
                    a.add(states); a.add(alpha)
                    if only == nil || only == 1 { try warpGroup.rangeStates.launch(grid: grid, block: (256, 1, 1), arguments: a) }
                    scanRanges = (plan.rangeLength, plan.ranges, states, alpha)
                }
            }
        } else {
            if only == nil || only == 0 {
                let a1 = KernelArguments()
                for v in [p.L, p.H, p.G, p.nchunks, p.hb] { a1.add(Int32(v)) }
                a1.add(p.x); a1.add(p.dt); a1.add(p.dtBias?.pointer ?? 0); a1.add(p.A); a1.add(Int32(p.softplus ? 1 : 0))
                a1.add(p.lo); a1.add(p.hi); a1.add(p.B); a1.add(p.packed?.seqStart.pointer ?? 0); a1.add(p.dtOut); a1.add(p.cumOut); a1.add(p.states); a1.add(p.chunkDecay)
                try kernels.state.launch(grid: (p.nchunks, p.b, blocksZ), block: (256, 1, 1), sharedBytes: shared.state, arguments: a1)
            }
            let a2 = KernelArguments()
            a2.add(Int32(p.H)); a2.add(Int32(p.nchunks)); a2.add(p.states); a2.add(p.chunkDecay)
            a2.add(p.initial?.pointer ?? 0); a2.add(p.finalStates); a2.add(p.statesIn)
            if only == nil || only == 1 {
                try kernels.passing.launch(grid: (Self.headDim * N / 512, p.H, p.b), block: (256, 1, 1), arguments: a2)
            }
        }
        // The scan of the products in use, with its threads a block and shared memory
        let scan: (kernel: CUDAKernel, threads: Int, shared: Int) =
            warpGroup.map { ($0.scan, 128 * CUDAKernelSource.hopperScanGroups, warpGroupShared.scan) } ?? (kernels.scan, 256, shared.scan)

        let a3 = KernelArguments()
        for v in [p.L, p.H, p.G, p.nchunks, p.hb] { a3.add(Int32(v)) }
        a3.add(p.x); a3.add(p.z?.pointer ?? 0); a3.add(p.B); a3.add(p.C); a3.add(p.D?.pointer ?? 0)
        a3.add(Int32(p.dPerChannel ? 1 : 0)); a3.add(p.dtOut); a3.add(p.cumOut); a3.add(p.statesIn); a3.add(p.packed?.seqStart.pointer ?? 0); a3.add(p.y); a3.add(p.yPre?.pointer ?? 0)
        if warpGroup != nil {
            // the ranges whose incoming states the scan adds (rangeLength 0: none)
            a3.add(Int32(scanRanges?.length ?? 0)); a3.add(Int32(scanRanges?.count ?? 1))
            a3.add(scanRanges?.states.pointer ?? 0); a3.add(scanRanges?.alpha.pointer ?? 0)
        }
        if only == nil || only == 2 {
            try scan.kernel.launch(grid: (p.nchunks, p.b, blocksZ), block: (scan.threads, 1, 1), sharedBytes: scan.shared, arguments: a3)
        }
        if only == nil, let packed = p.packed, let out = p.sequenceStates {
            try packed.launchSequenceStates(kernels.sequenceStates, L: p.L, H: p.H, P: Self.headDim, G: p.G, N: N,
                                            Q: Self.chunk, nchunks: p.nchunks, x: p.x, B: p.B, dtOut: p.dtOut, cumOut: p.cumOut,
                                            statesIn: p.statesIn, initial: p.initial, finalStates: p.finalStates, out: out)
        }
    }

    /// Runs the layer: y (in float32, from the 16-bit output), the final states of the rows and of every
    /// sequence (float32, as `SSD.run`'s).
    public func run(_ input: SSDInput, options: SSDOptions) throws -> (y: Tensor, finalStates: Tensor, sequenceStates: Tensor) {
        let p = try prepare(input, options: options)
        try launch(p)
        try device.synchronize()
        let n = p.b * p.L * p.H * Self.headDim
        let finalStates = Tensor(shape: [p.b, p.H, Self.headDim, stateSize], data: try p.finalStates.download())
        let sequenceStates = try p.sequenceStates.map { Tensor(shape: [p.packed!.count, p.H, Self.headDim, stateSize], data: try $0.download()) } ?? finalStates
        return (Tensor(shape: input.x.shape, data: floats(try p.y.download(n, as: UInt16.self))), finalStates, sequenceStates)
    }
}
