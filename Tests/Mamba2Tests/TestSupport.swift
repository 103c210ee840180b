import Mamba2
import Testing

/// Fixtures live beside this file (copied from the reference data; see Fixtures/README.md).
let fixturesDir: String = {
    let file = #filePath
    return String(file[..<file.lastIndex(of: "/")!]) + "/Fixtures"
}()

func fixture(_ name: String) -> String { fixturesDir + "/" + name }

/// A seeded generator (SplitMix64) so a failing random case can be replayed from its printed seed.
struct SeededRNG: RandomNumberGenerator {
    var state: UInt64
    let seed: UInt64
    init(seed: UInt64? = nil) {
        var sys = SystemRandomNumberGenerator()
        self.seed = seed ?? sys.next()
        self.state = self.seed
    }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
    mutating func uniform() -> Float { Float(next() >> 40) / Float(1 << 24) }
    mutating func uniform(_ lo: Float, _ hi: Float) -> Float { lo + (hi - lo) * uniform() }
    /// Standard normal (Box–Muller).
    mutating func normal() -> Float {
        let u1 = max(Double(next() >> 11) / Double(1 << 53), 1e-300)
        let u2 = Double(next() >> 11) / Double(1 << 53)
        return Float((-2 * log(u1)).squareRoot() * cos(2 * Double.pi * u2))
    }
    mutating func normal(_ shape: [Int]) -> Tensor {
        Tensor(shape: shape, data: (0..<shape.reduce(1, *)).map { _ in normal() })
    }
}

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// softplus⁻¹(y) = log(exp(y) − 1)
func inverseSoftplus(_ y: Float) -> Float { Float(log(expm1(Double(y)))) }
