import ArgumentParser
import Mamba2

struct BenchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench", abstract: "Benchmarks that print tables (and JSON).",
        subcommands: [BenchModelCommand.self, BenchSSDCommand.self, BenchTokenizerCommand.self], defaultSubcommand: BenchModelCommand.self
    )
}

struct BenchModelCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "model",
        abstract: "Prompt processing (ppN) and generation (tgN) speed of a model, as llama-bench prints it."
    )
    @OptionGroup var compute: ComputeOptions
    @Option(help: "Model directory.") var model: String?
    @Option(help: "Or a released shape with random weights: 130m, 370m, 780m, 1.3b, 2.7b.") var shape: String?
    @Option(help: "Prompt tokens of the pp test.") var prompt: Int = 512
    @Option(help: "Generated tokens of the tg test.") var generate: Int = 128
    @Option(help: "Decode batch sizes, comma-separated (aggregate tokens/s).") var batch: String = "1"
    @Option(help: "Repetitions (mean ± sd).") var repetitions: Int = 3
    @OptionGroup var decodeWeights: DecodeWeightOptions
    @Flag(help: "Print JSON instead of a table.") var json = false

    func run() throws {
        try compute.apply()
        let dw = try decodeWeights.parsed()
        let m: Mamba2Model
        var name: String
        let t0 = monotonicSeconds()
        switch (model, shape) {
        case let (dir?, nil):
            m = try Mamba2Model.load(directory: dir, decodeWeights: dw); name = dir
        case let (nil, s?):
            guard let sh = ModelShape(rawValue: s) else { throw ValidationError("--shape must be one of " + ModelShape.allCases.map(\.rawValue).joined(separator: ", ")) }
            m = try Mamba2Model(config: sh.config, weights: .random(sh.config, seed: 1), decodeWeights: dw); name = "mamba2-\(s) (random weights)"
        default:
            throw ValidationError("give exactly one of --model DIR or --shape NAME")
        }
        let loadSeconds = monotonicSeconds() - t0
        guard prompt >= 1, generate >= 1, repetitions >= 1 else { throw ValidationError("--prompt, --generate and --repetitions must be at least 1") }
        var bench = ModelBenchmark(model: m)
        bench.promptTokens = prompt; bench.generateTokens = generate; bench.repetitions = repetitions
        bench.batches = try parseInts(batch, option: "--batch")
        let bandwidth = ModelBenchmark.measureReadBandwidth()
        let results = try bench.run()
        let perToken = Double(bench.bytesPerDecodedToken)
        let floor = bandwidth / perToken
        let params = Mamba2Weights.parameterCount(m.config)
        let dtype = dw == .f32 ? m.weights.storedDType : "\(m.weights.storedDType)→\(dw.rawValue.uppercased())"
        if json {
            let rows = results.map { r in
                "{\"test\":\"\(r.test)\",\"batch\":\(r.batch),\"tokens_per_s\":\(r.mean),\"sd\":\(r.sd),\"runs\":[\(r.tokensPerSecond.map { "\($0)" }.joined(separator: ","))]}"
            }
            print("{\"model\":\"\(name)\",\"parameters\":\(params),\"weights_dtype\":\"\(dtype)\",\"compute_dtype\":\"F32\",\"threads\":\(Parallel.threadCount),"
                  + "\"read_bandwidth_bytes_per_s\":\(bandwidth),\"bytes_per_decoded_token\":\(Int(perToken)),\"decode_floor_tokens_per_s\":\(floor),"
                  + "\"peak_rss_bytes\":\(peakResidentBytes()),\"load_seconds\":\(loadSeconds),\"results\":[\(rows.joined(separator: ","))]}")
            return
        }
        print("model: \(name), \(countString(params)) parameters, weights \(dtype) (computed in F32), threads \(Parallel.threadCount)")
        print("machine read bandwidth \(fixed(bandwidth / 1e9, 1)) GB/s; a decoded token reads \(bytesString(Int(perToken))) (weights + state) → floor \(fixed(floor, 1)) tokens/s")
        var cells: [[String]] = []
        for r in results {
            let share = r.test.hasPrefix("tg") && r.batch == 1 ? fixed(r.mean / floor * 100, 0) + "%" : "-"
            cells.append([name.count > 28 ? String(name.prefix(28)) : name, dtype, String(Parallel.threadCount), r.test,
                          fixed(r.mean, 2) + " ± " + fixed(r.sd, 2), share])
        }
        print(table(["model", "weights", "threads", "test", "tokens/s", "of floor"], cells), terminator: "")
        print("peak memory \(bytesString(peakResidentBytes()))")
    }
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

struct BenchTokenizerCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tokenizer", abstract: "Encoding throughput of a tokenizer on a text file (one thread).")
    @Option(help: "tokenizer.json") var tokenizer: String
    @Option(help: "Text file to encode.") var textFile: String
    @Option(help: "Repetitions (the best is reported).") var repetitions: Int = 3
    @Flag(help: "Print JSON.") var json = false

    func run() throws {
        let tok = try Tokenizer(path: tokenizer)
        let bytes = try MappedFile.readAll(textFile)
        let text = String(decoding: bytes, as: UTF8.self)
        var best = Double.infinity
        var count = 0
        for _ in 0..<max(1, repetitions) {
            tok.clearCache()
            let t0 = monotonicSeconds()
            count = tok.encode(text).count
            best = min(best, monotonicSeconds() - t0)
        }
        let mbps = Double(bytes.count) / best / 1e6
        if json {
            print("{\"bytes\":\(bytes.count),\"tokens\":\(count),\"seconds\":\(best),\"mb_per_s\":\(mbps)}")
        } else {
            print("\(bytes.count) bytes → \(count) tokens in \(fixed(best, 3)) s: \(fixed(mbps, 2)) MB/s, \(fixed(Double(count) / best / 1e6, 2)) M tokens/s (one thread, cold word cache)")
        }
    }
}
