import Mamba2
import CMamba2Kernels
import Mamba2TestSupport
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// GGUF files as llama.cpp's own converter writes them (Fixtures/gguf, made from the shared tiny-hf
/// fixture and the 130m GGUF's tokenizer; Fixtures/README.md has the commands), and hand-made ones for
/// every way a file can be wrong.
@Suite("GGUF")
struct GGUFTests {
    static let f32Path = fixture("gguf/tiny-f32.gguf"), q8Path = fixture("gguf/tiny-q8_0.gguf")

    /// A fresh random prompt of the tiny model's vocabulary (112 ids) each run.
    static func randomPrompt(_ n: Int) -> [Int] {
        var g = SystemRandomNumberGenerator()
        return (0..<n).map { _ in Int.random(in: 0..<112, using: &g) }
    }

    static func logits(_ model: Mamba2Model, _ ids: [Int]) throws -> Tensor {
        var states = [model.newState()]
        return try model.prefill([ids], states: &states)[0]
    }

    // The converter's f32 file holds the safetensors weights (A as −exp(A_log), which we take back to
    // A_log): logits within 1e-5 relative (float32 rounding of log(−A) only), and greedy decoding gives
    // the same 24 tokens.
    @Test("f32 GGUF from llama.cpp's converter equals the safetensors model")
    func f32EqualsSafetensors() throws {
        let st = try Mamba2Model.load(directory: fixture("tiny-hf"))
        let gg = try Mamba2Model.load(directory: Self.f32Path)
        #expect(gg.config.vocabSize == st.config.vocabSize && gg.config.paddedVocabSize == st.config.paddedVocabSize)
        #expect(gg.config.nHeads == st.config.nHeads && gg.config.dState == st.config.dState && gg.config.tieEmbeddings)
        let prompt = Self.randomPrompt(40)
        let err = try Self.logits(gg, prompt).relativeError(to: try Self.logits(st, prompt))
        #expect(err < 1e-5, "relative error \(err)")
        func greedy(_ m: Mamba2Model) throws -> [Int] {
            var states = [m.newState()]
            var logits = try m.prefill([Array(prompt[0..<8])], states: &states, logits: .last)[0].data
            var out: [Int] = []
            for _ in 0..<24 {
                let next = logits.indices.max { logits[$0] < logits[$1] }!
                out.append(next)
                logits = try m.step([next], states: &states).data
            }
            return out
        }
        #expect(try greedy(gg) == greedy(st))
    }

    // Q8_0 stores each block of 32 weights as d·q with q = round(w / d₀), d₀ = max|w| / 127 unrounded, and d =
    // fp16(d₀) stored: |w − d·q| ≤ d₀/2 + |d − d₀|·127 ≤ d·(1/2 + 127·2⁻¹¹)·(1 + 2⁻¹¹) < 0.57·d. Our values must
    // be exactly d·q as the bytes say, and within that bound of the f32 file's weights.
    @Test("Q8_0 blocks decode to d·q, within half a step of the f32 weights")
    func q8Dequantization() throws {
        let q8 = try GGUFFile(path: Self.q8Path), f32 = try GGUFFile(path: Self.f32Path)
        var checked = 0
        for t in q8.tensorList where t.type == .q8_0 {
            let ours = q8.floats(t), reference = f32.floats(f32.tensors[t.name]!)
            let raw = q8.file.bytes(t.offset, t.byteCount)
            for b in 0..<(t.count / 32) {
                let d = halfToFloat(UInt16(raw[b * 34]) | UInt16(raw[b * 34 + 1]) << 8)
                for j in 0..<32 {
                    let q = Float(Int8(bitPattern: raw[b * 34 + 2 + j]))
                    let i = b * 32 + j
                    #expect(ours[i] == d * q)
                    #expect(abs(ours[i] - reference[i]) <= 0.57 * d + 1e-7, "\(t.name)[\(i)]: \(ours[i]) vs \(reference[i]), step \(d)")
                    checked += 1
                }
            }
        }
        #expect(checked > 40_000)
    }

    // The Q8_0 model's logits against the f32 model's on a random prompt. Each weight moves by at most
    // half a quantization step, d/2 ≈ max|w|/254 of its block (about 0.9% of a block's RMS for Gaussian
    // weights); a product over K inputs then moves by about that fraction of its own size, and three
    // quantized products in series (in_proj, out_proj, the tied head) compound to under 3% (measured:
    // 1.3e-2 on random prompts); we allow 3e-2 relative.
    @Test("Q8_0 logits within the quantization's bound of f32")
    func q8Logits() throws {
        let f = try Mamba2Model.load(directory: Self.f32Path), q = try Mamba2Model.load(directory: Self.q8Path)
        let prompt = Self.randomPrompt(40)
        let err = try Self.logits(q, prompt).relativeError(to: try Self.logits(f, prompt))
        #expect(err < 3e-2, "relative error \(err)")
        #expect(err > 0, "the Q8_0 weights are not the f32 ones: some error must show")
    }

    // Our Q8_0 quantization gives the converter's blocks byte for byte (from its f32 file's weights), and
    // decoding with Q8_0 matrices (--weights-dtype q8_0) gives the logits of float32 matrices holding the same
    // dequantized values: requantizing the Q8_0 file's weights is the identity, and the kernels differ only in
    // summation order (1e-5 relative, as the GEMV tests), over 16 decode steps of a random prompt.
    @Test("Q8_0 decode weights: the converter's blocks, and the dequantized model's logits")
    func q8Decode() throws {
        #expect(try Self.expectOurBlocks(in: Self.q8Path, type: .q8_0, quantize: mk_quantize_q8_0) == 5)
        let (config, weights, _) = try GGUFModel.load(path: Self.q8Path)
        let fast = try Mamba2Model(config: config, weights: weights, weightType: .q8_0)
        let plain = try Mamba2Model(config: config, weights: weights, weightType: .f32)
        try Self.expectSameDecode(fast, plain)
    }

    // Q4_0 likewise: our quantization gives gguf-py's blocks (the converter's own quantizer) byte for byte from the
    // f32 file's weights, and Q4_0 decode weights give the logits of float32 matrices holding the dequantized
    // values (1e-5 relative, the summation order), over 16 decode steps of a random prompt.
    @Test("Q4_0 decode weights: gguf-py's blocks, and the dequantized model's logits")
    func q4Decode() throws {
        // the embedding and in_proj / out_proj of both layers
        #expect(try Self.expectOurBlocks(in: fixture("gguf/tiny-q4_0.gguf"), type: .q4_0, quantize: mk_quantize_q4_0) == 5)
        let (config, weights, _) = try GGUFModel.load(path: fixture("gguf/tiny-q4_0.gguf"))
        let fast = try Mamba2Model(config: config, weights: weights, weightType: .q4_0)
        let plain = try Mamba2Model(config: config, weights: weights, weightType: .f32)
        try Self.expectSameDecode(fast, plain)
    }

    /// Our quantizer on the f32 file's weights gives the blocks of each `type` tensor of the file at `path` byte for
    /// byte; returns how many tensors were compared.
    static func expectOurBlocks(in path: String, type: GGUFFile.TensorType,
                                quantize: (Int, Int, UnsafePointer<Float>?, UnsafeMutablePointer<UInt8>?) -> Void) throws -> Int {
        let q = try GGUFFile(path: path), f32 = try GGUFFile(path: f32Path)
        var checked = 0
        for t in q.tensorList where t.type == type {
            let w = f32.floats(f32.tensors[t.name]!)
            var ours = [UInt8](repeating: 0, count: t.byteCount)
            w.withUnsafeBufferPointer { quantize(w.count / 32, 32, $0.baseAddress!, &ours) }
            let theirs = q.file.bytes(t.offset, t.byteCount)
            let differing = zip(ours, theirs).filter { $0 != $1 }.count
            #expect(differing == 0, "\(t.name): \(differing) of \(theirs.count) bytes differ from the file's")
            checked += 1
        }
        return checked
    }

    /// 16 decode steps of a random prompt (after an 8-token prefill) give the same logits on both models within
    /// 1e-5 relative (the kernels differ in summation order only).
    static func expectSameDecode(_ fast: Mamba2Model, _ plain: Mamba2Model) throws {
        let prompt = randomPrompt(24)
        var sf = [fast.newState()], sp = [plain.newState()]
        _ = try fast.prefill([Array(prompt[0..<8])], states: &sf, logits: .none)
        _ = try plain.prefill([Array(prompt[0..<8])], states: &sp, logits: .none)
        for t in 8..<24 {
            let a = try fast.step([prompt[t]], states: &sf), b = try plain.step([prompt[t]], states: &sp)
            #expect(a.relativeError(to: b) < 1e-5, "step \(t): \(a.relativeError(to: b))")
        }
    }

    // The tokenizer the 130m GGUF embeds (50,288 tokens, 50,009 merges, pre "olmo") encodes the corpus id
    // for id as Python's tokenizers does with GPT-NeoX-20B's tokenizer.json, and decodes likewise.
    @Test("the embedded GPT-NeoX tokenizer gives tokenizer.json's ids")
    func tokenizer() throws {
        let g = try GGUFFile(path: fixture("gguf/neox-tokenizer.gguf"))
        let tok = try #require(try GGUFModel.tokenizer(g))
        let strings = try loadLines(fixture("tokenizers/corpus.jsonl")).map { try JSON.parse($0, source: "corpus").stringValue! }
        let expected = try loadLines(fixture("tokenizers/expected-gpt-neox-20b.jsonl")).map { try JSON.parse($0, source: "expected") }
        #expect(strings.count == expected.count && strings.count >= 2000)
        var encodeMismatches = 0, decodeMismatches = 0
        for (s, e) in zip(strings, expected) {
            let want = e["ids"]!.arrayValue!.map { $0.intValue! }
            if tok.encode(s) != want {
                encodeMismatches += 1
                if encodeMismatches <= 3 { Issue.record("encode(\(JSON.string(s).serialized)) = \(tok.encode(s)), tokenizers gives \(want)") }
            }
            if tok.decode(want) != e["decoded"]!.stringValue! { decodeMismatches += 1 }
        }
        #expect(encodeMismatches == 0 && decodeMismatches == 0, "\(encodeMismatches) encode, \(decodeMismatches) decode mismatches")
        #expect(tok.id(for: "<|endoftext|>") == 0)
    }

    // F16, BF16, Q4_0 and Q4_1 (no converter fixture here: the converter writes Q4 only through
    // llama-quantize) from hand-made blocks with random contents, against the formulas written out again.
    @Test("F16, BF16, Q4_0 and Q4_1 decode by their formulas")
    func otherTypes() throws {
        var g = SystemRandomNumberGenerator()
        let n = 64
        var f16: [UInt8] = [], bf16: [UInt8] = [], q40: [UInt8] = [], q41: [UInt8] = []
        let values = (0..<n).map { _ in Float.random(in: -2...2, using: &g) }
        for v in roundedTo16Bits(values, bfloat: false) { f16 += [UInt8(v & 0xFF), UInt8(v >> 8)] }
        for v in roundedTo16Bits(values, bfloat: true) { bf16 += [UInt8(v & 0xFF), UInt8(v >> 8)] }
        var want40: [Float] = [], want41: [Float] = []
        for _ in 0..<(n / 32) {
            let d = roundedTo16Bits([Float.random(in: 0.01...0.1, using: &g)], bfloat: false)[0]
            let m = roundedTo16Bits([Float.random(in: -1...1, using: &g)], bfloat: false)[0]
            let nibbles = (0..<16).map { _ in UInt8.random(in: 0...255, using: &g) }
            q40 += [UInt8(d & 0xFF), UInt8(d >> 8)] + nibbles
            q41 += [UInt8(d & 0xFF), UInt8(d >> 8), UInt8(m & 0xFF), UInt8(m >> 8)] + nibbles
            let df = halfToFloat(d), mf = halfToFloat(m)
            want40 += nibbles.map { df * (Float($0 & 15) - 8) } + nibbles.map { df * (Float($0 >> 4) - 8) }
            want41 += nibbles.map { df * Float($0 & 15) + mf } + nibbles.map { df * Float($0 >> 4) + mf }
        }
        let bytes = GGUFFile.encode(metadata: [("general.architecture", .string("mamba2"))],
                                    tensors: [("a", .f16, [32, 2], f16), ("b", .bf16, [n], bf16), ("c", .q4_0, [n], q40), ("d", .q4_1, [32, 2], q41)])
        let path = try Self.temporaryFile(bytes)
        defer { unlink(path) }
        let file = try GGUFFile(path: path)
        #expect(file.tensors["a"]!.shape == [2, 32])
        #expect(file.floats(file.tensors["a"]!) == floatsFrom16Bits(roundedTo16Bits(values, bfloat: false), bfloat: false))
        #expect(file.floats(file.tensors["b"]!) == floatsFrom16Bits(roundedTo16Bits(values, bfloat: true), bfloat: true))
        #expect(file.floats(file.tensors["c"]!) == want40)
        #expect(file.floats(file.tensors["d"]!) == want41)
    }

    static func temporaryFile(_ bytes: [UInt8]) throws -> String {
        let path = "/tmp/mamba2-gguf-test-\(getpid())-\(UInt64.random(in: 0...UInt64.max)).gguf"
        try writeFileAtomically(bytes, to: path)
        return path
    }

    /// The error message a load of these bytes gives (as a model file), or nil if it loads.
    static func loadError(_ bytes: [UInt8]) throws -> String? {
        let path = try temporaryFile(bytes)
        defer { unlink(path) }
        do { _ = try Mamba2Model.load(directory: path); return nil } catch let e as Mamba2Error { return e.description }
    }

    // Every prefix of the converter's file that cuts into the header, the metadata, the tensor table or the
    // data is refused with an error naming the file: never a crash or a read past the end.
    @Test("a truncated GGUF is refused at every cut")
    func truncated() throws {
        let whole = try MappedFile.readAll(Self.f32Path)
        var g = SystemRandomNumberGenerator()
        var cuts = [0, 3, 4, 8, 16, 24, 30, 100, 1000, 100_000, whole.count - 1]
        cuts += (0..<20).map { _ in Int.random(in: 1..<whole.count, using: &g) }
        for cut in cuts {
            let message = try Self.loadError(Array(whole[0..<cut]))
            #expect(message != nil, "a cut at \(cut) of \(whole.count) bytes loaded")
            if let message { #expect(message.contains("mamba2-gguf-test") || message.contains("GGUF"), "cut \(cut): \(message)") }
        }
    }

    // Hand-made files wrong in one way each: the error names the key or tensor at fault.
    @Test("a malformed GGUF gets an error naming what is wrong")
    func malformed() throws {
        let good = try GGUFFile(path: Self.f32Path)
        func rebuilt(metadata: (inout [(String, GGUFFile.Value)]) -> Void = { _ in },
                     tensors: (inout [(name: String, type: GGUFFile.TensorType, ne: [Int], data: [UInt8])]) -> Void = { _ in }) -> [UInt8] {
            var m = good.metadata.sorted { $0.key < $1.key }.map { ($0.key, $0.value) }
            var t = good.tensorList.map { (name: $0.name, type: $0.type, ne: $0.ne, data: good.file.bytes($0.offset, $0.byteCount)) }
            metadata(&m); tensors(&t)
            return GGUFFile.encode(metadata: m, tensors: t)
        }
        #expect(try Self.loadError(rebuilt()) == nil, "the rebuilt file must load, or the cases below prove nothing")
        func expectError(_ bytes: [UInt8], mentioning: String, _ what: String) throws {
            let message = try Self.loadError(bytes)
            #expect(message?.contains(mentioning) == true, "\(what): \(message ?? "loaded")")
        }
        try expectError(rebuilt(metadata: { m in m = m.map { $0.0 == "general.architecture" ? ($0.0, .string("llama")) : $0 } }), mentioning: "'llama'", "another architecture")
        try expectError(rebuilt(metadata: { m in m.removeAll { $0.0 == "mamba2.ssm.state_size" } }), mentioning: "mamba2.ssm.state_size", "a missing hyperparameter")
        try expectError(rebuilt(metadata: { m in m = m.map { $0.0 == "mamba2.ssm.time_step_rank" ? ($0.0, .uint(7)) : $0 } }), mentioning: "time_step_rank", "heads that do not divide")
        try expectError(rebuilt(tensors: { t in t.removeAll { $0.name == "blk.1.ssm_out.weight" } }), mentioning: "blk.1.ssm_out.weight", "a missing tensor")
        try expectError(rebuilt(tensors: { t in t.append((name: "blk.0.extra", type: .f32, ne: [4], data: [UInt8](repeating: 0, count: 16))) }), mentioning: "blk.0.extra", "an extra tensor")
        try expectError(rebuilt(tensors: { t in
            let i = t.firstIndex { $0.name == "blk.0.ssm_a" }!
            t[i].data = Array(repeating: 0, count: t[i].data.count)  // A = 0: not −exp of anything
        }), mentioning: "blk.0.ssm_a", "A not negative")
        try expectError(rebuilt(tensors: { t in
            let i = t.firstIndex { $0.name == "blk.0.ssm_in.weight" }!
            t[i].ne = [t[i].ne[1], t[i].ne[0]]  // transposed
        }), mentioning: "blk.0.ssm_in.weight", "a transposed matrix")
        // Header fields: version, counts that no file could hold, an unknown ggml type, an offset past the end.
        var bytes = rebuilt()
        bytes[4] = 1
        try expectError(bytes, mentioning: "version 1", "version 1")
        bytes = rebuilt()
        for i in 8..<16 { bytes[i] = 0xFF }
        try expectError(bytes, mentioning: "tensor_count", "2^64 − 1 tensors")
        bytes = rebuilt()
        for i in 16..<24 { bytes[i] = 0xFF }
        try expectError(bytes, mentioning: "kv_count", "2^64 − 1 keys")
        let q4k = GGUFFile.encode(metadata: [], tensors: [("w", .f32, [32], [UInt8](repeating: 0, count: 128))])
        var unknownType = q4k
        // the table starts after the 24-byte header: name ("w": 8-byte length + 1), n_dims (4), ne (8), type, offset
        let header = 4 + 4 + 8 + 8
        unknownType[header + 8 + 1 + 4 + 8] = 12  // Q4_K
        #expect(try Self.loadError(unknownType)?.contains("ggml type 12") == true)
        var farOffset = q4k
        farOffset[header + 8 + 1 + 4 + 8 + 4 + 1] = 0x10  // offset 4096, past the 128 bytes of data
        #expect(try Self.loadError(farOffset)?.contains("past the end") == true)
    }
}
