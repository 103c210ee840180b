import Mamba2
import Mamba2CUDA
import Mamba2CUDATraining
import Mamba2Training

/// The collectives of `mamba2 selftest --device cuda --gpus N`: NCCL's all-reduce of float32 and bf16 buffers
/// on every GPU against the host's sum. The values are small integers, whose sums are exact in either type in
/// whatever order NCCL adds them, so each check asks for equality (tolerance 0). Then data-parallel training
/// over those GPUs against one GPU on the same batches.
extension CUDASelfTest {
    public static func collectiveChecks(devices: [CUDADevice], seed: UInt64) throws -> [Check] {
        var rng = SplitMix64(seed: seed ^ 0xC011_EC71)
        let comm = try CUDACommunicator(devices: devices)
        let n = 1_000_003  // odd: not a whole number of any vector width
        let what = "\(n) values over \(devices.count) GPU\(devices.count == 1 ? "" : "s")"
        var checks: [Check] = []
        func compare(_ got: [Float], _ expected: [Float], _ name: String) -> Check {
            let scale = max(1, expected.reduce(0) { max($0, abs($1)) })
            let worst = zip(got, expected).reduce(0) { max($0, abs($1.0 - $1.1)) }
            return Check(name: name, relativeError: Double(worst / scale), tolerance: 0, allWritten: !got.contains { $0.isNaN })
        }
        // float32: integers in [−1000, 1000]
        let values = devices.map { _ in (0..<n).map { _ in Float(Int(rng.next() % 2001) - 1000) } }
        let buffers = try zip(devices, values).map { try CUDABuffer($1, on: $0) }
        try comm.allReduceSum(buffers, count: n, type: .f32)
        for d in devices { try d.synchronize() }
        let sum = (0..<n).map { i in values.reduce(Float(0)) { $0 + $1[i] } }
        for (r, b) in buffers.enumerated() { checks.append(compare(Array(try b.download().prefix(n)), sum, "NCCL all-reduce f32, \(what), rank \(r)")) }
        // bf16: integers in [−32, 32], whose sums over up to 8 GPUs stay within bf16's 8-bit significand
        let small = devices.map { _ in (0..<n).map { _ in Float(Int(rng.next() % 65) - 32) } }
        let halves = try zip(devices, small).map { d, v in try CUDABuffer(halves: v.map { UInt16($0.bitPattern >> 16) }, on: d) }
        try comm.allReduceSum(halves, count: n, type: .bf16)
        for d in devices { try d.synchronize() }
        let sumSmall = (0..<n).map { i in small.reduce(Float(0)) { $0 + $1[i] } }
        for (r, b) in halves.enumerated() {
            let got = try b.download(halves: n, at: 0).map { Float(bitPattern: UInt32($0) << 16) }
            checks.append(compare(got, sumSmall, "NCCL all-reduce bf16, \(what), rank \(r)"))
        }
        return checks + (try dataParallelChecks(devices: devices, rng: &rng))
    }

    /// Two optimizer steps of data-parallel training over `devices` against one GPU's (another object of GPU
    /// 0), float32, the same weights and batches: 2N + 1 rows (dealt out unevenly), then one row (GPUs past it
    /// take none), accumulated into one step (its gradients all-reduced in buckets beside the second batch's
    /// backward), then a second step (all-reduced whole). The losses, the gradients' norms and the
    /// weights after the steps.
    static func dataParallelChecks(devices: [CUDADevice], rng: inout SplitMix64) throws -> [Check] {
        let c = Mamba2Config(dModel: 128, nLayer: 2, vocabSize: 64, padVocabSizeMultiple: 16, dState: 32, dConv: 4, expand: 2,
                             headDim: 64, nGroups: 1, chunkSize: 64)
        let weights = Mamba2Weights.random(c, seed: rng.next())
        var opts = AdamW.Options()
        opts.learningRate = 1e-3; opts.warmupSteps = 0; opts.totalSteps = 10
        let one = try CUDATrainingBackend(device: try CUDADevice(ordinal: devices[0].ordinal), config: c, weights: weights, optimizer: opts, precision: .f32)
        let dp = try CUDADataParallelTrainingBackend(devices: devices, config: c, weights: weights, optimizer: opts, precision: .f32)
        // step 1's two batches: the second all-reduces its gradients in buckets beside its backward; step 2's one
        // batch (not the declared count) all-reduces them whole before the step: both paths against one GPU
        dp.batchesPerStep = 2
        let n = devices.count
        var worstLoss = 0.0, worstNorm = 0.0
        for rows in [[2 * n + 1, 1], [n]] {  // step 1: two batches accumulated; step 2: one
            for r in rows {
                let batch = try randomBatch(rows: r, length: 96, vocab: c.vocabSize, documents: true, rng: &rng)
                let a = try one.accumulate(batch), b = try dp.accumulate(batch)
                guard a.targets == b.targets else {
                    return [Check(name: "data parallel over \(n) GPUs: target counts \(a.targets) and \(b.targets)", relativeError: .infinity,
                                  tolerance: 0, allWritten: true)]
                }
                worstLoss = max(worstLoss, abs(a.loss - b.loss) / a.loss)
            }
            let ga = try one.optimizerStep().gradientNorm, gb = try dp.optimizerStep().gradientNorm
            worstNorm = max(worstNorm, Double(abs(ga - gb) / ga))
        }
        let pa = try one.parameters(), pb = try dp.parameters()
        var num = 0.0, den = 0.0
        for (name, a) in pa {
            guard let b = pb[name], b.count == a.count else { continue }
            for i in a.indices { num += Double((a[i] - b[i]) * (a[i] - b[i])); den += Double(a[i] * a[i]) }
        }
        let others = try dp.trainers.dropFirst().map { try $0.parameters() }
        let equalOnAll = others.allSatisfy { $0 == pb }
        // Float32 both; the split changes only where sums are cut (each GPU's rows, then NCCL's sum): a few
        // ulps, 1e-5 is ~100 of them. The GPUs' own weights must be identical (the same sum, the same step).
        return [
            Check(name: "data parallel over \(n) GPU\(n == 1 ? "" : "s") vs one: losses of 3 batches", relativeError: worstLoss, tolerance: 1e-5, allWritten: true),
            Check(name: "data parallel over \(n) GPU\(n == 1 ? "" : "s") vs one: gradient norms of 2 steps", relativeError: worstNorm, tolerance: 1e-5, allWritten: true),
            Check(name: "data parallel over \(n) GPU\(n == 1 ? "" : "s") vs one: weights after 2 steps (identical on every GPU: \(equalOnAll))",
                  relativeError: (num / max(den, 1e-30)).squareRoot(), tolerance: 1e-5, allWritten: equalOnAll),
        ]
    }
}
