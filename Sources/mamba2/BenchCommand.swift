import ArgumentParser
import Mamba2

struct BenchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench", abstract: "Benchmarks that print tables (and JSON).",
        subcommands: [BenchSSDCommand.self]
    )
}

struct BenchSSDCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ssd",
        abstract: "Times each SSD form (recurrent, quadratic, chunked, auto) on the mamba2-130m layer shape."
    )

    @OptionGroup var compute: ComputeOptions
    @Option(help: "Sequence lengths, comma-separated.") var lengths: String = "512,2048,8192,32768"
    @Option(help: "Heads H.") var heads: Int = 24
    @Option(help: "Head dimension P.") var headDim: Int = 64
    @Option(help: "State size N.") var stateSize: Int = 128
    @Option(help: "Groups G.") var groups: Int = 1
    @Option(help: "Chunk size Q of the chunked form.") var chunkSize: Int = 256
    @Option(help: "Repetitions per cell (the best is reported).") var repetitions: Int = 3
    @Flag(help: "Print JSON instead of a table.") var json = false

    func run() throws {
        try compute.apply()
        var bench = SSDBenchmark()
        bench.lengths = try parseInts(lengths, option: "--lengths")
        bench.heads = heads; bench.headDim = headDim; bench.stateSize = stateSize; bench.groups = groups
        bench.chunkSize = chunkSize; bench.repetitions = max(1, repetitions)
        let sgemm = SSDBenchmark.measureSgemm()
        let rows = try bench.run()
        if json {
            let items = rows.map { r in
                "{\"form\":\"\(r.form)\",\"L\":\(r.length),\"seconds\":\(r.seconds),\"tokens_per_s\":\(r.tokensPerSecond),"
                    + "\"gflops\":\(r.gflops),\"gemm_share\":\(r.gemmShare.map { "\($0)" } ?? "null"),"
                    + "\"chose\":\(r.chose.map { "\"\($0)\"" } ?? "null")}"
            }
            print("{\"shape\":{\"H\":\(heads),\"P\":\(headDim),\"N\":\(stateSize),\"G\":\(groups),\"Q\":\(chunkSize),\"b\":1},"
                  + "\"threads\":\(Parallel.threadCount),\"blas\":\"\(BLAS.name)\",\"sgemm_gflops\":\(sgemm),"
                  + "\"rows\":[\(items.joined(separator: ","))]}")
            return
        }
        print("SSD layer: H=\(heads) P=\(headDim) N=\(stateSize) G=\(groups) Q=\(chunkSize) b=1, threads \(Parallel.threadCount)")
        print("BLAS: \(BLAS.name); sgemm 1024³ measured \(fixed(sgemm, 1)) GFLOP/s")
        print("Flops credited per token: 5·H·P·N = \(5 * heads * headDim * stateSize) for every form\n")
        var cells: [[String]] = []
        for r in rows {
            cells.append([r.form + (r.chose.map { " (\($0))" } ?? ""), String(r.length), fixed(r.seconds * 1000, 2),
                          fixed(r.tokensPerSecond, 0), fixed(r.gflops, 2), r.gemmShare.map { fixed($0 * 100, 0) + "%" } ?? "-"])
        }
        print(table(["form", "L", "ms", "tokens/s", "GFLOP/s", "in GEMM"], cells), terminator: "")
        // The automatic choice against the best form at each length.
        for L in Set(rows.map(\.length)).sorted() {
            let atL = rows.filter { $0.length == L }
            guard let auto = atL.first(where: { $0.form == "auto" }) else { continue }
            let best = atL.filter { $0.form != "auto" }.min { $0.seconds < $1.seconds }!
            print("L=\(L): auto is \(fixed(auto.seconds / best.seconds, 2))× the best form (\(best.form))")
        }
    }
}

func parseInts(_ s: String, option: String) throws -> [Int] {
    let parts = s.split(separator: ",").map { $0.trimmingCharacters() }
    let ints = parts.compactMap { Int($0) }
    guard !ints.isEmpty, ints.count == parts.count, ints.allSatisfy({ $0 > 0 }) else {
        throw ValidationError("\(option) takes positive integers separated by commas, got '\(s)'")
    }
    return ints
}

extension Substring {
    func trimmingCharacters() -> String {
        String(self.drop { $0 == " " }.reversed().drop { $0 == " " }.reversed())
    }
}
