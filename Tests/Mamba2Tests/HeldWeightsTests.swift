import Mamba2
import Mamba2TestSupport
import Testing

/// A model holds its projections and head once, in the type it computes with (`HeldMatrix`): no float32 copy
/// beside a bf16 or Q8_0 one, loaded one tensor at a time, and computing what a float32 model of the same
/// (widened) weights computes.
@Suite("Held weights")
struct HeldWeightsTests {
    /// A fresh random prompt of the tiny models' vocabulary (112 ids) each run.
    static func randomPrompt(_ n: Int) -> [Int] {
        var g = SystemRandomNumberGenerator()
        return (0..<n).map { _ in Int.random(in: 0..<112, using: &g) }
    }

    // The bytes the weights take, counted from the model's arrays, against a count by hand: the projections and
    // the head in the type's bytes per 32 weights, every other parameter (and an untied model's embedding,
    // which is looked up, not multiplied) in float32. A float32 copy of any matrix kept beside the held one
    // would add 4 bytes a weight.
    @Test("each matrix held once, in its type", arguments: WeightType.allCases)
    func heldOnce(type: WeightType) throws {
        let per32: [WeightType: Int] = [.f32: 128, .bf16: 64, .f16: 64, .q8_0: 34, .q4_0: 18]
        for tied in [true, false] {
            var c = Mamba2Config(dModel: 64, nLayer: 3, vocabSize: 500, dState: 16, headDim: 16)
            c.tieEmbeddings = tied
            let (D, V, L) = (c.dModel, c.paddedVocabSize, c.nLayer)
            let held = L * (c.inProjSize * D + D * c.dInner) + V * D  // in_proj, out_proj, the head
            let rest = Mamba2Weights.parameterCount(c) - held
            let model = try Mamba2Model(config: c, weights: .random(c, seed: UInt64.random(in: 0...(1 << 40))), weightType: type)
            #expect(model.heldWeightBytes == held / 32 * per32[type]! + 4 * rest, "\(type) tied \(tied)")
            #expect(Mamba2Model.heldWeightBytes(c, matrices: type) == model.heldWeightBytes)
        }
    }

    // Loading in a type converts each matrix as it is read (safetensors, a PyTorch pickle, a Q8_0 GGUF): the same
    // model, bit for bit, as converting the whole float32 model after loading it, and the same logits.
    @Test("loading in a type equals converting after loading", arguments: ["tiny-hf", "tiny-ssm", "gguf/tiny-q8_0.gguf"])
    func loadEqualsConvert(dir: String) throws {
        let f32 = try Mamba2Model.load(directory: fixture(dir))
        let prompt = Self.randomPrompt(30)
        for type in [WeightType.bf16, .f16, .q8_0, .q4_0] {
            let loaded = try Mamba2Model.load(directory: fixture(dir), weightType: type)
            let converted = try Mamba2Model(config: f32.config, weights: f32.weights, weightType: type)
            #expect(loaded.weightType == type && loaded.heldWeightBytes == converted.heldWeightBytes)
            let a = loaded.weights.namedTensors(loaded.config), b = converted.weights.namedTensors(converted.config)
            #expect(a.map(\.0) == b.map(\.0))
            for ((name, x), (_, y)) in zip(a, b) { #expect(x.data == y.data, "\(dir) \(type) \(name)") }
            var s1 = [loaded.newState()], s2 = [converted.newState()]
            #expect(try loaded.prefill([prompt], states: &s1)[0].data == converted.prefill([prompt], states: &s2)[0].data, "\(dir) \(type)")
        }
    }

    // A model held in 16 bits or blocks computes what a float32 model of its widened weights computes, prompt and
    // decode, on each prefill path the held types take: the BLAS on rows widened 128 at a time (mk_gemm_widened)
    // and the own kernels with the BLAS off. Kernels capped at AVX-512, so that every product sums in float32 (the
    // bf16 paths' rounding of the activations is checked in CPUKernelTests); 1e-5 relative, summation order only.
    @Test("a held model computes as the float32 model of its widened weights")
    func heldComputesAsWidened() throws {
        let savedLimit = CPUKernelLevel.limit, savedBuiltin = BLAS.useBuiltin
        defer { CPUKernelLevel.limit = savedLimit; BLAS.useBuiltin = savedBuiltin }
        CPUKernelLevel.limit = min(CPUKernelLevel.host, .avx512)
        let source = try Mamba2Model.load(directory: fixture("tiny-hf"))
        let prompt = Self.randomPrompt(30), next = Self.randomPrompt(8)
        for builtin in [false, true] {
            BLAS.useBuiltin = builtin
            for type in [WeightType.bf16, .f16, .q8_0, .q4_0] {
                let held = try Mamba2Model(config: source.config, weights: source.weights, weightType: type)
                let plain = try Mamba2Model(config: source.config, weights: held.weights, weightType: .f32)
                var s1 = [held.newState()], s2 = [plain.newState()]
                let p1 = try held.prefill([prompt], states: &s1)[0], p2 = try plain.prefill([prompt], states: &s2)[0]
                #expect(p1.relativeError(to: p2) < 1e-5, "prefill \(type) builtin \(builtin): \(p1.relativeError(to: p2))")
                for id in next {
                    let d1 = try held.step([id], states: &s1), d2 = try plain.step([id], states: &s2)
                    #expect(d1.relativeError(to: d2) < 1e-5, "decode \(type) builtin \(builtin): \(d1.relativeError(to: d2))")
                }
                // the widened weights are the held ones, not the source's: Q8_0 and Q4_0 moved them
                if type.isBlockQuantized { #expect(held.weights.layers[0].inProj != source.weights.layers[0].inProj) }
            }
        }
    }

    // bf16 weights widen exactly: a bf16 checkpoint held in bf16 gives back the file's values bit for bit.
    @Test("bf16 weights held in bf16 widen to the file's values")
    func bf16Exact() throws {
        let f32 = try Mamba2Model.load(directory: fixture("tiny-hf-bf16"))
        let bf16 = try Mamba2Model.load(directory: fixture("tiny-hf-bf16"), weightType: .bf16)
        for ((name, x), (_, y)) in zip(f32.weights.namedTensors(f32.config), bf16.weights.namedTensors(bf16.config)) {
            #expect(x.data == y.data, "\(name)")
        }
    }

    // LanguageModel.load loads the model in the backend's type, so that the CPU backend runs that very model
    // (its decode count moves) and no float32 model stays beside it.
    @Test("LanguageModel.load holds one model, in the backend's type")
    func languageModelOneCopy() throws {
        let lm = try LanguageModel.load(directory: fixture("tiny-hf"), device: .cpu, weights: .bf16)
        #expect(lm.model.weightType == .bf16)
        let before = lm.model.decodedTokens
        _ = try lm.generateBatch(prompts: [Self.randomPrompt(5)], parameters: GenerateParameters(maxTokens: 4, temperature: 0))
        #expect(lm.model.decodedTokens > before, "the backend decoded on a model other than lm.model")
    }
}
