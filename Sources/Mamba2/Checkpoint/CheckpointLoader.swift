/// Finds and reads the weights of a model directory in any layout users bring:
///   - `model.safetensors` (Hugging Face; F32, F16 or BF16),
///   - `model.safetensors.index.json` with shards,
///   - `pytorch_model.bin` (state-spaces; a torch.save archive).
/// Names are mapped to the state-spaces naming; every expected tensor is checked for presence and shape
/// before anything is converted, and errors name the file and the tensor.
public enum CheckpointLoader {
    /// A stored tensor and the file it came from.
    public typealias Located = (tensor: StoredTensor, file: String)

    /// All tensors of the directory's checkpoint, by their names as stored.
    public static func readTensors(directory: String) throws -> [String: Located] {
        let st = directory + "/model.safetensors"
        let index = directory + "/model.safetensors.index.json"
        let bin = directory + "/pytorch_model.bin"
        var out: [String: Located] = [:]
        if MappedFile.exists(st) {
            let f = try SafeTensorsFile(path: st)
            for (k, t) in f.tensors { out[k] = (t, st) }
        } else if MappedFile.exists(index) {
            let json = try JSON.parse(try MappedFile.readAll(index), source: index)
            guard let map = json["weight_map"]?.objectValue else {
                throw Mamba2Error.checkpoint(file: index, tensor: nil, reason: "no 'weight_map' object")
            }
            var shards: [String: SafeTensorsFile] = [:]
            for (name, fileJ) in map {
                guard let file = fileJ.stringValue, !file.contains("/") || !file.hasPrefix("/"), !file.contains("..") else {
                    throw Mamba2Error.checkpoint(file: index, tensor: name, reason: "shard name \(fileJ.serialized) is not a file in the directory")
                }
                let path = directory + "/" + file
                if shards[file] == nil { shards[file] = try SafeTensorsFile(path: path) }
                guard let t = shards[file]![name] else {
                    throw Mamba2Error.checkpoint(file: path, tensor: name, reason: "listed in the index but not in the shard")
                }
                out[name] = (t, path)
            }
        } else if MappedFile.exists(bin) {
            for (k, t) in try TorchCheckpoint.load(path: bin) { out[k] = (t, bin) }
        } else {
            throw Mamba2Error.io(path: directory, reason: "no model.safetensors, model.safetensors.index.json or pytorch_model.bin")
        }
        return out
    }

    /// The state-spaces name of a stored name (Hugging Face writes `backbone.embeddings`).
    static func canonicalName(_ name: String) -> String {
        name.hasPrefix("backbone.embeddings.") ? "backbone.embedding." + name.dropFirst("backbone.embeddings.".count) : name
    }

    /// Checks that every expected tensor is present with its shape and a float dtype, and nothing else
    /// is; reads only headers. Returns the tensors by state-spaces name (a tied head left out).
    public static func check(_ config: Mamba2Config, tensors stored: [String: Located]) throws -> [String: Located] {
        var byName: [String: Located] = [:]
        for (k, v) in stored {
            let c = canonicalName(k)
            if byName[c] != nil {
                throw Mamba2Error.checkpoint(file: v.file, tensor: k, reason: "appears twice (as backbone.embedding and backbone.embeddings)")
            }
            byName[c] = v
        }
        let expected = Mamba2Weights.expectedShapes(config)
        let expectedNames = Set(expected.map(\.0))
        var out: [String: Located] = [:]
        for (name, shape) in expected {
            guard let (t, file) = byName[name] else {
                let anyFile = stored.values.first?.file ?? "checkpoint"
                throw Mamba2Error.checkpoint(file: anyFile, tensor: name, reason: "missing (expected shape \(shape))")
            }
            guard t.dtype.isFloat else {
                throw Mamba2Error.checkpoint(file: file, tensor: name, reason: "dtype \(t.dtype.rawValue) is not a float type (F32, F16, BF16)")
            }
            // PyTorch stores the conv filter as (conv_dim, 1, d_conv); accept (conv_dim, d_conv) too.
            let okShape = t.shape == shape || (name.hasSuffix("conv1d.weight") && t.shape == [shape[0], shape[2]])
            guard okShape else {
                throw Mamba2Error.checkpoint(file: file, tensor: name, reason: "shape \(t.shape) does not match the config's \(shape)")
            }
            out[name] = (t, file)
        }
        for (name, (t, file)) in byName where !expectedNames.contains(name) {
            if name == "lm_head.weight" && config.tieEmbeddings {
                // A tied head stored as a copy or as the same storage: it must match the embedding's shape.
                guard t.shape == [config.paddedVocabSize, config.dModel] else {
                    throw Mamba2Error.checkpoint(file: file, tensor: name, reason: "tied head of shape \(t.shape), expected \([config.paddedVocabSize, config.dModel])")
                }
                continue
            }
            throw Mamba2Error.checkpoint(file: file, tensor: name, reason: "unexpected tensor: not part of a Mamba-2 model with this config")
        }
        return out
    }

    /// Checks (as `check`) and converts the tensors into float32 weights for `config`.
    public static func weights(_ config: Mamba2Config, tensors stored: [String: Located]) throws -> Mamba2Weights {
        try weights(config, tensors: stored, heldApart: []) { _, _ in }
    }

    /// As `weights`, except that each tensor named in `heldApart` is handed to `hold` as float32 when read and
    /// left out of the result (its array empty), so that a caller converting it to another type needs memory
    /// for one such tensor in float32 at a time, not for all of them.
    package static func weights(_ config: Mamba2Config, tensors stored: [String: Located], heldApart: Set<String>,
                                hold: (String, [Float]) throws -> Void) throws -> Mamba2Weights {
        let checked = try check(config, tensors: stored)
        var values: [String: [Float]] = [:]
        // In the model's order, so that a caller's conversions run in a fixed order.
        for (name, _) in Mamba2Weights.expectedShapes(config) {
            guard let (t, file) = checked[name] else { continue }  // `check` has made sure every expected one is there
            let v = t.floats()
            t.dropPages()
            // A NaN or infinity in any weight makes every logit NaN: refused here, naming the tensor.
            if let i = v.firstIndex(where: { !$0.isFinite }) {
                throw Mamba2Error.checkpoint(file: file, tensor: name, reason: "element \(i) is \(v[i]): weights must be finite")
            }
            if heldApart.contains(name) { try hold(name, v) } else { values[name] = v }
        }
        return try Mamba2Weights(config, values: values, storedDType: dominantDType(checked), heldApart: heldApart)
    }

    /// The dtype holding most elements ("F32", "BF16", ...).
    static func dominantDType(_ tensors: [String: Located]) -> String {
        var counts: [String: Int] = [:]
        for (_, (t, _)) in tensors { counts[t.dtype.rawValue, default: 0] += t.count }
        return counts.max { $0.value < $1.value }?.key ?? "F32"
    }
}

/// What `mamba2 info` reports: read from the config and the checkpoint's headers, no weights converted.
public struct ModelInfo: Sendable {
    public let config: Mamba2Config
    public let parameterCount: Int
    /// Elements per stored dtype.
    public let dtypeCounts: [String: Int]
    /// Bytes of the weights as stored.
    public let storedBytes: Int
    /// Bytes of the weights once loaded (float32).
    public let loadedBytes: Int
    /// Bytes of one sequence's recurrent state (conv + SSM, float32).
    public let stateBytesPerSequence: Int
    /// The weight files.
    public let files: [String]

    public init(directory: String) throws {
        if GGUFFile.isGGUF(path: directory) {  // a GGUF file: its table, nothing converted
            let g = try GGUFFile(path: directory)
            config = try GGUFModel.config(g)
            parameterCount = Mamba2Weights.parameterCount(config)
            var counts: [String: Int] = [:]
            for t in g.tensorList { counts[t.type.name, default: 0] += t.count }
            dtypeCounts = counts
            storedBytes = g.tensorList.reduce(0) { $0 + $1.byteCount }
            loadedBytes = parameterCount * 4
            stateBytesPerSequence = config.stateFloatsPerSequence * 4
            files = [directory]
            return
        }
        config = try Mamba2Config.load(path: directory + "/config.json")
        let checked = try CheckpointLoader.check(config, tensors: try CheckpointLoader.readTensors(directory: directory))
        parameterCount = Mamba2Weights.parameterCount(config)
        var counts: [String: Int] = [:]
        var bytes = 0
        for (_, (t, _)) in checked {
            counts[t.dtype.rawValue, default: 0] += t.count
            bytes += t.count * t.dtype.byteSize
        }
        dtypeCounts = counts
        storedBytes = bytes
        loadedBytes = parameterCount * 4
        stateBytesPerSequence = config.stateFloatsPerSequence * 4
        files = Array(Set(checked.values.map(\.file))).sorted()
    }
}
