import Mamba2
/// Decode of one row as one persistent kernel (`CUDAKernelSource.decodePersistent`): every layer in one
/// launch (the head follows as m_gemv), a block per multiprocessor streaming its share of the weights
/// through a ring in shared memory across the phases. Taken by default at one row for models whose layers are small enough
/// (`persistent(rows:)`); the per-layer kernels stay for larger ones and as its reference (the self-test
/// checks it against the plain path; `bench --profile` times both and the persistent kernel's phases).
extension CUDAModel {
    /// The ring for this shape: 8 warps × `perWarp` slots, as large as fit beside the staged input (in
    /// multiples of 128 bytes), each holding at least one row of the longer matrix rows (d_model or d_ssm
    /// inputs, at the kernel's padded stride, pd_stride); nil when they do not fit.
    static func persistentRing(_ c: Mamba2Config) -> (slotBytes: Int, perWarp: Int)? {
        let longest = persistentStride(max(c.dModel, c.dSSM))
        let perWarp = 1  // one slot a warp: two of half the size were slower (2.7b: 2,743 against 2,475–2,482 µs, same run)
        let slotBytes = (streamSharedLimit - longest) / (8 * perWarp) / 128 * 128
        return slotBytes >= longest ? (slotBytes, perWarp) : nil
    }

    /// Blocks (one a multiprocessor) whose sums of squares pd_stage and pd_stage_tagged add: warp 0 loads 8 a lane.
    /// Past it a norm would leave blocks' sums out (and the tagged stage would not wait for them), so larger
    /// devices take the per-layer kernels.
    static let persistentMaxBlocks = 256

    /// Bytes between a job's rows of `inputs` values in a slot (pd_stride in the kernel).
    static func persistentStride(_ inputs: Int) -> Int { (inputs * 2 + 127) / 128 * 128 + 64 }

    /// Dynamic shared memory of the persistent kernel.
    static func persistentShared(_ c: Mamba2Config, ring: (slotBytes: Int, perWarp: Int)) -> Int {
        8 * ring.perWarp * ring.slotBytes + max(c.dModel, c.dSSM) * 2
    }

    /// Whether the shape and device allow the persistent decode (whatever the path chosen): bf16 weights
    /// (fp16's range does not hold the handed-over residual safely), one norm group, N ≤ 256, sm_90 (bulk
    /// copies, mbarriers), d_model and d_ssm multiples of 32 (the products' k steps), an even head dimension and
    /// two rows of out_proj a slot (the hand-overs pack bf16 pairs of neighbouring channels and rows), the ring
    /// fits, a block of it is resident on a multiprocessor (each block waits for every other's hand-overs), and
    /// there are at most `persistentMaxBlocks` multiprocessors.
    static func persistentFits(_ c: Mamba2Config, precision: Precision, device: CUDADevice, kernels k: ModelKernels) -> Bool {
        guard precision == .bf16, c.nGroups == 1, c.dState <= 256, device.hasSM90Features, c.dModel % 32 == 0,
              device.multiprocessors <= persistentMaxBlocks,
              c.dSSM % 32 == 0, c.headDim % 2 == 0,
              let ring = persistentRing(c), ring.slotBytes >= 2 * persistentStride(c.dSSM) else { return false }
        let kernel = persistentKernel(c, k)
        let shared = persistentShared(c, ring: ring)
        guard (try? kernel.allowSharedMemory(shared)) != nil else { return false }
        return ((try? kernel.blocksPerMultiprocessor(threads: 288, sharedBytes: shared)) ?? 0) >= 1
    }

    /// m_decode_persistent_n128 (8 channels a warp, in pairs) for N = 128 with P % 8 == 0, else the general one.
    static func persistentKernel(_ c: Mamba2Config, _ k: ModelKernels) -> CUDAKernel {
        c.dState == 128 && c.headDim % 8 == 0 ? k.decodePersistentN128 : k.decodePersistent
    }

    /// A layer's matrices (in_proj and out_proj, bf16) up to which one row decodes as the persistent kernel by
    /// default: every released size (2.7b's layers are 81 MB). Measured on the H200, whole step against the
    /// per-layer kernels (`bench --profile`, same run): 130m 370 against 414 µs, 370m 766 against 936, 780m
    /// 1,008 against 1,199, 1.3b 1,256 against 1,556, 2.7b 2,276 against 2,625; with the tagged hand-overs
    /// (no grid barriers) 130m 331 against 388, 1.3b 1,203 against 1,478, 2.7b 2,029 against 2,524. Larger layers
    /// are unmeasured: there the ring (about 200 KB a multiprocessor) hides less of each phase's fixed costs
    /// (hand-overs, staging, the SSD step), which grow with the memory traffic queued in front of them.
    static let persistentLayerBytes = 100_000_000

    /// `persistentPairsFrom`'s default: the two-rows-at-a-time dot products for inputs of at least 2,048 values.
    /// With the pairs' loads issued a step ahead (H200, same run, two rounds, whole step µs, pairs from 2,048
    /// against from 2,560): 1.3b (inputs 2,048 and 4,096) 1,262 against 1,321–1,323, 370m (1,024 and 2,048)
    /// 763–765 against 776–777; from 1,536: 780m (1,536 and 3,072) 983–988 against 1,005, but 130m (768 and
    /// 1,536) 370 against 368, so 1,536 stays on the other layout. (Before the loads ahead, the pairs won only
    /// from 2,560: 1.3b 1,347 against 1,418 for every input, 370m 802 against 755.)
    package static let persistentPairsInput = 2048

    /// Whether decode of `n` rows runs as the persistent kernel: one row, when forced, or by default when the
    /// layer's matrices are within `persistentLayerBytes`.
    package func persistent(rows n: Int) -> Bool {
        guard n == 1, persistentShapeFits else { return false }
        return decodePath == .persistent || (decodePath == .automatic && Self.layerMatrixBytes(config) <= Self.persistentLayerBytes)
    }

    /// The per-layer pointer table (`PersistentLayer`, 13 addresses a layer), the counters and the hand-overs,
    /// made when the states are (re)allocated: the table names each layer's state buffers.
    func preparePersistent() throws {
        guard persistentShapeFits else { return }
        var table: [UInt64] = []
        for (i, l) in layers.enumerated() {
            let next = i + 1 < layers.count ? layers[i + 1].norm : normF
            table += [l.inProj.pointer, l.inProjBias?.pointer ?? 0, l.convW.pointer, l.convB?.pointer ?? 0, convStates[i].pointer,
                      l.dtBias.pointer, l.A.pointer, l.D.pointer, ssmStates[i].pointer, l.gateNorm.pointer, l.outProj.pointer,
                      l.outProjBias?.pointer ?? 0, next.pointer]
        }
        let buffer = try CUDABuffer(bytes: table.count * 8, on: device)
        try buffer.upload(table)
        persistentTable = buffer
        // The launch count, a counter per phase's job claims (2 a layer) and one of in_proj's finished jobs a layer,
        // 128 bytes apart: all zero here, and zeroed again with every new set of states (a launch that failed
        // half-way would leave them uneven).
        let barrier = try CUDABuffer(count: 32 * (3 * layers.count + 1), on: device)
        try barrier.fill(bitPattern: 0)
        persistentBarrier = barrier
        persistentSSQ = try CUDABuffer(count: device.multiprocessors, on: device)
        // The tagged hand-overs (PD_HAND_OVERS: 8 bytes a value or bf16 pair), zeroed with the launch count: a tag
        // counts launches, so words left by an earlier set of states must not carry one a new launch waits for.
        let words = Self.persistentHandOverWords(config, multiprocessors: device.multiprocessors).reduce(0, +)
        let handOvers = try CUDABuffer(count: 2 * words, on: device)
        try handOvers.fill(bitPattern: 0)
        persistentHandOvers = handOvers
    }

    /// The tagged hand-overs' parts in 8-byte words (PD_HAND_OVERS): x̂ for in_proj (bf16 pairs), a sum of squares
    /// per block, in_proj's outputs, the conv step's, the gated y (bf16 pairs), a sum of squares per block, the
    /// residual. (The config's sizes were validated when it was read: these sums are far from overflowing.)
    static func persistentHandOverWords(_ c: Mamba2Config, multiprocessors nb: Int) -> [Int] {
        [c.dModel / 2, nb, c.inProjSize, c.convDim, c.dSSM / 2, nb, c.dModel]
    }

    /// Queues the layers of one row's decode step (the embedding has handed over to layer 0's norm through
    /// xhModel and persistentSSQ): residual1 out, for the head. With `trace`, block 0 records its
    /// phase boundaries there (`persistentPhases`).
    func persistentStep(trace: CUDABuffer? = nil) throws {
        let c = config
        guard let ring = Self.persistentRing(c), let table = persistentTable, let bar = persistentBarrier, let ssq = persistentSSQ,
              let handOvers = persistentHandOvers else {
            throw Mamba2Error.invalidArgument("decode", reason: "the persistent decode was not prepared for this model")
        }
        let nb = device.multiprocessors
        let a = KernelArguments()
        for v in [c.nLayer, c.dModel, c.inProjSize, c.dSSM, c.convDim, c.dConv, c.nHeads, c.headDim, c.dState] {
            a.add(Int32(v))
        }
        a.add(c.rmsNormEps); a.add(c.dtLimit.lo); a.add(c.dtLimit.hi); a.add(Int32(c.dHasHeadDim ? 1 : 0))
        a.add(Int32(c.normBeforeGate ? 1 : 0)); a.add(Int32(stateType == .bf16 ? 1 : 0)); a.add(table)
        a.add(residual1); a.add(xhModel); a.add(ssq.pointer)
        // The hand-overs' parts (PD_HAND_OVERS), in the order preparePersistent counted them.
        var at = handOvers.pointer
        for words in Self.persistentHandOverWords(c, multiprocessors: nb) { a.add(at); at += UInt64(8 * words) }
        a.add(bar); a.add(Int32(ring.slotBytes)); a.add(Int32(ring.perWarp))
        a.add(trace?.pointer ?? 0)
        a.add(Int32(clamping: persistentPairsFrom))
        try Self.persistentKernel(c, k).launch(grid: (nb, 1, 1), block: (288, 1, 1), sharedBytes: Self.persistentShared(c, ring: ring), arguments: a,
                                    dependent: true)
    }
}

extension CUDAModel {
    /// Marks a layer of the trace holds (PD_MARKS in the kernel).
    static let persistentMarks = 6

    /// Where one persistent decode step spends its time, from block 0's clock (%globaltimer), averaged over
    /// the layers: for `bench --profile`. Each phase's time includes waiting for its weights.
    func persistentPhases() throws -> [(kernel: String, microseconds: Double, bytes: Int)] {
        let c = config, m = Self.persistentMarks
        let trace = try CUDABuffer(count: 2 * c.nLayer * m, on: device)
        for _ in 0..<3 {  // the last run's marks are kept
            try enqueueEmbedding(rows: 1, counting: false, handOver: (persistentSSQ, device.multiprocessors))
            try persistentStep(trace: trace)
        }
        try device.synchronize()
        let t = try trace.download(c.nLayer * m, as: UInt64.self)
        let names = ["stage in_proj's input (+ state prefetch; waits for every block's out_proj)", "in_proj jobs (+ conv step)",
                     "SSD step (each item waits for its inputs)", "stage out_proj's input (waits for every block's SSD step)",
                     "out_proj jobs"]
        var out: [(String, Double, Int)] = []
        for (i, name) in names.enumerated() {
            let sum = (0..<c.nLayer).reduce(0.0) { $0 + Double(Int64(bitPattern: t[$1 * m + i + 1] &- t[$1 * m + i])) }
            out.append(("persistent, per layer: " + name, sum / Double(c.nLayer) / 1e3, 0))
        }
        return out
    }
}
