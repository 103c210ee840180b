@testable import Mamba2
import Testing

/// The tensor-parallel split (`TensorParallelPlan`) on the CPU: which rows and columns each rank holds, and
/// that the ranks' parts, run one after another with the all-reduces as sums (`TensorParallelReference`),
/// give the unsplit model's logits and state.
@Suite("Tensor-parallel split")
struct TensorParallelTests {
    /// A small random model whose per-channel parameters are all random too (norm and gate-norm weights, D,
    /// dt_bias, every bias), so that a slice taken from the wrong place shows; projections scaled up so that
    /// the SSD and the norms work on activations of order one. Drawn fresh each run.
    static func model(groups: Int, dSSM: Int? = nil, normBeforeGate: Bool = false, dPerChannel: Bool = false) throws
        -> (Mamba2Model, UInt64) {
        let c = Mamba2Config(dModel: 32, nLayer: 2, vocabSize: 61, dState: 16, expand: 2, headDim: 8, nGroups: groups,
                             chunkSize: 16, dSSM: dSSM, dHasHeadDim: dPerChannel, projBias: true, normBeforeGate: normBeforeGate)
        let seed = UInt64.random(in: 0...UInt64.max)
        let w = Mamba2Weights.randomPerChannel(c, seed: seed, inScale: 20, outScale: 10)
        return (try Mamba2Model(config: c, weights: w), seed)
    }

    // Groups that divide among the ranks (the norm local), groups that the ranks divide (G = 1 as the released
    // checkpoints, G = 2 over 4 ranks: B, C replicated, the norm's sums added across ranks), MLP channels
    // (d_ssm < d_inner), the norm before the gate, D per channel; 2 and 4 ranks (and 1).
    @Test("the ranks' parts sum to the unsplit model: prefill logits and state, decode steps, greedy tokens", arguments: [
        (1, nil, false, false), (2, nil, true, true), (4, 32, false, false), (8, nil, false, true),
    ] as [(Int, Int?, Bool, Bool)])
    func matchesUnsplit(groups: Int, dSSM: Int?, normBeforeGate: Bool, dPerChannel: Bool) throws {
        let (model, seed) = try Self.model(groups: groups, dSSM: dSSM, normBeforeGate: normBeforeGate, dPerChannel: dPerChannel)
        let c = model.config
        var rng = SplitMix64(seed: seed ^ 0x70CE)
        let tokens = (0..<37).map { _ in Int(rng.next() % UInt64(c.vocabSize)) }  // three chunks of 16, the last short
        var states = [model.newState()]
        let full = try model.prefill([tokens], states: &states)[0]
        for ranks in [1, 2, 4] where c.nHeads % ranks == 0 {
            let tp = try TensorParallelReference(model: model, ranks: ranks)
            let (logits, state) = try tp.prefill(tokens)
            let what = "G=\(groups) d_ssm=\(c.dSSM) ranks=\(ranks) (norm \(tp.plan.normSpansRanks ? "across ranks" : "local")) seed \(seed)"
            // Float32 in both; the split only reorders sums (out_proj's over d_inner in R parts, the norm's
            // squares, BLAS blocking of fewer rows): a few ulps an operation through two layers. 1e-5 relative is
            // ~100 ulps; a slice from the wrong place moves the logits by order one.
            #expect(logits.shape == full.shape)
            #expect(logits.relativeError(to: full) < 1e-5, "logits \(what)")
            for l in 0..<c.nLayer {
                let ssm = Tensor(shape: [state.ssm[l].count], data: state.ssm[l])
                #expect(ssm.relativeError(to: Tensor(shape: [states[0].ssm[l].count], data: states[0].ssm[l])) < 1e-5, "ssm state layer \(l) \(what)")
                // the conv history is in_proj's output copied: the same products of fewer rows
                let conv = Tensor(shape: [state.conv[l].count], data: state.conv[l])
                #expect(conv.relativeError(to: Tensor(shape: [states[0].conv[l].count], data: states[0].conv[l])) < 1e-6, "conv state layer \(l) \(what)")
            }
            #expect(state.tokens == states[0].tokens)
            // Then decode, one token at a time through the recurrence, from those states: the ranks' step
            // against the model's (logits of 6 steps, same bound), and greedy choices equal.
            var mine = state, theirs = states
            var worst = 0.0
            for i in 0..<6 {
                let token = Int(rng.next() % UInt64(c.vocabSize))
                let a = try tp.step(token, state: &mine), b = try model.step([token], states: &theirs)
                worst = max(worst, a.relativeError(to: b))
                if i == 5 { #expect(mine.ssm.last! != state.ssm.last!, "the step moved the state") }
            }
            // 3e-5: the model's decode runs its own GEMV kernel (another summation order than the BLAS the
            // ranks use) from states that already differ by the prefill's few ulps, over 6 steps; seen ≤ 4.1e-6
            // in 144 cases. A slice from the wrong place moves them by order one.
            #expect(worst < 3e-5, "decode logits \(what)")
            #expect(try tp.greedy(prompt: Array(tokens.prefix(9)), steps: 8) == greedyUnsplit(model, prompt: Array(tokens.prefix(9)), steps: 8),
                    "greedy \(what)")
        }
    }

    /// The unsplit model's greedy tokens (the sampler's argmax) after a prompt.
    func greedyUnsplit(_ model: Mamba2Model, prompt: [Int], steps: Int) throws -> [Int] {
        var states = [model.newState()]
        var last = try model.prefill([prompt], states: &states, logits: .last)[0].data
        var out: [Int] = []
        for _ in 0..<steps {
            out.append(TensorParallelReference.argmax(last))
            last = try model.step([out.last!], states: &states).data
        }
        return out
    }

    @Test("each rank holds its heads' rows once and the groups they read", arguments: [(1, 32), (2, 32), (4, 32), (8, nil)] as [(Int, Int?)])
    func rowsAndColumns(groups: Int, dSSM: Int?) throws {
        let c = try Self.model(groups: groups, dSSM: dSSM).0.config  // d_ssm 32: 4 heads and 32 MLP channels; else 8 heads
        for ranks in [2, 4] {
            let p = try TensorParallelPlan(config: c, ranks: ranks)
            var inRows = [Int](repeating: 0, count: c.inProjSize), conv = [Int](repeating: 0, count: c.convDim)
            var cols = [Int](repeating: 0, count: c.dInner)
            for r in 0..<ranks {
                let rows = p.inProjRows(rank: r)
                #expect(rows.count == p.localInProjSize && Set(rows).count == rows.count)
                #expect(p.convChannels(rank: r).count == p.localConvDim && p.outProjColumns(rank: r).count == p.localInner)
                for i in rows { inRows[i] += 1 }
                for i in p.convChannels(rank: r) { conv[i] += 1 }
                for i in p.outProjColumns(rank: r) { cols[i] += 1 }
                // a rank's heads read only the groups it holds
                let hpg = c.nHeads / c.nGroups
                #expect(p.heads(rank: r).allSatisfy { p.groups(rank: r).contains($0 / hpg) }, "G=\(groups) ranks=\(ranks)")
            }
            // z0, x0, z, x and dt rows: exactly one rank; B and C rows: one rank, or every rank of the group when
            // groups span ranks; out_proj's columns: one rank.
            let bc = (2 * c.dMLP + 2 * c.dSSM)..<(2 * c.dMLP + 2 * c.dSSM + 2 * c.nGroups * c.dState)
            let copies = max(ranks / c.nGroups, 1)
            for i in 0..<c.inProjSize { #expect(inRows[i] == (bc.contains(i) ? copies : 1), "in_proj row \(i) G=\(groups) ranks=\(ranks)") }
            for i in 0..<c.convDim { #expect(conv[i] == (i >= c.dSSM ? copies : 1), "conv channel \(i) G=\(groups) ranks=\(ranks)") }
            #expect(cols.allSatisfy { $0 == 1 })
            // the shard's matrices at the local sizes
            let w = Mamba2Weights.random(c, seed: 1).layers[0]
            let s = p.shard(w, rank: ranks - 1)
            #expect(s.inProj.count == p.localInProjSize * c.dModel && s.outProj.count == c.dModel * p.localInner)
            #expect(s.convWeight.count == p.localConvDim * c.dConv && s.gateNorm.count == p.localSSM && s.aLog.count == p.localHeads)
            // the rank's block as a model of its own sizes (what a GPU rank is built from): a valid config whose
            // expected shapes are exactly the shard's
            let local = p.localConfig
            try local.validate()
            #expect(local.inProjSize == p.localInProjSize && local.convDim == p.localConvDim && local.dInner == p.localInner)
            #expect(local.nHeads == p.localHeads && local.dSSM == p.localSSM && local.nGroups == p.localGroups)
            #expect(p.normGroupSize == c.dSSM / c.nGroups)
            var whole = Mamba2Weights.random(c, seed: 2)
            whole.layers = whole.layers.map { p.shard($0, rank: 0) }
            let named = Dictionary(uniqueKeysWithValues: whole.namedTensors(local).map { ($0.0, $0.1.data.count) })
            for (name, shape) in Mamba2Weights.expectedShapes(local) {
                #expect(named[name] == shape.reduce(1, *), "\(name) G=\(groups) ranks=\(ranks)")
            }
        }
    }

    @Test("a split that does not fit the model is refused, naming what does not divide")
    func refused() throws {
        let heads8 = try Self.model(groups: 1).0.config
        #expect(throws: Mamba2Error.self) { try TensorParallelPlan(config: heads8, ranks: 3) }
        #expect(messageOf { try TensorParallelPlan(config: heads8, ranks: 3) }.contains("8 heads"))
        #expect(messageOf { try TensorParallelPlan(config: heads8, ranks: 0) }.contains("1...1024"))
        // 6 heads in 3 groups over 2 ranks: neither divides the other
        let groups3 = try Self.model(groups: 3, dSSM: 48).0.config
        #expect(messageOf { try TensorParallelPlan(config: groups3, ranks: 2) }.contains("3 groups"))
        // 7 heads, 8 MLP channels over 7 ranks
        let mlp8 = try Self.model(groups: 1, dSSM: 56).0.config
        #expect(messageOf { try TensorParallelPlan(config: mlp8, ranks: 7) }.contains("8 MLP channels"))
    }

    func messageOf(_ body: () throws -> TensorParallelPlan) -> String {
        do { _ = try body(); return "no error" } catch { return "\(error)" }
    }
}
