import Mamba2
import Mamba2TestSupport
import Testing
#if canImport(Glibc)
import Glibc
#endif



@Suite("Mamba-2 model")
struct ModelTests {
    static let dirs: [(String, Bool)] = [("tiny-ssm", false), ("tiny-hf", false), ("tiny-hf-bf16", true), ("tiny-ssm-bf16-tied", true)]

    // Full-sequence logits of both sequences, packed into one pass, match the reference. Tolerance 1e-5
    // relative (the bound; the golden logits come from a float64 recurrence).
    @Test("logits match the reference", arguments: dirs)
    func logits(dir: String, bf16: Bool) throws {
        let g = try TinyGolden()
        let model = try Mamba2Model.load(directory: fixture(dir))
        var states = [model.newState(), model.newState()]
        let out = try model.prefill(g.ids, states: &states)
        for s in 0..<2 {
            let err = out[s].relativeError(to: g.logits(s, bf16: bf16))
            #expect(err < 1e-5, "\(dir) sequence \(s): \(err)")
        }
        // Final SSM state of each layer after sequence 0 (golden from the float32 weights).
        if !bf16 {
            for l in 0..<2 {
                let ref = try g.file.tensor("final_ssm_state.layer\(l).seq0")
                let err = Tensor(shape: ref.shape, data: states[0].ssm[l]).relativeError(to: ref)
                #expect(err < 1e-5, "\(dir) layer \(l) state: \(err)")
            }
        }
    }

    // Greedy decoding from the 25-token prompt reproduces the reference's 12 tokens (the smallest
    // top-1/top-2 margin on the way is 7e-4, far above our error).
    @Test("greedy tokens match the reference", arguments: ["tiny-ssm", "tiny-hf"])
    func greedy(dir: String) throws {
        let g = try TinyGolden()
        let model = try Mamba2Model.load(directory: fixture(dir))
        let promptLen = g.file["greedy_prompt_len"]!.ints()[0]
        let expected = g.file["greedy_tokens"]!.ints()
        var states = [model.newState()]
        var logits = try model.prefill([Array(expected[0..<promptLen])], states: &states, logits: .last)[0].data
        var generated: [Int] = []
        for _ in 0..<(expected.count - promptLen) {
            let next = logits.indices.max { logits[$0] < logits[$1] }!
            generated.append(next)
            logits = try model.step([next], states: &states).data
        }
        #expect(generated == Array(expected[promptLen...]))
    }

    // Prefill of the first k tokens then one token at a time reproduces the full-sequence logits for
    // every k (1e-5 relative: chunked vs recurrent SSD differ only by float32 rounding).
    @Test("prefill then decode equals one pass")
    func prefillThenDecode() throws {
        let g = try TinyGolden()
        let model = try Mamba2Model.load(directory: fixture("tiny-ssm"))
        var fullStates = [model.newState()]
        let full = try model.prefill([g.ids[0]], states: &fullStates)[0]
        for k in 1...37 {
            var states = [model.newState()]
            var rows = [try model.prefill([Array(g.ids[0][0..<k])], states: &states)[0]]
            for t in k..<37 { rows.append(try model.step([g.ids[0][t]], states: &states)) }
            let err = concatRows(rows).relativeError(to: full)
            #expect(err < 1e-5, "k=\(k): \(err)")
            #expect(states[0].tokens == 37)
        }
    }

    // A state saved to disk and restored continues exactly as the original.
    @Test("saved state continues identically")
    func saveRestore() throws {
        let g = try TinyGolden()
        let model = try Mamba2Model.load(directory: fixture("tiny-hf"))
        var states = [model.newState()]
        _ = try model.prefill([Array(g.ids[0][0..<20])], states: &states, logits: .none)
        let path = "/tmp/mamba2-state-test-\(UInt32.random(in: 0...UInt32.max)).safetensors"
        try states[0].save(to: path, config: model.config)
        var restored = [try Mamba2State.load(path: path, config: model.config)]
        #expect(restored == states)
        let a = try model.prefill([Array(g.ids[0][20...])], states: &states)[0]
        let b = try model.prefill([Array(g.ids[0][20...])], states: &restored)[0]
        #expect(a == b)
        #expect(a.relativeError(to: Tensor(shape: [17, 112], data: Array(g.logits(0).data[(20 * 112)...]))) < 1e-5)
    }

    // Packed prompts of different lengths (with different starting states) equal running them one by one.
    @Test("packed prompts equal separate ones")
    func packed() throws {
        let g = try TinyGolden()
        let model = try Mamba2Model.load(directory: fixture("tiny-ssm"))
        let prompts = [Array(g.ids[0][0..<5]), Array(g.ids[1][0..<30]), Array(g.ids[0][10..<11]), Array(g.ids[1][3..<20])]
        // Give two of them a prior context.
        var start = prompts.map { _ in model.newState() }
        var ctx = [start[1], start[3]]
        _ = try model.prefill([Array(g.ids[0][20..<26]), Array(g.ids[1][30..<37])], states: &ctx, logits: .none)
        start[1] = ctx[0]; start[3] = ctx[1]
        var packedStates = start
        let packed = try model.prefill(prompts, states: &packedStates)
        for i in prompts.indices {
            var one = [start[i]]
            let alone = try model.prefill([prompts[i]], states: &one)[0]
            #expect(packed[i].relativeError(to: alone) < 1e-5, "prompt \(i)")
            for l in 0..<2 {
                #expect(Tensor(shape: [one[0].ssm[l].count], data: packedStates[i].ssm[l])
                    .relativeError(to: Tensor(shape: [one[0].ssm[l].count], data: one[0].ssm[l])) < 1e-5)
                // Not bit-equal: the projections run as GEMMs of different heights, which round differently.
                #expect(Tensor(shape: [one[0].conv[l].count], data: packedStates[i].conv[l])
                    .relativeError(to: Tensor(shape: [one[0].conv[l].count], data: one[0].conv[l])) < 1e-6)
            }
        }
    }
}

@Suite("Decode weights in 16 bits")
struct DecodeWeightTests {
    /// Logits of 20 decode steps after a 5-token prompt.
    static func decodeLogits(_ model: Mamba2Model, _ ids: [Int]) throws -> Tensor {
        var states = [model.newState()]
        _ = try model.prefill([Array(ids[0..<5])], states: &states, logits: .none)
        var rows: [Tensor] = []
        for t in 5..<25 { rows.append(try model.step([ids[t]], states: &states)) }
        return concatRows(rows)
    }

    // Weights already representable in bfloat16 (tiny-hf-bf16): the bf16 decode path reads the same
    // numbers, so it must equal the float32 path up to summation order (1e-6 relative). The prompt's
    // prefill must compute the same too: on hosts with AMX or AVX512-BF16 a bf16 model's prefill products
    // round the activations to bf16 (as under autocast; 5e-4 apart here), so the kernels are capped at
    // AVX-512 for this comparison, where its products are float32 (the bf16 paths are checked against
    // float64 sums and the fixtures in CPUKernelTests).
    @Test("bf16 decode of bf16 weights equals float32 decode")
    func bf16Exact() throws {
        let saved = CPUKernelLevel.limit
        defer { CPUKernelLevel.limit = saved }
        CPUKernelLevel.limit = min(CPUKernelLevel.host, .avx512)
        let g = try TinyGolden()
        let f32 = try Self.decodeLogits(try Mamba2Model.load(directory: fixture("tiny-hf-bf16")), g.ids[0])
        let bf16 = try Self.decodeLogits(try Mamba2Model.load(directory: fixture("tiny-hf-bf16"), weightType: .bf16), g.ids[0])
        #expect(bf16.relativeError(to: f32) < 1e-6)
        #expect(f32.relativeError(to: Tensor(shape: [20, 112], data: Array(g.logits(0, bf16: true).data[(5 * 112)..<(25 * 112)]))) < 1e-5)
    }

    // float16 rounds each weight by at most 2^-11 relative; over two layers the logits move by about
    // that much (bound 5e-3 relative: 10× the per-weight rounding).
    @Test("f16 decode stays within float16 rounding of float32 decode")
    func f16Close() throws {
        let g = try TinyGolden()
        let f32 = try Self.decodeLogits(try Mamba2Model.load(directory: fixture("tiny-hf")), g.ids[0])
        let f16 = try Self.decodeLogits(try Mamba2Model.load(directory: fixture("tiny-hf"), weightType: .f16), g.ids[0])
        let err = f16.relativeError(to: f32)
        #expect(err < 5e-3 && err > 0, "\(err)")
    }
}

@Suite("Checkpoint layouts")
struct CheckpointLayoutTests {
    // A sharded checkpoint (index + two shards) loads to the same weights, hence the same logits.
    @Test("sharded safetensors with an index")
    func sharded() throws {
        let model = try Mamba2Model.load(directory: fixture("tiny-hf"))
        let tensors = model.weights.namedTensors(model.config)
        let dir = makeTempDir()
        try writeBytes(try readBytes(fixture("tiny-hf/config.json")), dir + "/config.json")
        let half = tensors.count / 2
        try SafeTensorsFile.write(Array(tensors[..<half]), to: dir + "/model-00001-of-00002.safetensors")
        try SafeTensorsFile.write(Array(tensors[half...]), to: dir + "/model-00002-of-00002.safetensors")
        var map: [String: JSON] = [:]
        for (i, (name, _)) in tensors.enumerated() { map[name] = .string(i < half ? "model-00001-of-00002.safetensors" : "model-00002-of-00002.safetensors") }
        try writeBytes(Array(JSON.object(["metadata": .object([:]), "weight_map": .object(map)]).serialized.utf8), dir + "/model.safetensors.index.json")
        let g = try TinyGolden()
        let loaded = try Mamba2Model.load(directory: dir)
        var states = [loaded.newState()]
        #expect(try loaded.prefill([g.ids[0]], states: &states)[0].relativeError(to: g.logits(0)) < 1e-5)
        // A shard that the index names but that is missing is an error naming it.
        unlink(dir + "/model-00002-of-00002.safetensors")
        expectLoadError(dir, mentions: ["model-00002-of-00002.safetensors"])
    }

    // A float16 checkpoint loads; its logits are those of the float16-rounded weights (within 5e-3 of
    // the float32 logits: float16 rounds each weight by at most 2^-11 relative).
    @Test("float16 safetensors")
    func float16() throws {
        let model = try Mamba2Model.load(directory: fixture("tiny-hf"))
        let dir = makeTempDir()
        try writeBytes(try readBytes(fixture("tiny-hf/config.json")), dir + "/config.json")
        try SafeTensorsFile.write(model.weights.namedTensors(model.config), to: dir + "/model.safetensors", dtype: .f16)
        let loaded = try Mamba2Model.load(directory: dir)
        #expect(loaded.weights.storedDType == "F16")
        let g = try TinyGolden()
        var states = [loaded.newState()]
        let err = try loaded.prefill([g.ids[0]], states: &states)[0].relativeError(to: g.logits(0))
        #expect(err < 5e-3 && err > 0, "\(err)")
    }
}



@Suite("Model options without a reference fixture")
struct ModelOptionTests {
    // The gated-MLP branch (d_ssm < expand·d_model), D per channel, 2 groups, biases and norm_before_gate
    // have no reference fixture; prefill (chunked SSD) and token-by-token decode (recurrent step, separate
    // code) must at least agree on them (1e-5 relative), and packed prompts equal separate ones.
    @Test("prefill and decode agree with every option on", arguments: [false, true])
    func options(normBeforeGate: Bool) throws {
        let c = Mamba2Config(dModel: 48, nLayer: 2, vocabSize: 50, padVocabSizeMultiple: 8, dState: 8, dConv: 4, expand: 2,
                             headDim: 8, nGroups: 2, chunkSize: 8, dSSM: 64, dHasHeadDim: true, dtLimit: .init(0.001, 0.2),
                             projBias: true, convBias: true, tieEmbeddings: false, normBeforeGate: normBeforeGate)
        var weights = Mamba2Weights.random(c, seed: UInt64.random(in: 0...UInt64.max))
        var rng = SeededRNG()
        for l in 0..<c.nLayer {  // make D, norms and biases non-trivial
            weights.layers[l].D = weights.layers[l].D.map { $0 + rng.normal() * 0.5 }
            weights.layers[l].gateNorm = weights.layers[l].gateNorm.map { $0 + rng.normal() * 0.2 }
            weights.layers[l].inProjBias = weights.layers[l].inProjBias!.map { _ in rng.normal() * 0.1 }
        }
        let model = try Mamba2Model(config: c, weights: weights)
        #expect(c.dMLP == 32)
        let ids = (0..<30).map { _ in Int(rng.next() % 50) }
        var s1 = [model.newState()]
        let full = try model.prefill([ids], states: &s1)[0]
        var s2 = [model.newState()]
        var rows = [try model.prefill([Array(ids[0..<11])], states: &s2)[0]]
        for t in 11..<30 { rows.append(try model.step([ids[t]], states: &s2)) }
        #expect(concatRows(rows).relativeError(to: full) < 1e-5, "seed \(rng.seed)")
        var s3 = [model.newState(), model.newState()]
        let packed = try model.prefill([Array(ids[0..<13]), ids], states: &s3)
        #expect(packed[1].relativeError(to: full) < 1e-5)
    }
}

@Suite("Decode byte count")
struct DecodeBytesTests {
    // The bench's floor divides bandwidth by these bytes; counted here by hand (a small shape, so that
    // random weights are quick to make).
    @Test("bytes a decode step reads, tied and untied, f32 and bf16")
    func bytes() throws {
        var c = Mamba2Config(dModel: 64, nLayer: 3, vocabSize: 500, dState: 16, headDim: 16)
        let (D, V, L) = (c.dModel, c.paddedVocabSize, c.nLayer)
        let matrices = L * (c.inProjSize * D + D * c.dInner) + V * D
        let small = L * (D + (c.convDim * c.dConv + c.convDim) + 3 * c.nHeads + c.dSSM) + D
        let tied = try Mamba2Model(config: c, weights: .random(c, seed: 1))
        #expect(tied.decodeWeightBytes == 4 * (matrices + small))
        #expect(try Mamba2Model(config: c, weights: .random(c, seed: 1), weightType: .bf16).decodeWeightBytes == 2 * matrices + 4 * small)
        c.tieEmbeddings = false
        let untied = try Mamba2Model(config: c, weights: .random(c, seed: 1))
        #expect(untied.decodeWeightBytes == 4 * (matrices + small + D))  // the head in full, one embedding row
    }
}
