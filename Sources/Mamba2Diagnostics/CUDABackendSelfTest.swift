import Foundation
import Mamba2
import Mamba2CUDA
import Mamba2Training
import Dispatch

/// The backend protocol's checks for `mamba2 selftest --device cuda`: the GPU backend against the CPU
/// backend through the protocol alone (rows out of order, steps on a subset of rows, a row that continues a
/// state, state save / restore / copy / reset), and two `CUDADevice` objects of one GPU driven side by side
/// from two threads, each with its own stream and cuBLAS handle. f32 weights (cuBLAS pedantic): the two
/// backends differ only in the order of float32 sums, bound 1e-4 as the model checks.
extension CUDASelfTest {
    /// The model the backend checks run (f32 weights, 256 wide, 2 layers, 8 heads).
    static func backendModel(seed: UInt64) throws -> Mamba2Model {
        var config = Mamba2Config(dModel: 256, nLayer: 2, vocabSize: 1000, padVocabSizeMultiple: 16, layout: .stateSpaces)
        config.chunkSize = 256
        return try Mamba2Model(config: config, weights: Mamba2Weights.random(config, seed: seed ^ 0xBAC))
    }

    public static func backendChecks(device: CUDADevice, seed: UInt64) throws -> [Check] {
        let model = try backendModel(seed: seed)
        var rng = SplitMix64(seed: seed ^ 0xBACE)
        var checks = try protocolChecks(label: "backend", model: model, rng: &rng) { try CUDABackend(device: device, model: model, weights: .f32) }
        func check(_ name: String, _ got: [Float], _ want: [Float], _ tol: Double = 1e-4) {
            checks.append(Check(name: name, got: got, want: want, tolerance: tol))
        }
        let V = model.config.paddedVocabSize
        func tokens(_ n: Int) -> [Int] { (0..<n).map { _ in Int(rng.next() % 1000) } }
        func poisoned(_ n: Int) -> [Float] { [Float](repeating: .nan, count: n) }

        // 6. Two device objects of this GPU, each with its own stream, cuBLAS handle and kernels, driven at
        //    the same time from two threads: each gives the CPU's logits.
        let devices = [try CUDADevice(ordinal: device.ordinal), try CUDADevice(ordinal: device.ordinal)]
        let backends = try devices.map { try CUDABackend(device: $0, model: model, weights: .f32) }
        let prompt = tokens(200), steps = tokens(16)
        var wantRun = poisoned(V * 17)
        let ref = try CPUBackend(model: model)
        try wantRun.withUnsafeMutableBufferPointer { w in
            try ref.prefill([prompt], rows: [0], lastLogits: UnsafeMutableBufferPointer(rebasing: w[0..<V]))
            for (k, s) in steps.enumerated() { try ref.step([s], rows: [0], logits: UnsafeMutableBufferPointer(rebasing: w[((k + 1) * V)..<((k + 2) * V)])) }
        }
        let results = SideBySide(count: 2, values: V * 17)
        DispatchQueue.concurrentPerform(iterations: 2) { i in
            results.run(i) { out in
                let b = backends[i]
                try b.prefill([prompt], rows: [0], lastLogits: UnsafeMutableBufferPointer(rebasing: out[0..<V]))
                for (k, s) in steps.enumerated() { try b.step([s], rows: [0], logits: UnsafeMutableBufferPointer(rebasing: out[((k + 1) * V)..<((k + 2) * V)])) }
            }
        }
        for i in 0..<2 {
            if let e = results.errors[i] { throw e }
            check("two CUDADevice objects of GPU \(device.ordinal) from two threads at once: device \(i)'s 200-token prefill + 16 steps vs CPU",
                  results.outputs[i], wantRun)
        }
        checks.append(Check(name: "two CUDADevice objects: distinct streams and cuBLAS handles (\(devices[0].streamID) ≠ \(devices[1].streamID))",
                            relativeError: devices[0].streamID != devices[1].streamID && devices[0].blasID != devices[1].blasID ? 0 : 1,
                            tolerance: 0, allWritten: true))
        return checks
    }

    /// The protocol's checks of a GPU backend that `make` builds over `model` (the whole model, or split across
    /// ranks) against the CPU backend: prefill into rows out of order, steps on a subset of rows, a row that
    /// continues a state, state save / restore / copy / reset, a step whose tokens the device chooses, snapshots,
    /// and a server's batcher. f32 weights: bound 1e-4 as the model checks.
    static func protocolChecks(label: String, model: Mamba2Model, rng: inout SplitMix64, make: () throws -> any Mamba2Backend) throws -> [Check] {
        var checks: [Check] = []
        func check(_ name: String, _ got: [Float], _ want: [Float], _ tol: Double = 1e-4) {
            checks.append(Check(name: name, got: got, want: want, tolerance: tol))
        }
        let V = model.config.paddedVocabSize
        var r = rng
        defer { rng = r }
        func tokens(_ n: Int) -> [Int] { (0..<n).map { _ in Int(r.next() % 1000) } }
        func poisoned(_ n: Int) -> [Float] { [Float](repeating: .nan, count: n) }
        let cpu = try CPUBackend(model: model, rows: 5)
        let gpu = try make()
        try gpu.reserveRows(5)
        // 1. Prefill into rows out of order (packed: lengths differ), last logits.
        let prompts = [tokens(300), tokens(37), tokens(2)]
        let rows = [3, 0, 4]
        var want = poisoned(3 * V), got = poisoned(3 * V)
        try want.withUnsafeMutableBufferPointer { try cpu.prefill(prompts, rows: rows, lastLogits: $0) }
        try got.withUnsafeMutableBufferPointer { try gpu.prefill(prompts, rows: rows, lastLogits: $0) }
        check("\(label): prefill of 300/37/2 tokens into rows \(rows), last logits, GPU vs CPU", got, want)
        // 2. Steps on a subset of rows, in another order.
        var gotSteps: [Float] = [], wantSteps: [Float] = []
        for _ in 0..<4 {
            let t = tokens(2)
            var w = poisoned(2 * V), g = poisoned(2 * V)
            try w.withUnsafeMutableBufferPointer { try cpu.step(t, rows: [4, 3], logits: $0) }
            try g.withUnsafeMutableBufferPointer { try gpu.step(t, rows: [4, 3], logits: $0) }
            wantSteps += w; gotSteps += g
        }
        check("\(label): 4 decode steps of rows [4, 3] (row 0 left alone), GPU vs CPU", gotSteps, wantSteps)
        // 3. Row 0 was left alone: its state equals the CPU's, and it continues with more tokens.
        let s0 = try gpu.state(row: 0), c0 = try cpu.state(row: 0)
        check("\(label): state(row: 0) after the others stepped, GPU vs CPU", (s0.conv + s0.ssm).flatMap { $0 }, (c0.conv + c0.ssm).flatMap { $0 })
        checks.append(Check(name: "\(label): state(row: 0) counts \(s0.tokens) tokens (37)", relativeError: s0.tokens == 37 ? 0 : 1, tolerance: 0, allWritten: true))
        let more = tokens(20)
        want = poisoned(V); got = poisoned(V)
        try want.withUnsafeMutableBufferPointer { try cpu.prefill([more], rows: [0], lastLogits: $0) }
        try got.withUnsafeMutableBufferPointer { try gpu.prefill([more], rows: [0], lastLogits: $0) }
        check("\(label): prefill continuing row 0 with 20 more tokens, GPU vs CPU", got, want)
        // 4. Save row 3, copy it to row 1, reset row 3, restore it into row 2; rows 1 and 2 then step alike.
        let saved = try gpu.state(row: 3)
        try gpu.copyState(from: 3, to: 1); try cpu.copyState(from: 3, to: 1)
        try gpu.resetState(row: 3); try cpu.resetState(row: 3)
        try gpu.setState(saved, row: 2); try cpu.setState(try cpu.state(row: 1), row: 2)
        let same3 = tokens(2)
        let t = [same3[0], same3[0], same3[1]]  // rows 1 and 2 hold the same state and get the same token
        want = poisoned(3 * V); got = poisoned(3 * V)
        try want.withUnsafeMutableBufferPointer { try cpu.step(t, rows: [1, 2, 3], logits: $0) }
        try got.withUnsafeMutableBufferPointer { try gpu.step(t, rows: [1, 2, 3], logits: $0) }
        check("\(label): copied (row 1), restored (row 2) and reset (row 3) states step as on the CPU", got, want)
        let same = (0..<V).allSatisfy { got[$0] == got[V + $0] }
        checks.append(Check(name: "\(label): a copied and a restored state give the same logits bit for bit", relativeError: same ? 0 : 1, tolerance: 0, allWritten: true))
        // 4b. A step whose tokens the GPU chooses (argmax and its log-probability, only those sent back) against
        //     the CPU's logits, argmax and log-softmax in float64: same tokens, log-probabilities within the
        //     1e-4 the logits themselves meet. (Random weights: a top-2 margin below that would be a legitimate
        //     flip; the check reports it rather than passing it.)
        let t4 = tokens(3)
        want = poisoned(3 * V)
        try want.withUnsafeMutableBufferPointer { try cpu.step(t4, rows: [1, 2, 3], logits: $0) }
        let chosen = try gpu.stepArgmax(t4, rows: [1, 2, 3]) ?? []
        var wantIDs: [Int] = [], wantLP: [Float] = []
        for r in 0..<3 {
            let row = want[(r * V)..<((r + 1) * V)]
            let best = row.indices.max { row[$0] < row[$1] || (row[$0] == row[$1] && $0 > $1) }! - r * V
            let m = Double(row.max()!)
            let logZ = m + Foundation.log(row.reduce(0.0) { $0 + Foundation.exp(Double($1) - m) })
            wantIDs.append(best); wantLP.append(Float(Double(row[r * V + best]) - logZ))
        }
        checks.append(Check(name: "\(label): stepArgmax of rows [1, 2, 3] chooses the CPU's argmax (\(chosen.map(\.id)) vs \(wantIDs))",
                            relativeError: chosen.map(\.id) == wantIDs ? 0 : 1, tolerance: 0, allWritten: chosen.count == 3))
        check("\(label): stepArgmax log-probabilities vs the CPU's log-softmax", chosen.map(\.logprob), wantLP)
        // 5. Snapshots at a chunk boundary equal the state a full prefill reaches there.
        let long = tokens(600)
        try gpu.resetState(row: 4)
        let snap = try gpu.prefill(long, row: 4, snapshotsAt: [256], lastLogits: nil)
        try cpu.resetState(row: 4)
        try cpu.prefill([Array(long[0..<256])], rows: [4], lastLogits: nil)
        let c4 = try cpu.state(row: 4)
        check("\(label): snapshot after 256 of 600 tokens, GPU vs CPU", (snap[0].conv + snap[0].ssm).flatMap { $0 }, (c4.conv + c4.ssm).flatMap { $0 })

        // 5b. A server's batcher on the GPU (rows joining and leaving, greedy steps chosen on the device and
        //     queued while the host streams) gives the tokens the CPU's batcher gives (host sampling, no
        //     queueing): eight requests of different lengths through three slots.
        let prompts8 = (0..<8).map { tokens(5 + 7 * $0) }, lengths8 = [5, 17, 9, 12, 3, 20, 1, 14]
        let onGPU = try batchedGreedy(try make(), prompts8, lengths8)
        let onCPU = try batchedGreedy(try CPUBackend(model: model), prompts8, lengths8)
        checks.append(Check(name: "\(label) batcher: 8 greedy requests of \(lengths8) tokens through 3 slots, GPU (queued device argmax) == CPU",
                            relativeError: onGPU == onCPU ? 0 : 1, tolerance: 0, allWritten: onGPU.map(\.count) == lengths8))
        return checks
    }
}

/// Outputs of work run on several threads at once, each into its own slot.
final class SideBySide: @unchecked Sendable {
    var outputs: [[Float]]
    var errors: [Error?]
    init(count: Int, values: Int) {
        outputs = [[Float]](repeating: [Float](repeating: .nan, count: values), count: count)
        errors = [Error?](repeating: nil, count: count)
    }
    func run(_ i: Int, _ body: (UnsafeMutableBufferPointer<Float>) throws -> Void) {
        do { try outputs[i].withUnsafeMutableBufferPointer { try body($0) } } catch { errors[i] = error }
    }
}

/// The tokens a ContinuousBatcher gives each request (greedy), read to the end.
func batchedGreedy(_ backend: any Mamba2Backend, _ prompts: [[Int]], _ lengths: [Int]) throws -> [[Int]] {
    let batcher = try ContinuousBatcher(backend: backend, tokenizer: nil, options: .init(slots: 3))
    defer { batcher.stop() }
    let streams = try zip(prompts, lengths).map { try batcher.submit(prompt: $0, parameters: .init(maxTokens: $1, temperature: 0)) }
    let box = TokenBox()
    let done = DispatchSemaphore(value: 0)
    Task {
        do {
            var out: [[Int]] = []
            for s in streams {
                var ids: [Int] = []
                for try await e in s { if case let .token(t) = e { ids.append(t.id) } }
                out.append(ids)
            }
            box.set(.success(out))
        } catch { box.set(.failure(error)) }
        done.signal()
    }
    done.wait()
    return try box.get()
}

final class TokenBox: @unchecked Sendable {
    let lock = NSLock()
    var result: Result<[[Int]], Error> = .success([])
    func set(_ r: Result<[[Int]], Error>) { lock.lock(); result = r; lock.unlock() }
    func get() throws -> [[Int]] { lock.lock(); defer { lock.unlock() }; return try result.get() }
}
