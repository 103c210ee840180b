import Mamba2
import Testing

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

@Suite("Fast training gradients")
struct FastGradientTests {
    // The float32 trainer's loss and every parameter gradient reproduce tiny-grads.safetensors (float64
    // golden values from the reference). Tolerance 1e-4 relative, the bound: float32 GEMMs and
    // the chunked SSD backward against float64.
    @Test("fast gradients reproduce the fixture")
    func fixture() throws {
        let g = try TinyGolden()
        let model = try Mamba2Model.load(directory: Mamba2Tests.fixture("tiny-ssm"))
        let r = try ModelGradients.compute(model: model, batch: try TrainingBatch(sequences: g.ids))
        let gf = try SafeTensorsFile(path: Mamba2Tests.fixture("tiny-grads.safetensors"))
        let refLoss = Double(try gf.tensor("loss").data[0])
        #expect(abs(r.loss - refLoss) <= 1e-5 * refLoss, "loss \(r.loss) vs \(refLoss)")
        var worst = (0.0, "")
        for (name, mine) in r.gradients.namedTensors(model.config) {
            let err = mine.relativeError(to: try gf.tensor("grad." + name).reshaped(mine.shape))
            #expect(err < 1e-4, "grad.\(name): \(err)")
            if err > worst.0 { worst = (err, name) }
        }
        print("fast gradients: worst relative error \(worst.0) (\(worst.1)); loss \(r.loss) vs \(refLoss)")
    }

    // On a fresh random model with every option the trainer covers (2 groups, D per channel, biases,
    // dt clamp, untied head, chunks that do not divide the documents), packed rows with document
    // boundaries give the float64 reference's gradients of the same documents taken one by one.
    // 1e-4 relative: float32 against float64.
    @Test("fast gradients equal the reference on packed documents", arguments: [false, true])
    func packedEqualsReference(options: Bool) throws {
        let c = options
            ? Mamba2Config(dModel: 32, nLayer: 2, vocabSize: 40, padVocabSizeMultiple: 8, dState: 8, dConv: 4, expand: 2,
                           headDim: 8, nGroups: 2, chunkSize: 8, dHasHeadDim: true, dtLimit: .init(0.002, 0.08),
                           projBias: true, convBias: true, tieEmbeddings: false)
            : Mamba2Config(dModel: 32, nLayer: 2, vocabSize: 40, padVocabSizeMultiple: 8, dState: 16, dConv: 4, expand: 2,
                           headDim: 16, chunkSize: 8)
        var rng = SeededRNG()
        var weights = Mamba2Weights.random(c, seed: rng.next())
        for l in 0..<c.nLayer {
            weights.layers[l].D = weights.layers[l].D.map { $0 + rng.normal() * 0.5 }
            weights.layers[l].gateNorm = weights.layers[l].gateNorm.map { $0 + rng.normal() * 0.2 }
            weights.layers[l].norm = weights.layers[l].norm.map { $0 + rng.normal() * 0.2 }
            if options { weights.layers[l].inProjBias = weights.layers[l].inProjBias!.map { _ in rng.normal() * 0.1 } }
        }
        let model = try Mamba2Model(config: c, weights: weights)
        // Two rows of 24 tokens: documents of 10 + 14, and 3 + 21 (chunk 8 cuts through them).
        let splits = [[10, 14], [3, 21]]
        var tokens: [Int] = [], docs: [Int32] = [], sequences: [[Int]] = []
        var d: Int32 = 0
        for row in splits {
            for n in row {
                let s = (0..<n).map { _ in Int(rng.next() % UInt64(c.vocabSize)) }
                sequences.append(s); tokens += s; docs += [Int32](repeating: d, count: n); d += 1
            }
        }
        let fast = try ModelGradients.compute(model: model, batch: try TrainingBatch(rows: 2, length: 24, tokens: tokens, documents: docs))
        let (refLoss, ref) = try ReferenceGradients.compute(model: model, sequences: sequences)
        #expect(fast.targets == 44)
        #expect(abs(fast.loss - refLoss) <= 1e-5 * refLoss, "seed \(rng.seed) loss \(fast.loss) vs \(refLoss)")
        for (name, mine) in fast.gradients.namedTensors(c) {
            let err = mine.relativeError(to: ref[name]!)
            #expect(err < 1e-4, "seed \(rng.seed) grad.\(name): \(err)")
        }
    }
}
