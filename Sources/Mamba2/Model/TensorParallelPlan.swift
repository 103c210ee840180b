/// Tensor parallelism of the Mamba-2 block, split as the paper does (Dao & Gu 2024, §8 "Tensor parallel"): each of
/// R ranks holds the heads [r·H/R, (r+1)·H/R) — their z, x and dt rows of in_proj, their conv channels, A, D and
/// dt_bias, their slice of the gated norm's weight and out_proj's columns — and the B, C groups those heads read.
/// A block's output is the sum of the ranks' out_proj products (one all-reduce per block); the embedding, the
/// block norms, the final norm and the head are replicated.
///
/// Groups (G) and ranks (R):
/// - G % R == 0: each rank holds G/R whole groups; the gated norm (one RMS per group of d_ssm/G channels) is
///   local to the rank, as mamba_ssm requires.
/// - R % G == 0 (the released checkpoints have G = 1): each group's heads span R/G ranks. Every one of them
///   holds the group's B and C rows of in_proj and their conv channels (2·N rows a group, few beside the
///   heads'), and the gated norm's sums of squares are added across ranks (a second all-reduce, of G floats a
///   token).
/// - anything else, or heads (or MLP channels) that do not divide by R: refused, naming the sizes.
///
/// Shapes below: H heads, P head dim, N state, G groups, d_ssm = H·P, d_mlp = d_inner − d_ssm; a rank's local
/// sizes are H/R, d_ssm/R, d_mlp/R and g groups held (G/R, or 1 when groups span ranks).
public struct TensorParallelPlan: Sendable {
    public let config: Mamba2Config
    /// R: the devices the block is split across.
    public let ranks: Int

    public init(config: Mamba2Config, ranks: Int) throws {
        try config.validate()
        let c = config
        func need(_ ok: Bool, _ field: String, _ reason: String) throws {
            if !ok { throw Mamba2Error.invalidArgument(field, reason: reason) }
        }
        try need(ranks >= 1 && ranks <= 1024, "tensor-parallel", "must be in 1...1024, got \(ranks)")
        try need(c.nHeads % ranks == 0, "tensor-parallel",
                 "the model's \(c.nHeads) heads do not divide among \(ranks) devices")
        try need(c.dMLP % ranks == 0, "tensor-parallel",
                 "the model's \(c.dMLP) MLP channels (d_inner − d_ssm) do not divide among \(ranks) devices")
        try need(c.nGroups % ranks == 0 || ranks % c.nGroups == 0, "tensor-parallel",
                 "the model's \(c.nGroups) groups (ngroups) neither divide among \(ranks) devices nor divide them")
        self.config = config
        self.ranks = ranks
    }

    /// Heads per rank (H/R).
    public var localHeads: Int { config.nHeads / ranks }
    /// SSM channels per rank (d_ssm/R).
    public var localSSM: Int { config.dSSM / ranks }
    /// MLP channels per rank (d_mlp/R).
    public var localMLP: Int { config.dMLP / ranks }
    /// Groups a rank holds: G/R, or 1 when a group's heads span ranks.
    public var localGroups: Int { max(config.nGroups / ranks, 1) }
    /// Whether a gated-norm group spans ranks (its sums of squares are then all-reduced).
    public var normSpansRanks: Bool { config.nGroups < ranks }
    /// A rank's in_proj rows: 2·d_mlp/R + 2·d_ssm/R + 2·g·N + H/R.
    public var localInProjSize: Int { 2 * localMLP + 2 * localSSM + 2 * localGroups * config.dState + localHeads }
    /// A rank's conv channels: d_ssm/R + 2·g·N.
    public var localConvDim: Int { localSSM + 2 * localGroups * config.dState }
    /// A rank's out_proj columns: d_mlp/R + d_ssm/R.
    public var localInner: Int { localMLP + localSSM }

    /// One rank's block as a model of its own sizes: H/R heads, d_ssm/R channels, the groups it holds, d_inner/R
    /// wide (the shapes of `shard`'s weights; the embedding, norms and head are the whole model's). A device runs a
    /// rank's part with its ordinary kernels at these sizes; only where the gated norm's group spans ranks
    /// (`normSpansRanks`) does its RMS need the other ranks' sums of squares (over `normGroupSize` channels).
    public var localConfig: Mamba2Config {
        var c = config
        c.dSSM = localSSM
        c.nGroups = localGroups
        c.shardInner = localInner
        return c
    }

    /// Channels of one gated-norm group in the whole model (d_ssm / G): the RMS's divisor on every rank.
    public var normGroupSize: Int { config.dSSM / config.nGroups }

    public func heads(rank r: Int) -> Range<Int> { (r * localHeads)..<((r + 1) * localHeads) }
    /// The rank's SSM channels (of d_ssm): its heads' P channels each.
    public func channels(rank r: Int) -> Range<Int> { (r * localSSM)..<((r + 1) * localSSM) }
    public func mlpChannels(rank r: Int) -> Range<Int> { (r * localMLP)..<((r + 1) * localMLP) }
    /// The groups the rank's heads read (whole groups, or the one group its heads lie in).
    public func groups(rank r: Int) -> Range<Int> {
        let first = heads(rank: r).lowerBound / (config.nHeads / config.nGroups)
        return first..<(first + localGroups)
    }

    /// The rows of in_proj rank r holds, in the global layout's order [z0 | x0 | z | x | B | C | dt], so that
    /// the rank's matrix has the block's layout at its local sizes.
    public func inProjRows(rank r: Int) -> [Int] {
        let c = config, M = c.dMLP, S = c.dSSM, GN = c.nGroups * c.dState, N = c.dState
        let mlp = mlpChannels(rank: r), ch = channels(rank: r)
        let groupRows = groups(rank: r).flatMap { g in (g * N)..<((g + 1) * N) }
        var rows: [Int] = []
        rows += mlp                                      // z0
        rows += mlp.map { M + $0 }                       // x0
        rows += ch.map { 2 * M + $0 }                    // z
        rows += ch.map { 2 * M + S + $0 }                // x
        rows += groupRows.map { 2 * M + 2 * S + $0 }     // B
        rows += groupRows.map { 2 * M + 2 * S + GN + $0 } // C
        rows += heads(rank: r).map { 2 * M + 2 * S + 2 * GN + $0 }  // dt
        return rows
    }

    /// The conv channels (of conv_dim) rank r holds: [x | B | C].
    public func convChannels(rank r: Int) -> [Int] {
        let c = config, S = c.dSSM, GN = c.nGroups * c.dState, N = c.dState
        let groupRows = groups(rank: r).flatMap { g in (g * N)..<((g + 1) * N) }
        return Array(channels(rank: r)) + groupRows.map { S + $0 } + groupRows.map { S + GN + $0 }
    }

    /// The columns of out_proj (of d_inner) rank r holds: [mlp | ssm].
    public func outProjColumns(rank r: Int) -> [Int] {
        Array(mlpChannels(rank: r)) + channels(rank: r).map { config.dMLP + $0 }
    }

    /// Rank r's part of a block's weights, at the local sizes (the block norm whole: every rank normalizes the
    /// residual it holds in full). out_proj's bias goes to rank 0 only, so that the sum adds it once.
    public func shard(_ l: Mamba2LayerWeights, rank r: Int) -> Mamba2LayerWeights {
        let c = config
        func rows(_ m: [Float], _ idx: [Int], width: Int) -> [Float] {
            var out: [Float] = []
            out.reserveCapacity(idx.count * width)
            for i in idx { out += m[(i * width)..<((i + 1) * width)] }
            return out
        }
        let inRows = inProjRows(rank: r), conv = convChannels(rank: r), cols = outProjColumns(rank: r)
        let hs = Array(heads(rank: r)), ch = Array(channels(rank: r))
        var outProj = [Float](repeating: 0, count: c.dModel * cols.count)
        for o in 0..<c.dModel { for (j, k) in cols.enumerated() { outProj[o * cols.count + j] = l.outProj[o * c.dInner + k] } }
        return Mamba2LayerWeights(
            norm: l.norm, inProj: rows(l.inProj, inRows, width: c.dModel), inProjBias: l.inProjBias.map { b in inRows.map { b[$0] } },
            convWeight: rows(l.convWeight, conv, width: c.dConv), convBias: l.convBias.map { b in conv.map { b[$0] } },
            dtBias: hs.map { l.dtBias[$0] }, aLog: hs.map { l.aLog[$0] },
            D: c.dHasHeadDim ? ch.map { l.D[$0] } : hs.map { l.D[$0] }, gateNorm: ch.map { l.gateNorm[$0] },
            outProj: outProj, outProjBias: r == 0 ? l.outProjBias : l.outProjBias.map { [Float](repeating: 0, count: $0.count) })
    }
}
