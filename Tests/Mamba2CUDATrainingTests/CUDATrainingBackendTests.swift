import Mamba2
import Mamba2CUDA
import Mamba2CUDATraining
import Mamba2Training
import Mamba2TestSupport
import Testing

// What of GPU training can be checked without a GPU: the batch the device is given (the step itself is
// checked on the GPU by `mamba2 selftest --device cuda`, and its kernels compiled by scripts/check_kernels.py).
@Suite("GPU training without a GPU")
struct CUDATrainingWithoutGPUTests {
    // The device batch says for every token where its document starts (a flat index, never before its row)
    // and what it predicts: the next token of its own document, or −1 at a document's or a row's end. Fresh
    // random rows and document lengths each run; compared with TrainingBatch's own rules.
    /// Rows of random tokens below `vocab`, a new document after about one token in `documentEvery` and at
    /// every row's start.
    static func randomBatch(rows: Int, length: Int, vocab: UInt64, documentEvery: UInt64, rng: inout SeededRNG) throws -> TrainingBatch {
        var tokens: [Int] = [], docs: [Int32] = []
        var doc: Int32 = 0
        for _ in 0..<rows {
            for t in 0..<length {
                if t > 0 && rng.next() % documentEvery == 0 { doc += 1 }
                tokens.append(Int(rng.next() % vocab)); docs.append(doc)
            }
            doc += 1
        }
        return try TrainingBatch(rows: rows, length: length, tokens: tokens, documents: docs)
    }

    @Test("the device batch carries each token's document start and target")
    func deviceBatch() throws {
        var rng = SeededRNG()
        let rows = 3, length = 50
        let batch = try Self.randomBatch(rows: rows, length: length, vocab: 1000, documentEvery: 7, rng: &rng)
        let (tokens, docs) = (batch.tokens, batch.documents)
        let b = try CUDATrainingBackend.deviceBatch(batch)
        #expect(b.tokens == tokens.map { Int32($0) })
        #expect(b.targetCount == batch.targetCount)
        for t in 0..<(rows * length) {
            let start = Int(b.documentStarts[t])
            #expect(start >= t / length * length && start <= t && docs[start] == docs[t], "token \(t): start \(start)")
            #expect(start == t / length * length || docs[start - 1] != docs[t], "token \(t): \(start) is not its document's first token")
            #expect(b.targets[t] == (batch.hasTarget(t) ? Int32(tokens[t + 1]) : -1), "token \(t)")
        }
        // the row ends never predict the next row's first token
        for r in 0..<rows { #expect(b.targets[r * length + length - 1] == -1) }
    }

    @Test("a device batch with starts outside their rows or of the wrong size is refused")
    func badDeviceBatch() {
        let tokens = [Int32](repeating: 1, count: 8), targets = [Int32](repeating: -1, count: 8)
        // row 1 (tokens 4–7) claims a start in row 0
        #expect(throws: Mamba2Error.self) {
            try CUDATrainer.Batch(rows: 2, length: 4, tokens: tokens, documentStarts: [0, 0, 0, 0, 0, 4, 4, 4], targets: targets)
        }
        // a start after the token itself
        #expect(throws: Mamba2Error.self) {
            try CUDATrainer.Batch(rows: 2, length: 4, tokens: tokens, documentStarts: [0, 2, 2, 2, 4, 4, 4, 4], targets: targets)
        }
        // sizes that do not match rows × length
        #expect(throws: Mamba2Error.self) {
            try CUDATrainer.Batch(rows: 2, length: 4, tokens: Array(tokens.prefix(7)), documentStarts: [0, 0, 0, 0, 4, 4, 4, 4], targets: targets)
        }
        #expect((try? CUDATrainer.Batch(rows: 2, length: 4, tokens: tokens, documentStarts: [0, 0, 2, 2, 4, 4, 4, 7], targets: targets)) != nil)
    }

    // Data parallelism deals a batch's rows out to the GPUs: contiguous ranges in order that cover every row
    // once, sizes within one of each other (the first GPUs take the extra rows), none for GPUs past the rows;
    // the parts' targets add up to the whole batch's (a row's targets never depend on another row), which is
    // what each GPU's loss is divided by. Fresh random batches each run.
    @Test("data parallelism deals every row to one GPU, the parts' targets summing to the batch's")
    func dataParallelSplit() throws {
        var rng = SeededRNG()
        for rows in 1...9 {
            let batch = try Self.randomBatch(rows: rows, length: 20, vocab: 300, documentEvery: 5, rng: &rng)
            let tokens = batch.tokens
            let whole = try CUDATrainingBackend.deviceBatch(batch).targetCount
            for gpus in 1...6 {
                let ranges = (0..<gpus).map { CUDADataParallelTrainingBackend.rows(of: rows, gpu: $0, of: gpus) }
                #expect(ranges.first?.lowerBound == 0 && ranges.last?.upperBound == rows, "\(rows) rows, \(gpus) GPUs")
                #expect(zip(ranges, ranges.dropFirst()).allSatisfy { $0.upperBound == $1.lowerBound }, "\(rows) rows, \(gpus) GPUs")
                let sizes = ranges.map(\.count)
                #expect(sizes.max()! - sizes.min()! <= 1 && sizes == sizes.sorted(by: >), "\(sizes)")
                let parts = try CUDADataParallelTrainingBackend.split(batch, gpus: gpus)
                #expect(parts.map { $0 == nil } == sizes.map { $0 == 0 })
                #expect(parts.compactMap { $0 }.flatMap(\.tokens) == tokens)
                let targets = try parts.compactMap { $0 }.reduce(0) { $0 + (try CUDATrainingBackend.deviceBatch($1).targetCount) }
                #expect(targets == whole, "\(rows) rows, \(gpus) GPUs")
            }
        }
    }
}
