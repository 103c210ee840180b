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
        try k["m_gemv"]!.launch(grid: (min(tiles, 2 * device.multiprocessors), (rows + Self.gemvRows - 1) / Self.gemvRows, 1),
                                block: (256, 1, 1), sharedBytes: min(rows, Self.gemvRows) * `in` * 4, arguments: a, dependent: true)
    }

    /// Rows one m_gemv block serves (GB in the kernel); decode of more rows runs its products on cuBLAS,
    /// where a weight is read once for all rows however many there are.
    static let gemvRows = 4

    /// Queues one decode step of `rows` rows: tokens1 → logits1 (and with `greedy`, the argmax back into
    /// tokens1, counted by `counter` and recorded in `history`).
    func enqueueStep(rows n: Int, greedy: Bool) throws {
        let c = config
        let (d, V) = (c.dModel, c.paddedVocabSize)
        let ae = KernelArguments()
        ae.add(Int32(d)); ae.add(tokens1); ae.add(embedding); ae.add(residual1); ae.add(greedy ? counter.pointer : 0)
        try k["m_embed"]!.launch(grid: (n, 1, 1), block: (256, 1, 1), arguments: ae)
        let small = n <= Self.gemvRows
        for (i, l) in layers.enumerated() {
            if small {
                // The conv step rides on the projection's epilogue.
                try gemv(rows: n, in: d, out: c.inProjSize, mode: 1, x: residual1.pointer, ldx: d, normW: l.norm, z: 0, ldz: 0,
                         groups: 1, w: l.inProj, bias: l.inProjBias, y: zx1, ldy: c.inProjSize, accumulate: false, conv: (l, convStates[i]))
            } else {
                try rmsnorm(rows: n, x: residual1, ldx: d, w: l.norm, out: normed1)
                try gemm(rows: n, out: c.inProjSize, in: d, x: normed1, w: l.inProj, y: zx1, accumulate: false)
                if let bias = l.inProjBias { try addBias(rows: n, n: c.inProjSize, y: zx1, bias: bias) }
                let ac = KernelArguments()
                ac.add(Int32(c.convDim)); ac.add(Int32(c.dConv)); ac.add(zx1); ac.add(Int32(c.inProjSize)); ac.add(Int32(c.dSSM))
                ac.add(l.convW); ac.add(l.convB?.pointer ?? 0); ac.add(convStates[i]); ac.add(xbc1)
                try k["m_conv_step"]!.launch(grid: ((c.convDim + 255) / 256, n, 1), block: (256, 1, 1), arguments: ac)
            }
            let asd = KernelArguments()
            for v in [c.nHeads, c.headDim, c.dState, c.nGroups, c.dSSM, c.convDim] { asd.add(Int32(v)) }
            asd.add(xbc1); asd.add(zx1); asd.add(Int32(c.inProjSize)); asd.add(Int32(c.dSSM + c.convDim)); asd.add(l.dtBias); asd.add(l.A)
            asd.add(c.dtLimit.lo); asd.add(c.dtLimit.hi); asd.add(l.D); asd.add(Int32(c.dHasHeadDim ? 1 : 0)); asd.add(ssmStates[i]); asd.add(y1)
            try k["m_ssd_step"]!.launch(grid: ((c.headDim + 3) / 4, c.nHeads, n), block: (128, 1, 1), arguments: asd, dependent: true)
            if small {
                try gemv(rows: n, in: c.dSSM, out: d, mode: 2, x: y1.pointer, ldx: c.dSSM, normW: l.gateNorm, z: zx1.pointer,
                         ldz: c.inProjSize, groups: c.nGroups, w: l.outProj, bias: l.outProjBias, y: residual1, ldy: d, accumulate: true)
            } else {
                try gatedNorm(rows: n, y: y1, yHalf: false, z: zx1, w: l.gateNorm, out: normed1)
                try gemm(rows: n, out: d, in: c.dSSM, x: normed1, w: l.outProj, y: residual1, accumulate: true)
                if let bias = l.outProjBias { try addBias(rows: n, n: d, y: residual1, bias: bias) }
            }
        }
        if small {
            try gemv(rows: n, in: d, out: V, mode: 1, x: residual1.pointer, ldx: d, normW: normF, z: 0, ldz: 0, groups: 1,
                     w: lmHead, bias: nil, y: logits1, ldy: V, accumulate: false)
        } else {
            try rmsnorm(rows: n, x: residual1, ldx: d, w: normF, out: normed1)
            try gemm(rows: n, out: V, in: d, x: normed1, w: lmHead, y: logits1, accumulate: false)
        }
        if greedy {
            let aa = KernelArguments()
            aa.add(Int32(V)); aa.add(logits1); aa.add(tokens1); aa.add(counter); aa.add(history?.pointer ?? 0); aa.add(Int32(historyCapacity))
            try k["m_argmax"]!.launch(grid: (n, 1, 1), block: (1024, 1, 1), arguments: aa, dependent: true)
        }
    }

    /// Feeds one token per row (rows in use since prefill) and returns the logits (rows, padded vocab).
    public func step(_ tokens: [Int]) throws -> Tensor {
        guard tokens.count == rows, rows > 0 else {
            throw Mamba2Error.invalidArgument("tokens", reason: "\(tokens.count) tokens for \(rows) rows prefilled on the GPU")
        }
        try checkTokens(tokens, "tokens")
        try tokens1.uploadRaw(tokens.map { Int32($0) })
        try enqueueStep(rows: rows, greedy: false)
        try cudaSynchronize()
        return Tensor(shape: [rows, config.paddedVocabSize], data: Array(try logits1.download().prefix(rows * config.paddedVocabSize)))
    }

    /// Greedy decode of `steps` tokens per row after feeding `first` (one per row): each step is one
    /// graph launch, nothing returns to the host until the end. Returns the chosen tokens per row.
    public func decodeGreedy(first: [Int], steps: Int) throws -> [[Int]] {
        guard first.count == rows, rows > 0 else {
            throw Mamba2Error.invalidArgument("tokens", reason: "\(first.count) tokens for \(rows) rows prefilled on the GPU")
        }
        guard steps >= 1 else { throw Mamba2Error.invalidArgument("steps", reason: "at least 1, got \(steps)") }
        try checkTokens(first, "tokens")
        if steps > historyCapacity || history == nil {
            // Graphs hold the history's address: a new one means new graphs.
            history = try CUDABuffer(count: max(steps, 256) * capacity)
            historyCapacity = max(steps, 256)
            graphs = [:]
        }
        let graph: CUDAGraph
        if let g = graphs[rows] { graph = g } else {
            graph = try CUDAGraph { try enqueueStep(rows: rows, greedy: true) }
            graphs[rows] = graph
        }
        try tokens1.uploadRaw(first.map { Int32($0) })
        try counter.fill(words: 1, bitPattern: 0)
        for _ in 0..<steps { try graph.launch() }
        try cudaSynchronize()
        let h = try history!.downloadRaw(steps * rows, as: Int32.self, zero: 0)
        return (0..<rows).map { r in (0..<steps).map { Int(h[$0 * rows + r]) } }
    }
}

extension CUDAModel {
    /// Microseconds per launch of each of decode's kernels for `rows` rows (layer 0's weights), each
    /// captured 200 times into a graph and the graph replayed, and of a whole step; with the bytes each
    /// reads, for `bench --device cuda --profile`.
    public func profileDecode(rows n: Int) throws -> [(kernel: String, microseconds: Double, bytes: Int)] {
        let c = config
        _ = try prefill((0..<n).map { _ in [1, 2, 3, 4] }, logits: .none)
        try tokens1.uploadRaw([Int32](repeating: 5, count: n))
        let l = layers[0]
        let e = precision == .f32 ? 4 : 2
        func time(_ name: String, bytes: Int, _ body: () throws -> Void) throws -> (String, Double, Int) {
            let reps = 200
            let g = try CUDAGraph { for _ in 0..<reps { try body() } }
            try g.launch(); try cudaSynchronize()
            let t0 = monotonicSeconds()
            try g.launch(); try cudaSynchronize()
            return (name, (monotonicSeconds() - t0) / Double(reps) * 1e6, bytes)
        }
        var out: [(String, Double, Int)] = []
        out.append(try time("in_proj gemv + norm + conv", bytes: c.inProjSize * c.dModel * e) {
            try gemv(rows: n, in: c.dModel, out: c.inProjSize, mode: 1, x: residual1.pointer, ldx: c.dModel, normW: l.norm, z: 0, ldz: 0,
                     groups: 1, w: l.inProj, bias: l.inProjBias, y: zx1, ldy: c.inProjSize, accumulate: false, conv: (l, convStates[0]))
        })
        out.append(try time("ssd step", bytes: 2 * n * c.nHeads * c.headDim * c.dState * 4) {
            let asd = KernelArguments()
            for v in [c.nHeads, c.headDim, c.dState, c.nGroups, c.dSSM, c.convDim] { asd.add(Int32(v)) }
            asd.add(xbc1); asd.add(zx1); asd.add(Int32(c.inProjSize)); asd.add(Int32(c.dSSM + c.convDim)); asd.add(l.dtBias); asd.add(l.A)
            asd.add(c.dtLimit.lo); asd.add(c.dtLimit.hi); asd.add(l.D); asd.add(Int32(c.dHasHeadDim ? 1 : 0)); asd.add(ssmStates[0]); asd.add(y1)
            try k["m_ssd_step"]!.launch(grid: ((c.headDim + 3) / 4, c.nHeads, n), block: (128, 1, 1), arguments: asd, dependent: true)
        })
        out.append(try time("out_proj gemv + gated norm", bytes: c.dModel * c.dSSM * e) {
            try gemv(rows: n, in: c.dSSM, out: c.dModel, mode: 2, x: y1.pointer, ldx: c.dSSM, normW: l.gateNorm, z: zx1.pointer,
                     ldz: c.inProjSize, groups: c.nGroups, w: l.outProj, bias: l.outProjBias, y: residual1, ldy: c.dModel, accumulate: true)
        })
        out.append(try time("head gemv + norm", bytes: c.paddedVocabSize * c.dModel * e) {
            try gemv(rows: n, in: c.dModel, out: c.paddedVocabSize, mode: 1, x: residual1.pointer, ldx: c.dModel, normW: normF, z: 0, ldz: 0,
                     groups: 1, w: lmHead, bias: nil, y: logits1, ldy: c.paddedVocabSize, accumulate: false)
        })
        let g = try CUDAGraph { try enqueueStep(rows: n, greedy: false) }
        try g.launch(); try cudaSynchronize()
        let t0 = monotonicSeconds()
        for _ in 0..<50 { try g.launch() }
        try cudaSynchronize()
        out.append(("whole step (\(c.nLayer) layers)", (monotonicSeconds() - t0) / 50 * 1e6, decodeWeightBytes))
        return out
    }
}
