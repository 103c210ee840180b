import Mamba2
/// Decode on the GPU: one token per row through the recurrence, from the states prefill left.
/// `step` runs it eagerly and returns logits (for the CPU's sampler); `decodeGreedy` replays a CUDA graph
/// of the whole token (embedding → layers → head → argmax, the chosen token fed back on the device) and
/// returns the tokens chosen.
extension CUDAModel {
    /// m_gemv: y[r] (+)= W · x̂[r] (+ bias) for `rows` rows, x̂ made from x by `mode` (0: as is, 1: RMSNorm
    /// with normW, 2: gated RMSNorm with z and groups). x is a device address (rows at stride ldx).
    func gemv(rows: Int, in: Int, out: Int, mode: Int32, x: UInt64, ldx: Int, normW: CUDABuffer?, z: UInt64, ldz: Int,
              groups: Int, w: CUDABuffer, bias: CUDABuffer?, y: CUDABuffer, ldy: Int, accumulate: Bool,
              conv: (layer: Layer, state: CUDABuffer)? = nil) throws {
        let c = config
        let a = KernelArguments()
        a.add(Int32(rows)); a.add(Int32(`in`)); a.add(Int32(out)); a.add(mode); a.add(x); a.add(Int32(ldx))
        a.add(normW?.pointer ?? 0); a.add(c.rmsNormEps); a.add(z); a.add(Int32(ldz)); a.add(Int32(groups))
        a.add(Int32(c.normBeforeGate ? 1 : 0)); a.add(w); a.add(bias?.pointer ?? 0); a.add(y); a.add(Int32(ldy)); a.add(Int32(accumulate ? 1 : 0))
        a.add(Int32(c.dSSM)); a.add(Int32(c.convDim)); a.add(Int32(c.dConv)); a.add(conv?.layer.convW.pointer ?? 0)
        a.add(conv?.layer.convB?.pointer ?? 0); a.add(conv?.state.pointer ?? 0); a.add(conv == nil ? 0 : xbc1.pointer)
        let tiles = (out + 15) / 16  // 8 warps × RPW rows
        try k.gemv.launch(grid: (min(tiles, 2 * device.multiprocessors), (rows + Self.gemvRows - 1) / Self.gemvRows, 1),
                                block: (256, 1, 1), sharedBytes: min(rows, Self.gemvRows) * `in` * 4, arguments: a, dependent: true)
    }

    /// Whether decode of n rows on the cuBLAS path hands the gated norm over, as the streaming products do: the
    /// SSD step writes xhSSM = ST(y·silu(z)·w) with its partial sums of squares, out_proj multiplies that
    /// unnormalized input, and the next norm adds the product into the residual scaled by the row's
    /// rsqrt(Σ v² / d_ssm + eps) (`rmsnorm(pending:)`): the gated norm's kernel and its boundary leave the
    /// layer. One group only (the scale is one number per row) and 16-bit weights (xhSSM is 16-bit).
    /// Measured on the H200 (`results/gpu-decode-gate-handover.txt`, tg128 tokens/s, kernel / handed over, bf16
    /// state): 1.3b 2 rows 1,214 / 1,335, 8 rows 4,121 / 4,468, 16 rows 6,716 / 7,070; 2.7b 4 rows 1,335 / 1,420,
    /// 16 rows 4,134 / 4,249; 130m 16 rows 25,369 / 26,351, but 64 rows 68,462 / 67,623 and 256 rows 117,529 /
    /// 113,341: so up to `gateHandOverRows` rows.
    package func gateHandOver(rows n: Int) -> Bool {
        if let tp = tensorParallel { return tp.plan.normSpansRanks }  // the norm's sums then go through the all-reduce
        return gateHandOverAllowed && n > plainGEMVRows && n <= Self.gateHandOverRows && !streams(rows: n) && precision != .f32
            && config.nGroups == 1
    }
    package static let gateHandOverRows = 16

    /// Rows one m_gemv block serves (GB in the kernel); decode of more rows runs its products on cuBLAS,
    /// where a weight is read once for all rows however many there are.
    package static let gemvRows = 4

    /// Decode's in_proj for `n` rows of layer i: the block's RMSNorm in front, then the conv step. Up to
    /// gemvRows rows one m_gemv (the conv step in its epilogue), more rows RMSNorm → cuBLAS → m_conv_step.
    func inProjection(rows n: Int, layer i: Int, pending: PendingOutProjection? = nil) throws {
        let c = config, l = layers[i]
        if streams(rows: n) {
            try streamProduct(rows: n, in: c.dModel, out: c.inProjSize, xh: xhModel, ssq: ssqModel, slots: streamSlotsModel, w: l.inProj,
                              bias: l.inProjBias, y: zx1, ldy: c.inProjSize, accumulate: false, conv: (l, convStates[i]))
            return
        }
        if n <= plainGEMVRows {
            try gemv(rows: n, in: c.dModel, out: c.inProjSize, mode: 1, x: residual1.pointer, ldx: c.dModel, normW: l.norm, z: 0, ldz: 0,
                     groups: 1, w: l.inProj, bias: l.inProjBias, y: zx1, ldy: c.inProjSize, accumulate: false, conv: (l, convStates[i]))
            return
        }
        try rmsnorm(rows: n, x: residual1, ldx: c.dModel, w: l.norm, out: normed1, pending: pending)
        try decodeGEMM(rows: n, out: c.inProjSize, in: c.dModel, x: normed1, w: l.inProj, y: zx1, accumulate: false)
        if let bias = l.inProjBias { try addBias(rows: n, n: c.inProjSize, y: zx1, half: false, bias: bias) }
        let a = KernelArguments()
        a.add(Int32(c.convDim)); a.add(Int32(c.dConv)); a.add(zx1); a.add(Int32(c.inProjSize)); a.add(Int32(c.dSSM))
        a.add(l.convW); a.add(l.convB?.pointer ?? 0); a.add(convStates[i]); a.add(xbc1)
        try k.convStep.launch(grid: ((c.convDim + 255) / 256, n, 1), block: (256, 1, 1), arguments: a, dependent: true)
    }

    /// Decode's SSD step of layer i for `n` rows: xbc1 and dt (in zx1) in, the layer's state updated; y1
    /// out for the gated norm, or when out_proj streams, handed over to it (xhSSM / ssqSSM).
    func ssdStep(rows n: Int, layer i: Int) throws {
        let c = config, l = layers[i]
        let fast = ssdStepChannels == 64  // m_ssd_step_n128: 8 channels a warp
        let handOver = streams(rows: n) || gateHandOver(rows: n)
        if ssdStepRing { return try ssdStepThroughRing(rows: n, layer: i, handOver: handOver) }
        let a = KernelArguments()
        for v in [c.nHeads, c.headDim, c.dState, c.nGroups, c.dSSM, c.convDim] { a.add(Int32(v)) }
        a.add(xbc1); a.add(zx1); a.add(Int32(c.inProjSize)); a.add(Int32(c.dSSM + c.convDim)); a.add(l.dtBias); a.add(l.A)
        a.add(c.dtLimit.lo); a.add(c.dtLimit.hi); a.add(l.D); a.add(Int32(c.dHasHeadDim ? 1 : 0)); a.add(ssmStates[i])
        a.add(Int32(stateType == .bf16 ? 1 : 0)); a.add(handOver ? 0 : y1.pointer)
        a.add(l.gateNorm); a.add(Int32(c.normBeforeGate ? 1 : 0)); a.add(handOver ? xhSSM.pointer : 0); a.add(ssqSSM)
        try (fast ? k.ssdStepN128 : k.ssdStep).launch(grid: (streamSlotsSSM, n, 1), block: (256, 1, 1), arguments: a, dependent: true)
    }

    /// Whether decode's SSD step runs m_ssd_step_ring_bf16: a bf16 state at N = 128 with P % 64 == 0, on sm_90
    /// (bulk copies). Measured on the H200, 2.7b (`bench --profile`, two rounds of the same run; the step alone,
    /// ring against a block an item, µs): 1 row 3.13 / 3.71–3.75, 4 rows 4.17 / 6.99–7.07, 16 rows
    /// 11.4–11.5 / 18.6–18.8; the whole step at 16 rows 3,858 against 4,026, at 4 rows 3,264 against 3,508.
    /// With the first copies moved after the wait (final): 3.46, 4.66 and 13.5 µs, whole step 3,893 and 3,339.
    /// A float32 state stays on m_ssd_step_n128, already at 4.0 TB/s at 16 rows (20.7 µs for 84 MB); a ring of
    /// 3 stages of 32 KB, tried before the halving sums left the stack, took 24.9 µs there.
    package var ssdStepRing: Bool {
        stateType == .bf16 && ssdStepChannels == 64 && device.hasSM90Features && !referenceSSDStep
    }

    /// Stages of m_ssd_step_ring_bf16's ring for n rows (an item's 64 × 128 bf16 state values, 16 KB, each). Its
    /// 128 registers a thread let 4 blocks share a multiprocessor (3 with 4 stages: the shared memory). Measured
    /// on the H200, 2.7b, bf16 state, one run (`results/gpu-decode-ssd-ring-stages.txt`; 4 / 3 / 2 stages): the
    /// step alone at 16 rows 14.0 / 13.3 / 12.8 µs, the whole step 3,636 / 3,659 / 3,517 µs, tg128 at 16 rows
    /// 4,290 / 4,461 / 4,412 tokens/s, at 8 rows 2,680 / 2,566 / 2,568: so 2 stages past 8 rows, 4 up to it.
    static func ssdRingStages(rows n: Int) -> Int { n > 8 ? 2 : 4 }

    /// Warps of an m_ssd_step_ring_bf16 block (its __launch_bounds__(128, 4)): 16 of an item's 64 channels each.
    static let ssdRingWarps = 4

    /// The SSD step of layer i through the ring: resident blocks (as many as fit) taking the n rows' items
    /// (row, head, 64 channels) in turn.
    func ssdStepThroughRing(rows n: Int, layer i: Int, handOver: Bool) throws {
        let c = config, l = layers[i]
        let stages = Self.ssdRingStages(rows: n)
        let shared = stages * 64 * 128 * 2
        if ssdRingBlocks[stages] == nil {
            try k.ssdStepRingBF16.allowSharedMemory(shared)
            ssdRingBlocks[stages] = max(1, try k.ssdStepRingBF16.blocksPerMultiprocessor(threads: 128, sharedBytes: shared)) * device.multiprocessors
        }
        let items = n * streamSlotsSSM
        let a = KernelArguments()
        a.add(Int32(items))
        for v in [c.nHeads, c.headDim, c.nGroups, c.dSSM, c.convDim] { a.add(Int32(v)) }
        a.add(xbc1); a.add(zx1); a.add(Int32(c.inProjSize)); a.add(Int32(c.dSSM + c.convDim)); a.add(l.dtBias); a.add(l.A)
        a.add(c.dtLimit.lo); a.add(c.dtLimit.hi); a.add(l.D); a.add(Int32(c.dHasHeadDim ? 1 : 0)); a.add(ssmStates[i])
        a.add(handOver ? 0 : y1.pointer); a.add(l.gateNorm); a.add(Int32(c.normBeforeGate ? 1 : 0)); a.add(handOver ? xhSSM.pointer : 0)
        a.add(ssqSSM); a.add(Int32(stages)); a.add(Int32(ssqPerWarp(rows: n) ? 1 : 0))
        try k.ssdStepRingBF16.launch(grid: (min(items, ssdRingBlocks[stages]!), 1, 1), block: (32 * Self.ssdRingWarps, 1, 1), sharedBytes: shared, arguments: a,
                                     dependent: true)
    }

    /// Decode's out_proj of layer i, the gated RMSNorm in front, added into the residual.
    func outProjection(rows n: Int, layer i: Int) throws {
        let c = config, l = layers[i]
        if streams(rows: n) {
            try streamProduct(rows: n, in: c.dSSM, out: c.dModel, xh: xhSSM, ssq: ssqSSM, slots: ssqSlotsSSM(rows: n), w: l.outProj,
                              bias: l.outProjBias, y: residual1, ldy: c.dModel, accumulate: true,
                              next: i + 1 < layers.count ? layers[i + 1].norm : normF)
            return
        }
        if n <= plainGEMVRows {
            try gemv(rows: n, in: c.dSSM, out: c.dModel, mode: 2, x: y1.pointer, ldx: c.dSSM, normW: l.gateNorm, z: zx1.pointer,
                     ldz: c.inProjSize, groups: c.nGroups, w: l.outProj, bias: l.outProjBias, y: residual1, ldy: c.dModel, accumulate: true)
            return
        }
        if gateHandOver(rows: n) {  // the gated norm's scale and out_proj's bias wait for the next norm (`rmsnorm(pending:)`)
            try decodeGEMM(rows: n, out: c.dModel, in: c.dSSM, x: xhSSM, w: l.outProj, y: outProduct1, accumulate: false, sliceable: true)
            return
        }
        try gatedNorm(rows: n, y: y1, yHalf: false, z: zx1, zHalf: false, w: l.gateNorm, out: normed1)
        // with tensor parallelism (the norm local to the rank) the product waits for the ranks' sum, which the
        // next norm adds in with the bias
        let waits = tensorParallel != nil
        try decodeGEMM(rows: n, out: c.dModel, in: c.dSSM, x: normed1, w: l.outProj, y: waits ? outProduct1 : residual1, accumulate: !waits)
        if !waits, let bias = l.outProjBias { try addBias(rows: n, n: c.dModel, y: residual1, half: false, bias: bias) }
    }

    /// Decode's head: the final RMSNorm, then logits1 (rows, padded vocab). `handedOver`: the last
    /// out_proj handed its result over (a streaming decode step), else residual1 is read as it is.
    func head(rows n: Int, handedOver: Bool = true, pending: PendingOutProjection? = nil) throws {
        let c = config
        if handedOver && streams(rows: n) {
            try streamProduct(rows: n, in: c.dModel, out: c.paddedVocabSize, xh: xhModel, ssq: ssqModel, slots: streamSlotsModel, w: lmHead,
                              bias: nil, y: logits1, ldy: c.paddedVocabSize, accumulate: false)
            return
        }
        if n <= plainGEMVRows {
            try gemv(rows: n, in: c.dModel, out: c.paddedVocabSize, mode: 1, x: residual1.pointer, ldx: c.dModel, normW: normF, z: 0,
                     ldz: 0, groups: 1, w: lmHead, bias: nil, y: logits1, ldy: c.paddedVocabSize, accumulate: false)
            return
        }
        try rmsnorm(rows: n, x: residual1, ldx: c.dModel, w: normF, out: normed1, pending: pending)
        try decodeGEMM(rows: n, out: c.paddedVocabSize, in: c.dModel, x: normed1, w: lmHead, y: logits1, accumulate: false)
    }

    /// The graph of one decode step of n rows, its cuBLAS products tuned first (`tuneDecodeProducts`).
    func captureStep(rows n: Int, choice: StepChoice) throws -> CUDAGraph {
        try tuneDecodeProducts(rows: n)
        return try CUDAGraph(on: rankDevices) { try enqueueStep(rows: n, choice: choice) }
    }

    /// What a queued decode step does after the logits.
    enum StepChoice { case none, greedyDecode, argmax }

    /// The path a decode step of n rows runs under the current `decodePath`: the persistent kernel, else the
    /// per-layer kernels with the streaming products (`streams(rows:)`) or the plain ones (m_gemv / cuBLAS).
    package func decodePathTaken(rows n: Int) -> DecodePath {
        persistent(rows: n) ? .persistent : streams(rows: n) ? .streaming : .plain
    }

    /// Queues one decode step of `rows` rows: tokens1 → logits1; with `.greedyDecode`, the argmax back into
    /// tokens1, counted by `counter` and recorded in `history`; with `.argmax`, the argmax into tokens1 and
    /// its log-probability into chosenLogprob1.
    func enqueueStep(rows n: Int, choice: StepChoice) throws {
        if tensorParallel != nil { return try enqueueRanksStep(rows: n, choice: choice) }
        let greedy = choice == .greedyDecode
        if decodePathTaken(rows: n) == .persistent {
            try enqueueEmbedding(rows: n, counting: greedy, handOver: (persistentSSQ, device.multiprocessors))
            try persistentStep()
            try head(rows: n, handedOver: false)
            try enqueueChoice(rows: n, choice: choice)
            return
        }
        try enqueueEmbedding(rows: n, counting: greedy, handOver: streams(rows: n) ? (ssqModel, streamSlotsModel) : nil)
        // on cuBLAS with the gated norm handed over, each out_proj's product is added in by the next norm
        let handOver = gateHandOver(rows: n)
        func pending(after i: Int) -> PendingOutProjection? {
            handOver && i >= 0 ? PendingOutProjection(product: outProduct1, ssq: ssqSSM, slots: ssqSlotsSSM(rows: n), bias: layers[i].outProjBias,
                                                      groupSize: config.dSSM, slices: decodeSlices(rows: n)) : nil
        }
        for i in layers.indices {
            try inProjection(rows: n, layer: i, pending: pending(after: i - 1))
            try ssdStep(rows: n, layer: i)
            try outProjection(rows: n, layer: i)
        }
        try head(rows: n, pending: pending(after: layers.count - 1))
        try enqueueChoice(rows: n, choice: choice)
    }

    /// residual1 = the embedding of tokens1 (`counting`: graph decode's step counter advances). With `handOver`,
    /// also layer 0's norm handed over (xhModel, and the sums of squares into the first of `slots` slots a row
    /// of that buffer): the streaming products' and the persistent kernel's input.
    func enqueueEmbedding(rows n: Int, counting: Bool, handOver: (ssq: CUDABuffer?, slots: Int)?) throws {
        let a = KernelArguments()
        a.add(Int32(config.dModel)); a.add(tokens1); a.add(embedding); a.add(residual1); a.add(counting ? counter.pointer : 0)
        a.add(handOver == nil ? 0 : layers[0].norm.pointer); a.add(xhModel); a.add(handOver?.ssq?.pointer ?? 0)
        a.add(Int32(handOver?.slots ?? 0))
        try k.embed.launch(grid: (n, 1, 1), block: (256, 1, 1), arguments: a)
    }

    /// The step's choice after the logits (`StepChoice`).
    func enqueueChoice(rows n: Int, choice: StepChoice) throws {
        let V = config.paddedVocabSize
        let greedy = choice == .greedyDecode
        if choice != .none {
            let aa = KernelArguments()
            aa.add(Int32(V)); aa.add(logits1); aa.add(tokens1); aa.add(greedy ? counter.pointer : 0)
            aa.add(greedy ? history?.pointer ?? 0 : 0); aa.add(Int32(historyCapacity)); aa.add(greedy ? 0 : chosenLogprob1.pointer)
            try k.argmax.launch(grid: (n, 1, 1), block: (1024, 1, 1), arguments: aa, dependent: true)
        }
    }

    /// Writes the tokens a step feeds into tokens1, on every rank (each embeds them itself).
    func feed(_ tokens: [Int32]) throws {
        try tokens1.upload(tokens)
        for p in peers { try p.tokens1.upload(tokens) }
    }

    /// One step of rows 0..<tokens.count whose tokens are chosen on the device (argmax, with their
    /// log-probabilities): only the choices come back, not the logits. Replayed as a graph per row count
    /// (keyed by Int.min + n).
    func stepArgmax(leadingRows tokens: [Int]) throws -> [(id: Int, logprob: Float)] {
        try queueArgmax(leadingRows: tokens)
        return try collectArgmax()
    }

    /// Launches that step and returns without waiting (`collectArgmax` takes its results).
    func queueArgmax(leadingRows tokens: [Int]) throws {
        let n = tokens.count
        guard n > 0, n <= capacity else {
            throw Mamba2Error.invalidArgument("tokens", reason: "\(n) tokens for \(capacity) rows of state on the GPU")
        }
        try config.checkTokens(tokens, argument: "tokens")
        try settleArgmax()
        guard settledChoices == nil else {
            throw Mamba2Error.invalidArgument("tokens", reason: "the choices of a queued step were not collected")
        }
        let t32 = tokens.map { Int32($0) }
        // In a steady batch the tokens fed are the ones the device chose last step, already in tokens1.
        if t32 != tokensHeld { try feed(t32) }
        let graph: CUDAGraph
        if let g = graphs[Int.min + n] { graph = g } else {
            graph = try captureStep(rows: n, choice: .argmax)
            graphs[Int.min + n] = graph
        }
        try graph.launch()
        argmaxInFlight = n
    }

    /// Waits for the step `queueArgmax` launched and returns its choices.
    func collectArgmax() throws -> [(id: Int, logprob: Float)] {
        try settleArgmax()
        guard let out = settledChoices else { throw Mamba2Error.invalidArgument("collectArgmax", reason: "no step was queued") }
        settledChoices = nil
        return out
    }

    /// Downloads the choices of a queued step before anything overwrites tokens1 (kept for collectArgmax).
    func settleArgmax() throws {
        guard let n = argmaxInFlight else { return }
        argmaxInFlight = nil
        // One download (it waits for the stream): the n ids, and past tokens1's capacity the n log-probabilities.
        let both = try choice1.download(tokens1.count + n, as: Int32.self)
        let ids = Array(both[0..<n])
        tokensHeld = ids
        settledChoices = (0..<n).map { (Int(ids[$0]), Float(bitPattern: UInt32(bitPattern: both[tokens1.count + $0]))) }
    }

    /// Feeds one token per row (rows in use since prefill) and returns the logits (rows, padded vocab).
    public func step(_ tokens: [Int]) throws -> Tensor {
        let n = tokens.count * config.paddedVocabSize
        var failure: Error?
        let logits = [Float](unsafeUninitializedCapacity: n) { buf, initialized in
            do { try step(tokens, into: buf) } catch { failure = error }
            initialized = n
        }
        if let failure { throw failure }
        return Tensor(shape: [tokens.count, config.paddedVocabSize], data: logits)
    }

    /// The same, the logits (rows × padded vocab) written into host memory the caller holds (the
    /// generator's workspace: no array per token).
    public func step(_ tokens: [Int], into logits: UnsafeMutableBufferPointer<Float>) throws {
        guard tokens.count == rows, rows > 0 else {
            throw Mamba2Error.invalidArgument("tokens", reason: "\(tokens.count) tokens for \(rows) rows prefilled on the GPU")
        }
        try step(leadingRows: tokens, into: logits)
    }

    /// One token for each of rows 0..<tokens.count (whatever `rows` is), logits into host memory.
    func step(leadingRows tokens: [Int], into logits: UnsafeMutableBufferPointer<Float>) throws {
        let n = tokens.count
        guard n > 0, n <= capacity else {
            throw Mamba2Error.invalidArgument("tokens", reason: "\(n) tokens for \(capacity) rows of state on the GPU")
        }
        guard logits.count == n * config.paddedVocabSize else {
            throw Mamba2Error.invalidArgument("logits", reason: "room for \(logits.count) values, \(n) rows need \(n * config.paddedVocabSize)")
        }
        try config.checkTokens(tokens, argument: "tokens")
        try settleArgmax()
        try feed(tokens.map { Int32($0) })
        tokensHeld = nil
        // Replayed as a graph, one per row count (keyed −n beside greedy decode's n): launching the step's
        // ~150 kernels one by one cost more than running them at batch 64.
        let graph: CUDAGraph
        if let g = graphs[-n] { graph = g } else {
            graph = try captureStep(rows: n, choice: .none)
            graphs[-n] = graph
        }
        try graph.launch()
        try device.synchronize()
        try logits1.download(into: logits)
    }

    /// Greedy decode of `steps` tokens per row after feeding `first` (one per row): each step is one
    /// graph launch, nothing returns to the host until the end. Returns the chosen tokens per row.
    /// Rows 0..<first.count are stepped, whatever `rows` is.
    public func decodeGreedy(first: [Int], steps: Int) throws -> [[Int]] {
        let rows = first.count
        guard rows > 0, rows <= capacity else {
            throw Mamba2Error.invalidArgument("tokens", reason: "\(first.count) tokens for \(capacity) rows of state on the GPU")
        }
        guard steps >= 1 else { throw Mamba2Error.invalidArgument("steps", reason: "at least 1, got \(steps)") }
        try config.checkTokens(first, argument: "tokens")
        if steps > historyCapacity || history == nil {
            // Graphs hold the history's address: a new one means new graphs.
            history = try CUDABuffer(count: max(steps, 256) * capacity, on: device)
            historyCapacity = max(steps, 256)
            graphs = [:]
        }
        let graph: CUDAGraph
        if let g = graphs[rows] { graph = g } else {
            graph = try captureStep(rows: rows, choice: .greedyDecode)
            graphs[rows] = graph
        }
        try settleArgmax()
        try feed(first.map { Int32($0) })
        for m in ranks { try m.counter.fill(words: 1, bitPattern: 0) }
        tokensHeld = nil
        for _ in 0..<steps { try graph.launch() }
        try device.synchronize()
        let h = try history!.download(steps * rows, as: Int32.self)
        return (0..<rows).map { r in (0..<steps).map { Int(h[$0 * rows + r]) } }
    }
}
