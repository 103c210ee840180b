import Mamba2
import Mamba2Diagnostics
import Mamba2TestSupport
import Testing

@Suite("Benchmarks")
struct BenchmarkTests {
    // The model benchmark runs its pp and tg tests on the tiny fixture model and reports positive,
    // finite speeds for each (it is a program that prints tables; here only that it runs and measures).
    @Test("model benchmark runs pp and tg on the tiny model")
    func modelBenchmark() throws {
        var bench = try ModelBenchmark(model: try Mamba2Model.load(directory: fixture("tiny-hf")))
        bench.promptTokens = 64; bench.generateTokens = 16; bench.repetitions = 1; bench.batches = [1, 3]
        let results = try bench.run()
        #expect(results.map(\.test).contains { $0.hasPrefix("pp64") })
        #expect(results.filter { $0.test.hasPrefix("tg16") }.map(\.batch).sorted() == [1, 3])
        for r in results { #expect(r.mean > 0 && r.mean.isFinite, "\(r.test)") }
    }
}
