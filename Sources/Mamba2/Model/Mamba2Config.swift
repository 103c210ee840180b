/// The shape and options of a Mamba-2 language model, read from either spelling of `config.json`:
/// the original `state-spaces/mamba2-*` (`d_model`, `n_layer`, `ssm_cfg`, ...) or Hugging Face
/// transformers (`model_type: "mamba2"`, `hidden_size`, `num_heads`, ...). Sizes that follow from
/// others are computed properties. Fields we do not implement are refused by name, never ignored.
public struct Mamba2Config: Sendable, Equatable {
    /// Model width (embedding size).
    public var dModel: Int
    public var nLayer: Int
    /// Vocabulary as configured (before padding).
    public var vocabSize: Int
    /// The embedding's rows are padded to a multiple of this (state-spaces layout); 1 means none.
    public var padVocabSizeMultiple: Int
    /// N: state size.
    public var dState: Int
    /// Width of the causal depthwise convolution.
    public var dConv: Int
    public var expand: Int
    /// P: head dimension.
    public var headDim: Int
    /// G: groups of B and C.
    public var nGroups: Int
    /// Q: chunk size of the chunked SSD.
    public var chunkSize: Int
    /// Channels that go through the SSM; the rest of the inner width (if any) form a gated MLP branch.
    public var dSSM: Int
    /// D per head and channel (d_ssm) instead of per head.
    public var dHasHeadDim: Bool
    /// dt is clamped to this range after softplus; (0, ∞) means no clamp.
    public var dtLimit: ClosedRangeFloat
    /// Bias on in_proj and out_proj.
    public var projBias: Bool
    /// Bias on the depthwise convolution.
    public var convBias: Bool
    public var rmsNormEps: Float
    /// The residual stream is kept in float32 (always true here: we compute in float32).
    public var residualInFP32: Bool
    /// lm_head shares the embedding matrix.
    public var tieEmbeddings: Bool
    /// The gated norm computes rmsnorm(y)·silu(z) instead of rmsnorm(y·silu(z)).
    public var normBeforeGate: Bool
    /// Which spelling the file used.
    public var layout: Layout

    public enum Layout: String, Sendable { case stateSpaces = "state-spaces", huggingFace = "hugging-face" }

    /// A (lo, hi) pair that is Equatable and Sendable.
    public struct ClosedRangeFloat: Sendable, Equatable {
        public var lo: Float, hi: Float
        public init(_ lo: Float, _ hi: Float) { self.lo = lo; self.hi = hi }
    }

    // MARK: derived sizes (names as in mamba_ssm)
    /// Inner width, expand · d_model.
    public var dInner: Int { expand * dModel }
    /// H: heads, d_ssm / headdim.
    public var nHeads: Int { dSSM / headDim }
    /// Width of the gated MLP branch (0 for every released checkpoint).
    public var dMLP: Int { dInner - dSSM }
    /// Rows of the embedding and of lm_head.
    public var paddedVocabSize: Int {
        let m = max(1, padVocabSizeMultiple)
        return (vocabSize + m - 1) / m * m
    }
    /// Channels through the convolution: x, B and C.
    public var convDim: Int { dSSM + 2 * nGroups * dState }
    /// Output of in_proj: [z0 | x0 | z | x B C | dt].
    public var inProjSize: Int { 2 * dMLP + 2 * dSSM + 2 * nGroups * dState + nHeads }
    /// Floats of recurrent state per sequence: per layer (d_conv − 1)·conv_dim + H·P·N.
    public var stateFloatsPerSequence: Int { nLayer * ((dConv - 1) * convDim + nHeads * headDim * dState) }

    /// A config with the defaults of `mamba_ssm`'s Mamba2 (headdim 64, d_state 128, ...).
    public init(dModel: Int, nLayer: Int, vocabSize: Int, padVocabSizeMultiple: Int = 16, dState: Int = 128,
                dConv: Int = 4, expand: Int = 2, headDim: Int = 64, nGroups: Int = 1, chunkSize: Int = 256,
                dSSM: Int? = nil, dHasHeadDim: Bool = false, dtLimit: ClosedRangeFloat = .init(0, .infinity),
                projBias: Bool = false, convBias: Bool = true, rmsNormEps: Float = 1e-5, residualInFP32: Bool = true,
                tieEmbeddings: Bool = true, normBeforeGate: Bool = false, layout: Layout = .huggingFace) {
        self.dModel = dModel; self.nLayer = nLayer; self.vocabSize = vocabSize
        self.padVocabSizeMultiple = padVocabSizeMultiple; self.dState = dState; self.dConv = dConv
        self.expand = expand; self.headDim = headDim; self.nGroups = nGroups; self.chunkSize = chunkSize
        self.dSSM = dSSM ?? expand * dModel; self.dHasHeadDim = dHasHeadDim; self.dtLimit = dtLimit
        self.projBias = projBias; self.convBias = convBias; self.rmsNormEps = rmsNormEps
        self.residualInFP32 = residualInFP32; self.tieEmbeddings = tieEmbeddings
        self.normBeforeGate = normBeforeGate; self.layout = layout
    }

    /// Checks the sizes fit together; errors name the field.
    public func validate() throws {
        func need(_ ok: Bool, _ field: String, _ reason: String) throws {
            if !ok { throw Mamba2Error.config(field: field, reason: reason) }
        }
        try need(dModel > 0, "d_model", "must be positive, got \(dModel)")
        try need(nLayer > 0, "n_layer", "must be positive, got \(nLayer)")
        try need(vocabSize > 0, "vocab_size", "must be positive, got \(vocabSize)")
        try need(dState > 0, "d_state", "must be positive, got \(dState)")
        try need(dConv > 0, "d_conv", "must be positive, got \(dConv)")
        try need(expand > 0, "expand", "must be positive, got \(expand)")
        try need(headDim > 0, "headdim", "must be positive, got \(headDim)")
        try need(chunkSize > 0, "chunk_size", "must be positive, got \(chunkSize)")
        try need(dSSM > 0 && dSSM <= dInner, "d_ssm", "must be in 1...\(dInner) (expand·d_model), got \(dSSM)")
        try need(dSSM % headDim == 0, "headdim", "d_ssm \(dSSM) is not a multiple of headdim \(headDim)")
        try need(nGroups > 0 && nHeads % nGroups == 0, "ngroups",
                 "heads (\(nHeads)) must be divisible by ngroups (\(nGroups))")
        try need(dSSM % nGroups == 0, "ngroups", "d_ssm \(dSSM) must be divisible by ngroups \(nGroups)")
        try need(dtLimit.lo >= 0 && dtLimit.lo <= dtLimit.hi, "dt_limit", "must be 0 ≤ lo ≤ hi, got (\(dtLimit.lo), \(dtLimit.hi))")
        try need(rmsNormEps > 0, "rms_norm_eps", "must be positive")
    }

    // MARK: parsing

    /// Reads `config.json` from a file.
    public static func load(path: String) throws -> Mamba2Config {
        let json = try JSON.parse(try MappedFile.readAll(path), source: path)
        return try parse(json)
    }

    /// Reads either spelling; the presence of `model_type` or `hidden_size` selects Hugging Face's.
    public static func parse(_ json: JSON) throws -> Mamba2Config {
        guard let root = json.objectValue else { throw Mamba2Error.config(field: "(root)", reason: "config is not a JSON object") }
        let c: Mamba2Config
        if root["model_type"] != nil || root["hidden_size"] != nil {
            c = try parseHuggingFace(root)
        } else {
            c = try parseStateSpaces(root)
        }
        try c.validate()
        return c
    }

    static func int(_ o: [String: JSON], _ key: String, default d: Int? = nil, path: String = "") throws -> Int {
        guard let v = o[key], v != .null else {
            if let d { return d }
            throw Mamba2Error.config(field: path + key, reason: "missing")
        }
        guard let i = v.intValue else { throw Mamba2Error.config(field: path + key, reason: "expected an integer, got \(v.serialized)") }
        return i
    }

    static func bool(_ o: [String: JSON], _ key: String, default d: Bool, path: String = "") throws -> Bool {
        guard let v = o[key], v != .null else { return d }
        guard let b = v.boolValue else { throw Mamba2Error.config(field: path + key, reason: "expected true or false, got \(v.serialized)") }
        return b
    }

    static func float(_ o: [String: JSON], _ key: String, default d: Float, path: String = "") throws -> Float {
        guard let v = o[key], v != .null else { return d }
        guard let x = v.doubleValue else { throw Mamba2Error.config(field: path + key, reason: "expected a number, got \(v.serialized)") }
        return Float(x)
    }

    static func limit(_ o: [String: JSON], _ key: String, path: String = "") throws -> ClosedRangeFloat {
        guard let v = o[key], v != .null else { return .init(0, .infinity) }
        guard let a = v.arrayValue, a.count == 2, let lo = a[0].doubleValue, let hi = a[1].doubleValue else {
            throw Mamba2Error.config(field: path + key, reason: "expected [lo, hi] (Infinity allowed), got \(v.serialized)")
        }
        return .init(Float(lo), Float(hi))
    }

    static func parseStateSpaces(_ o: [String: JSON]) throws -> Mamba2Config {
        if let a = o["attn_layer_idx"]?.arrayValue, !a.isEmpty {
            throw Mamba2Error.config(field: "attn_layer_idx", reason: "hybrid attention layers (mamba2attn) are not implemented")
        }
        if let a = o["attn_cfg"]?.objectValue, !a.isEmpty {
            throw Mamba2Error.config(field: "attn_cfg", reason: "hybrid attention layers (mamba2attn) are not implemented")
        }
        if try int(o, "d_intermediate", default: 0) > 0 {
            throw Mamba2Error.config(field: "d_intermediate", reason: "an MLP after each mixer (d_intermediate > 0) is not implemented")
        }
        if !(try bool(o, "rms_norm", default: true)) {
            throw Mamba2Error.config(field: "rms_norm", reason: "LayerNorm blocks (rms_norm: false) are not implemented")
        }
        let ssm = o["ssm_cfg"]?.objectValue ?? [:]
        let p = "ssm_cfg."
        let layer = ssm["layer"]?.stringValue ?? "Mamba1"
        guard layer == "Mamba2" else {
            throw Mamba2Error.config(field: "ssm_cfg.layer", reason: "'\(layer)' is not Mamba2; only Mamba-2 layers are implemented")
        }
        if !(try bool(ssm, "rmsnorm", default: true, path: p)) {
            throw Mamba2Error.config(field: "ssm_cfg.rmsnorm", reason: "a Mamba-2 mixer without its gated RMSNorm is not implemented")
        }
        let dModel = try int(o, "d_model")
        let expand = try int(ssm, "expand", default: 2, path: p)
        return Mamba2Config(
            dModel: dModel, nLayer: try int(o, "n_layer"), vocabSize: try int(o, "vocab_size"),
            padVocabSizeMultiple: try int(o, "pad_vocab_size_multiple", default: 8),
            dState: try int(ssm, "d_state", default: 128, path: p), dConv: try int(ssm, "d_conv", default: 4, path: p),
            expand: expand, headDim: try int(ssm, "headdim", default: 64, path: p),
            nGroups: try int(ssm, "ngroups", default: 1, path: p), chunkSize: try int(ssm, "chunk_size", default: 256, path: p),
            dSSM: try int(ssm, "d_ssm", default: expand * dModel, path: p),
            dHasHeadDim: try bool(ssm, "D_has_hdim", default: false, path: p),
            dtLimit: try limit(ssm, "dt_limit", path: p), projBias: try bool(ssm, "bias", default: false, path: p),
            convBias: try bool(ssm, "conv_bias", default: true, path: p),
            rmsNormEps: try float(o, "norm_epsilon", default: 1e-5),
            residualInFP32: try bool(o, "residual_in_fp32", default: true),
            tieEmbeddings: try bool(o, "tie_embeddings", default: true),
            normBeforeGate: try bool(ssm, "norm_before_gate", default: false, path: p), layout: .stateSpaces)
    }

    static func parseHuggingFace(_ o: [String: JSON]) throws -> Mamba2Config {
        if let t = o["model_type"]?.stringValue, t != "mamba2" {
            throw Mamba2Error.config(field: "model_type", reason: "'\(t)' is not 'mamba2'")
        }
        if !(try bool(o, "rms_norm", default: true)) {
            throw Mamba2Error.config(field: "rms_norm", reason: "a Mamba-2 mixer without its gated RMSNorm is not implemented")
        }
        let dModel = try int(o, "hidden_size")
        let expand = try int(o, "expand", default: 2)
        let headDim = try int(o, "head_dim", default: 64)
        let dInner = expand * dModel
        // transformers derives the head count; when given, it must agree with the inner width.
        let nHeads = try int(o, "num_heads", default: dInner / headDim)
        guard nHeads * headDim == dInner else {
            throw Mamba2Error.config(field: "num_heads", reason: "num_heads·head_dim = \(nHeads * headDim) differs from expand·hidden_size = \(dInner)")
        }
        return Mamba2Config(
            dModel: dModel, nLayer: try int(o, "num_hidden_layers"), vocabSize: try int(o, "vocab_size"),
            padVocabSizeMultiple: try int(o, "pad_vocab_size_multiple", default: 1),
            dState: try int(o, "state_size", default: 128), dConv: try int(o, "conv_kernel", default: 4),
            expand: expand, headDim: headDim, nGroups: try int(o, "n_groups", default: 1),
            chunkSize: try int(o, "chunk_size", default: 256), dSSM: nHeads * headDim, dHasHeadDim: false,
            dtLimit: try limit(o, "time_step_limit"), projBias: try bool(o, "use_bias", default: false),
            convBias: try bool(o, "use_conv_bias", default: true), rmsNormEps: try float(o, "layer_norm_epsilon", default: 1e-5),
            residualInFP32: try bool(o, "residual_in_fp32", default: true),
            tieEmbeddings: try bool(o, "tie_word_embeddings", default: true),
            normBeforeGate: try bool(o, "norm_before_gate", default: false), layout: .huggingFace)
    }

    /// The Hugging Face spelling, as `mamba2 train` writes next to `model.safetensors` (the text of
    /// config.json). time_step_limit is written as floats ([0.0, Infinity]): transformers 5 refuses
    /// integers there, and a plain JSON number 0 would read back as one.
    public var huggingFaceConfigText: String {
        func decimal(_ x: Float) -> String { x.isInfinite ? (x > 0 ? "Infinity" : "-Infinity") : "\(Double("\(x)") ?? Double(x))" }
        let o: [String: JSON] = [
            "model_type": .string("mamba2"), "architectures": .array([.string("Mamba2ForCausalLM")]),
            "hidden_size": .number(Double(dModel)), "num_hidden_layers": .number(Double(nLayer)),
            "vocab_size": .number(Double(paddedVocabSize)), "state_size": .number(Double(dState)),
            "conv_kernel": .number(Double(dConv)), "expand": .number(Double(expand)), "head_dim": .number(Double(headDim)),
            "num_heads": .number(Double(nHeads)), "n_groups": .number(Double(nGroups)), "chunk_size": .number(Double(chunkSize)),
            "use_bias": .bool(projBias), "use_conv_bias": .bool(convBias),
            "layer_norm_epsilon": .number(Double("\(rmsNormEps)") ?? Double(rmsNormEps)),  // 1e-05, not 9.99999974e-06
            "residual_in_fp32": .bool(residualInFP32), "tie_word_embeddings": .bool(tieEmbeddings),
            "norm_before_gate": .bool(normBeforeGate), "rms_norm": .bool(true),
        ]
        let text = JSON.object(o).serialized
        return String(text.dropLast()) + ",\"time_step_limit\":[\(decimal(dtLimit.lo)),\(decimal(dtLimit.hi))]}"
    }
}

extension Mamba2Config {
    /// Throws for a token id outside the (padded) vocabulary, naming the argument. A plain loop: the decode
    /// step calls this per token and must not allocate, even unoptimized.
    func checkTokens(_ ids: [Int], argument: String) throws {
        let V = paddedVocabSize
        for i in 0..<ids.count where ids[i] < 0 || ids[i] >= V {
            throw Mamba2Error.invalidArgument(argument, reason: "token id \(ids[i]) is outside the vocabulary 0..<\(V)")
        }
    }
}
