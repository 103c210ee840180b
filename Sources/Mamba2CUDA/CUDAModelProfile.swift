import Mamba2
/// Timing each part of prefill and decode alone (`bench --device cuda --profile`): where a step's time goes.

extension CUDAModel {
    /// Seconds per launch of `body`'s kernels: captured `reps` times into a graph, replayed once untimed, then
    /// `rounds` timed replays, the fastest kept.
    func secondsPerLaunch(reps: Int, rounds: Int, _ body: () throws -> Void) throws -> Double {
        let g = try CUDAGraph(on: device) { for _ in 0..<reps { try body() } }
        try g.launch(); try device.synchronize()
        var best = Double.infinity
        for _ in 0..<rounds {
            let t0 = monotonicSeconds()
            try g.launch(); try device.synchronize()
            best = min(best, (monotonicSeconds() - t0) / Double(reps))
        }
        return best
    }

    /// Milliseconds of each part of one layer's prefill of one sequence of `tokens` tokens (layer 0's weights,
    /// each part captured `reps` times into a graph and the graph replayed), and of the whole prefill, with the
    /// bytes each must move at least and the products' floating-point operations: for `bench --profile`.
    public func profilePrefill(tokens T: Int) throws -> [(part: String, milliseconds: Double, bytes: Int, flops: Double)] {
        let c = config
        let seq = (0..<T).map { ($0 * 7 + 3) % c.vocabSize }
        _ = try prefill([seq], logits: .none)
        let buf = try buffers(tokens: T)
        let l = layers[0]
        let e = precision == .f32 ? 4 : 2      // a weight's and a product input's bytes
        let a16 = tc != nil ? 2 : 4            // x, B, C and y as the SSD keeps them
        let z = zxHalf ? 2 : 4                 // the in_proj output's values
        let scratchStates = try CUDABuffer(bytes: Self.ssmRowFloats(c) * 4, on: device)
        let scratchConv = try CUDABuffer(count: max(Self.convRowFloats(c), 1), on: device)
        func time(_ name: String, bytes: Int, flops: Double = 0, _ body: () throws -> Void) throws -> (String, Double, Int, Double) {
            (name, try secondsPerLaunch(reps: 10, rounds: 3, body) * 1e3, bytes, flops)
        }
        let (D, I, S, X) = (c.dModel, c.inProjSize, c.dSSM, c.convDim)
        var out = [
            try time("rmsnorm", bytes: T * D * (4 + e)) { try rmsnorm(rows: T, x: buf.residual, ldx: D, w: l.norm, out: buf.normed) },
            try time("in_proj product", bytes: T * D * e + I * D * e + T * I * z, flops: 2.0 * Double(T) * Double(D) * Double(I)) {
                try inProjection(tokens: T, layer: l, buffers: buf)
            },
            try time("conv", bytes: T * (X + c.nHeads) * z + T * X * a16) {
                try convPrefill(rows: 1, length: T, layer: l, buffers: buf, convState: scratchConv, packed: nil)
            },
            try time("ssd", bytes: T * (2 * S + 2 * c.nGroups * c.dState) * a16 + T * c.nHeads * 4) {
                try ssd(rows: 1, length: T, layer: l, buffers: buf, states: scratchStates, packed: nil)
            },
            try time("gated norm", bytes: T * S * (a16 + z + e)) {
                try gatedNorm(rows: T, y: buf.y, yHalf: tc != nil, z: buf.zx, zHalf: zxHalf, w: l.gateNorm, out: buf.normed)
            },
            try time("out_proj product", bytes: T * S * e + D * S * e + 2 * T * D * 4, flops: 2.0 * Double(T) * Double(S) * Double(D)) {
                try gemm(rows: T, out: D, in: S, x: buf.normed, w: l.outProj, y: buf.residual, accumulate: true)
            },
        ]
        let layerSum = out.reduce(0) { $0 + $1.1 }
        out.append(("one layer (sum of the parts)", layerSum, out.reduce(0) { $0 + $1.2 }, out.reduce(0) { $0 + $1.3 }))
        var best = Double.infinity
        for _ in 0..<3 {
            let t0 = monotonicSeconds()
            _ = try prefill([seq], logits: .none)
            best = min(best, (monotonicSeconds() - t0) * 1e3)
        }
        // 2 operations a parameter a token, but for the embedding (a lookup) and the head (not run here).
        let flops = 2.0 * Double(T) * Double(Mamba2Weights.parameterCount(c) - c.paddedVocabSize * D * (c.tieEmbeddings ? 1 : 2))
        out.append(("whole prefill (\(c.nLayer) layers, no logits)", best, 0, flops))
        return out
    }
}

extension CUDAModel {
    /// Microseconds per launch of each part of decode for `rows` rows (layer 0's weights), each captured
    /// 200 times into a graph and the graph replayed, and of a whole step; with the bytes each
    /// reads, for `bench --device cuda --profile`.
    public func profileDecode(rows n: Int) throws -> [(kernel: String, microseconds: Double, bytes: Int)] {
        let c = config
        _ = try prefill((0..<n).map { _ in [1, 2, 3, 4] }, logits: .none)
        try settleArgmax()
        try tokens1.upload([Int32](repeating: 5, count: n))
        tokensHeld = nil
        let e = precision == .f32 ? 4 : 2
        func time(_ name: String, bytes: Int, _ body: () throws -> Void) throws -> (String, Double, Int) {
            (name, try secondsPerLaunch(reps: 200, rounds: 1, body) * 1e6, bytes)
        }
        // Each part as decode runs it for n rows (fused matrix-vector kernels up to gemvRows rows, cuBLAS beyond).
        var out: [(String, Double, Int)] = [
            try time("in_proj (+ norm, conv step)", bytes: c.inProjSize * c.dModel * e) { try inProjection(rows: n, layer: 0) },
            try time(gateHandOver(rows: n) ? "ssd step (+ gate, handed over)" : "ssd step", bytes: 2 * n * c.nHeads * c.headDim * c.dState * stateBytes) {
                try ssdStep(rows: n, layer: 0)
            },
            try time(gateHandOver(rows: n) ? "out_proj (its scale in the next norm)" : "out_proj (+ gated norm)", bytes: c.dModel * c.dSSM * e) {
                try outProjection(rows: n, layer: 0)
            },
            try time("head (+ norm)", bytes: c.paddedVocabSize * c.dModel * e) { try head(rows: n) },
        ]
        func wholeStep(_ name: String) throws -> (String, Double, Int) {
            let g = try captureStep(rows: n, choice: .none)
            try g.launch(); try device.synchronize()
            let t0 = monotonicSeconds()
            for _ in 0..<50 { try g.launch() }
            try device.synchronize()
            return (name, (monotonicSeconds() - t0) / 50 * 1e6, decodeWeightBytes)
        }
        // The whole step on every path that serves n rows, in the same run (the one decode takes by default
        // marked), then the persistent kernel's phases.
        let chosen = decodePath
        defer { decodePath = chosen }
        decodePath = .automatic
        let taken = decodePathTaken(rows: n)
        var paths: [(DecodePath, String)] = [(.plain, n <= plainGEMVRows ? "m_gemv" : "cuBLAS")]
        decodePath = .streaming
        if streams(rows: n) { paths.append((.streaming, "streaming products")) }
        if n == 1 && persistentShapeFits { paths.append((.persistent, "one persistent kernel")) }
        for (path, name) in paths {
            decodePath = path
            out.append(try wholeStep("whole step (\(c.nLayer) layers, \(name)\(path == taken ? ", taken" : ""))"))
        }
        if paths.contains(where: { $0.0 == .streaming }) {  // its products alone, as the streaming path runs them at n rows
            decodePath = .streaming
            out.append(try time("in_proj, streaming (+ conv step)", bytes: c.inProjSize * c.dModel * e) { try inProjection(rows: n, layer: 0) })
            out.append(try time("out_proj, streaming (+ hand-over)", bytes: c.dModel * c.dSSM * e) { try outProjection(rows: n, layer: 0) })
        }
        if n <= plainGEMVRows {  // the plain path with cuBLAS's products at these rows too
            let limit = plainGEMVRows
            defer { plainGEMVRows = limit }
            plainGEMVRows = 0
            decodePath = .plain
            out.append(try wholeStep("whole step (\(c.nLayer) layers, cuBLAS)"))
        }
        if n == 1 && persistentShapeFits { out += try persistentPhases() }
        decodePath = chosen
        if tunesDecodeProducts(rows: n) {  // what timing chose for the cuBLAS products (each product, 8 layers' weights in turn)
            decodeProducts = [:]  // timed afresh, to time the tuning itself
            let t0 = monotonicSeconds()
            try tuneDecodeProducts(rows: n)
            out.append(("tuning the cuBLAS products (3 shapes)", (monotonicSeconds() - t0) * 1e6, 0))
            for (name, bytes, p) in decodeProductChoices(rows: n) {
                out.append(("\(name) product, cublasGemmEx (timed)", p.gemmEx, bytes))
                for (slices, t) in p.bestBySlices.sorted(by: { $0.key < $1.key }) where p.bestBySlices.count > 1 {
                    out.append(("\(name) product, fastest in \(slices) slice\(slices == 1 ? "" : "s") of k", t, bytes))
                }
                out.append(("\(name) product, taken: \(p.words)", p.microseconds, bytes))
            }
            if decodeProductChoices(rows: n).contains(where: { $0.choice.slices > 1 }) {  // again with every product whole, in the same run
                decodeProductSliceCount = 1
                defer { decodeProductSliceCount = nil }
                out.append(try wholeStep("whole step (\(c.nLayer) layers, cuBLAS, tuned, no product in slices)"))
            }
            decodeProductTuning = false  // the whole step again with cublasGemmEx's own choices, in the same run
            defer { decodeProductTuning = true }
            out.append(try wholeStep("whole step (\(c.nLayer) layers, cuBLAS, cublasGemmEx's own choices)"))
        }
        return out
    }
}
