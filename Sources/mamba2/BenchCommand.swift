import ArgumentParser
import Mamba2
import Mamba2Training
import Mamba2CUDA
import Mamba2CUDATraining
import Mamba2Diagnostics

struct BenchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench", abstract: "Benchmarks that print tables (and JSON).",
        subcommands: [BenchModelCommand.self, BenchSSDCommand.self, BenchSSDKernelsCommand.self, BenchTokenizerCommand.self, BenchTrainCommand.self, BenchPrefixCacheCommand.self], defaultSubcommand: BenchModelCommand.self
    )
}

/// A released shape by its name (--shape), or an error that lists the names.
func parseShape(_ name: String) throws -> ModelShape {
    guard let shape = ModelShape(rawValue: name) else {
        throw ValidationError("--shape must be one of " + ModelShape.allCases.map(\.rawValue).joined(separator: ", "))
    }
    return shape
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
    @OptionGroup var device: DeviceOptions
    @Flag(help: "Print JSON instead of a table.") var json = false
    @Flag(help: "With --device cuda: time each decode kernel alone (replayed in a graph), and each part of a --prompt-token prefill, instead.") var profile = false

    func run() throws {
        try compute.apply()
        guard prompt >= 1, generate >= 1, repetitions >= 1 else { throw ValidationError("--prompt, --generate and --repetitions must be at least 1") }
        let place = try device.place()
        let weightType = decodeWeights.parsed(for: place)
        let backend: any Mamba2Backend
        let name: String
        var stored = "random"
        let t0 = monotonicSeconds()
        switch (model, shape) {
        case let (dir?, nil):
            let m = try Mamba2Model.load(directory: dir, weightType: weightType)
            stored = m.storedDType
            backend = try place.makeBackend(model: m, weights: weightType); name = dir
        case let (nil, s?):
            let sh = try parseShape(s)
            backend = try place.makeBackend(randomWeights: sh.config, seed: 1, weights: weightType); name = "mamba2-\(s) (random weights)"
        default:
            throw ValidationError("give exactly one of --model DIR or --shape NAME")
        }
        let loadSeconds = monotonicSeconds() - t0
        if profile {
            var cells: [[String]] = []
            for b in try parseInts(batch, option: "--batch") {
                for r in try backend.profileDecode(rows: b) {
                    cells.append([r.part, String(b), fixed(r.microseconds, 2), r.bytes == 0 ? "-" : fixed(Double(r.bytes) / r.microseconds / 1e3, 0) + " GB/s"])
                }
            }
            print(table(["decode part", "rows", "µs per launch (in a graph)", "weights/state read"], cells), terminator: "")
            let parts = try backend.profilePrefill(tokens: prompt)
            print(table(["prefill part", "tokens", "ms", "bytes moved at least", "products"], parts.map { r in
                [r.part, String(prompt), fixed(r.milliseconds, 3), r.bytes == 0 ? "-" : fixed(Double(r.bytes) / r.milliseconds / 1e6, 0) + " GB/s",
                 r.flops == 0 ? "-" : fixed(r.flops / r.milliseconds / 1e9, 0) + " TFLOP/s"]
            }), terminator: "")
            return
        }
        var bench = ModelBenchmark(backend: backend)
        bench.promptTokens = prompt; bench.generateTokens = generate; bench.repetitions = repetitions
        bench.batches = try parseInts(batch, option: "--batch")
        let bandwidth = try backend.measureReadBandwidth()
        let results = try bench.run()
        let perToken = Double(bench.bytesPerDecodedToken)
        let floor = bandwidth / perToken
        let params = Mamba2Weights.parameterCount(backend.config)
        let dtype = "\(stored.uppercased())→\(weightType.rawValue.uppercased())"
        if json {
            let rows = results.map { r in
                "{\"test\":\"\(r.test)\",\"batch\":\(r.batch),\"tokens_per_s\":\(r.mean),\"sd\":\(r.sd),\"median_tokens_per_s\":\(r.median),"
                    + "\"ms\":\(r.medianMilliseconds(prompt: prompt, generate: generate)),"
                    + (r.productShare.isEmpty ? "" : "\"product_share\":[\(r.productShare.map { "\($0)" }.joined(separator: ","))],") + "\"runs\":[\(r.tokensPerSecond.map { "\($0)" }.joined(separator: ","))]}"
            }
            let paths = device.device == .cpu
                ? "\"cpu_kernels\":\"\(CPUKernelLevel.current.rawValue)\",\"prefill_products\":\"\(PrefillGEMM.path(weightType, k: backend.config.dModel))\","
                    + "\"decode_kernels\":\"\(CPUBackend.decodeKernelPath(rows: bench.batches.first ?? 1))\","
                    + "\"ssd_scan\":\"\(SSDRecurrent.scanPath(tokens: prompt, headDim: backend.config.headDim))\","
                : ""
            print("{\"model\":\"\(name)\",\"device\":\"\(backend.deviceDescription)\",\"parameters\":\(params),\"weights_dtype\":\"\(dtype)\",\"threads\":\(Parallel.threadCount)," + paths
                  + "\"read_bandwidth_bytes_per_s\":\(bandwidth),\"bytes_per_decoded_token\":\(Int(perToken)),\"decode_floor_tokens_per_s\":\(floor),"
                  + "\"peak_rss_bytes\":\(peakResidentBytes()),\"load_seconds\":\(loadSeconds),\"results\":[\(rows.joined(separator: ","))]}")
            return
        }
        print("model: \(name), \(countString(params)) parameters, weights \(dtype), on \(backend.deviceDescription)")
        if device.device == .cpu {
            print("decode GEMV kernels: " + bench.batches.map { "batch \($0) \(CPUBackend.decodeKernelPath(rows: $0))" }.joined(separator: ", "))
            print("CPU kernels: \(CPUKernelLevel.current.rawValue) (this host: \(CPUKernelLevel.host.rawValue)); prefill products: \(PrefillGEMM.path(weightType, k: backend.config.dModel)); SSD scan of the prompt: \(SSDRecurrent.scanPath(tokens: prompt, headDim: backend.config.headDim))")
            print("BLAS (float32 prefill GEMMs): \(BLAS.coreDescription)")
        }
        print("read bandwidth \(fixed(bandwidth / 1e9, 1)) GB/s; a decoded token reads \(bytesString(Int(perToken))) (weights + state) → floor \(fixed(floor, 1)) tokens/s")
        var cells: [[String]] = []
        for r in results {
            let share = r.test.hasPrefix("tg") && r.batch == 1 ? fixed(r.mean / floor * 100, 0) + "%" : "-"
            let products = r.productShare.isEmpty ? "-" : fixed(r.productShare.reduce(0, +) / Double(r.productShare.count) * 100, 0) + "%"
            cells.append([name.count > 28 ? String(name.prefix(28)) : name, dtype, r.test,
                          fixed(r.mean, 2) + " ± " + fixed(r.sd, 2), fixed(r.median, 2), share, products])
        }
        print(table(["model", "weights", "test", "tokens/s", "median", "of floor", "in products"], cells), terminator: "")
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
    @Option(help: "Repetitions per cell (the best is reported; on the GPU the median).") var repetitions: Int = 3
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
        print("BLAS: \(BLAS.name), \(BLAS.coreDescription); sgemm 1024³ measured \(fixed(sgemm, 1)) GFLOP/s")
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

/// The GPU's SSD kernels alone (GPU-only, as `selftest` is: on the CPU, `bench ssd` times the layer's forms).
struct BenchSSDKernelsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ssd-kernels",
        abstract: "Times the GPU's chunked SSD kernels (plain float32 or tensor cores) on an NVIDIA GPU."
    )
    @Option(help: "Sequence lengths, comma-separated.") var lengths: String = "2048,16384,65536"
    @Option(help: "Heads H.") var heads: Int = 32
    @Option(help: "Head dimension P.") var headDim: Int = 64
    @Option(help: "State size N.") var stateSize: Int = 128
    @Option(help: "Groups G.") var groups: Int = 1
    @Option(help: "Chunk size Q.") var chunkSize: Int = 256
    @Option(help: "Timed launches per length (the median is reported).") var repetitions: Int = 100
    @Flag(help: "Print JSON instead of a table.") var json = false
    @Option(help: "The GPU: cuda or cuda:N.") var device: DeviceChoice = .cuda(0)
    @Option(help: "Batch × length held at this many tokens (b = tokens / L); default b = 1.") var tokens: Int?
    @Option(help: "f32 (the plain kernels), bf16 or f16 (the tensor-core kernels).") var dtype: WeightType = .f32
    @Flag(help: "With a 16-bit dtype: also time each kernel alone (the forward's three, or with --backward the forward and each backward kernel).") var breakdown = false
    @Flag(help: "Time forward + backward (gradients of every input from a given output gradient) instead of the forward.")
    var backward = false
    @Option(help: "With a 16-bit dtype, the forward: chunks (the three kernels, the default) or fused (one kernel, where it applies).")
    var path: CUDATensorCoreSSD.Path = .chunks
    @Option(help: "With a 16-bit dtype, the products of the chunk-state and scan kernels: wgmma (Hopper's warp-group products, the default where the device has them) or mma.")
    var products: CUDATensorCoreSSD.Products = .warpGroup

    func run() throws {
        guard case let .cuda(ordinal) = device else { throw ValidationError("--device must be cuda or cuda:N: these are the GPU's kernels (bench ssd times the CPU's forms)") }
        try runCUDA(ordinal: ordinal)
    }
}

extension BenchSSDKernelsCommand {
    /// The GPU's chunked SSD forward, kernels only, median of `repetitions` timed launches (each ended by a
    /// device synchronize, so a launch's host overhead is included), with D, dt_bias + softplus and the
    /// final states, as the reference's mamba_chunk_scan_combined is timed by benchmarks/gpu_ssd_compare.py.
    func runCUDA(ordinal: Int) throws {
        let dev = try CUDADevice(ordinal: ordinal)
        let plain = dtype == .f32 ? try CUDASSD(device: dev) : nil
        let plainBackward = dtype == .f32 && backward ? try CUDASSDBackward(device: dev) : nil
        let tc: CUDATensorCoreSSD?
        switch dtype {
        case .f32: tc = nil
        case .bf16: tc = try CUDATensorCoreSSD(device: dev, elementType: .bf16, stateSize: stateSize)
        case .f16: tc = try CUDATensorCoreSSD(device: dev, elementType: .f16, stateSize: stateSize)
        case .q8_0, .q4_0: throw ValidationError("--dtype \(dtype.rawValue) is a decode weight type; the SSD kernels take f32, bf16 or f16")
        }
        tc?.path = path
        tc?.products = products
        var rows: [String] = []
        var cells: [[String]] = []
        for L in try parseInts(lengths, option: "--lengths") {
            let b = max(1, (tokens ?? L) / L)
            var input = SSDInput.synthetic(L: L, H: heads, P: headDim, G: groups, N: stateSize)
            if b > 1 {
                func rep(_ t: Tensor) -> Tensor { Tensor(shape: [b] + t.shape.dropFirst(), data: Array([[Float]](repeating: t.data, count: b).joined())) }
                input.x = rep(input.x); input.dt = rep(input.dt); input.B = rep(input.B); input.C = rep(input.C)
            }
            let o = SSDOptions(form: .chunked, chunkSize: chunkSize, dtSoftplus: true)
            let launch: () throws -> Void
            var parts = ""
            /// Median of 20 timed runs of one kernel (or pass), each ended by a device synchronize, in ms.
            func median(_ body: () throws -> Void) throws -> String {
                var ts: [Double] = []
                for _ in 0..<20 { let t0 = monotonicSeconds(); try body(); try dev.synchronize(); ts.append(monotonicSeconds() - t0) }
                return fixed(ts.sorted()[10] * 1000, 3)
            }
            if let tc, backward {
                let bw = try CUDATensorCoreSSDBackward(device: dev, elementType: tc.elementType, stateSize: stateSize)
                let p = try bw.prepare(input, options: o, gradY: SSDInput.syntheticGradient(like: input.x), gradFinalStates: nil)
                launch = { try bw.launch(p) }
                if breakdown {
                    try bw.launch(p); try dev.synchronize()
                    parts += " forward \(try median { try tc.launch(p.fwd) })"
                    for (k, name) in CUDATensorCoreSSDBackward.kernelNames.enumerated() {
                        parts += " \(name) \(try median { try bw.launchBackward(p, only: k) })"
                    }
                }
            } else if let tc {
                let p = try tc.prepare(input, options: o)
                launch = { try tc.launch(p) }
                if breakdown, p.fused != nil {
                    parts = "(fused: one kernel)"
                } else if breakdown {
                    try tc.launch(p); try dev.synchronize()
                    for (k, name) in ["state", "passing", "scan"].enumerated() {
                        parts += " \(name) \(try median { try tc.launch(p, only: k) })"
                    }
                }
            } else if let plainBackward {
                let p = try plainBackward.prepare(input, options: o, gradY: SSDInput.syntheticGradient(like: input.x), gradFinalStates: nil)
                launch = { try plainBackward.launch(p) }
            } else {
                let p = try plain!.prepare(input, options: o)
                launch = { try plain!.launch(p) }
            }
            for _ in 0..<3 { try launch() }
            try dev.synchronize()
            var times: [Double] = []
            for _ in 0..<max(repetitions, 1) {
                let t0 = monotonicSeconds()
                try launch(); try dev.synchronize()
                times.append(monotonicSeconds() - t0)
            }
            times.sort()
            let median = times[times.count / 2]
            rows.append("{\"L\":\(L),\"b\":\(b),\"ms\":\(median * 1000),\"min_ms\":\(times[0] * 1000),\"runs\":\(times.count)}")
            cells.append([String(L), String(b), fixed(median * 1000, 3), fixed(times[0] * 1000, 3), fixed(Double(b * L) / median / 1e6, 2)] + (breakdown ? [parts] : []))
        }
        if json {
            print("{\"device\":\"\(dev.name)\",\"dtype\":\"\(dtype)\",\"backward\":\(backward),\"H\":\(heads),\"P\":\(headDim),\"N\":\(stateSize),\"G\":\(groups),\"Q\":\(chunkSize),\"rows\":[\(rows.joined(separator: ","))]}")
            return
        }
        let pathNote = tc.map { ", path \($0.fusedApplies(packed: false) && !backward ? "fused" : "chunks, \($0.productsInUse.rawValue) products")" } ?? ""
        print("GPU chunked SSD \(backward ? "forward + backward" : "forward") on \(dev.name): H=\(heads) P=\(headDim) N=\(stateSize) G=\(groups) Q=\(chunkSize), \(dtype)\(pathNote), median of \(repetitions)")
        print(table(["L", "b", "median ms", "min ms", "Mtok/s"] + (breakdown ? ["ms per kernel"] : []), cells), terminator: "")
    }
}

extension CUDATensorCoreSSD.Path: ExpressibleByArgument {}
extension CUDATensorCoreSSD.Products: ExpressibleByArgument {}

/// Positive integers separated by commas (sizes, lengths, batches).
func parseInts(_ s: String, option: String) throws -> [Int] { try parseIntegers(s, option: option, minimum: 1) }

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
        let bytes = try MappedFile.readText(textFile)
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

struct BenchTrainCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "train",
        abstract: "Training speed and memory: forward + backward + AdamW steps on random tokens, tokens/s and peak memory.")
    @OptionGroup var compute: ComputeOptions
    @Option(help: "Model shape: tiny, small, 130m, 370m, … (random weights).") var preset: String = "small"
    @Option(help: "Vocabulary (257: bytes, as the shipped model; 50277: GPT-NeoX).") var vocab: Int = 257
    @Option(help: "Rows per batch.") var batch: Int = 8
    @Option(help: "Tokens per row.") var length: Int = 512
    @Option(help: "Timed steps (after one warm-up step).") var steps: Int = 5
    @Option(help: "cpu, cuda or cuda:N.") var device: DeviceChoice = .cpu
    @Option(help: "GPU training precision: bf16 or f32.") var precision: CUDATrainer.Precision = .bf16
    @Flag(help: "With --device cuda: after the timed steps, one step with every part waited for and timed (a breakdown).") var breakdown = false
    @Flag(help: "With --device cuda: recompute the SSD forward in the backward instead of keeping its output y per layer.") var recomputeSsd = false
    @Option(help: "Also write the result as JSON to this file.") var json: String?
    @Option(help: "With --device cuda: data parallelism over GPUs 0..<N, --batch rows on each (global batch N × batch), timed beside one GPU's data-parallel step.")
    var gpus: Int?

    func run() throws {
        try compute.apply()
        guard batch >= 1, length >= 2, steps >= 1 else { throw ValidationError("--batch, --steps must be at least 1 and --length at least 2") }
        let c = try Mamba2Config.preset(preset, vocabSize: vocab)
        if let gpus {
            guard case .cuda = device else { throw ValidationError("--gpus needs --device cuda") }
            return try runDataParallel(c, gpus: gpus)
        }
        if case let .cuda(n) = device { return try runGPU(c, ordinal: n) }
        var params = Dictionary(uniqueKeysWithValues: Mamba2Weights.random(c, seed: 1).namedTensors(c).map { ($0.0, $0.1.data) })
        var opt = AdamW()
        var rng = SplitMix64(seed: 2)
        let tokens = (0..<(batch * length)).map { _ in Int(rng.next() % UInt64(c.vocabSize)) }
        let docs = (0..<(batch * length)).map { Int32($0 / length) }
        let b = try TrainingBatch(rows: batch, length: length, tokens: tokens, documents: docs)
        var gradSeconds: [Double] = [], optSeconds: [Double] = []
        for i in 0...steps {
            let t0 = monotonicSeconds()
            let model = try Mamba2Model(config: c, weights: try Mamba2Weights(c, values: params, storedDType: "F32"))
            let r = try ModelGradients.compute(model: model, batch: b)
            let t1 = monotonicSeconds()
            opt.update(&params, gradients: Dictionary(uniqueKeysWithValues: r.gradients.namedTensors(c).map { ($0.0, $0.1.data) }))
            let t2 = monotonicSeconds()
            if i > 0 { gradSeconds.append(t1 - t0); optSeconds.append(t2 - t1) }
        }
        let n = Mamba2Weights.parameterCount(c)
        let tok = Double(batch * length)
        let step = zip(gradSeconds, optSeconds).map { $0 + $1 }
        let mean = step.reduce(0, +) / Double(step.count)
        let sd = (step.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / Double(max(step.count - 1, 1))).squareRoot()
        let flops = 6 * Double(n) * tok  // the usual 6·parameters·tokens (projections dominate; SSD not counted)
        print(table(["preset", "params", "batch×length", "tok/s", "step s (±sd)", "fwd+bwd s", "AdamW s", "GFLOP/s (6·N·T)", "peak memory"],
                    [[preset, countString(n), "\(batch)×\(length)", fixed(tok / mean, 0), fixed(mean, 3) + " ± " + fixed(sd, 3),
                      fixed(gradSeconds.reduce(0, +) / Double(steps), 3), fixed(optSeconds.reduce(0, +) / Double(steps), 3),
                      fixed(flops / mean / 1e9, 1), bytesString(peakResidentBytes())]]))
        print("threads \(Parallel.threadCount); BLAS \(BLAS.name)")
        if let json {
            let o: JSON = .object(["preset": .string(preset), "parameters": .number(Double(n)), "batch": .number(Double(batch)),
                                   "length": .number(Double(length)), "tokens_per_second": .number(tok / mean),
                                   "step_seconds": .array(step.map { .number($0) }), "peak_resident_bytes": .number(Double(peakResidentBytes())),
                                   "threads": .number(Double(Parallel.threadCount))])
            try writeFileAtomically(Array(o.serialized.utf8), to: json)
        }
    }

    /// The whole step on the GPU (`CUDATrainer`): forward, backward and AdamW, each step waited for.
    /// Peak memory is the most the trainer's buffers held (as PyTorch's max_memory_allocated counts tensors).
    func runGPU(_ c: Mamba2Config, ordinal: Int) throws {
        let gpu = try CUDADevice(ordinal: ordinal)
        let peakFlops = try CUDATrainer.measuredBF16Peak(device: gpu)
        gpu.resetPeakMemory()
        let trainer = try CUDATrainer(device: gpu, randomWeights: c, seed: 1, precision: precision, decays: AdamW.decays, recomputeSSD: recomputeSsd)
        var rng = SplitMix64(seed: 2)
        let T = batch * length
        let tokens = (0..<T).map { _ in Int32(rng.next() % UInt64(c.vocabSize)) }
        let starts = (0..<T).map { Int32($0 / length * length) }
        let targets = (0..<T).map { t in (t + 1) % length == 0 ? Int32(-1) : tokens[t + 1] }
        let b = try CUDATrainer.Batch(rows: batch, length: length, tokens: tokens, documentStarts: starts, targets: targets)
        let o = AdamW.Options()
        let step = CUDATrainer.OptimizerStep(learningRate: 1e-4, beta1: o.beta1, beta2: o.beta2, epsilon: o.epsilon, weightDecay: o.weightDecay,
                                             clipNorm: o.clipNorm)
        var seconds: [Double] = []
        var loss = 0.0
        for i in 0...steps {
            let t0 = monotonicSeconds()
            loss = try trainer.accumulate(b)
            _ = try trainer.optimizerStep(step)
            if i > 0 { seconds.append(monotonicSeconds() - t0) }
        }
        let n = Mamba2Weights.parameterCount(c)
        let sorted = seconds.sorted()
        let median = sorted[sorted.count / 2]
        let tps = Double(T) / median
        let mfu = 6 * Double(n) * tps / peakFlops
        let (free, total) = try gpu.memoryInfo()
        print(table(["preset", "params", "batch×length", "precision", "tok/s", "step ms (median)", "MFU", "peak alloc", "GPU in use", "loss"],
                    [[preset, countString(n), "\(batch)×\(length)", precision.rawValue, fixed(tps, 0), fixed(median * 1e3, 1),
                      fixed(100 * mfu, 1) + "%", bytesString(gpu.peakAllocatedBytes), bytesString(total - free), fixed(loss, 3)]]))
        print("device \(gpu.name); measured bf16 matrix-product peak \(fixed(peakFlops / 1e12, 0)) TFLOP/s (MFU = 6·params·tokens/s over it)")
        if breakdown {
            trainer.profiling = true
            trainer.resetProfile()
            _ = try trainer.accumulate(b)
            _ = try trainer.optimizerStep(step)
            trainer.profiling = false
            let sum = trainer.profile.reduce(0) { $0 + $1.seconds }
            print(table(["part (all layers)", "ms", "share"],
                        trainer.profile.sorted { $0.seconds > $1.seconds }.map { [$0.part, fixed($0.seconds * 1e3, 2), fixed(100 * $0.seconds / sum, 1) + "%"] }
                            + [["sum (each part waited for)", fixed(sum * 1e3, 1), "100%"]]))
        }
        if let json {
            let o: JSON = .object(["preset": .string(preset), "parameters": .number(Double(n)), "batch": .number(Double(batch)),
                                   "length": .number(Double(length)), "vocab": .number(Double(c.vocabSize)), "precision": .string(precision.rawValue),
                                   "tokens_per_second": .number(tps), "step_seconds": .array(seconds.map { .number($0) }),
                                   "peak_allocated_bytes": .number(Double(gpu.peakAllocatedBytes)), "device_used_bytes": .number(Double(total - free)),
                                   "recompute_ssd": .bool(recomputeSsd), "mfu": .number(mfu), "bf16_peak_flops": .number(peakFlops), "loss": .number(loss), "device": .string(gpu.name)])
            try writeFileAtomically(Array(o.serialized.utf8), to: json)
        }
    }
}

extension BenchTrainCommand {
    /// Data parallelism over GPUs 0..<gpus, `batch` rows each, against the same backend over GPU 0 alone (its
    /// step with the gradients' all-reduce, over one GPU a copy of nothing): tokens/s of each and their ratio.
    func runDataParallel(_ c: Mamba2Config, gpus: Int) throws {
        let devices = try CUDADevice.first(gpus)
        var options = AdamW.Options()
        options.learningRate = 1e-4; options.warmupSteps = 0
        var rows: [(gpus: Int, tps: Double, ms: Double, loss: Double)] = []
        for n in Set([1, gpus]).sorted() {
            // fresh trainers for each run, every GPU drawing the same weights from the same seed on the device
            let trainers = try devices.prefix(n).map {
                try CUDATrainer(device: $0, randomWeights: c, seed: 1, precision: precision, decays: AdamW.decays, recomputeSSD: recomputeSsd)
            }
            let dp = try CUDADataParallelTrainingBackend(trainers: trainers, optimizer: options)
            dp.batchesPerStep = 1  // the gradients all-reduced in buckets beside the backward
            var rng = SplitMix64(seed: 2)
            let T = n * batch * length
            let b = try TrainingBatch(rows: n * batch, length: length, tokens: (0..<T).map { _ in Int(rng.next() % UInt64(c.vocabSize)) },
                                      documents: (0..<T).map { Int32($0 / length) })
            var seconds: [Double] = [], loss = 0.0
            for i in 0...steps {
                let t0 = monotonicSeconds()
                loss = try dp.accumulate(b).loss
                _ = try dp.optimizerStep()
                if i > 0 { seconds.append(monotonicSeconds() - t0) }
            }
            let median = seconds.sorted()[seconds.count / 2]
            rows.append((n, Double(T) / median, median * 1e3, loss))
        }
        let one = rows[0].tps
        print(table(["preset", "params", "GPUs", "batch×length per GPU", "precision", "tok/s", "step ms (median)", "vs 1 GPU", "loss"],
                    rows.map { [preset, countString(Mamba2Weights.parameterCount(c)), "\($0.gpus)", "\(batch)×\(length)", precision.rawValue,
                                fixed($0.tps, 0), fixed($0.ms, 1), fixed($0.tps / one, 2) + "×", fixed($0.loss, 3)] }))
        print("devices \(devices.map(\.name).joined(separator: ", ")); NCCL \(CUDACommunicator.library.map { "\($0.path) \($0.version)" } ?? "not loaded")")
        if let json {
            let o: JSON = .object(["preset": .string(preset), "parameters": .number(Double(Mamba2Weights.parameterCount(c))),
                                   "batch_per_gpu": .number(Double(batch)), "length": .number(Double(length)), "precision": .string(precision.rawValue),
                                   "runs": .array(rows.map { .object(["gpus": .number(Double($0.gpus)), "tokens_per_second": .number($0.tps),
                                                                      "step_ms": .number($0.ms), "loss": .number($0.loss)]) })])
            try writeFileAtomically(Array(o.serialized.utf8), to: json)
        }
    }
}

struct BenchPrefixCacheCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "prefix-cache",
        abstract: "Time to the first token of a follow-up that re-sends a conversation, with and without the prefix-state cache."
    )
    @OptionGroup var compute: ComputeOptions
    @Option(help: "A released shape with random weights: 130m, 370m, 780m, 1.3b, 2.7b.") var shape: String = "130m"
    @Option(help: "Tokens of the first turn's prompt.") var prefix: Int = 2000
    @Option(help: "Tokens the first turn generates.") var answer: Int = 16
    @Option(help: "New tokens of the follow-up.") var new: Int = 50
    @Option(help: "Follow-ups timed per mode (median).") var repetitions: Int = 3
    @OptionGroup var decodeWeights: DecodeWeightOptions
    @OptionGroup var device: DeviceOptions
    @Flag(help: "Print JSON instead of a table.") var json = false

    func run() async throws {
        try compute.apply()
        guard prefix >= 1, answer >= 1, new >= 1, repetitions >= 1 else { throw ValidationError("--prefix, --answer, --new and --repetitions must be at least 1") }
        let sh = try parseShape(shape)
        let place = try device.place()
        let weightType = decodeWeights.parsed(for: place)
        var bench = PrefixCacheBenchmark()
        bench.prefix = prefix; bench.answer = answer; bench.followUp = new; bench.repetitions = repetitions
        let rows = try await bench.run { try place.makeBackend(randomWeights: sh.config, seed: 1, weights: weightType) }
        let off = rows.first { !$0.cache }!.medianSeconds, on = rows.first { $0.cache }!.medianSeconds
        if json {
            let items = rows.map { "{\"cache\":\($0.cache),\"median_seconds\":\($0.medianSeconds),\"seconds\":[\($0.seconds.map { "\($0)" }.joined(separator: ","))],\"cached_tokens\":\($0.cachedTokens)}" }
            print("{\"shape\":\"\(shape)\",\"device\":\"\(place)\",\"weights\":\"\(weightType.rawValue)\",\"threads\":\(Parallel.threadCount),\"prefix\":\(prefix),\"answer\":\(answer),\"new\":\(new),"
                  + "\"speedup\":\(off / on),\"rows\":[\(items.joined(separator: ","))]}")
            return
        }
        print("mamba2-\(shape) (random weights), \(place), weights \(weightType.rawValue), \(Parallel.threadCount) threads; "
              + "turn 1: \(prefix) prompt + \(answer) generated tokens; turn 2: all of them + \(new) new")
        print(table(["prefix cache", "time to first token of turn 2 (median)", "each", "prompt tokens from the cache"], rows.map {
            [$0.cache ? "on" : "off (--cache-mib 0)", fixed($0.medianSeconds * 1000, 1) + " ms", $0.seconds.map { fixed($0 * 1000, 1) }.joined(separator: ", "), String($0.cachedTokens)]
        }), terminator: "")
        print("speedup: \(fixed(off / on, 1))×")
    }
}
