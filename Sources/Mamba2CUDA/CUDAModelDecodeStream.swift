import Mamba2
/// Decode's streaming path (`CUDAKernelSource.decodeStream`): bf16 weights, 1–16 rows, each weight read
/// once per step for all rows on tensor cores, norms handed over by their producers. Taken by default for
/// 2–8 rows of models up to 780m (`streamLayerBytes`) where the shape allows it (`streams(rows:)`); otherwise
/// decode runs the plain m_gemv / cuBLAS path, which stays as its reference.
extension CUDAModel {
    /// Rows the streaming kernels serve at most (two n-tiles of 8 in the products).
    package static let streamRows = 16

    /// Dynamic shared memory the streaming products may ask for (227 KB a block, less their static 9.1 KB).
    package static let streamSharedLimit = 217 * 1024 - 128

    /// Columns per stage of the streamed weights for `rows` rows of `in` inputs: the most, up to 1,280, that
    /// are a multiple of 256 (8 warps × 32), divide `in`, and leave room for 3 stages beside the staged
    /// rows. Each stage costs a wait and a barrier of every warp: stages of 16 rows × 256 columns held
    /// 2.7b's products to about 1 TB/s, × 1,280 columns reached 2.1 TB/s and the head 3.9 TB/s.
    package static func streamColumns(rows: Int, in: Int) -> Int {
        let fits = stride(from: min(1280, `in`) / 256 * 256, through: 256, by: -256).filter { `in` % $0 == 0 }
        return fits.first { streamShared(stages: 3, columns: $0, rows: rows, in: `in`) <= streamSharedLimit } ?? 256
    }

    /// A product's shared memory: `stages` stages of 16 rows × `columns` (rows 64 bytes apart beyond their
    /// length) and `rows` staged inputs of `in` (32 apart).
    package static func streamShared(stages: Int, columns: Int, rows: Int, in: Int) -> Int {
        stages * 16 * (columns * 2 + 64) + rows * (`in` + 32) * 2
    }

    /// The ring depths compiled (m_gemv_tc<depth>).
    package static let streamDepths = [2, 3, 4, 6]

    /// Stages of the ring for these rows and inputs, the deepest that fits; nil when not even 2 fit.
    package static func streamStages(rows: Int, in: Int) -> Int? {
        let columns = streamColumns(rows: rows, in: `in`)
        return streamDepths.reversed().first { streamShared(stages: $0, columns: columns, rows: rows, in: `in`) <= streamSharedLimit }
    }

    /// Whether decode of `n` rows takes the streaming path: bf16 weights (fp16's range does not hold an
    /// un-normalized residual safely), one norm group, shapes in whole stages; and by default only 2–8 rows of
    /// models whose layers' matrices are within `streamLayerBytes`, where it measured faster than the plain
    /// path (m_gemv up to 4 rows, cuBLAS beyond; for larger layers cuBLAS at every row count from 2, see
    /// `plainGEMVRows`). `decodePath` forces it on (1–16 rows) or off.
    package func streams(rows n: Int) -> Bool {
        let c = config
        let forced = decodePath == .streaming
        let rowsOK = forced ? (1...Self.streamRows).contains(n) : (2...8).contains(n) && Self.layerMatrixBytes(c) <= Self.streamLayerBytes
        return decodePath != .plain && precision == .bf16 && device.hasSM90Features && rowsOK && c.dModel % 256 == 0
            && c.dSSM % 256 == 0 && c.nGroups == 1 && c.headDim % 32 == 0 && c.dState % 32 == 0 && c.dState <= 256
            && Self.streamStages(rows: n, in: c.dModel) != nil && Self.streamStages(rows: n, in: c.dSSM) != nil
    }

    /// Bytes of one layer's matrices (in_proj and out_proj, bf16): what decode streams a layer.
    package static func layerMatrixBytes(_ c: Mamba2Config) -> Int { (c.inProjSize + c.dSSM) * c.dModel * 2 }

    /// A layer's matrices up to which decode of 2–8 rows takes the streaming products by default; larger layers
    /// take cuBLAS from 2 rows. Measured on the H200 (`bench --profile --state-dtype bf16`, one run, whole step
    /// µs, streaming / cuBLAS / m_gemv; `results/gpu-decode-paths.txt`): 2.7b (81 MB a layer) at 2, 3, 4, 8 rows
    /// 3,088 / 2,708 / 3,377, 3,198 / 2,789 / 4,487, 3,410 / 2,914 / 5,685, 4,004 / 3,260; 1.3b (52 MB)
    /// 1,787 / 1,684, 1,846 / 1,711, 1,899 / 1,754, 2,222 / 1,956; but 370m (13 MB) 949 / 1,195, 981 / 1,252,
    /// 1,011 / 1,230, 1,138 / 1,147 and 130m (5 MB) 432 / 524, 448 / 540, 458 / 532, 488 / 550. (When the rule
    /// was set, cuBLAS's path at 8 rows was slower than streaming's: its SSD step and norms have gained since.)
    /// 780m's layers (29 MB) stay on the streaming path, unmeasured against cuBLAS at these rows.
    package static let streamLayerBytes = 30_000_000

    /// `plainGEMVRows` for this shape: m_gemv up to `gemvRows` rows, or only at 1 row for layers beyond
    /// `streamLayerBytes` (their 2–8 rows take cuBLAS, measured above).
    package static func plainGEMVRowsDefault(_ c: Mamba2Config) -> Int {
        layerMatrixBytes(c) > streamLayerBytes ? 1 : gemvRows
    }

    /// Blocks of a streaming product: one per multiprocessor.
    var streamBlocks: Int { device.multiprocessors }

    /// 16-row tiles the busiest block of a product with `out` outputs takes.
    func streamTilesPerBlock(out: Int) -> Int { ((out + streamBlocks - 1) / streamBlocks + 15) / 16 }

    /// Partial sums of squares per row handed to out_proj by the SSD step (a block per 32 or 64 channels).
    var streamSlotsSSM: Int { config.nHeads * ((config.headDim + (ssdStepChannels - 1)) / ssdStepChannels) }

    /// Partial sums of squares a row the SSD step hands over to n rows' out_proj (ssqSSM): a block's, or through
    /// the ring on cuBLAS a warp's (`ssdRingWarps` an item: `ssqPerWarp`).
    package func ssqSlotsSSM(rows n: Int) -> Int { ssqPerWarp(rows: n) ? Self.ssdRingWarps * streamSlotsSSM : streamSlotsSSM }

    /// Whether the ring's SSD step hands over a partial sum of squares a warp instead of a block's: on cuBLAS
    /// (`gateHandOver`), where it measured faster on two H200s (`results/gpu-decode-gate-handover.txt`, tg128
    /// tokens/s, bf16 state, a block's / a warp's; first machine: 2.7b 4 rows 1,461 / 1,535, 16 rows 4,306 / 4,434,
    /// 1.3b 16 rows 7,076 / 7,381, 130m 16 rows 26,362 / 28,950; second, the final build: 1,453 / 1,462, 4,309 /
    /// 4,342, 7,014 / 7,052, 26,395 / 26,864), not on the streaming path, where each product block sums the slots
    /// (130m 8 rows, a warp's everywhere: 16,259 / 16,037).
    package func ssqPerWarp(rows n: Int) -> Bool { ssdStepRing && gateHandOver(rows: n) }

    /// Channels per block of the SSD step (m_ssd_step_n128 takes 64, m_ssd_step 32).
    var ssdStepChannels: Int { config.dState == 128 && config.headDim % 64 == 0 ? 64 : 32 }

    /// Partial sums of squares per row handed to in_proj and the head (out_proj's tiles; the embedding
    /// fills the first and zeros the rest).
    var streamSlotsModel: Int { streamBlocks * streamTilesPerBlock(out: config.dModel) }

    /// Y (+)= inv·W·xh + bias for `n` rows; with `conv`, the conv step of the outputs that are conv inputs;
    /// with `next`, the result handed to the next norm (its weight) through xhModel / ssqModel.
    func streamProduct(rows n: Int, in: Int, out: Int, xh: CUDABuffer, ssq: CUDABuffer, slots: Int, w: CUDABuffer, bias: CUDABuffer?,
                       y: CUDABuffer, ldy: Int, accumulate: Bool, conv: (layer: Layer, state: CUDABuffer)? = nil,
                       next: CUDABuffer? = nil) throws {
        let c = config
        guard let stages = Self.streamStages(rows: n, in: `in`) else {
            throw Mamba2Error.invalidArgument("rows", reason: "\(n) rows of \(`in`) inputs do not fit the streaming product's shared memory")
        }
        let a = KernelArguments()
        a.add(Int32(n)); a.add(Int32(`in`)); a.add(Int32(out)); a.add(xh); a.add(ssq); a.add(Int32(slots)); a.add(c.rmsNormEps)
        a.add(w); a.add(bias?.pointer ?? 0); a.add(y); a.add(Int32(ldy)); a.add(Int32(accumulate ? 1 : 0))
        a.add(Int32(c.dSSM)); a.add(Int32(c.convDim)); a.add(Int32(c.dConv)); a.add(conv?.layer.convW.pointer ?? 0)
        a.add(conv?.layer.convB?.pointer ?? 0); a.add(conv?.state.pointer ?? 0); a.add(conv == nil ? 0 : xbc1.pointer)
        a.add(next?.pointer ?? 0); a.add(next == nil ? 0 : xhModel.pointer); a.add(next == nil ? 0 : ssqModel.pointer)
        let columns = Self.streamColumns(rows: n, in: `in`)
        a.add(Int32(streamTilesPerBlock(out: out))); a.add(Int32(columns))
        try k.gemvTC[stages]!.launch(grid: (streamBlocks, 1, 1), block: (256, 1, 1),
                                     sharedBytes: Self.streamShared(stages: stages, columns: columns, rows: n, in: `in`),
                                     arguments: a, dependent: true)
    }
}
