/// The fixed-size recurrent state of one sequence: everything the model needs to continue it, whatever
/// its length. Float32 whatever the weights' dtype. A value type: copy it to branch a prompt.
public struct Mamba2State: Sendable, Equatable {
    /// Per layer: the last d_conv − 1 inputs of the causal convolution, (d_conv − 1, conv_dim), oldest first.
    public var conv: [[Float]]
    /// Per layer: the SSM state, (H, P, N).
    public var ssm: [[Float]]
    /// Tokens consumed so far.
    public var tokens: Int

    public init(conv: [[Float]], ssm: [[Float]], tokens: Int) {
        self.conv = conv; self.ssm = ssm; self.tokens = tokens
    }

    /// The state before any token: zeros.
    public init(config c: Mamba2Config) {
        conv = [[Float]](repeating: [Float](repeating: 0, count: (c.dConv - 1) * c.convDim), count: c.nLayer)
        ssm = [[Float]](repeating: [Float](repeating: 0, count: c.nHeads * c.headDim * c.dState), count: c.nLayer)
        tokens = 0
    }

    /// Bytes this state occupies.
    public var byteCount: Int { (conv.reduce(0) { $0 + $1.count } + ssm.reduce(0) { $0 + $1.count }) * 4 }

    /// Saves as safetensors (`conv.layerK`, `ssm.layerK`, metadata `tokens`), atomically.
    public func save(to path: String, config c: Mamba2Config) throws {
        var tensors: [(String, Tensor)] = []
        for l in 0..<c.nLayer {
            tensors.append(("conv.layer\(l)", Tensor(shape: [c.dConv - 1, c.convDim], data: conv[l])))
            tensors.append(("ssm.layer\(l)", Tensor(shape: [c.nHeads, c.headDim, c.dState], data: ssm[l])))
        }
        try SafeTensorsFile.write(tensors, to: path, metadata: ["tokens": String(tokens), "format": "mamba2-state"])
    }

    /// Loads a state saved by `save`, checking it fits `config`.
    public static func load(path: String, config c: Mamba2Config) throws -> Mamba2State {
        let f = try SafeTensorsFile(path: path)
        var s = Mamba2State(config: c)
        for l in 0..<c.nLayer {
            for (name, shape) in [("conv.layer\(l)", [c.dConv - 1, c.convDim]), ("ssm.layer\(l)", [c.nHeads, c.headDim, c.dState])] {
                guard let t = f[name] else { throw Mamba2Error.checkpoint(file: path, tensor: name, reason: "missing from the saved state") }
                guard t.shape == shape else {
                    throw Mamba2Error.checkpoint(file: path, tensor: name, reason: "shape \(t.shape) does not fit this model's \(shape)")
                }
                if name.hasPrefix("conv") { s.conv[l] = t.floats() } else { s.ssm[l] = t.floats() }
            }
        }
        guard let tokens = f.metadata["tokens"].flatMap({ Int($0) }) else {
            throw Mamba2Error.checkpoint(file: path, tensor: nil, reason: "metadata 'tokens' missing: not a saved Mamba-2 state")
        }
        s.tokens = tokens
        return s
    }
}
