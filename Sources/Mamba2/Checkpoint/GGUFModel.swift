#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A Mamba-2 language model in a GGUF file as llama.cpp's converter (`convert_hf_to_gguf.py`) writes one
/// (`general.architecture` = "mamba2"): the config from the `mamba2.*` keys, the tensors renamed to the
/// state-spaces names (and A, which the converter stores as A = −exp(A_log), back to A_log), and the
/// tokenizer from the `tokenizer.ggml.*` keys.
///
/// Names (GGUF → state-spaces, layer i):
///   token_embd → backbone.embedding, output_norm → backbone.norm_f, output → lm_head (absent when tied),
///   blk.i.attn_norm → layers.i.norm, ssm_in → mixer.in_proj, ssm_conv1d → mixer.conv1d (stored (conv_dim, d_conv)),
///   ssm_dt.bias → mixer.dt_bias, ssm_a → mixer.A_log, ssm_d → mixer.D, ssm_norm → mixer.norm (stored (G, d_ssm/G)),
///   ssm_out → mixer.out_proj.
/// Choices where the format is silent: the gated norm normalizes after the gate (norm_before_gate = false, as
/// every released Mamba-2 checkpoint), dt is not clamped, and the vocabulary is the tokens that are not
/// marked unused (llama.cpp's converter pads it to a multiple of 16 with "[PADn]" tokens, as the embedding is).
public enum GGUFModel {
    /// Reads the config, checks every tensor and converts them to float32 weights.
    public static func load(path: String) throws -> (config: Mamba2Config, weights: Mamba2Weights, file: GGUFFile) {
        let g = try GGUFFile(path: path)
        let c = try config(g)
        return (c, try weights(g, config: c), g)
    }

    static func required(_ g: GGUFFile, _ key: String) throws -> Int {
        guard let v = g.metadata[key] else { throw Mamba2Error.checkpoint(file: g.path, tensor: nil, reason: "metadata '\(key)' is missing") }
        guard let n = v.intValue, n > 0, n <= 1 << 24 else {
            throw Mamba2Error.checkpoint(file: g.path, tensor: nil, reason: "metadata '\(key)' is \(v), not a positive integer up to 2^24")
        }
        return n
    }

    /// The model's config from the `mamba2.*` metadata and the tensor table; errors name the key.
    public static func config(_ g: GGUFFile) throws -> Mamba2Config {
        let arch = g.metadata["general.architecture"]?.stringValue ?? "(none)"
        guard arch == "mamba2" else {
            throw Mamba2Error.checkpoint(file: g.path, tensor: nil, reason: "general.architecture is '\(arch)': this loader reads Mamba-2 models ('mamba2') only")
        }
        let dModel = try required(g, "mamba2.embedding_length"), nLayer = try required(g, "mamba2.block_count")
        let dConv = try required(g, "mamba2.ssm.conv_kernel"), dInner = try required(g, "mamba2.ssm.inner_size")
        let dState = try required(g, "mamba2.ssm.state_size"), heads = try required(g, "mamba2.ssm.time_step_rank")
        let groups = try required(g, "mamba2.ssm.group_count")
        guard dInner % heads == 0 else {
            throw Mamba2Error.checkpoint(file: g.path, tensor: nil, reason: "mamba2.ssm.inner_size \(dInner) is not a multiple of the head count (mamba2.ssm.time_step_rank \(heads))")
        }
        guard dInner % dModel == 0 else {
            throw Mamba2Error.checkpoint(file: g.path, tensor: nil, reason: "mamba2.ssm.inner_size \(dInner) is not a multiple of mamba2.embedding_length \(dModel)")
        }
        var eps: Float = 1e-5
        if let e = g.metadata["mamba2.attention.layer_norm_rms_epsilon"] {
            guard let v = e.doubleValue, v > 0, v.isFinite else {
                throw Mamba2Error.checkpoint(file: g.path, tensor: nil, reason: "mamba2.attention.layer_norm_rms_epsilon is \(e)")
            }
            eps = Float(v)
        }
        guard let embedding = g.tensors["token_embd.weight"], embedding.ne.count == 2 else {
            throw Mamba2Error.checkpoint(file: g.path, tensor: "token_embd.weight", reason: "missing, or not a matrix")
        }
        let rows = embedding.ne[1]
        // The vocabulary: the tokens not marked unused (type 5), padded to the embedding's rows by 16 as
        // the converter pads it; otherwise every row is a token.
        var vocab = rows, pad = 1
        if let types = g.metadata["tokenizer.ggml.token_type"]?.arrayValue {
            let used = types.filter { $0.intValue != 5 }.count
            if used > 0, used <= rows, (used + 15) / 16 * 16 == rows { vocab = used; pad = 16 }
        }
        let dSSD = g.tensors["blk.0.ssm_d"]?.count
        let c = Mamba2Config(dModel: dModel, nLayer: nLayer, vocabSize: vocab, padVocabSizeMultiple: pad, dState: dState,
                             dConv: dConv, expand: dInner / dModel, headDim: dInner / heads, nGroups: groups,
                             dSSM: dInner, dHasHeadDim: dSSD == dInner && dInner != heads,
                             projBias: g.tensors["blk.0.ssm_in.bias"] != nil, convBias: g.tensors["blk.0.ssm_conv1d.bias"] != nil,
                             rmsNormEps: eps, tieEmbeddings: g.tensors["output.weight"] == nil)
        try c.validate()
        return c
    }

    /// The GGUF name of each state-spaces parameter of `c`.
    static func ggufName(_ name: String) -> String {
        if name == "backbone.embedding.weight" { return "token_embd.weight" }
        if name == "backbone.norm_f.weight" { return "output_norm.weight" }
        if name == "lm_head.weight" { return "output.weight" }
        let parts = name.split(separator: ".", maxSplits: 3).map(String.init)  // backbone, layers, i, rest
        let table = ["norm.weight": "attn_norm.weight", "mixer.in_proj.weight": "ssm_in.weight", "mixer.in_proj.bias": "ssm_in.bias",
                     "mixer.conv1d.weight": "ssm_conv1d.weight", "mixer.conv1d.bias": "ssm_conv1d.bias",
                     "mixer.dt_bias": "ssm_dt.bias", "mixer.A_log": "ssm_a", "mixer.D": "ssm_d", "mixer.norm.weight": "ssm_norm.weight",
                     "mixer.out_proj.weight": "ssm_out.weight", "mixer.out_proj.bias": "ssm_out.bias"]
        return "blk.\(parts[2])." + (table[parts[3]] ?? parts[3])
    }

    /// Every tensor checked against `c` (present, of the expected element count and, for matrices, shape,
    /// none left over), converted to float32; A_log = log(−A) with every A negative and finite.
    public static func weights(_ g: GGUFFile, config c: Mamba2Config) throws -> Mamba2Weights {
        try weights(g, config: c, heldApart: []) { _, _ in }
    }

    /// As `weights`, except that each tensor named (state-spaces names) in `heldApart` is handed to `hold` as
    /// float32 when read and left out of the result, as `CheckpointLoader.weights(_:tensors:heldApart:hold:)`.
    package static func weights(_ g: GGUFFile, config c: Mamba2Config, heldApart: Set<String>,
                                hold: (String, [Float]) throws -> Void) throws -> Mamba2Weights {
        var values: [String: [Float]] = [:]
        var used = Set<String>()
        var counts: [String: Int] = [:]
        for (name, shape) in Mamba2Weights.expectedShapes(c) {
            let gname = ggufName(name)
            guard let t = g.tensors[gname] else {
                throw Mamba2Error.checkpoint(file: g.path, tensor: gname, reason: "missing (expected \(shape), for \(name))")
            }
            let count = shape.reduce(1, *)
            let matrix = shape.count == 2 && shape[0] > 1 && shape[1] > 1
            guard t.count == count, !matrix || t.shape == shape else {
                throw Mamba2Error.checkpoint(file: g.path, tensor: gname, reason: "shape \(t.shape) does not match the config's \(shape)")
            }
            var v = g.floats(t)
            g.file.dropPages(t.offset, t.byteCount)
            if let i = v.firstIndex(where: { !$0.isFinite }) {
                throw Mamba2Error.checkpoint(file: g.path, tensor: gname, reason: "element \(i) is \(v[i]): weights must be finite")
            }
            if name.hasSuffix("mixer.A_log") {
                if let i = v.firstIndex(where: { !($0 < 0) }) {
                    throw Mamba2Error.checkpoint(file: g.path, tensor: gname, reason: "element \(i) is \(v[i]): A = −exp(A_log) must be negative")
                }
                v = v.map { Float(log(-Double($0))) }
            }
            if heldApart.contains(name) { try hold(name, v) } else { values[name] = v }
            used.insert(gname)
            counts[t.type.name, default: 0] += count
        }
        if let extra = g.tensorList.first(where: { !used.contains($0.name) }) {
            throw Mamba2Error.checkpoint(file: g.path, tensor: extra.name, reason: "unexpected tensor: not part of a Mamba-2 model with this config")
        }
        let dominant = counts.max { $0.value < $1.value }?.key ?? "F32"
        return try Mamba2Weights(c, values: values, storedDType: dominant, heldApart: heldApart)
    }

    /// The tokenizer the file embeds (`tokenizer.ggml.model` "gpt2": byte-level BPE), as a tokenizer.json of
    /// the same vocabulary, merges and special tokens would make it; nil when the file has none. Control
    /// tokens (type 3) become special added tokens, user-defined ones (4) normalized added tokens, unused
    /// ones (5, the converter's padding) are left out. The GPT-NeoX family (`tokenizer.ggml.pre` "mpt",
    /// "olmo", "gpt-neox") normalizes to NFC as its tokenizer.json does; "gpt-2" does not. Merges that
    /// name tokens the vocabulary lacks (a converter truncates the vocabulary to the embedding's rows) are
    /// left out, as llama.cpp ignores them.
    public static func tokenizer(_ g: GGUFFile) throws -> Tokenizer? {
        guard let model = g.metadata["tokenizer.ggml.model"] else { return nil }
        func fail(_ reason: String) -> Mamba2Error { .checkpoint(file: g.path, tensor: nil, reason: reason) }
        guard model.stringValue == "gpt2" else {
            throw fail("tokenizer.ggml.model \(model) is not supported (only 'gpt2', byte-level BPE); give a tokenizer.json with --tokenizer")
        }
        let pre = g.metadata["tokenizer.ggml.pre"]?.stringValue ?? "gpt-2"
        let neox: Set<String> = ["mpt", "olmo", "gpt-neox"]
        guard neox.contains(pre) || pre == "gpt-2" else {
            throw fail("tokenizer.ggml.pre '\(pre)' is not supported (gpt-2, mpt, olmo, gpt-neox are); give a tokenizer.json with --tokenizer")
        }
        guard let tokens = g.metadata["tokenizer.ggml.tokens"]?.arrayValue else { throw fail("tokenizer.ggml.tokens is missing or not an array") }
        let types = g.metadata["tokenizer.ggml.token_type"]?.arrayValue
        if let types, types.count != tokens.count {
            throw fail("tokenizer.ggml.token_type has \(types.count) entries for \(tokens.count) tokens")
        }
        var vocab: [String: JSON] = [:]
        var added: [JSON] = []
        for (id, t) in tokens.enumerated() {
            guard let s = t.stringValue else { throw fail("token \(id) of tokenizer.ggml.tokens is not a string") }
            switch types?[id].intValue ?? 1 {
            case 3: added.append(.object(["id": .number(Double(id)), "content": .string(s), "special": .bool(true), "normalized": .bool(false)]))
            case 4: added.append(.object(["id": .number(Double(id)), "content": .string(s), "special": .bool(false), "normalized": .bool(true)]))
            case 5: continue
            default: if vocab[s] == nil { vocab[s] = .number(Double(id)) }
            }
        }
        let merges = (g.metadata["tokenizer.ggml.merges"]?.arrayValue ?? []).compactMap { $0.stringValue }.map { JSON.string($0) }
        let byteLevel: JSON = .object(["type": .string("ByteLevel"), "add_prefix_space": .bool(false), "trim_offsets": .bool(true), "use_regex": .bool(true)])
        var json: [String: JSON] = ["model": .object(["type": .string("BPE"), "vocab": .object(vocab), "merges": .array(merges)]),
                                    "pre_tokenizer": byteLevel, "decoder": byteLevel, "added_tokens": .array(added)]
        if neox.contains(pre) { json["normalizer"] = .object(["type": .string("NFC")]) }
        return try Tokenizer(json: .object(json), source: g.path, skipUnknownMerges: true)
    }
}
