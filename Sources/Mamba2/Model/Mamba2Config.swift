import FoundationEssentials

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
    /// Inner width, expand · d_model (a tensor-parallel rank's block: its own part, `shardInner`).
    public var dInner: Int { shardInner ?? expand * dModel }
    /// A tensor-parallel rank's d_inner (`TensorParallelPlan.localConfig`): its part of the inner width is not
    /// expand · d_model for any whole expand. nil for a whole model.
    package var shardInner: Int? = nil
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

    /// Checks the sizes fit together, before anything is derived from them; errors name the field. Every
    /// size is bounded and every product the model forms is checked, so the derived sizes (computed
    /// properties) cannot overflow once this passed.
    public func validate() throws {
        func need(_ ok: Bool, _ field: String, _ reason: @autoclosure () -> String) throws {
            if !ok { throw Mamba2Error.config(field: field, reason: reason()) }
        }
        func bounded(_ v: Int, _ field: String, _ max: Int) throws {
            try need(v > 0, field, "must be positive, got \(v)")
            try need(v <= max, field, "\(v) is larger than this implementation's bound of \(max)")
        }
        try bounded(dModel, "d_model", 1 << 16)
        try bounded(nLayer, "n_layer", 1 << 12)
        try bounded(vocabSize, "vocab_size", 1 << 24)
        try bounded(padVocabSizeMultiple, "pad_vocab_size_multiple", 1 << 16)
        try bounded(dState, "d_state", 1 << 12)
        try bounded(dConv, "d_conv", 64)
        try bounded(expand, "expand", 64)
        try bounded(headDim, "headdim", 1 << 12)
        try bounded(nGroups, "ngroups", 1 << 12)
        try bounded(chunkSize, "chunk_size", 1 << 16)
        // Products the model forms, each within the bounds above (so none overflows): the inner width and
        // the rows of the in_proj and embedding matrices.
        try need(dSSM > 0 && dSSM <= dInner, "d_ssm", "must be in 1...\(dInner) (expand·d_model), got \(dSSM)")
        try need(dSSM % headDim == 0, "headdim", "d_ssm \(dSSM) is not a multiple of headdim \(headDim)")
        try need(nHeads % nGroups == 0, "ngroups", "heads (\(nHeads)) must be divisible by ngroups (\(nGroups))")
        try need(dSSM % nGroups == 0, "ngroups", "d_ssm \(dSSM) must be divisible by ngroups \(nGroups)")
        try need(dtLimit.lo >= 0 && dtLimit.lo <= dtLimit.hi, "dt_limit", "must be 0 ≤ lo ≤ hi, got (\(dtLimit.lo), \(dtLimit.hi))")
        try need(rmsNormEps > 0 && rmsNormEps.isFinite, "rms_norm_eps", "must be positive and finite, got \(rmsNormEps)")
        // Whole-model sizes: one matrix at most 2^40 elements, all layers' parameters at most 2^44.
        let layer = inProjSize.multipliedReportingOverflow(by: dModel)
        try need(!layer.overflow && layer.partialValue <= 1 << 40, "d_model", "in_proj would hold \(inProjSize) × \(dModel) values: too large")
        let embedding = paddedVocabSize.multipliedReportingOverflow(by: dModel)
        try need(!embedding.overflow && embedding.partialValue <= 1 << 40, "vocab_size", "the embedding would hold \(paddedVocabSize) × \(dModel) values: too large")
        let all = (layer.partialValue + dModel * dInner).multipliedReportingOverflow(by: nLayer)
        try need(!all.overflow && all.partialValue <= 1 << 44, "n_layer", "\(nLayer) layers of \(layer.partialValue + dModel * dInner) matrix values: too large")
    }

    // MARK: parsing

    /// Reads `config.json` from a file (a regular file; either spelling).
    public static func load(path: String) throws -> Mamba2Config {
        try decode(try MappedFile.readAll(path), source: path)
    }

    /// Decodes either spelling from JSON text (JSON5: `Infinity` and `NaN` as Python writes them), then
    /// validates. Errors name `source` and the field.
    public static func decode(_ bytes: [UInt8], source: String) throws -> Mamba2Config {
        // Our own reader first: it names the byte at fault, and Foundation's JSON5 scanner traps on some
        // malformed input (invalid UTF-8 in a key: an assertion in its scalar decoder, found by fuzzing), so
        // it only ever sees text that is valid UTF-8 and valid JSON.
        guard String(validating: bytes, as: UTF8.self) != nil else {
            throw Mamba2Error.json(source: source, reason: "not valid UTF-8")
        }
        _ = try JSON.parse(bytes, source: source)
        let decoder = JSONDecoder()
        decoder.allowsJSON5 = true
        do {
            return try decoder.decode(Mamba2Config.self, from: Data(bytes))
        } catch let e as DecodingError {
            throw Mamba2Error.config(field: "\(source): " + e.fieldPath, reason: e.reason)
        } catch let Mamba2Error.config(field, reason) {
            throw Mamba2Error.config(field: "\(source): \(field)", reason: reason)
        }
    }

    /// The state-spaces spelling's fields (`mamba_ssm`'s MambaConfig and its ssm_cfg), defaults as there.
    struct StateSpacesFile: Decodable {
        var d_model: Int
        var n_layer: Int
        var vocab_size: Int
        var d_intermediate: Int?
        var pad_vocab_size_multiple: Int?
        var rms_norm: Bool?
        var residual_in_fp32: Bool?
        var tie_embeddings: Bool?
        var norm_epsilon: Float?
        var attn_layer_idx: [Int]?
        var attn_cfg: [String: Discarded]?
        var ssm_cfg: SSM?
        struct SSM: Decodable {
            var layer: String?
            var d_state, d_conv, expand, headdim, ngroups, chunk_size, d_ssm: Int?
            var D_has_hdim, rmsnorm, bias, conv_bias, norm_before_gate: Bool?
            var dt_limit: [LimitValue]?
        }
    }

    /// The transformers spelling's fields (`Mamba2Config` of transformers), defaults as there.
    struct HuggingFaceFile: Decodable {
        var model_type: String?
        var hidden_size: Int
        var num_hidden_layers: Int
        var vocab_size: Int
        var pad_vocab_size_multiple: Int?
        var state_size, conv_kernel, expand, head_dim, num_heads, n_groups, chunk_size: Int?
        var use_bias, use_conv_bias, residual_in_fp32, tie_word_embeddings, norm_before_gate, rms_norm: Bool?
        var layer_norm_epsilon: Float?
        var time_step_limit: [LimitValue]?
    }

    /// Any JSON value, read and dropped (fields whose presence alone matters).
    struct Discarded: Decodable { init(from decoder: Decoder) throws {} }

    /// A dt limit bound: a number (JSON5: Infinity), or transformers' `{"__float__": "Infinity"}`.
    struct LimitValue: Decodable {
        var value: Float
        init(from decoder: Decoder) throws {
            if let v = try? decoder.singleValueContainer().decode(Double.self) { value = Float(v); return }
            let o = try decoder.singleValueContainer().decode([String: String].self)
            guard let s = o["__float__"], o.count == 1, let v = Double(s) ?? (s == "Infinity" ? .infinity : s == "-Infinity" ? -.infinity : nil) else {
                throw DecodingError.dataCorrupted(.init(codingPath: decoder.codingPath, debugDescription: "expected a number or {\"__float__\": ...}"))
            }
            value = Float(v)
        }
    }

    static func limit(_ v: [LimitValue]?, field: String) throws -> ClosedRangeFloat {
        guard let v else { return .init(0, .infinity) }
        guard v.count == 2 else { throw Mamba2Error.config(field: field, reason: "expected [lo, hi] (Infinity allowed), got \(v.count) values") }
        return .init(v[0].value, v[1].value)
    }

    init(stateSpaces o: StateSpacesFile) throws {
        if let a = o.attn_layer_idx, !a.isEmpty {
            throw Mamba2Error.config(field: "attn_layer_idx", reason: "hybrid attention layers (mamba2attn) are not implemented")
        }
        if let a = o.attn_cfg, !a.isEmpty {
            throw Mamba2Error.config(field: "attn_cfg", reason: "hybrid attention layers (mamba2attn) are not implemented")
        }
        if (o.d_intermediate ?? 0) > 0 {
            throw Mamba2Error.config(field: "d_intermediate", reason: "an MLP after each mixer (d_intermediate > 0) is not implemented")
        }
        if o.rms_norm == false { throw Mamba2Error.config(field: "rms_norm", reason: "LayerNorm blocks (rms_norm: false) are not implemented") }
        let ssm = o.ssm_cfg
        let layer = ssm?.layer ?? "Mamba1"
        guard layer == "Mamba2" else {
            throw Mamba2Error.config(field: "ssm_cfg.layer", reason: "'\(layer)' is not Mamba2; only Mamba-2 layers are implemented")
        }
        if ssm?.rmsnorm == false {
            throw Mamba2Error.config(field: "ssm_cfg.rmsnorm", reason: "a Mamba-2 mixer without its gated RMSNorm is not implemented")
        }
        let expand = ssm?.expand ?? 2
        // expand · d_model is checked by validate() only when d_ssm is given; bound it here first.
        let inner = expand.multipliedReportingOverflow(by: o.d_model)
        guard !inner.overflow else { throw Mamba2Error.config(field: "ssm_cfg.expand", reason: "expand · d_model overflows") }
        self.init(dModel: o.d_model, nLayer: o.n_layer, vocabSize: o.vocab_size, padVocabSizeMultiple: o.pad_vocab_size_multiple ?? 8,
                  dState: ssm?.d_state ?? 128, dConv: ssm?.d_conv ?? 4, expand: expand, headDim: ssm?.headdim ?? 64,
                  nGroups: ssm?.ngroups ?? 1, chunkSize: ssm?.chunk_size ?? 256, dSSM: ssm?.d_ssm ?? inner.partialValue,
                  dHasHeadDim: ssm?.D_has_hdim ?? false, dtLimit: try Self.limit(ssm?.dt_limit, field: "ssm_cfg.dt_limit"),
                  projBias: ssm?.bias ?? false, convBias: ssm?.conv_bias ?? true, rmsNormEps: o.norm_epsilon ?? 1e-5,
                  residualInFP32: o.residual_in_fp32 ?? true, tieEmbeddings: o.tie_embeddings ?? true,
                  normBeforeGate: ssm?.norm_before_gate ?? false, layout: .stateSpaces)
    }

    init(huggingFace o: HuggingFaceFile) throws {
        if let t = o.model_type, t != "mamba2" { throw Mamba2Error.config(field: "model_type", reason: "'\(t)' is not 'mamba2'") }
        if o.rms_norm == false {
            throw Mamba2Error.config(field: "rms_norm", reason: "a Mamba-2 mixer without its gated RMSNorm is not implemented")
        }
        let expand = o.expand ?? 2, headDim = o.head_dim ?? 64
        guard headDim > 0 else { throw Mamba2Error.config(field: "head_dim", reason: "must be positive, got \(headDim)") }
        let inner = expand.multipliedReportingOverflow(by: o.hidden_size)
        guard !inner.overflow else { throw Mamba2Error.config(field: "expand", reason: "expand · hidden_size overflows") }
        // transformers derives the head count; when given, it must agree with the inner width.
        let nHeads = o.num_heads ?? inner.partialValue / headDim
        let width = nHeads.multipliedReportingOverflow(by: headDim)
        guard !width.overflow, width.partialValue == inner.partialValue else {
            throw Mamba2Error.config(field: "num_heads", reason: "num_heads·head_dim = \(nHeads)·\(headDim) differs from expand·hidden_size = \(inner.partialValue)")
        }
        self.init(dModel: o.hidden_size, nLayer: o.num_hidden_layers, vocabSize: o.vocab_size,
                  padVocabSizeMultiple: o.pad_vocab_size_multiple ?? 1, dState: o.state_size ?? 128, dConv: o.conv_kernel ?? 4,
                  expand: expand, headDim: headDim, nGroups: o.n_groups ?? 1, chunkSize: o.chunk_size ?? 256,
                  dSSM: width.partialValue, dHasHeadDim: false, dtLimit: try Self.limit(o.time_step_limit, field: "time_step_limit"),
                  projBias: o.use_bias ?? false, convBias: o.use_conv_bias ?? true, rmsNormEps: o.layer_norm_epsilon ?? 1e-5,
                  residualInFP32: o.residual_in_fp32 ?? true, tieEmbeddings: o.tie_word_embeddings ?? true,
                  normBeforeGate: o.norm_before_gate ?? false, layout: .huggingFace)
    }

    /// The Hugging Face spelling, as `mamba2 train` writes next to `model.safetensors` (the text of
    /// config.json), through `JSONEncoder`.
    public var huggingFaceConfigText: String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        encoder.nonConformingFloatEncodingStrategy = .convertToString(positiveInfinity: "Infinity", negativeInfinity: "-Infinity", nan: "NaN")
        let text = String(decoding: (try? encoder.encode(self)) ?? Data(), as: UTF8.self)
        // JSONEncoder writes a non-finite float as a string and 0.0 as 0; transformers 5 wants
        // time_step_limit as two floats, and Python's json writes and reads Infinity bare: the one field
        // JSONEncoder cannot spell, so its placeholder is replaced by its text.
        func decimal(_ x: Float) -> String { x.isInfinite ? (x > 0 ? "Infinity" : "-Infinity") : "\(Double("\(x)") ?? Double(x))" }
        return text.replacing("\"time_step_limit\":\"\"", with: "\"time_step_limit\":[\(decimal(dtLimit.lo)),\(decimal(dtLimit.hi))]")
    }
}

extension Mamba2Config: Codable {
    enum HuggingFaceKeys: String, CodingKey {
        case model_type, architectures, hidden_size, num_hidden_layers, vocab_size, state_size, conv_kernel, expand, head_dim,
             num_heads, n_groups, chunk_size, use_bias, use_conv_bias, layer_norm_epsilon, residual_in_fp32, tie_word_embeddings,
             norm_before_gate, rms_norm, time_step_limit
    }

    /// Either spelling; the presence of `model_type` or `hidden_size` selects Hugging Face's. Validated.
    public init(from decoder: Decoder) throws {
        let keys = try decoder.container(keyedBy: HuggingFaceKeys.self)
        if keys.contains(.model_type) || keys.contains(.hidden_size) {
            try self.init(huggingFace: try HuggingFaceFile(from: decoder))
        } else {
            try self.init(stateSpaces: try StateSpacesFile(from: decoder))
        }
        try validate()
    }

    /// Writes the Hugging Face spelling (the vocabulary padded, as the weights are stored).
    /// `time_step_limit` is left as "" for `huggingFaceConfigText` to spell.
    public func encode(to encoder: Encoder) throws {
        var o = encoder.container(keyedBy: HuggingFaceKeys.self)
        try o.encode("mamba2", forKey: .model_type)
        try o.encode(["Mamba2ForCausalLM"], forKey: .architectures)
        try o.encode(dModel, forKey: .hidden_size); try o.encode(nLayer, forKey: .num_hidden_layers)
        try o.encode(paddedVocabSize, forKey: .vocab_size); try o.encode(dState, forKey: .state_size)
        try o.encode(dConv, forKey: .conv_kernel); try o.encode(expand, forKey: .expand); try o.encode(headDim, forKey: .head_dim)
        try o.encode(nHeads, forKey: .num_heads); try o.encode(nGroups, forKey: .n_groups); try o.encode(chunkSize, forKey: .chunk_size)
        try o.encode(projBias, forKey: .use_bias); try o.encode(convBias, forKey: .use_conv_bias)
        try o.encode(Double("\(rmsNormEps)") ?? Double(rmsNormEps), forKey: .layer_norm_epsilon)  // 1e-05, not 9.99999974e-06
        try o.encode(residualInFP32, forKey: .residual_in_fp32); try o.encode(tieEmbeddings, forKey: .tie_word_embeddings)
        try o.encode(normBeforeGate, forKey: .norm_before_gate); try o.encode(true, forKey: .rms_norm)
        try o.encode("", forKey: .time_step_limit)
    }
}

extension DecodingError {
    /// The dotted path of the field at fault ("ssm_cfg.d_state", "(root)").
    var fieldPath: String {
        let path: [CodingKey]
        switch self {
        case let .typeMismatch(_, c), let .valueNotFound(_, c), let .dataCorrupted(c): path = c.codingPath
        case let .keyNotFound(k, c): path = c.codingPath + [k]
        @unknown default: path = []
        }
        let s = path.map { $0.intValue.map { "[\($0)]" } ?? $0.stringValue }.joined(separator: ".")
        return s.isEmpty ? "(root)" : s
    }

    var reason: String {
        switch self {
        case .keyNotFound: return "missing"
        case let .typeMismatch(t, c): return "expected \(t == Int.self ? "an integer" : t == Bool.self ? "true or false" : "\(t)"): \(c.debugDescription)"
        case let .valueNotFound(t, _): return "expected \(t), got null"
        case let .dataCorrupted(c): return c.underlyingError.map { "not valid JSON: \($0)" } ?? c.debugDescription
        @unknown default: return "malformed"
        }
    }
}

extension Mamba2Config {
    /// Throws for a token id outside the (padded) vocabulary, naming the argument. A plain loop: the decode
    /// step calls this per token and must not allocate, even unoptimized.
    package func checkTokens(_ ids: [Int], argument: String) throws {
        let V = paddedVocabSize
        for i in 0..<ids.count where ids[i] < 0 || ids[i] >= V {
            throw Mamba2Error.invalidArgument(argument, reason: "token id \(ids[i]) is outside the vocabulary 0..<\(V)")
        }
    }
}
