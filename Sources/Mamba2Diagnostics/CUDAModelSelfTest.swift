import Mamba2
import Mamba2CUDA
import Mamba2Training
/// The GPU model's checks for `mamba2 selftest --device cuda`: the reference fixtures (the tiny model's
/// logits computed by mamba_ssm and a float64 recurrence) and the GPU against the CPU model on a random
/// model of the released models' head shape (P = 64, N = 128, so 16-bit precisions take the tensor-core
/// SSD). The logits buffer is poisoned (NaN) before each decode step and before the random model's
/// prefill; the fixture prefills write a new buffer, checked against the fixture element by element.
extension CUDASelfTest {
    /// - fixtures: the directory holding tiny-hf, tiny-hf-bf16 and tiny-golden.safetensors.
    public static func modelChecks(device: CUDADevice, fixtures: String, seed: UInt64) throws -> [Check] {
        var checks: [Check] = []
        func check(_ name: String, _ got: [Float], _ want: [Float], _ tol: Double) {
            checks.append(Check(name: name, got: got, want: want, tolerance: tol))
        }
        // 1. The fixtures: tiny-hf in f32 (TF32 off: cuBLAS pedantic) against the float32 weights' logits,
        //    1e-4 (the bound); tiny-hf-bf16 in bf16 (weights exact, activations rounded to bf16 before
        //    each matrix product) against logits_bf16_weights, 1e-2.
        let golden = try SafeTensorsFile(path: fixtures + "/tiny-golden.safetensors")
        let flat = golden["input_ids"]!.ints()
        let ids = [Array(flat[0..<37]), Array(flat[37..<74])]
        let promptLength = golden["greedy_prompt_len"]!.ints()[0]
        let greedy = golden["greedy_tokens"]!.ints()
        for (dir, precision, key, tol) in [("tiny-hf", CUDAModel.Precision.f32, "logits", 1e-4), ("tiny-hf-bf16", .bf16, "logits_bf16_weights", 1e-2)] {
            let cpu = try Mamba2Model.load(directory: fixtures + "/" + dir)
            let gpu = try CUDAModel(device: device, model: cpu, precision: precision)
            let want = try golden.tensor(key).data  // (2, 37, V)
            let all = try gpu.prefill(ids, logits: .all)!
            check("model \(dir) \(precision.rawValue): prefill logits of 2 × 37 tokens vs mamba_ssm's", all.data, want, tol)
            // Decode: prefill 10 tokens of both rows, then step the remaining 27 one at a time.
            let V = cpu.config.paddedVocabSize
            var stepped: [Float] = [], wantStepped: [Float] = []
            _ = try gpu.prefill(ids.map { Array($0[0..<10]) }, logits: .none)
            for t in 10..<37 {
                try gpu.logits1.fill(bitPattern: Float.nan.bitPattern)
                stepped += try gpu.step(ids.map { $0[t] }).data
                for s in 0..<2 { wantStepped += want[((s * 37 + t) * V)..<((s * 37 + t + 1) * V)] }
            }
            check("model \(dir) \(precision.rawValue): 27 decode steps' logits vs mamba_ssm's", stepped, wantStepped, tol)
            if precision == .f32 {
                // Greedy on the device (CUDA graph, argmax fed back) reproduces the reference's 12 tokens.
                _ = try gpu.prefill([Array(greedy[0..<(promptLength - 1)])], logits: .none)
                let got = try gpu.decodeGreedy(first: [greedy[promptLength - 1]], steps: greedy.count - promptLength)[0]
                let same = got == Array(greedy[promptLength...])
                checks.append(Check(name: "model \(dir): greedy decode as one CUDA graph per token reproduces mamba_ssm's \(got.count) tokens",
                                    relativeError: same ? 0 : 1, tolerance: 0, allWritten: true))
            }
        }
        // 2. GPU against CPU on a random model of the released head shape, fresh weights each run.
        var config = Mamba2Config(dModel: 256, nLayer: 2, vocabSize: 1000, padVocabSizeMultiple: 16, layout: .stateSpaces)
        config.chunkSize = 256
        let weights = Mamba2Weights.random(config, seed: seed)
        var rng = SplitMix64(seed: seed ^ 0x5EED)
        for precision in WeightType.floatingPoint {  // the types a GPU holds (Q8_0 is a CPU decode type)
            // 2 rows take the fused matrix-vector kernels in decode, 6 rows cuBLAS (captured into the graph too).
            let rows = precision == .f32 ? 2 : 6
            let prompts = (0..<rows).map { _ in (0..<300).map { _ in Int(rng.next() % 1000) } }
            // The CPU runs on the weights rounded as the GPU holds them, so the comparison isolates the
            // GPU's arithmetic. Tolerance: f32 1e-4 (float32 sums in another order); for 16-bit, about 8
            // roundings lie on the path of a logit (per layer the in_proj and out_proj inputs, the SSD's x, B, C
            // and C·Bᵀ; prefill also rounds the in_proj output, as mamba_ssm does, before the conv, so x, B and C
            // round twice), each 2^-9 (bf16) or 2^-12 (fp16) relative: added up, 1.6e-2 and 2e-3 (seen: up to
            // 6.2e-3 and 7.6e-4 over six runs on the H200 before that rounding).
            let cpu = try Mamba2Model(config: config, weights: Self.matricesAsHeld(weights, precision: precision))
            let gpu = try CUDAModel(device: device, model: cpu, precision: precision)
            let tol = precision == .f32 ? 1e-4 : precision == .bf16 ? Self.bf16LogitsBound : 2e-3
            var states = (0..<rows).map { _ in cpu.newState() }
            let want = try cpu.prefill(prompts, states: &states, logits: .last)
            _ = try gpu.prefill(prompts, logits: .none)  // allocates the rows' buffers, so the logits can be poisoned
            try gpu.logits1.fill(bitPattern: Float.nan.bitPattern)
            let got = try gpu.prefill(prompts, logits: .last)!
            let ssd = gpu.tc != nil ? "tensor-core SSD" : "plain SSD"
            check("model random d=256 P=64 N=128 \(precision.rawValue) (\(ssd)): prefill \(rows) × 300 tokens, last logits vs CPU",
                  got.data, want.flatMap(\.data), tol)
            var gotSteps: [Float] = [], wantSteps: [Float] = []
            var eagerGreedy = [[Int]](repeating: [], count: rows)
            var next = (0..<rows).map { _ in Int(rng.next() % 1000) }
            let first = next
            for _ in 0..<8 {
                try gpu.logits1.fill(bitPattern: Float.nan.bitPattern)
                let g = try gpu.step(next)
                gotSteps += g.data
                wantSteps += try cpu.step(next, states: &states).data
                next = (0..<rows).map { r in
                    let row = g.data[(r * config.paddedVocabSize)..<((r + 1) * config.paddedVocabSize)]
                    return row.indices.max { row[$0] < row[$1] || (row[$0] == row[$1] && $0 > $1) }! - r * config.paddedVocabSize
                }
                for r in 0..<rows { eagerGreedy[r].append(next[r]) }
            }
            check("model random \(precision.rawValue): 8 decode steps of \(rows) rows vs CPU", gotSteps, wantSteps, tol)
            // The same greedy run replayed as CUDA graphs chooses the same tokens as the eager steps.
            _ = try gpu.prefill(prompts, logits: .none)
            let graphTokens = try gpu.decodeGreedy(first: first, steps: 8)
            checks.append(Check(name: "model random \(precision.rawValue): greedy by CUDA graph == greedy by eager steps (\(rows) rows × 8 tokens)",
                                relativeError: graphTokens == eagerGreedy ? 0 : 1, tolerance: 0, allWritten: true))
            // Prompts of different lengths, packed into one row on the GPU (the conv and the SSD reset at each
            // start; prompts of 1 and 2 tokens are shorter than the conv window), then 4 decode steps of every row.
            let lengths = [300, 129, 1, 2, 37, 128]
            let mixed = lengths.map { n in (0..<n).map { _ in Int(rng.next() % 1000) } }
            var mixedStates = mixed.map { _ in cpu.newState() }
            let wantMixed = try cpu.prefill(mixed, states: &mixedStates, logits: .last)
            _ = try gpu.prefill(mixed, logits: .none)  // allocates the rows' buffers, so the logits can be poisoned
            try gpu.logits1.fill(bitPattern: Float.nan.bitPattern)
            let gotMixed = try gpu.prefill(mixed, logits: .last)!
            check("model random \(precision.rawValue): packed prefill of prompts of \(lengths) tokens, last logits vs CPU",
                  gotMixed.data, wantMixed.flatMap(\.data), tol)
            // The conv with a run of tokens per thread (m_conv_prefill_run, the default) against the thread per
            // token it replaces (m_conv_prefill), over the same batch of equal rows and the same packed prompts:
            // the same sums in the same order, and nothing after the conv that varies from run to run (the SSD
            // kernels and cuBLAS's products add in a fixed order), so logits and states must agree to the bit.
            for (label, batch) in [("\(rows) rows × 300 tokens", prompts), ("packed prompts of \(lengths) tokens", mixed)] {
                var runs: [[Float]] = []
                for plain in [false, true] {
                    gpu.plainPrefillConv = plain
                    var out = try gpu.prefill(batch, logits: .last)!.data
                    for r in batch.indices {
                        let st = try gpu.downloadState(row: r)
                        out += st.conv.flatMap { $0 } + st.ssm.flatMap { $0 }
                    }
                    runs.append(out)
                }
                gpu.plainPrefillConv = false
                check("model random \(precision.rawValue): prefill conv, a run of tokens per thread vs a thread per token, \(label): "
                      + "last logits and states bit for bit", runs[0], runs[1], 0)
            }
            _ = try gpu.prefill(mixed, logits: .none)  // the packed prompts' states again, for the steps below
            var gotMixedSteps: [Float] = [], wantMixedSteps: [Float] = []
            for _ in 0..<4 {
                let tokens = mixed.map { _ in Int(rng.next() % 1000) }
                try gpu.logits1.fill(bitPattern: Float.nan.bitPattern)
                gotMixedSteps += try gpu.step(tokens).data
                wantMixedSteps += try cpu.step(tokens, states: &mixedStates).data
            }
            check("model random \(precision.rawValue): 4 decode steps of the \(lengths.count) packed prompts vs CPU", gotMixedSteps, wantMixedSteps, tol)
            // 3. The streaming decode (bf16, 1–16 rows; by default 2–8 for layers up to 30 MB) against the plain path it replaces, at
            //    1, 4, 9 (two n-tiles, the second partial) and 16 rows. Both round the products' inputs to bf16, in other
            //    places (the streaming path before the norm's scale), so the bound is the bf16 one above.
            if precision == .bf16 {
                func decodeRuns(rows n: Int, steps: Int, settings: [() -> Void]) throws -> [[Float]] {
                    try Self.decodeRuns(gpu, rows: n, steps: steps, settings: settings, rng: &rng)
                }
                for n in [1, 4, 9, 16] {
                    let runs = try decodeRuns(rows: n, steps: 4, settings: [{ gpu.decodePath = .plain }, { gpu.decodePath = .streaming }])
                    let name = "model random bf16: streaming decode vs the plain path, \(n) rows × 4 steps"
                    if gpu.streams(rows: n) { check(name, runs[1], runs[0], tol) } else {  // still .streaming here
                        checks.append(.notTaken(name, path: "streaming path"))
                    }
                }
                // Decode on cuBLAS with the gated norm handed over (the SSD step writes y·silu(z)·w in bf16 and its
                // sums of squares; the next norm scales out_proj's product) against the gated norm's own kernel, at
                // 6 and 16 rows: bf16 rounds before the norm's scale instead of after, as on the streaming path, so
                // the same bf16 bound. With a bf16 state the step runs through the ring, which hands over a sum of
                // squares a warp (`ssqPerWarp`), and the norm sums 4 slots an item.
                for (n, state) in [(6, CUDAModel.StateType.f32), (CUDAModel.gateHandOverRows, .f32), (CUDAModel.gateHandOverRows, .bf16)] {
                    gpu.decodePath = .plain
                    gpu.stateType = state
                    let runs = try decodeRuns(rows: n, steps: 4, settings: [{ gpu.gateHandOverAllowed = false }, { gpu.gateHandOverAllowed = true }])
                    let name = "model random bf16: gated norm handed over vs its kernel on cuBLAS, \(n) rows × 4 steps, \(state) state"
                    let taken = gpu.gateHandOver(rows: n) && gpu.ssqPerWarp(rows: n) == (state == .bf16)
                    if taken { check(name, runs[1], runs[0], tol) } else { checks.append(.notTaken(name, path: "gated norm hand-over")) }
                    gpu.decodePath = .automatic
                    gpu.stateType = .f32
                }
                // Decode's cuBLAS products on cuBLASLt's algorithms against cublasGemmEx's own choice, at 16 and 24 rows:
                // as tuning chose (which may be cublasGemmEx itself), and with candidates 0 and 1 forced for every
                // product, so that cuBLASLt's path is surely run (a product that did not take it fails the check);
                // at 16 rows out_proj's product (handed over to the next norm) is also forced into 2 and 4 slices of
                // its input, which that norm adds. Only the order of the float32 sums differs (other tiles, other
                // splits of k): the logits can part only where that moves a bf16 rounding of an activation by one
                // ulp, so the bound is one bf16 ulp at the logits' scale, 2^-8 (the bf16 bound above is for roundings
                // in other places, everywhere).
                let orderTol = 0x1p-8
                for n in [CUDAModel.gateHandOverRows, 24] {
                    gpu.decodePath = .plain
                    let forced: [(candidate: Int?, slices: Int?)] = [(nil, nil), (0, nil), (1, nil)]
                        + (n <= CUDAModel.gateHandOverRows ? [(0, 2), (0, 4)] : [])
                    let runs = try decodeRuns(rows: n, steps: 4, settings: [{ gpu.decodeProductTuning = false }] + forced.map { f in
                        { gpu.decodeProductTuning = true; gpu.decodeProductCandidate = f.candidate; gpu.decodeProductSliceCount = f.slices }
                    })
                    for (k, f) in forced.enumerated() {
                        gpu.decodeProductCandidate = f.candidate
                        gpu.decodeProductSliceCount = f.slices
                        try gpu.tuneDecodeProducts(rows: n)
                        let how = f.candidate.map { "cuBLASLt candidate \($0)" + (f.slices.map { ", out_proj in \($0) slices" } ?? "") } ?? "tuned"
                        let name = "model random bf16: decode's cuBLAS products, \(how) vs cublasGemmEx's own choice, \(n) rows × 4 steps"
                        let choices = gpu.decodeProductChoices(rows: n)
                        let taken = gpu.tunesDecodeProducts(rows: n) && choices.count == 3
                            && (f.candidate == nil || choices.allSatisfy { $0.choice.candidate == f.candidate })
                            && (f.slices == nil || choices.contains { $0.name == "out_proj" && $0.choice.slices == f.slices })
                        if taken { check(name, runs[1 + k], runs[0], orderTol) } else { checks.append(.notTaken(name, path: how)) }
                    }
                    gpu.decodeProductCandidate = nil
                    gpu.decodeProductSliceCount = nil
                    gpu.decodePath = .automatic
                }
                // The persistent decode (one row as one kernel, by default at 1 row) against the plain path, on
                // the same arithmetic as the streaming path (bf16 inputs handed over before the norm's scale):
                // the same bf16 bound. Each of its two dot-product layouts is forced for every input (this
                // model's inputs are below the size where the default changes layout).
                checks += try Self.persistentLayoutChecks(gpu, label: "model random bf16", steps: 4, tolerance: tol, rng: &rng)
                // 4. A bf16 decode state against the float32 one over 1,000 tokens, the same tokens fed to both.
                //    The state is rounded once per token (2^-9 relative); its errors decay with the state as its
                //    contents do, so the logits stay within a few roundings of the float32 state's: the bf16
                //    bound above (about 8 roundings), over the whole run. 1 row on the streaming path (its SSD
                //    step hands over to out_proj), 20 rows on cuBLAS (the step writes y).
                for (n, path) in [(1, CUDAModel.DecodePath.streaming), (1, .persistent), (20, .automatic)] {
                    gpu.decodePath = path
                    let name = "model random bf16: bf16 decode state vs float32 over 1,000 tokens, \(n) rows (\(path))"
                    let taken = path == .automatic || gpu.decodePathTaken(rows: n) == path
                    guard taken else {
                        checks.append(.notTaken(name, path: "path"))
                        continue
                    }
                    let runs = try decodeRuns(rows: n, steps: 1000, settings: [{ gpu.stateType = .f32 }, { gpu.stateType = .bf16 }])
                    gpu.stateType = .f32
                    check(name, runs[1], runs[0], tol)
                }
                gpu.decodePath = .automatic
                // 5. Decode's SSD step of a bf16 state (m_ssd_step_ring_bf16: resident blocks, the states bulk-copied
                //    through a ring in shared memory) against the block-an-item step it replaces (m_ssd_step_n128),
                //    20 rows on cuBLAS (the step writes y): the same sums in the same order, so the logits and the
                //    states agree to the bit. (A float32 state has only the block-an-item step.)
                gpu.stateType = .bf16
                let ringName = "model random bf16: decode's SSD step of a bf16 state through a ring vs a block an item, 20 rows × 6 steps: "
                    + "logits and states bit for bit"
                if gpu.ssdStepRing {
                    var stepRuns: [[Float]] = []
                    let start = rng  // the same prompts and tokens for both
                    for reference in [true, false] {
                        var same = start
                        var out = try Self.decodeRuns(gpu, rows: 20, steps: 6, settings: [{ gpu.referenceSSDStep = reference }], rng: &same)[0]
                        rng = same
                        for r in 0..<20 { out += try gpu.downloadState(row: r).ssm.flatMap { $0 } }
                        stepRuns.append(out)
                    }
                    gpu.referenceSSDStep = false
                    check(ringName, stepRuns[1], stepRuns[0], 0)
                } else {
                    checks.append(.notTaken(ringName, path: "ring SSD step"))
                }
                gpu.stateType = .f32
            }
        }
        // 6. The persistent decode's general kernel (any N and P: here N = 48, P = 48, 3 layers), with the
        //    projections' biases, D per channel, the norm before the gate and an untied head, against the plain
        //    path over 6 steps of 1 row (the same bf16 bound as above: both round the products' inputs to bf16).
        var odd = Mamba2Config(dModel: 192, nLayer: 3, vocabSize: 500, dState: 48, headDim: 48, dHasHeadDim: true, projBias: true,
                               tieEmbeddings: false, normBeforeGate: true, layout: .stateSpaces)
        odd.chunkSize = 64
        // Its prefill against the CPU on the matrices rounded to bf16 as the GPU holds them: the in_proj bias added
        // to the 16-bit in_proj output, the plain SSD (P = 48) on float32 x, B, C; last logits of 3 × 50 tokens,
        // the bf16 bound (the random model's above).
        let oddRun = try Self.bf16AgainstCPU(odd, seed: seed ^ 0x0DD, device: device, rows: 3, tokens: 50, steps: 0, rng: &rng)
        let oddGPU = oddRun.gpu
        check("model random bf16 N=48 P=48, biases, D per channel, norm before gate (plain SSD): prefill 3 × 50 tokens, last logits vs CPU",
              oddRun.got, oddRun.want, Self.bf16LogitsBound)
        checks += try Self.persistentLayoutChecks(oddGPU, label: "model random bf16 N=48 P=48, biases, D per channel, norm before gate",
                                                  steps: 6, tolerance: Self.bf16LogitsBound, rng: &rng)
        // 7. Two groups with the norm before the gate on the tensor-core SSD (P = 64): prefill's gated norm then takes
        //    its 16-bit path (eight values a thread) a group at a time, with the gate after the norm. Prefill's last
        //    logits and 4 decode steps (the fused matrix-vector kernels' grouped norm) against the CPU on the
        //    matrices as held, the bf16 bound.
        var grouped = Mamba2Config(dModel: 256, nLayer: 2, vocabSize: 500, dState: 64, nGroups: 2, normBeforeGate: true,
                                   layout: .stateSpaces)
        grouped.chunkSize = 64
        let groupedRun = try Self.bf16AgainstCPU(grouped, seed: seed ^ 0x6209, device: device, rows: 3, tokens: 100, steps: 4, rng: &rng)
        check("model random bf16 G=2 N=64, norm before gate (tensor-core SSD): prefill 3 × 100 tokens and 4 decode steps, logits vs CPU",
              groupedRun.got, groupedRun.want, Self.bf16LogitsBound)
        return checks
    }

    /// A bf16 GPU model of `config` with random weights against the CPU model on its matrices as the GPU holds
    /// them (`matricesAsHeld`, so the comparison isolates the GPU's arithmetic): a prefill of `rows` random prompts
    /// of `tokens` tokens (last logits), then `steps` decode steps of random tokens, the GPU's logits poisoned with
    /// NaN before each so that nothing left unwritten can pass. The GPU model is returned for further checks.
    static func bf16AgainstCPU(_ config: Mamba2Config, seed: UInt64, device: CUDADevice, rows: Int, tokens: Int, steps: Int,
                               rng: inout SplitMix64) throws -> (gpu: CUDAModel, got: [Float], want: [Float]) {
        let cpu = try Mamba2Model(config: config, weights: Mamba2Weights.random(config, seed: seed))
        let gpu = try CUDAModel(device: device, model: cpu, precision: .bf16)
        let reference = try Mamba2Model(config: config, weights: matricesAsHeld(cpu.weights, precision: .bf16))
        let prompts = (0..<rows).map { _ in (0..<tokens).map { _ in Int(rng.next() % UInt64(config.vocabSize)) } }
        var states = prompts.map { _ in reference.newState() }
        var want = try reference.prefill(prompts, states: &states, logits: .last).flatMap(\.data)
        _ = try gpu.prefill(prompts, logits: .none)  // allocates the rows' buffers, so the logits can be poisoned
        try gpu.logits1.fill(bitPattern: Float.nan.bitPattern)
        var got = try gpu.prefill(prompts, logits: .last)!.data
        for _ in 0..<steps {
            let next = prompts.map { _ in Int(rng.next() % UInt64(config.vocabSize)) }
            try gpu.logits1.fill(bitPattern: Float.nan.bitPattern)
            got += try gpu.step(next).data
            want += try reference.step(next, states: &states).data
        }
        return (gpu, got, want)
    }

    /// The bound on bf16 logits against the CPU or another decode path: about 8 roundings to bf16 lie on the
    /// path of a logit (per layer the in_proj and out_proj inputs, the SSD's x, B, C and C·Bᵀ), each 2^-9
    /// relative: 8 · 2^-9 ≈ 1.6e-2 (see the random model's checks).
    static let bf16LogitsBound = 1.6e-2

    /// The weights with the matrices a GPU model of `precision` holds (embedding, head, in_proj, out_proj)
    /// rounded to that type and back: a CPU model on them isolates the GPU's arithmetic from the rounding.
    static func matricesAsHeld(_ weights: Mamba2Weights, precision: WeightType) -> Mamba2Weights {
        guard precision != .f32 else { return weights }
        func round(_ v: [Float]) -> [Float] { floatsFrom16Bits(roundedTo16Bits(v, bfloat: precision == .bf16), bfloat: precision == .bf16) }
        var w = weights
        w.embedding = round(w.embedding)
        w.lmHead = w.lmHead.map(round)
        for i in w.layers.indices { w.layers[i].inProj = round(w.layers[i].inProj); w.layers[i].outProj = round(w.layers[i].outProj) }
        return w
    }

    /// The persistent decode with each of its dot-product layouts forced for every input (`persistentPairsFrom`)
    /// against the plain path, 1 row over `steps` steps of the same tokens: a check per layout, failing when the
    /// persistent path is not taken. The default layout choice is restored after.
    static func persistentLayoutChecks(_ gpu: CUDAModel, label: String, steps: Int, tolerance: Double, rng: inout SplitMix64) throws -> [Check] {
        let layouts = [("dot products two rows at a time", 0), ("dot products with x̂ as row 0", Int.max)]
        let runs = try decodeRuns(gpu, rows: 1, steps: steps, settings: [{ gpu.decodePath = .plain }] + layouts.map { _, from in
            { gpu.decodePath = .persistent; gpu.persistentPairsFrom = from }
        }, rng: &rng)
        gpu.persistentPairsFrom = CUDAModel.persistentPairsInput
        return layouts.enumerated().map { i, layout in
            let name = "\(label): persistent decode (\(layout.0)) vs the plain path, 1 row × \(steps) steps"
            return gpu.persistent(rows: 1) ? Check(name: name, got: runs[1 + i], want: runs[0], tolerance: tolerance)
                : .notTaken(name, path: "persistent path")
        }
    }

    /// n rows of 40 random tokens prefilled, then `steps` random tokens a row, the logits poisoned (NaN) before
    /// each step; once per setting (a decode path, a state type), on the same tokens: the logits of each.
    static func decodeRuns(_ gpu: CUDAModel, rows n: Int, steps: Int, settings: [() -> Void], rng: inout SplitMix64) throws -> [[Float]] {
        let V = gpu.config.vocabSize
        let p = (0..<n).map { _ in (0..<40).map { _ in Int(rng.next() % UInt64(V)) } }
        let feed = (0..<steps).map { _ in (0..<n).map { _ in Int(rng.next() % UInt64(V)) } }
        return try settings.map { set in
            set()
            _ = try gpu.prefill(p, logits: .none)
            var out: [Float] = []
            out.reserveCapacity(steps * n * gpu.config.paddedVocabSize)
            for t in feed {
                try gpu.logits1.fill(bitPattern: Float.nan.bitPattern)
                out += try gpu.step(t).data
            }
            return out
        }
    }
}
