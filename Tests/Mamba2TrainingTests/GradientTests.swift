import Mamba2
import Mamba2TestSupport
import Mamba2Training
import Testing
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

@Suite("Training gradients")
struct TrainingGradientTests {
    // The reference loss and every parameter's gradient reproduce tiny-grads.safetensors (float64 golden
    // values). Tolerance 1e-5 relative: the forward's SSD runs in float32 (seen: 1.6e-7), the rest in float64.
    @Test("reference gradients reproduce the fixture")
    func referenceGradients() throws {
        let g = try TinyGolden()
        let model = try Mamba2Model.load(directory: fixture("tiny-ssm"))
        let (loss, grads) = try ReferenceGradients.compute(model: model, sequences: g.ids)
        let gf = try SafeTensorsFile(path: fixture("tiny-grads.safetensors"))
        let refLoss = Double(try gf.tensor("loss").data[0])
        #expect(abs(loss - refLoss) <= 1e-5 * refLoss, "loss \(loss) vs \(refLoss)")
        var worst = (0.0, "")
        for (name, mine) in grads {
            let ref = try gf.tensor("grad." + name)
            let err = mine.relativeError(to: ref.reshaped(mine.shape))
            #expect(err < 1e-5, "grad.\(name): \(err)")
            if err > worst.0 { worst = (err, name) }
        }
        print("reference gradients: \(grads.count) tensors, worst relative error \(worst.0) (\(worst.1)); loss \(loss) vs \(refLoss)")
    }
}

@Suite("Optimizer")
struct OptimizerTests {
    @Test("no weight decay on A_log, D, dt_bias, norms and biases")
    func decayGroups() {
        for name in ["backbone.layers.0.mixer.A_log", "backbone.layers.0.mixer.D", "backbone.layers.3.mixer.dt_bias",
                     "backbone.layers.0.norm.weight", "backbone.layers.0.mixer.norm.weight", "backbone.norm_f.weight",
                     "backbone.layers.0.mixer.conv1d.bias"] { #expect(!AdamW.decays(name), "\(name)") }
        for name in ["backbone.embedding.weight", "backbone.layers.0.mixer.in_proj.weight", "backbone.layers.0.mixer.conv1d.weight"] {
            #expect(AdamW.decays(name), "\(name)")
        }
    }

    @Test("warmup then cosine")
    func schedule() {
        var o = AdamW.Options()
        o.learningRate = 1e-3; o.minLearningRate = 1e-4; o.warmupSteps = 10; o.totalSteps = 110
        let opt = AdamW(options: o)
        #expect(abs(opt.learningRate(at: 5) - 5e-4) < 1e-9)
        #expect(abs(opt.learningRate(at: 10) - 1e-3) < 1e-9)
        #expect(abs(opt.learningRate(at: 60) - 5.5e-4) < 1e-7)
        #expect(abs(opt.learningRate(at: 110) - 1e-4) < 1e-9)
    }

    // Steps of AdamW on the reference gradients lower the loss of a fixed batch (the tiny model
    // memorizes its two sequences): the optimizer and the gradients work together.
    @Test("training steps lower the loss")
    func stepsLowerLoss() throws {
        let g = try TinyGolden()
        var model = try Mamba2Model.load(directory: fixture("tiny-ssm"))
        var o = AdamW.Options()
        o.learningRate = 3e-3; o.warmupSteps = 1; o.totalSteps = 20; o.weightDecay = 0.01
        var opt = AdamW(options: o)
        let first = try ReferenceGradients.compute(model: model, sequences: g.ids).loss
        var loss = first
        for _ in 0..<8 {
            let (l, grads) = try ReferenceGradients.compute(model: model, sequences: g.ids)
            loss = l
            var params = Dictionary(uniqueKeysWithValues: model.weights.namedTensors(model.config).map { ($0.0, $0.1.data) })
            opt.update(&params, gradients: grads.mapValues(\.data))
            model = try Mamba2Model(config: model.config, weights: try Mamba2Weights(model.config, values: params, storedDType: "F32"))
        }
        #expect(loss < first * 0.9, "loss \(first) → \(loss)")
    }
}

@Suite("SSD backward")
struct SSDBackwardTests {
    // The reference backward reproduces the fixture's gradients of
    // sum(y·grad_y) + sum(final_states·grad_final_states) for every input. Tolerance 1e-5 relative: the
    // golden gradients come from float64, ours accumulate in float64 over float32 inputs.
    @Test("reference backward reproduces ssd-small gradients")
    func fixtureGradients() throws {
        let f = try SafeTensorsFile(path: fixture("ssd-small.safetensors"))
        let gf = try SafeTensorsFile(path: fixture("ssd-small-grads.safetensors"))
        let input = SSDInput(x: try f.tensor("x"), dt: try f.tensor("dt"), A: try f.tensor("A"), B: try f.tensor("B"),
                             C: try f.tensor("C"), D: try f.tensor("D"), z: try f.tensor("z"),
                             dtBias: try f.tensor("dt_bias"), initialStates: try f.tensor("initial_states"))
        let g = try SSD.backwardReference(input, options: SSDOptions(dtSoftplus: true), gradY: try gf.tensor("grad_y"),
                                          gradFinalStates: try gf.tensor("grad_final_states"))
        for (name, mine) in g.named {
            let ref = try gf.tensor("grad." + name)
            let err = mine!.relativeError(to: ref)
            #expect(err < 1e-5, "grad.\(name): \(err)")
        }
    }
}

extension SSDBackwardTests {
    static func pairs(_ g: SSDGradients) -> [(String, Tensor?)] { g.named.map { ($0.name, $0.tensor) } }

    /// Every gradient present on both sides or neither, and within `tolerance` relative where present.
    static func expectAgree(_ fast: SSDGradients, _ ref: SSDGradients, within tolerance: Double, _ label: String) {
        for ((name, a), (_, r)) in zip(pairs(fast), pairs(ref)) {
            #expect((a == nil) == (r == nil), "\(name) presence")
            if let a, let r {
                let err = a.relativeError(to: r)
                #expect(err < tolerance, "\(label) grad.\(name): \(err)")
            }
        }
    }

    // The chunked backward reproduces the fixture too, at chunk sizes that divide L, that do not, and
    // one chunk. Tolerance 1e-4 relative (the bound): float32 GEMMs against float64 golden values.
    @Test("chunked backward reproduces ssd-small gradients", arguments: [32, 7, 256])
    func chunkedFixture(chunk: Int) throws {
        let f = try SafeTensorsFile(path: fixture("ssd-small.safetensors"))
        let gf = try SafeTensorsFile(path: fixture("ssd-small-grads.safetensors"))
        let input = SSDInput(x: try f.tensor("x"), dt: try f.tensor("dt"), A: try f.tensor("A"), B: try f.tensor("B"),
                             C: try f.tensor("C"), D: try f.tensor("D"), z: try f.tensor("z"),
                             dtBias: try f.tensor("dt_bias"), initialStates: try f.tensor("initial_states"))
        let g = try SSD.backward(input, options: SSDOptions(chunkSize: chunk, dtSoftplus: true), gradY: try gf.tensor("grad_y"),
                                 gradFinalStates: try gf.tensor("grad_final_states"))
        var worst = 0.0
        for (name, mine) in Self.pairs(g) {
            let err = mine!.relativeError(to: try gf.tensor("grad." + name))
            worst = max(worst, err)
            #expect(err < 1e-4, "Q=\(chunk) grad.\(name): \(err)")
        }
        print("chunked backward Q=\(chunk): worst relative error \(worst) over 9 gradients")
    }

    // Chunked and recurrent (reference) backward agree on fresh random problems: groups, D per head
    // and per channel, gate, initial states, a dt clamp, chunk sizes that do not divide L. 1e-4 relative:
    // float32 chunked products against the float64 recurrence.
    @Test("chunked backward equals the recurrent reference", arguments: [
        (1, 40, 4, 8, 1, 16, 16, 1, true, true), (2, 33, 4, 4, 2, 8, 8, 2, false, false), (1, 64, 2, 16, 1, 32, 64, 0, true, false),
    ] as [(Int, Int, Int, Int, Int, Int, Int, Int, Bool, Bool)])
    func chunkedEqualsReference(b: Int, L: Int, H: Int, P: Int, G: Int, N: Int, Q: Int, D: Int, gate: Bool, initial: Bool) throws {
        var rng = SeededRNG()
        let input = randomSSDInput(&rng, b: b, L: L, H: H, P: P, G: G, N: N, D: D, gate: gate, initial: initial)
        let gy = rng.normal([b, L, H, P]), gf = rng.normal([b, H, P, N])
        for limit in [(Float(0), Float.infinity), (Float(0.002), Float(0.05))] {
            let o = SSDOptions(chunkSize: Q, dtSoftplus: true, dtLimit: limit)
            let ref = try SSD.backwardReference(input, options: o, gradY: gy, gradFinalStates: gf)
            let fast = try SSD.backward(input, options: o, gradY: gy, gradFinalStates: gf)
            Self.expectAgree(fast, ref, within: 1e-4, "seed \(rng.seed) Q=\(Q) limit \(limit)")
        }
    }

    // The float64 reference backward on packed rows (the GPU self-test's yardstick) equals the chunked
    // one: two rows with random sequence boundaries (one on a chunk edge, a one-token sequence), initial
    // states, a gate, D per channel and a final-state gradient. 1e-4 relative, as the unpacked test above.
    @Test("packed reference backward equals the chunked backward")
    func packedReference() throws {
        var rng = SeededRNG()
        let (b, L, H, P, G, N, Q) = (2, 37, 4, 4, 2, 8, 8)
        var input = randomSSDInput(&rng, b: b, L: L, H: H, P: P, G: G, N: N, D: 2, gate: true, initial: true)
        var seq: [Int32] = []
        var id: Int32 = 0
        for r in 0..<b {
            var cuts: Set<Int> = r == 0 ? [8, 9] : []
            for _ in 0..<3 { cuts.insert(1 + Int(rng.next() % UInt64(L - 1))) }
            for t in 0..<L { if cuts.contains(t) { id += 1 }; seq.append(id) }
            id += 1
        }
        input.seqIdx = seq
        let gy = rng.normal([b, L, H, P]), gf = rng.normal([b, H, P, N])
        let o = SSDOptions(chunkSize: Q, dtSoftplus: true)
        let ref = try SSD.backwardReference(input, options: o, gradY: gy, gradFinalStates: gf)
        let fast = try SSD.backward(input, options: o, gradY: gy, gradFinalStates: gf)
        Self.expectAgree(fast, ref, within: 1e-4, "seed \(rng.seed)")
    }

    // Packed rows: the gradients of two sequences packed into one row (seq_idx) equal those of each alone.
    @Test("packed backward equals separate sequences")
    func packed() throws {
        var rng = SeededRNG()
        let (H, P, G, N) = (4, 8, 1, 16)
        let lengths = [19, 30]
        let parts = lengths.map { randomSSDInput(&rng, b: 1, L: $0, H: H, P: P, G: G, N: N, D: 1) }
        let grads = lengths.map { rng.normal([1, $0, H, P]) }
        let o = SSDOptions(chunkSize: 8, dtSoftplus: true)
        func cat(_ ts: [Tensor], _ tail: [Int]) -> Tensor {
            Tensor(shape: [1, ts.reduce(0) { $0 + $1.shape[1] }] + tail, data: ts.flatMap(\.data))
        }
        var packed = SSDInput(x: cat(parts.map(\.x), [H, P]), dt: cat(parts.map(\.dt), [H]), A: parts[0].A,
                              B: cat(parts.map(\.B), [G, N]), C: cat(parts.map(\.C), [G, N]), D: parts[0].D,
                              dtBias: parts[0].dtBias, seqIdx: [Int32](repeating: 0, count: 19) + [Int32](repeating: 1, count: 30))
        packed.A = parts[0].A
        var sep = parts
        for i in 1..<sep.count { sep[i].A = parts[0].A; sep[i].D = parts[0].D; sep[i].dtBias = parts[0].dtBias }
        let gp = try SSD.backward(packed, options: o, gradY: cat(grads, [H, P]))
        let gs = try zip(sep, grads).map { try SSD.backward($0, options: o, gradY: $1) }
        #expect(gp.x.relativeError(to: cat(gs.map(\.x), [H, P])) < 1e-6)
        #expect(gp.B.relativeError(to: cat(gs.map(\.B), [G, N])) < 1e-6)
        #expect(gp.dt.relativeError(to: cat(gs.map(\.dt), [H])) < 1e-6)
        let sumA = Tensor(shape: [H], data: (0..<H).map { h in gs.reduce(0) { $0 + $1.A.data[h] } })
        #expect(gp.A.relativeError(to: sumA) < 1e-5)
    }
}
