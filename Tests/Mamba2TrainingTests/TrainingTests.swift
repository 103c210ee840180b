import Mamba2
import Mamba2Training
import Mamba2TestSupport
import Testing

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

@Suite("Fast training gradients")
struct FastGradientTests {
    // The float32 trainer's loss and every parameter gradient reproduce tiny-grads.safetensors (float64
    // golden values from the reference). Tolerance 1e-4 relative, the issue's bound: float32 GEMMs and
    // the chunked SSD backward against float64.
    @Test("fast gradients reproduce the fixture")
    func fixture() throws {
        let g = try TinyGolden()
        let model = try Mamba2Model.load(directory: Mamba2TestSupport.fixture("tiny-ssm"))
        let r = try ModelGradients.compute(model: model, batch: try TrainingBatch(sequences: g.ids))
        let gf = try SafeTensorsFile(path: Mamba2TestSupport.fixture("tiny-grads.safetensors"))
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
        let batch = try TrainingBatch(rows: 2, length: 24, tokens: tokens, documents: docs)
        let fast = try ModelGradients.compute(model: model, batch: batch)
        let (refLoss, ref) = try ReferenceGradients.compute(model: model, sequences: sequences)
        #expect(fast.targets == 44)
        // The validation loss (a forward through prefill, no gradients) counts the same positions and gives
        // the same number (1e-5 relative: float32 forward paths that sum in different orders).
        let validation = try ModelGradients.loss(model: model, batch: batch)
        #expect(validation.targets == 44 && abs(validation.loss - fast.loss) <= 1e-5 * fast.loss, "\(validation) vs \(fast.loss)")
        #expect(abs(fast.loss - refLoss) <= 1e-5 * refLoss, "seed \(rng.seed) loss \(fast.loss) vs \(refLoss)")
        for (name, mine) in fast.gradients.namedTensors(c) {
            let err = mine.relativeError(to: ref[name]!)
            #expect(err < 1e-4, "seed \(rng.seed) grad.\(name): \(err)")
        }
    }
}

@Suite("Training loop")
struct TrainingLoopTests {
    /// A text file of `repeats` copies of a random 48-token pattern (period 48 > the chunk size 16 and
    /// > 32), split into two documents; returns its path.
    static func repeatingText(pattern: [Int], repeats: Int) throws -> String {
        let piece = pattern.map { String(UnicodeScalar(UInt8(97 + $0))) }.joined()
        let text = String(repeating: piece, count: repeats) + "\n<|endoftext|>\n" + String(repeating: piece, count: repeats)
        let dir = makeTempDir()
        try writeBytes(Array(text.utf8), dir + "/text.txt")
        return dir + "/text.txt"
    }

    // The tiny fixture's shape (d_model 64, 2 layers, N 16, chunk 16), random weights, learns a text
    // whose period (48 tokens, letters a–z as bytes) is longer than 32 tokens: the loss falls below 0.1
    // within 300 steps. Only a model that carries information across chunks through the state can
    // predict past the first period of each window.
    @Test("the tiny model memorizes a long-period text")
    func memorizes() throws {
        var rng = SeededRNG()
        let pattern = (0..<48).map { _ in Int(rng.next() % 26) }
        let path = try Self.repeatingText(pattern: pattern, repeats: 40)
        let model = try Mamba2Model.load(directory: Mamba2TestSupport.fixture("tiny-ssm"))
        var c = model.config
        c.vocabSize = ByteTokenizer.vocabularySize
        let data = try TextDataset(files: [path], encoding: .bytes)
        var o = TrainingOptions()
        o.steps = 300; o.rows = 4; o.length = 96; o.seed = rng.next(); o.evalEvery = 0; o.saveEvery = 0; o.evalBatches = 1
        o.optimizer.learningRate = 5e-3; o.optimizer.minLearningRate = 5e-4; o.optimizer.warmupSteps = 20
        let trainer = try Trainer(config: c, weights: Mamba2Weights.random(c, seed: o.seed), dataset: data, options: o,
                                  directory: makeTempDir() + "/run", tokenizerJSON: ByteTokenizer.json())
        var losses: [Double] = []
        try trainer.run(progress: { losses.append($0.loss) })
        let tail = losses.suffix(10).reduce(0, +) / 10
        print("memorize: loss \(losses[0]) → \(tail) (mean of the last 10 steps) in \(losses.count) steps; validation \(trainer.validationLoss.last!.loss)")
        #expect(tail < 0.1, "seed \(rng.seed): loss of the last 10 steps \(tail)")
        #expect(trainer.validationLoss.last!.loss < 0.1)
    }

    // Batches of different steps are independent draws: no window repeats across 50 steps of 8 rows
    // (an earlier generator handed step s + 1 the windows of step s shifted by one row, so the model saw
    // each window 8 times in a row and its training loss fell far below its validation loss).
    @Test("batches of consecutive steps share no windows")
    func batchesIndependent() throws {
        var rng = SeededRNG()
        // Random letters: a 16-token window identifies its position.
        let text = String((0..<80_000).map { _ in Character(UnicodeScalar(UInt8(97 + rng.next() % 26))) })
        let dir = makeTempDir()
        try writeBytes(Array((text + "\n<|endoftext|>\nsecond document").utf8), dir + "/random.txt")
        let data = try TextDataset(files: [dir + "/random.txt"], encoding: .bytes)
        var seen: [[Int]: Int] = [:]
        let seed = rng.next()
        for step in 1...50 {
            let b = try data.batch(step: step, rows: 8, length: 16, seed: seed)
            for r in 0..<8 { seen[Array(b.tokens[(r * 16)..<(r * 16 + 16)]), default: 0] += 1 }
        }
        // 400 draws from ~80,000 positions: about one coincidence expected by chance (birthday bound
        // 400²/2/80,000 = 1); shifted copies between steps would give 350.
        let repeats = seen.values.reduce(0) { $0 + $1 - 1 }
        #expect(repeats <= 8, "seed \(seed): \(repeats) repeated windows")
        let again = try data.batch(step: 7, rows: 8, length: 16, seed: seed)
        #expect(again.tokens == (try data.batch(step: 7, rows: 8, length: 16, seed: seed)).tokens, "a step's batch is a function of (seed, step)")
    }

    // A run stopped at step 3 and resumed from its checkpoint equals an uninterrupted run step for step:
    // same losses, same final weights, bit for bit (float32 checkpoint, batches drawn from (seed, step)).
    @Test("a resumed run matches an uninterrupted one")
    func resume() throws {
        var rng = SeededRNG()
        let path = try Self.repeatingText(pattern: (0..<40).map { _ in Int(rng.next() % 26) }, repeats: 10)
        let data = try TextDataset(files: [path], encoding: .bytes)
        let c = Mamba2Config(dModel: 32, nLayer: 2, vocabSize: 257, padVocabSizeMultiple: 8, dState: 8, headDim: 16, chunkSize: 16)
        var o = TrainingOptions()
        o.steps = 6; o.rows = 2; o.length = 40; o.seed = rng.next(); o.evalEvery = 3; o.saveEvery = 3; o.evalBatches = 1
        o.optimizer.warmupSteps = 2
        let w = Mamba2Weights.random(c, seed: o.seed)
        let whole = try Trainer(config: c, weights: w, dataset: data, options: o, directory: makeTempDir() + "/a", tokenizerJSON: nil)
        try whole.run(progress: { _ in })
        let dir = makeTempDir() + "/b"
        let first = try Trainer(config: c, weights: w, dataset: data, options: o, directory: dir, tokenizerJSON: nil)
        try first.run(progress: { _ in }, shouldStop: { first.step >= 3 })
        #expect(first.step == 3)
        let resumed = try Trainer.resume(directory: dir, dataset: data)
        #expect(resumed.step == 3)
        try resumed.run(progress: { _ in })
        #expect(resumed.trainLoss.map(\.loss) == whole.trainLoss.map(\.loss), "seed \(rng.seed)")
        #expect(resumed.validationLoss.map(\.loss) == whole.validationLoss.map(\.loss))
        #expect(resumed.parameters == whole.parameters)
    }
}

@Suite("Reference gradients by finite differences")
struct FiniteDifferenceTests {
    // Central differences in float64 on the plain reference, at random coordinates of every parameter
    // tensor of a fresh random model with biases, an untied head, D per channel and 2 groups, agree with
    // the reference's analytic gradients within 1e-6 relative. The five-point stencil
    // D(h) = (−L(θ+2h) + 8L(θ+h) − 8L(θ−h) + L(θ−2h)) / 12h has truncation error (h⁴/30)·L⁽⁵⁾; at
    // h = 1e-3·max(1, |θ|) that was seen reaching 7e-11 (a conv bias whose fifth derivative is ~2e3),
    // 1.7e-6 of a 4e-5 gradient, so one stencil is not enough. Richardson's (16·D(h/2) − D(h)) / 15 cancels
    // the h⁴ term, leaving O(h⁶) ≈ 1e-18·L⁽⁷⁾; rounding is ≈ 1e-16·L/(h/2) ≈ 1e-12. Coordinates whose
    // gradient is below 1e-5 are skipped (there 1e-12 is no longer far below 1e-6 relative); 3 per tensor.
    @Test("analytic gradients equal central differences")
    func centralDifferences() throws {
        let c = Mamba2Config(dModel: 16, nLayer: 2, vocabSize: 20, padVocabSizeMultiple: 4, dState: 4, dConv: 3, expand: 2,
                             headDim: 8, nGroups: 2, chunkSize: 4, dHasHeadDim: true, projBias: true, convBias: true,
                             tieEmbeddings: false)
        var rng = SeededRNG()
        var params = Dictionary(uniqueKeysWithValues: Mamba2Weights.random(c, seed: rng.next()).namedTensors(c).map {
            ($0.0, $0.1.data.map(Double.init))
        })
        // Non-trivial values everywhere (the random init sets biases to 0 and norms to 1).
        for (name, v) in params where name.hasSuffix("bias") && !name.hasSuffix("dt_bias") || name.contains("norm") || name.hasSuffix(".D") {
            params[name] = v.map { $0 + Double(rng.normal()) * 0.3 }
        }
        // Steps dt around 0.5–2 instead of the init's 0.001–0.1, so dt_bias and A_log gradients are not tiny.
        // and decay rates |A| in 0.1–1 instead of 1–16, so the state carries over several tokens.
        for (name, v) in params where name.hasSuffix("dt_bias") { params[name] = v.map { _ in Double(rng.uniform(-1, 2)) } }
        for (name, v) in params where name.hasSuffix("A_log") { params[name] = v.map { _ in log(Double(rng.uniform(0.1, 1))) } }
        // Matrices 10× the init's std 0.02: at 0.02 the block norms see rows of norm ~0.1, whose high
        // derivatives (~1/0.1⁵) would make the stencil's truncation error, not the gradient, the issue.
        for (name, v) in params where name.hasSuffix("proj.weight") || name.hasSuffix("embedding.weight") || name == "lm_head.weight" {
            params[name] = v.map { $0 * 10 }
        }
        let seqs = [(0..<9).map { _ in Int(rng.next() % 20) }, (0..<6).map { _ in Int(rng.next() % 20) }]
        let (_, grads) = try ReferenceGradients.compute(config: c, parameters: params, sequences: seqs)
        var worst = 0.0, checked = 0
        for (name, shape) in Mamba2Weights.expectedShapes(c) {
            let n = shape.reduce(1, *)
            var done = 0
            for i in (0..<n).shuffled(using: &rng).prefix(40) where done < 3 {
                let analytic = grads[name]![i]
                if abs(analytic) < 1e-5 { continue }
                func loss(_ delta: Double) throws -> Double {
                    var p = params
                    p[name]![i] += delta
                    return try ReferenceGradients.compute(config: c, parameters: p, sequences: seqs).loss
                }
                func stencil(_ h: Double) throws -> Double {
                    (-(try loss(2 * h)) + 8 * (try loss(h)) - 8 * (try loss(-h)) + (try loss(-2 * h))) / (12 * h)
                }
                let h = 1e-3 * max(1, abs(params[name]![i]))
                let fd = (16 * (try stencil(h / 2)) - (try stencil(h))) / 15
                let rel = abs(fd - analytic) / abs(analytic)
                worst = max(worst, rel)
                #expect(rel < 1e-6, "seed \(rng.seed) \(name)[\(i)]: analytic \(analytic), finite difference \(fd), relative \(rel)")
                done += 1; checked += 1
            }
            #expect(done == 3, "\(name): fewer than 3 coordinates with a gradient above 1e-5")
        }
        print("finite differences: \(checked) coordinates, worst relative error \(worst)")
    }
}

@Suite("Checkpoints of mamba2 train in transformers")
struct TransformersInteropTests {
    // Fixtures/trained-tiny was written by `mamba2 train --preset tiny --bytes` (Hugging Face layout);
    // scripts/hf_interop loaded it into transformers' Mamba2ForCausalLM (torch path, float32) and saved
    // its logits on two rows of 70 byte ids. Ours agree within 1e-5 relative: both float32, different
    // summation orders.
    @Test("transformers reads our checkpoint and computes our logits")
    func logitsMatch() throws {
        let f = try SafeTensorsFile(path: Mamba2TestSupport.fixture("trained-tiny-hf-logits.safetensors"))
        let ids = f["input_ids"]!.ints()
        let ref = try f.tensor("logits")  // (2, 70, 264)
        let model = try Mamba2Model.load(directory: Mamba2TestSupport.fixture("trained-tiny"))
        #expect(model.config.layout == .huggingFace)
        let rows = [Array(ids[0..<70]), Array(ids[70..<140])]
        var states = rows.map { _ in model.newState() }
        let mine = try model.prefill(rows, states: &states)
        let err = concatRows(mine).relativeError(to: ref.reshaped([140, 264]))
        print("transformers Mamba2ForCausalLM vs ours on a mamba2-train checkpoint: relative error \(err)")
        #expect(err < 1e-5)
    }
}

@Suite("mamba2 train")
struct TrainCommandTests {
    static func corpus() throws -> String {
        let dir = makeTempDir()
        let text = (0..<30).map { i in "Chapter \(i)\n\nAnd the light was good, and the evening and the morning were day \(i).\n" }
            .joined(separator: "<|endoftext|>\n")
        try writeBytes(Array(text.utf8), dir + "/corpus.txt")
        return dir + "/corpus.txt"
    }

    // From a preset on bytes: the checkpoint directory holds a loadable Hugging Face model, the
    // optimizer, the state with one loss per step and an SVG curve; --resume continues to more steps;
    // --export writes a bf16 model that generate reads with its byte tokenizer.
    @Test("train, resume, export, generate")
    func endToEnd() throws {
        let data = try Self.corpus()
        let out = makeTempDir() + "/run", export = makeTempDir() + "/model"
        let r = try runCLI(["train", data, "--bytes", "--preset", "tiny", "--out", out, "--steps", "4", "--batch", "2",
                            "--length", "32", "--warmup", "1", "--eval-every", "2", "--eval-batches", "1", "--save-every", "2",
                            "--threads", "1", "--plain"])
        #expect(r.status == 0, "\(r.err)")
        #expect(r.err.contains("step 4/4") && r.err.contains("tok/s") && r.err.contains("lr ") && r.err.contains("ETA") && r.err.contains("val "))
        for f in ["config.json", "model.safetensors", "optimizer.safetensors", "trainer_state.json", "loss.svg", "tokenizer.json"] {
            #expect(MappedFile.exists(out + "/" + f), "\(f)")
        }
        let svg = String(decoding: try MappedFile.readAll(out + "/loss.svg"), as: UTF8.self)
        #expect(svg.hasPrefix("<svg") && svg.contains("<path") && svg.hasSuffix("</svg>\n"))
        let state = try JSON.parse(try MappedFile.readAll(out + "/trainer_state.json"), source: "state")
        #expect(state["train_loss"]?.arrayValue?.count == 4 && state["validation_loss"]?.arrayValue?.count == 2)
        #expect(try Mamba2Model.load(directory: out).config.layout == .huggingFace)

        let r2 = try runCLI(["train", data, "--out", out, "--resume", "--steps", "6", "--threads", "1", "--plain",
                             "--export", export])
        #expect(r2.status == 0, "\(r2.err)")
        #expect(r2.err.contains("resumed") && r2.err.contains("step 6/6"))
        let resumed = try JSON.parse(try MappedFile.readAll(out + "/trainer_state.json"), source: "state")
        #expect(resumed["train_loss"]?.arrayValue?.count == 6)
        #expect(try Mamba2Model.load(directory: export).weights.storedDType == "BF16")
        let g = try runCLI(["generate", "--model", export, "--prompt", "And the", "--max-tokens", "8", "--seed", "1"])
        #expect(g.status == 0, "\(g.err)")
        // Resuming on other text works, with a warning that the run no longer equals an uninterrupted one.
        let other = makeTempDir() + "/other.txt"
        try writeBytes(Array((String(repeating: "Other text, not the first run's. ", count: 4) + "\n<|endoftext|>\nA second document.\n").utf8), other)
        let r3 = try runCLI(["train", other, "--out", out, "--resume", "--steps", "7", "--threads", "1", "--plain"])
        #expect(r3.status == 0 && r3.err.contains("warning: the text differs"), "\(r3.err)")
    }

    // --init-from fine-tunes a checkpoint of either layout; a vocabulary the text does not fit is
    // refused by name, and so are a missing file and a malformed config.
    @Test("init-from and bad input")
    func initFromAndErrors() throws {
        let data = try Self.corpus()
        let ok = try runCLI(["train", data, "--init-from", fixture("trained-tiny"), "--out", makeTempDir() + "/ft",
                             "--steps", "2", "--batch", "1", "--length", "32", "--warmup", "1", "--eval-batches", "1", "--threads", "1", "--plain"])
        #expect(ok.status == 0, "\(ok.err)")
        let small = try runCLI(["train", data, "--bytes", "--init-from", fixture("tiny-ssm"), "--out", makeTempDir() + "/x", "--steps", "1"])
        #expect(small.status != 0 && small.err.contains("does not fit the model's vocabulary of 100"), "\(small.err)")
        let missing = try runCLI(["train", "/nonexistent/text.txt", "--bytes", "--preset", "tiny", "--out", makeTempDir() + "/y"])
        #expect(missing.status != 0 && missing.err.contains("/nonexistent/text.txt"), "\(missing.err)")
        let cfg = makeTempDir() + "/config.json"
        try writeBytes(Array(#"{"model_type": "mamba2", "hidden_size": "wide"}"#.utf8), cfg)
        let bad = try runCLI(["train", data, "--bytes", "--config", cfg, "--out", makeTempDir() + "/z"])
        #expect(bad.status != 0 && bad.err.contains("hidden_size"), "\(bad.err)")
        let noResume = try runCLI(["train", data, "--out", makeTempDir() + "/none", "--resume"])
        #expect(noResume.status != 0 && noResume.err.contains("trainer_state.json"), "\(noResume.err)")
    }

    // Options out of range (classes N, R, T of the hardening issue) and a trainer_state.json edited into
    // absurd numbers (class O) are errors naming the option, before anything is allocated or trained.
    @Test("out-of-range options and edited trainer state")
    func badOptions() throws {
        let data = try Self.corpus()
        for (flags, mentions) in [(["--batch", "9223372036854775807"], "batch"), (["--length", "1"], "length"), (["--lr", "nan"], "learning rate"),
                                  (["--clip", "nan"], "clip"), (["--warmup", "-1"], "warmup"), (["--steps", "0"], "steps"),
                                  (["--accumulate", "0"], "accumulate"), (["--precision", "f8"], "precision")] {
            let r = try runCLI(["train", data, "--bytes", "--preset", "tiny", "--out", makeTempDir() + "/o"] + flags)
            #expect(r.status != 0 && r.err.contains(mentions) && !r.err.contains("Fatal error"), "\(flags): \(r.err)")
        }
        let dir = makeTempDir() + "/run"
        let ok = try runCLI(["train", data, "--bytes", "--preset", "tiny", "--out", dir, "--steps", "2", "--batch", "1", "--length", "16",
                             "--warmup", "1", "--eval-batches", "1", "--threads", "1", "--plain"])
        #expect(ok.status == 0, "\(ok.err)")
        let state = String(decoding: try readBytes(dir + "/trainer_state.json"), as: UTF8.self)
        for (from, to, mentions) in [(#""step":2"#, #""step":1e300"#, "'step'"), (#""step":2"#, #""step":5"#, "outside"),
                                     (#""rows":1"#, #""rows":1e300"#, "rows"), (#""steps":2"#, #""steps":9223372036854775807"#, "steps"),
                                     (#""learning_rate":"#, #""learning_rate":-1,"x":"#, "learning rate")] {
            #expect(state.contains(from), "trainer_state.json has no \(from)")
            try writeBytes(Array(state.replacingAll(from, with: to).utf8), dir + "/trainer_state.json")
            let r = try runCLI(["train", data, "--bytes", "--out", dir, "--resume", "--threads", "1", "--plain"])
            #expect(r.status != 0 && r.err.contains(mentions) && r.err.contains("trainer_state.json") && !r.err.contains("Fatal error"),
                    "\(to): \(r.err)")
        }
        try writeBytes(Array(state.utf8), dir + "/trainer_state.json")
        // --device cuda is a clean error on a machine without a GPU (CI's) and, where there is one, on this
        // preset (head dim 16: bf16 training needs 64): never a crash.
        let gpu = try runCLI(["train", data, "--bytes", "--preset", "tiny", "--out", makeTempDir() + "/g", "--device", "cuda", "--steps", "1"])
        #expect(gpu.status != 0 && (gpu.err.contains("device") || gpu.err.contains("head_dim")) && !gpu.err.contains("Fatal error"), "\(gpu.err)")
    }
}

@Suite("Training backend")
struct TrainingBackendTests {
    /// The CPU backend, recording the batches it is given.
    final class Recording: TrainingBackend {
        let inner: CPUTrainingBackend
        var batches: [[Int]] = []
        init(_ c: Mamba2Config, _ w: Mamba2Weights, _ o: AdamW.Options) throws { inner = try CPUTrainingBackend(config: c, weights: w, optimizer: o) }
        var config: Mamba2Config { inner.config }
        var optimizerSteps: Int { inner.optimizerSteps }
        func accumulate(_ b: TrainingBatch) throws -> (loss: Double, targets: Int) { batches.append(b.tokens); return try inner.accumulate(b) }
        func loss(_ b: TrainingBatch) throws -> (loss: Double, targets: Int) { try inner.loss(b) }
        func optimizerStep() throws -> (gradientNorm: Float, learningRate: Float) { try inner.optimizerStep() }
        func parameters() throws -> [String: [Float]] { try inner.parameters() }
        func optimizerState() throws -> [(String, Tensor)] { try inner.optimizerState() }
        func restore(parameters: [String: [Float]], optimizerStep: Int, moments: [String: [Float]]) throws {
            try inner.restore(parameters: parameters, optimizerStep: optimizerStep, moments: moments)
        }
    }

    // The trainer runs on the backend it is given (the GPU's is one), hands it `accumulate` batches a step,
    // numbered on from (step − 1)·accumulate + 1 (so one batch a step is batch `step`, as before the option),
    // and a checkpoint keeps the option: the resumed run takes the batches the uninterrupted one would.
    @Test("a step accumulates its batches on the backend given, and a resumed run keeps the count")
    func trainerAccumulates() throws {
        var rng = SeededRNG()
        let path = try TrainingLoopTests.repeatingText(pattern: (0..<30).map { _ in Int(rng.next() % 26) }, repeats: 10)
        let data = try TextDataset(files: [path], encoding: .bytes)
        let c = Mamba2Config(dModel: 32, nLayer: 1, vocabSize: 257, padVocabSizeMultiple: 8, dState: 8, headDim: 16, chunkSize: 16)
        var o = TrainingOptions()
        o.steps = 3; o.rows = 2; o.length = 20; o.seed = rng.next(); o.evalEvery = 0; o.saveEvery = 2; o.evalBatches = 1; o.accumulate = 2
        var made: [Recording] = []
        let factory: Trainer.BackendFactory = { let r = try Recording($0, $1, $2); made.append(r); return r }
        let dir = makeTempDir() + "/acc"
        let t = try Trainer(config: c, weights: Mamba2Weights.random(c, seed: o.seed), dataset: data, options: o, directory: dir,
                            tokenizerJSON: nil, backend: factory)
        try t.run(progress: { _ in }, shouldStop: { t.step >= 2 })
        #expect(made.count == 1 && made[0].optimizerSteps == 2)
        let want = try (1...4).map { try data.batch(step: $0, rows: 2, length: 20, seed: o.seed).tokens }
        #expect(made[0].batches == want, "steps 1 and 2 take batches 1–4 in order")
        let resumed = try Trainer.resume(directory: dir, dataset: data, backend: factory)
        #expect(resumed.options.accumulate == 2 && made.count == 2)
        try resumed.run(progress: { _ in })
        #expect(made[1].batches == [try data.batch(step: 5, rows: 2, length: 20, seed: o.seed).tokens,
                                    try data.batch(step: 6, rows: 2, length: 20, seed: o.seed).tokens])
    }

    // Gradient accumulation: two batches of two sequences accumulated give the step one batch of all four
    // gives, when every sequence has as many targets (the mean of the two means is the mean of all).
    // The losses and gradient norms agree to 1e-6 / 1e-5 (float32 sums in another order). The steps' updates
    // (parameters after − before, all tensors together) to 1e-5 relative: with ε = 1 Adam's first update is
    // lr·g/(|g| + 1), smooth in g, so the updates differ as the gradients do (float32 sums in another order:
    // seen 1.5–2.2e-6); with a small ε it would be lr·sign(g), which flips for gradients within rounding of 0. Not per
    // tensor: a small tensor whose gradient is a near-cancelling sum (seen: 6e-4 on one) says nothing of the
    // accumulation.
    @Test("accumulating two half batches equals one whole batch")
    func accumulation() throws {
        let model = try Mamba2Model.load(directory: Mamba2TestSupport.fixture("tiny-ssm"))
        var rng = SeededRNG()
        let seqs = (0..<4).map { _ in (0..<24).map { _ in Int(rng.next() % 100) } }
        var o = AdamW.Options()
        o.learningRate = 1e-2; o.warmupSteps = 0; o.epsilon = 1
        let whole = try CPUTrainingBackend(config: model.config, weights: model.weights, optimizer: o)
        let halves = try CPUTrainingBackend(config: model.config, weights: model.weights, optimizer: o)
        let lw = try whole.accumulate(try TrainingBatch(sequences: seqs))
        let l1 = try halves.accumulate(try TrainingBatch(sequences: Array(seqs[0..<2])))
        let l2 = try halves.accumulate(try TrainingBatch(sequences: Array(seqs[2..<4])))
        #expect(abs((l1.loss + l2.loss) / 2 - lw.loss) <= 1e-6 * lw.loss, "\(l1.loss), \(l2.loss) vs \(lw.loss)")
        let (nw, _) = try whole.optimizerStep()
        let (nh, _) = try halves.optimizerStep()
        #expect(abs(nw - nh) <= 1e-5 * nw)
        let before = try CPUTrainingBackend(config: model.config, weights: model.weights, optimizer: o).parameters()
        let pw = try whole.parameters(), ph = try halves.parameters()
        var dw: [Float] = [], dh: [Float] = []
        for name in pw.keys.sorted() {
            dw += zip(pw[name]!, before[name]!).map { $0 - $1 }
            dh += zip(ph[name]!, before[name]!).map { $0 - $1 }
        }
        let err = Tensor(shape: [dh.count], data: dh).relativeError(to: Tensor(shape: [dw.count], data: dw))
        print("accumulation: relative difference of the updates \(err)")
        #expect(err <= 1e-5, "\(err)")
        #expect(whole.optimizerSteps == 1 && halves.optimizerSteps == 1)
        // A step with nothing accumulated is an error, not a silent no-op.
        #expect(throws: Mamba2Error.self) { try whole.optimizerStep() }
    }
}
