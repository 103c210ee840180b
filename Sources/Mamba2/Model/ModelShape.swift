/// The released checkpoints' shapes, for benchmarks with random weights (`--shape`).
public enum ModelShape: String, CaseIterable, Sendable {
    case m130 = "130m", m370 = "370m", m780 = "780m", b13 = "1.3b", b27 = "2.7b"

    public var config: Mamba2Config {
        let (d, n): (Int, Int) = switch self {
        case .m130: (768, 24)
        case .m370: (1024, 48)
        case .m780: (1536, 48)
        case .b13: (2048, 48)
        case .b27: (2560, 64)
        }
        return Mamba2Config(dModel: d, nLayer: n, vocabSize: 50277, padVocabSizeMultiple: 16, layout: .stateSpaces)
    }
}
