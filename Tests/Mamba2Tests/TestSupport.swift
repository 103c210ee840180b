import Mamba2
import Testing

/// Fixtures live beside this file (copied from the reference data; see Fixtures/README.md).
let fixturesDir: String = {
    let file = #filePath
    return String(file[..<file.lastIndex(of: "/")!]) + "/Fixtures"
}()

func fixture(_ name: String) -> String { fixturesDir + "/" + name }

/// The library's SplitMix64 with its seed remembered, so a failing random case can be replayed from
/// the printed seed. Fresh seed each run unless one is given.
struct SeededRNG: RandomNumberGenerator {
    var base: SplitMix64
    let seed: UInt64
    init(seed: UInt64? = nil) {
        var sys = SystemRandomNumberGenerator()
        self.seed = seed ?? sys.next()
        base = SplitMix64(seed: self.seed)
    }
    mutating func next() -> UInt64 { base.next() }
    mutating func uniform() -> Float { base.uniform() }
    mutating func uniform(_ lo: Float, _ hi: Float) -> Float { lo + (hi - lo) * base.uniform() }
    mutating func normal() -> Float { base.normal() }
    mutating func normal(_ shape: [Int]) -> Tensor {
        Tensor(shape: shape, data: (0..<shape.reduce(1, *)).map { _ in base.normal() })
    }
}

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// softplus⁻¹(y) = log(exp(y) − 1)
func inverseSoftplus(_ y: Float) -> Float { Float(log(expm1(Double(y)))) }
