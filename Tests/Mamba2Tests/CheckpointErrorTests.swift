@testable import Mamba2
import Mamba2TestSupport
import Testing
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif







@Suite("Malformed checkpoints and configs")
struct CheckpointErrorTests {
    @Test("truncated safetensors file")
    func truncatedSafetensors() throws {
        let dir = try copyModel("tiny-hf")
        let b = try readBytes(dir + "/model.safetensors")
        try writeBytes(Array(b[0..<(b.count / 2)]), dir + "/model.safetensors")
        expectLoadError(dir, mentions: ["model.safetensors", "truncated"])
    }

    @Test("header length past the end of the file")
    func headerPastEnd() throws {
        let dir = try copyModel("tiny-hf")
        var b = try readBytes(dir + "/model.safetensors")
        withUnsafeBytes(of: UInt64(10_000_000).littleEndian) { b.replaceSubrange(0..<8, with: $0) }
        try writeBytes(b, dir + "/model.safetensors")
        expectLoadError(dir, mentions: ["model.safetensors", "header length"])
    }

    @Test("corrupt header JSON")
    func corruptHeader() throws {
        let dir = try copyModel("tiny-hf")
        var b = try readBytes(dir + "/model.safetensors")
        b[8] = UInt8(ascii: "[")  // the header must be an object
        b[9] = UInt8(ascii: "?")
        try writeBytes(b, dir + "/model.safetensors")
        expectLoadError(dir, mentions: ["model.safetensors"])
    }

    @Test("wrong dtype, missing tensor, swapped shapes")
    func tensorProblems() throws {
        let model = try Mamba2Model.load(directory: fixture("tiny-hf"))
        var tensors = model.weights.namedTensors(model.config)
        let dir = try copyModel("tiny-hf")
        // Missing: drop A_log of layer 1.
        try SafeTensorsFile.write(tensors.filter { $0.0 != "backbone.layers.1.mixer.A_log" }, to: dir + "/model.safetensors")
        expectLoadError(dir, mentions: ["backbone.layers.1.mixer.A_log", "missing"])
        // Swapped shapes: out_proj stored transposed-shaped.
        let i = tensors.firstIndex { $0.0 == "backbone.layers.0.mixer.out_proj.weight" }!
        tensors[i].1 = tensors[i].1.reshaped([tensors[i].1.shape[1], tensors[i].1.shape[0]])
        try SafeTensorsFile.write(tensors, to: dir + "/model.safetensors")
        expectLoadError(dir, mentions: ["backbone.layers.0.mixer.out_proj.weight", "shape"])
        // Extra tensor.
        tensors = model.weights.namedTensors(model.config) + [("backbone.layers.0.mixer.extra", Tensor(zeros: [3]))]
        try SafeTensorsFile.write(tensors, to: dir + "/model.safetensors")
        expectLoadError(dir, mentions: ["backbone.layers.0.mixer.extra", "unexpected"])
        // Wrong dtype: rewrite the header to call D an I32 tensor (same byte size as F32).
        try SafeTensorsFile.write(model.weights.namedTensors(model.config), to: dir + "/model.safetensors")
        var b = try readBytes(dir + "/model.safetensors")
        let key = Array("\"backbone.layers.0.mixer.D\":{\"data_offsets\"".utf8)
        let at = (0...(b.count - key.count)).first { Array(b[$0..<($0 + key.count)]) == key }!
        let dtypeAt = (at..<b.count).first { Array(b[$0..<($0 + 11)]) == Array("\"dtype\":\"F3".utf8) }!
        b.replaceSubrange(dtypeAt..<(dtypeAt + 13), with: Array("\"dtype\":\"I32\"".utf8))
        try writeBytes(b, dir + "/model.safetensors")
        expectLoadError(dir, mentions: ["backbone.layers.0.mixer.D", "I32"])
    }

    @Test("truncated pytorch_model.bin")
    func truncatedPickleZip() throws {
        let dir = try copyModel("tiny-ssm")
        let b = try readBytes(dir + "/pytorch_model.bin")
        try writeBytes(Array(b[0..<(b.count - 100)]), dir + "/pytorch_model.bin")
        expectLoadError(dir, mentions: ["pytorch_model.bin"])
        try writeBytes(Array(b[0..<(b.count / 3)]), dir + "/pytorch_model.bin")
        expectLoadError(dir, mentions: ["pytorch_model.bin"])
    }

    @Test("pickle with an unknown opcode")
    func unknownOpcode() throws {
        let dir = try copyModel("tiny-ssm")
        var b = try readBytes(dir + "/pytorch_model.bin")
        // The pickle starts 0x80 0x02 (PROTO 2) '}' ...: make the opcode after PROTO unknown.
        let start = (0..<(b.count - 3)).first { b[$0] == 0x80 && b[$0 + 1] == 0x02 && b[$0 + 2] == UInt8(ascii: "}") }!
        b[start + 2] = 0xFE
        try writeBytes(b, dir + "/pytorch_model.bin")
        expectLoadError(dir, mentions: ["pytorch_model.bin", "opcode 0xfe"])
    }

    @Test("pickle naming a global outside the allow-list")
    func forbiddenGlobal() throws {
        let dir = try copyModel("tiny-ssm")
        var b = try readBytes(dir + "/pytorch_model.bin")
        patch(&b, "torch._utils\n_rebuild_tensor_v2\n", "posix_______\nsystem____________\n")
        try writeBytes(b, dir + "/pytorch_model.bin")
        expectLoadError(dir, mentions: ["posix_______.system____________", "allow-list"])
    }

    @Test("configs that cannot be honoured", arguments: [
        (#""ngroups": 1"#, #""ngroups": 3"#, "ngroups"),
        (#""layer": "Mamba2""#, #""layer": "Mamba1""#, "ssm_cfg.layer"),
    ])
    func badSSMConfig(original: String, replacement: String, field: String) throws {
        let dir = try copyModel("tiny-ssm")
        var text = String(decoding: try readBytes(dir + "/config.json"), as: UTF8.self)
        text = text.replacingAll(original, with: replacement)
        try writeBytes(Array(text.utf8), dir + "/config.json")
        expectLoadError(dir, mentions: [field])
    }

    @Test("hybrid and MLP configs are refused by field name", arguments: [
        (#""attn_layer_idx": []"#, #""attn_layer_idx": [1]"#, "attn_layer_idx"),
        (#""d_intermediate": 0"#, #""d_intermediate": 256"#, "d_intermediate"),
        (#""d_model": 64"#, #""d_model": "64""#, "d_model"),
    ])
    func refusedConfig(old: String, new: String, field: String) throws {
        let dir = try copyModel("tiny-ssm")
        let text = String(decoding: try readBytes(dir + "/config.json"), as: UTF8.self).replacingAll(old, with: new)
        try writeBytes(Array(text.utf8), dir + "/config.json")
        expectLoadError(dir, mentions: [field])
    }

    @Test("missing files and malformed JSON name the file")
    func missingFiles() throws {
        expectLoadError("/nonexistent-model-dir", mentions: ["config.json"])
        let dir = try copyModel("tiny-hf")
        unlink(dir + "/model.safetensors")
        expectLoadError(dir, mentions: ["no model.safetensors"])
        try writeBytes(Array("{\"hidden_size\": 64,".utf8), dir + "/config.json")
        expectLoadError(dir, mentions: ["config.json", "end of input"])
    }

    // Both JSON spellings of infinity parse; the Hugging Face config reads as the state-spaces one.
    @Test("config spellings agree")
    func spellings() throws {
        let hf = try Mamba2Config.load(path: fixture("tiny-hf/config.json"))
        let ss = try Mamba2Config.load(path: fixture("tiny-ssm/config.json"))
        #expect(hf.dtLimit.hi == .infinity && hf.dtLimit.lo == 0)
        #expect(hf.paddedVocabSize == ss.paddedVocabSize && hf.nHeads == ss.nHeads && hf.dState == ss.dState)
        let legacy = try Mamba2Config.decode(Array(#"{"model_type": "mamba2", "hidden_size": 64, "num_hidden_layers": 2, "vocab_size": 112, "head_dim": 16, "num_heads": 8, "state_size": 16, "time_step_limit": [0.001, Infinity]}"#.utf8), source: "legacy")
        #expect(legacy.dtLimit.lo == 0.001 && legacy.dtLimit.hi == .infinity)
        let dunder = try Mamba2Config.decode(Array(#"{"model_type": "mamba2", "hidden_size": 64, "num_hidden_layers": 2, "vocab_size": 112, "head_dim": 16, "state_size": 16, "time_step_limit": [0.0, {"__float__": "Infinity"}]}"#.utf8), source: "dunder")
        #expect(dunder.dtLimit.hi == .infinity)
        // What we write reads back as the same config.
        let back = try Mamba2Config.decode(Array(hf.huggingFaceConfigText.utf8), source: "written")
        #expect(back.dModel == hf.dModel && back.nHeads == hf.nHeads && back.dtLimit == hf.dtLimit && back.paddedVocabSize == hf.paddedVocabSize)
        #expect(hf.huggingFaceConfigText.contains(#""time_step_limit":[0.0,Infinity]"#))
    }

    // Sizes that are zero, absurd, or whose products overflow get an error naming the field, before any
    // size is derived from them (no trap, no allocation).
    @Test("bad config sizes are clear errors", arguments: [
        (#"{"model_type": "mamba2", "hidden_size": 64, "num_hidden_layers": 2, "vocab_size": 112, "head_dim": 0}"#, "head_dim"),
        (#"{"model_type": "mamba2", "hidden_size": 4611686018427387904, "num_hidden_layers": 2, "vocab_size": 112, "expand": 4}"#, "expand"),
        (#"{"model_type": "mamba2", "hidden_size": 64, "num_hidden_layers": 10000000, "vocab_size": 112, "head_dim": 16}"#, "n_layer"),
        (#"{"model_type": "mamba2", "hidden_size": 64, "num_hidden_layers": 2, "vocab_size": 112, "head_dim": 16, "num_heads": 4611686018427387904}"#, "num_heads"),
        (#"{"d_model": 64, "n_layer": 2, "vocab_size": 112, "ssm_cfg": {"layer": "Mamba2", "ngroups": 4611686018427387904, "d_state": 4611686018427387904}}"#, "d_state"),
        (#"{"d_model": 65536, "n_layer": 4096, "vocab_size": 16777216, "ssm_cfg": {"layer": "Mamba2", "d_state": 4096, "ngroups": 64}}"#, "too large"),
        (#"{"d_model": "64", "n_layer": 2, "vocab_size": 112}"#, "d_model"),
        (#"{"d_model": 64, "n_layer": 2}"#, "vocab_size"),
        (#"[1, 2]"#, "(root)"),
    ])
    func badSizes(text: String, mentions: String) throws {
        do {
            _ = try Mamba2Config.decode(Array(text.utf8), source: "config.json")
            Issue.record("accepted: \(text)")
        } catch let e as Mamba2Error {
            #expect("\(e)".contains(mentions) && "\(e)".contains("config.json"), "\(e)")
        }
    }
}

@Suite("Model info")
struct ModelInfoTests {
    // A mamba2-2.7b-shaped checkpoint: the real config and a safetensors header of every tensor in
    // BF16, its data a sparse (unwritten) file region. Info reads only headers.
    @Test("info on a mamba2-2.7b-shaped checkpoint")
    func info27b() throws {
        let dir = makeTempDir()
        let configText = #"{"d_model": 2560, "d_intermediate": 0, "n_layer": 64, "vocab_size": 50277, "ssm_cfg": {"layer": "Mamba2"}, "attn_layer_idx": [], "attn_cfg": {}, "rms_norm": true, "residual_in_fp32": true, "fused_add_norm": true, "pad_vocab_size_multiple": 16, "tie_embeddings": true}"#
        try writeBytes(Array(configText.utf8), dir + "/config.json")
        let config = try Mamba2Config.load(path: dir + "/config.json")
        var header: [String: JSON] = [:]
        var offset = 0
        for (name, shape) in Mamba2Weights.expectedShapes(config) {
            let bytes = shape.reduce(1, *) * 2
            header[name] = .object(["dtype": .string("BF16"), "shape": .array(shape.map { .number(Double($0)) }),
                                    "data_offsets": .array([.number(Double(offset)), .number(Double(offset + bytes))])])
            offset += bytes
        }
        let h = Array(JSON.object(header).serialized.utf8)
        var out: [UInt8] = []
        withUnsafeBytes(of: UInt64(h.count).littleEndian) { out += $0 }
        out += h
        let path = dir + "/model.safetensors"
        try writeBytes(out, path)
        #expect(truncate(path, off_t(out.count + offset)) == 0)
        let info = try ModelInfo(directory: dir)
        #expect(info.parameterCount == 2_702_599_680)
        #expect(info.storedBytes == 2 * 2_702_599_680)
        // Per sequence: 64 layers × (3 × conv_dim 5376 + 80 heads × 64 × 128) floats.
        #expect(info.stateBytesPerSequence == 64 * (3 * 5376 + 80 * 64 * 128) * 4)
        unlink(path)
    }
}
