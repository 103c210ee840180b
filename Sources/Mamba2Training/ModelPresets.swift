import Mamba2
extension Mamba2Config {
    /// Names `mamba2 train` and `mamba2 bench train` accept.
    public static let presetNames = ["tiny", "small", "base"] + ModelShape.allCases.map(\.rawValue)

    /// A named shape for a vocabulary: `tiny` (d_model 64, 2 layers, N 16) and `small` (d_model 256,
    /// 4 layers, N 64, 16 heads of 32: the model that ships in the repository) for training on a CPU,
    /// `base` (d_model 384, 8 layers, N 64, 12 heads of 64: the released models' head dimension, so that it
    /// trains in bf16 on the GPU's tensor cores; 7.7M parameters with bytes, 15 MB in bf16) for a GPU,
    /// and the released sizes 130m … 2.7b (mamba_ssm's defaults: N 128, head dim 64, chunk 256).
    public static func preset(_ name: String, vocabSize vocab: Int) throws -> Mamba2Config {
        let pad = vocab <= 512 ? 8 : 16
        switch name {
        case "tiny":
            return Mamba2Config(dModel: 64, nLayer: 2, vocabSize: vocab, padVocabSizeMultiple: pad, dState: 16, headDim: 16, chunkSize: 64)
        case "small":
            return Mamba2Config(dModel: 256, nLayer: 4, vocabSize: vocab, padVocabSizeMultiple: pad, dState: 64, headDim: 32, chunkSize: 64)
        case "base":
            return Mamba2Config(dModel: 384, nLayer: 8, vocabSize: vocab, padVocabSizeMultiple: pad, dState: 64, headDim: 64, chunkSize: 128)
        default:
            guard let shape = ModelShape(rawValue: name) else {
                throw Mamba2Error.invalidArgument("preset", reason: "unknown preset '\(name)': use " + presetNames.joined(separator: ", "))
            }
            var c = shape.config
            c.vocabSize = vocab
            c.padVocabSizeMultiple = pad
            c.layout = .huggingFace
            return c
        }
    }
}
