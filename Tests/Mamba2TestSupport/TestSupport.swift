// Helpers every test target shares: where the fixtures are, seeded random inputs, temporary files, the
// float64 SSD recurrence the fast forms are checked against, and running the mamba2 command.
import Foundation
@_exported import Mamba2
import Testing




#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Runs the `mamba2` command built beside the tests (scripts/test builds it first).
public func runCLI(_ args: [String], stdin: String? = nil, environment: [String: String] = [:]) throws -> (status: Int32, out: String, err: String) {
    let binary = repoRoot + "/.build/debug/mamba2"
    guard FileManager.default.isExecutableFile(atPath: binary) else {
        throw Mamba2Error.io(path: binary, reason: "not built: run `swift build` (scripts/test does) before the CLI tests")
    }
    let p = Process()
    p.executableURL = URL(fileURLWithPath: binary)
    p.arguments = args
    if !environment.isEmpty { p.environment = ProcessInfo.processInfo.environment.merging(environment) { _, new in new } }
    let out = Pipe(), err = Pipe(), inp = Pipe()
    p.standardOutput = out
    p.standardError = err
    p.standardInput = inp
    try p.run()
    if let stdin { inp.fileHandleForWriting.write(stdin.data(using: .utf8)!) }
    try inp.fileHandleForWriting.close()
    let o = out.fileHandleForReading.readDataToEndOfFile(), e = err.fileHandleForReading.readDataToEndOfFile()
    p.waitUntilExit()
    return (p.terminationStatus, String(decoding: o, as: UTF8.self), String(decoding: e, as: UTF8.self))
}

/// A fresh temporary directory.
public func makeTempDir() -> String {
    var template = Array("/tmp/mamba2-test-XXXXXX".utf8CString)
    return template.withUnsafeMutableBufferPointer { String(cString: mkdtemp($0.baseAddress!)!) }
}

public func writeBytes(_ bytes: [UInt8], _ path: String) throws { try writeFileAtomically(bytes, to: path) }

public func readBytes(_ path: String) throws -> [UInt8] { try MappedFile.readAll(path) }

/// A copy of a fixture model directory whose files can be altered.
public func copyModel(_ name: String) throws -> String {
    let dir = makeTempDir()
    for f in ["config.json", "model.safetensors", "pytorch_model.bin"] where MappedFile.exists(fixture("\(name)/\(f)")) {
        try writeBytes(try readBytes(fixture("\(name)/\(f)")), dir + "/" + f)
    }
    return dir
}

/// Replaces the first occurrence of `old` by `new` (same length) in bytes.
public func patch(_ bytes: inout [UInt8], _ old: String, _ new: String) {
    let o = Array(old.utf8), n = Array(new.utf8)
    precondition(o.count == n.count)
    for i in 0...(bytes.count - o.count) where Array(bytes[i..<(i + o.count)]) == o {
        bytes.replaceSubrange(i..<(i + o.count), with: n)
        return
    }
    preconditionFailure("pattern \(old) not found")
}

/// Loading must fail with an error whose text mentions every word given.
public func expectLoadError(_ dir: String, mentions words: [String], sourceLocation: SourceLocation = #_sourceLocation) {
    do {
        _ = try Mamba2Model.load(directory: dir)
        Issue.record("loaded without error; expected one mentioning \(words)", sourceLocation: sourceLocation)
    } catch {
        for w in words { #expect("\(error)".contains(w), "\(error)", sourceLocation: sourceLocation) }
    }
}

/// The golden data of the tiny model (see Fixtures/README.md).
public struct TinyGolden {
    /// The reference's 25-token prompt and its 12 greedy tokens.
    public static func greedyFixture() throws -> (prompt: [Int], expected: [Int]) {
        let g = try TinyGolden()
        let n = g.file["greedy_prompt_len"]!.ints()[0]
        let all = g.file["greedy_tokens"]!.ints()
        return (Array(all[0..<n]), Array(all[n...]))
    }


    public let ids: [[Int]]
    public let logits: Tensor          // (2, 37, 112)
    public let logitsBF16: Tensor      // (2, 37, 112)
    public let file: SafeTensorsFile

    public init() throws {
        file = try SafeTensorsFile(path: fixture("tiny-golden.safetensors"))
        let flat = file["input_ids"]!.ints()
        ids = [Array(flat[0..<37]), Array(flat[37..<74])]
        logits = try file.tensor("logits")
        logitsBF16 = try file.tensor("logits_bf16_weights")
    }

    /// Logits of sequence s, (37, 112).
    public func logits(_ s: Int, bf16: Bool = false) -> Tensor {
        let t = bf16 ? logitsBF16 : logits
        return Tensor(shape: [37, 112], data: Array(t.data[(s * 37 * 112)..<((s + 1) * 37 * 112)]))
    }
}

public func concatRows(_ ts: [Tensor]) -> Tensor {
    Tensor(shape: [ts.reduce(0) { $0 + $1.shape[0] }, ts[0].shape[1]], data: ts.flatMap(\.data))
}

/// Draws an SSD input as the reference initializes a model: raw dt standard normal with
/// dt_bias = softplus⁻¹(log-uniform in [1e-3, 0.1]), A = −U(1, 16), x, B, C, z standard normal.
public func randomSSDInput(_ rng: inout SeededRNG, b: Int, L: Int, H: Int, P: Int, G: Int, N: Int,
                    D: Int = 0, gate: Bool = false, initial: Bool = false, strongDecay: Bool = false) -> SSDInput {
    var dt = rng.normal([b, L, H])
    if strongDecay {
        // Some steps with dt·A ≤ −20: softplus(40 + bias) ≈ 40 and |A| ≥ 1.
        for i in 0..<dt.count where rng.uniform() < 0.1 { dt.data[i] = 40 }
    }
    let bias = Tensor(shape: [H], data: (0..<H).map { _ in inverseSoftplus(exp(rng.uniform(log(1e-3), log(0.1)))) })
    let A = Tensor(shape: [H], data: (0..<H).map { _ in -rng.uniform(1, 16) })
    var input = SSDInput(x: rng.normal([b, L, H, P]), dt: dt, A: A, B: rng.normal([b, L, G, N]), C: rng.normal([b, L, G, N]),
                         dtBias: bias)
    if D == 1 { input.D = rng.normal([H]) }
    if D == 2 { input.D = rng.normal([H, P]) }
    if gate { input.z = rng.normal([b, L, H, P]) }
    if initial { input.initialStates = rng.normal([b, H, P, N]) }
    return input
}

/// Tokens [start, start+n) of every row of a (b, L, ...) tensor.
public func slice(_ t: Tensor, _ start: Int, _ n: Int) -> Tensor {
    let (b, L) = (t.shape[0], t.shape[1])
    let inner = t.count / (b * L)
    var out: [Float] = []
    for r in 0..<b { out += t.data[((r * L + start) * inner)..<((r * L + start + n) * inner)] }
    var shape = t.shape
    shape[1] = n
    return Tensor(shape: shape, data: out)
}

public func sliceInput(_ i: SSDInput, _ start: Int, _ n: Int) -> SSDInput {
    SSDInput(x: slice(i.x, start, n), dt: slice(i.dt, start, n), A: i.A, B: slice(i.B, start, n), C: slice(i.C, start, n),
             D: i.D, z: i.z.map { slice($0, start, n) }, dtBias: i.dtBias)
}

/// Concatenates (b, Lk, ...) tensors along time.
public func concatTime(_ ts: [Tensor]) -> Tensor {
    let b = ts[0].shape[0]
    var rows = [[Float]](repeating: [], count: b)
    for t in ts {
        let per = t.count / b
        for r in 0..<b { rows[r] += t.data[(r * per)..<((r + 1) * per)] }
    }
    var shape = ts[0].shape
    shape[1] = ts.reduce(0) { $0 + $1.shape[1] }
    return Tensor(shape: shape, data: rows.flatMap { $0 })
}

/// The paper's recurrence in float64, written independently of the library (one row, no packing).
public func recurrenceFloat64(_ i: SSDInput, softplus: Bool) -> (y: Tensor, state: Tensor) {
    let (b, L, H, P) = (i.x.shape[0], i.x.shape[1], i.x.shape[2], i.x.shape[3])
    let (G, N) = (i.B.shape[2], i.B.shape[3])
    var y = [Float](repeating: 0, count: b * L * H * P)
    var finals = [Float](repeating: 0, count: b * H * P * N)
    for r in 0..<b {
        for h in 0..<H {
            let g = h / (H / G)
            var s = [Double](repeating: 0, count: P * N)
            if let h0 = i.initialStates { for k in 0..<(P * N) { s[k] = Double(h0.data[(r * H + h) * P * N + k]) } }
            for t in 0..<L {
                var d = Double(i.dt.data[(r * L + t) * H + h]) + Double(i.dtBias?.data[h] ?? 0)
                if softplus { d = d <= 20 ? log1p(exp(d)) : d }
                let decay = exp(d * Double(i.A.data[h]))
                for p in 0..<P {
                    let xv = Double(i.x.data[((r * L + t) * H + h) * P + p])
                    var acc = 0.0
                    for n in 0..<N {
                        let bn = Double(i.B.data[((r * L + t) * G + g) * N + n]), cn = Double(i.C.data[((r * L + t) * G + g) * N + n])
                        s[p * N + n] = decay * s[p * N + n] + d * xv * bn
                        acc += s[p * N + n] * cn
                    }
                    if let D = i.D { acc += Double(D.shape.count == 2 ? D.data[h * P + p] : D.data[h]) * xv }
                    if let z = i.z {
                        let zv = Double(z.data[((r * L + t) * H + h) * P + p])
                        acc *= zv / (1 + exp(-zv))
                    }
                    y[((r * L + t) * H + h) * P + p] = Float(acc)
                }
            }
            for k in 0..<(P * N) { finals[(r * H + h) * P * N + k] = Float(s[k]) }
        }
    }
    return (Tensor(shape: [b, L, H, P], data: y), Tensor(shape: [b, H, P, N], data: finals))
}

/// Fixtures live beside this file (copied from the reference data; see Fixtures/README.md).
public let fixturesDir: String = {
    let file = #filePath  // Tests/Mamba2TestSupport/TestSupport.swift
    let tests = file[..<file.lastIndex(of: "/")!]
    return String(tests[..<tests.lastIndex(of: "/")!]) + "/Mamba2Tests/Fixtures"
}()

public func fixture(_ name: String) -> String { fixturesDir + "/" + name }

/// The library's SplitMix64 with its seed remembered, so a failing random case can be replayed from
/// the printed seed. Fresh seed each run unless one is given.
public struct SeededRNG: RandomNumberGenerator {
    public var base: SplitMix64
    public let seed: UInt64
    public init(seed: UInt64? = nil) {
        var sys = SystemRandomNumberGenerator()
        self.seed = seed ?? sys.next()
        base = SplitMix64(seed: self.seed)
    }
    public mutating func next() -> UInt64 { base.next() }
    public mutating func uniform() -> Float { base.uniform() }
    public mutating func uniform(_ lo: Float, _ hi: Float) -> Float { lo + (hi - lo) * base.uniform() }
    public mutating func normal() -> Float { base.normal() }
    public mutating func normal(_ shape: [Int]) -> Tensor {
        Tensor(shape: shape, data: (0..<shape.reduce(1, *)).map { _ in base.normal() })
    }
}

/// softplus⁻¹(y) = log(exp(y) − 1)
public func inverseSoftplus(_ y: Float) -> Float { Float(log(expm1(Double(y)))) }

/// The repository root, from this file's path.
public let repoRoot: String = {
    var parts = #filePath.split(separator: "/", omittingEmptySubsequences: false)
    parts.removeLast(3)  // Tests/Mamba2TestSupport/TestSupport.swift
    return parts.joined(separator: "/")
}()

public func loadLines(_ path: String) throws -> [String] {
    String(decoding: try MappedFile.readAll(path), as: UTF8.self).split(separator: "\n").map(String.init)
}

extension String {
    public func range(ofLiteralScalars needle: String) -> Range<String.Index>? {
        let hay = Array(unicodeScalars), pat = Array(needle.unicodeScalars)
        guard pat.count <= hay.count else { return nil }
        for i in 0...(hay.count - pat.count) where Array(hay[i..<(i + pat.count)]) == pat {
            let lo = unicodeScalars.index(unicodeScalars.startIndex, offsetBy: i)
            return lo..<unicodeScalars.index(lo, offsetBy: pat.count)
        }
        return nil
    }
}

/// Reads generation streams concurrently (as a server's clients would) and returns each one's token ids.
public func collectTokens(_ streams: [AsyncThrowingStream<Generation, Error>]) async throws -> [[Int]] {
    var got = [[Int]](repeating: [], count: streams.count)
    try await withThrowingTaskGroup(of: (Int, [Int]).self) { group in
        for (i, s) in streams.enumerated() {
            group.addTask {
                var ids: [Int] = []
                for try await e in s { if case let .token(t) = e { ids.append(t.id) } }
                return (i, ids)
            }
        }
        for try await (i, ids) in group { got[i] = ids }
    }
    return got
}
