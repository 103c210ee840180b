import Mamba2
/// One CUDA module the library compiles: the file name NVRTC sees, the whole source (defines included) and
/// the entry points taken from it.
public struct CUDAModuleSpec: Sendable, Equatable {
    public let name: String
    public let source: String
    public let kernels: [String]
}

/// Every CUDA module the library compiles, from one table: each call site takes its module from here, and
/// `mamba2 selftest --dump-kernels DIR` writes exactly these sources and entry points for
/// `scripts/check_kernels.py`, so what CI compiles with NVRTC is what runs.
public enum CUDAKernelTable {
    /// The model's kernels with activations in `precision` (ACT 0 f32, 1 bf16, 2 f16).
    public static func model(_ precision: WeightType) -> CUDAModuleSpec {
        CUDAModuleSpec(name: "model_\(precision.rawValue).cu",
                       source: "#define ACT \(precision.code)\n" + CUDAKernelSource.halfConversions(f16: precision == .f16) + CUDAKernelSource.dtTransform + CUDAKernelSource.model
                           + CUDAKernelSource.decodeStream + CUDAKernelSource.decodePersistent,
                       kernels: ["m_embed", "m_rmsnorm", "m_rmsnorm_rows", "m_gated_norm", "m_add_into", "m_add_bias", "m_gather_rows", "m_conv_prefill", "m_conv_prefill_run", "m_conv_prefill_run_h", "m_conv_step",
                                 "m_ssd_step", "m_ssd_step_n128", "m_ssd_step_ring_bf16", "m_gemv", "m_argmax", "m_fill_normal", "m_to_bf16",
                                 "m_decode_persistent", "m_decode_persistent_n128"]
                           + CUDAModel.streamDepths.map { "m_gemv_tc\($0)" })
    }

    /// The plain float32 chunked SSD (the tensor cores' reference).
    public static let plainSSD = CUDAModuleSpec(
        name: "ssd_chunked.cu",
        source: CUDAKernelSource.dtTransform + CUDAKernelSource.ssdChunked + "\n#define SQ_ELEM float\n#define SQ_F(v) (v)\n#define SQ_CUM double\n" + CUDAKernelSource.ssdSequenceStates,
        kernels: ["ssd_chunk_state", "ssd_state_passing", "ssd_bmm", "ssd_chunk_scan", "ssd_sequence_states"])

    /// The plain float32 SSD backward (the tensor-core backward's reference); runs after `plainSSD`.
    public static let plainSSDBackward = CUDAModuleSpec(
        name: "ssd_backward.cu", source: CUDAKernelSource.dtTransform + CUDAKernelSource.ssdBackward,
        kernels: ["ssd_bwd_gate", "ssd_bwd_dstates_out", "ssd_bwd_state_passing", "ssd_bwd_chunk", "ssd_bwd_dt", "ssd_bwd_heads",
                  "ssd_bwd_groups"])

    /// The tensor-core SSD for 16-bit inputs and state size N (P = 64, chunks of 128).
    public static func tensorCoreSSD(f16: Bool, stateSize N: Int) -> CUDAModuleSpec {
        CUDAModuleSpec(name: "ssd_tc_\(f16 ? "f16" : "bf16")_\(N).cu",
                       source: "#define ELEM_F16 \(f16 ? 1 : 0)\n#define NS \(N)\n#define PH 64\n#define QC 128\n"
                           + CUDAKernelSource.halfConversions(f16: f16) + CUDAKernelSource.dtTransform + CUDAKernelSource.tensorCoreCommon + CUDAKernelSource.ssdTensorCore
                           + "\n" + CUDAKernelSource.ssdFused + "\n" + CUDAKernelSource.ssdHopper
                           + "\n#define SQ_ELEM u16\n#define SQ_F(v) to_f(v)\n#define SQ_CUM float\n" + CUDAKernelSource.ssdSequenceStates,
                       kernels: ["ssd_tc_state", "ssd_tc_passing", "ssd_tc_scan", "ssd_sequence_states"] + (N % 64 == 0 ? ["ssd_tc_fused", "ssd_wg_chain", "ssd_segment_passing", "ssd_range_states", "ssd_wg_scan"] : []))
    }

    /// The tensor-core SSD backward for 16-bit inputs and state size N (runs after `tensorCoreSSD`'s forward).
    public static func tensorCoreSSDBackward(f16: Bool, stateSize N: Int) -> CUDAModuleSpec {
        CUDAModuleSpec(name: "ssd_tc_bwd_\(f16 ? "f16" : "bf16")_\(N).cu",
                       source: "#define ELEM_F16 \(f16 ? 1 : 0)\n#define NS \(N)\n#define PH 64\n#define QC 128\n"
                           + CUDAKernelSource.halfConversions(f16: f16) + CUDAKernelSource.dtTransform + CUDAKernelSource.tensorCoreCommon
                           + CUDAKernelSource.ssdTensorCoreBackward,
                       kernels: ["ssd_tc_bwd_gate", "ssd_tc_bwd_dstates", "ssd_tc_bwd_passing", "ssd_tc_bwd_chunk", "ssd_tc_bwd_dbc",
                                 "ssd_tc_bwd_finish", "ssd_tc_bwd_heads"])
    }

    /// The training step's kernels (`CUDAKernelSource.training`): activations in float32 (f32 mode) or bf16.
    public static func training(bf16: Bool) -> CUDAModuleSpec {
        CUDAModuleSpec(name: "training_\(bf16 ? "bf16" : "f32").cu",
                       source: "#define ACT \(bf16 ? 1 : 0)\n" + CUDAKernelSource.halfConversions(f16: false) + CUDAKernelSource.training
                               + CUDAKernelSource.trainingNorms + CUDAKernelSource.trainingConv,
                       kernels: ["t_embed", "t_embed_bwd", "t_rmsnorm", "t_rmsnorm_bwd", "t_conv4", "t_conv8", "t_conv_bwd4", "t_conv_bwd8",
                                 "t_gated_norm", "t_gated_norm_bwd", "t_cross_entropy", "t_neg_exp", "t_head_grads", "t_sumsq",
                                 "t_adamw", "t_to_act", "t_fill_normal", "t_rmsnorm_rows", "t_rmsnorm_bwd_rows", "t_gated_norm_rows",
                                 "t_gated_norm_bwd_rows", "t_conv_seg4", "t_conv_seg8", "t_conv_seg_bwd4", "t_conv_seg_bwd8"])
    }

    /// State sizes the tensor-core SSD is built for.
    public static let tensorCoreStateSizes = [32, 64, 96, 128]

    /// Every variant the library can compile.
    public static var all: [CUDAModuleSpec] {
        WeightType.floatingPoint.map(model) + [plainSSD, plainSSDBackward]
            + [false, true].flatMap { f16 in tensorCoreStateSizes.map { tensorCoreSSD(f16: f16, stateSize: $0) } }
            + [false, true].flatMap { f16 in tensorCoreStateSizes.map { tensorCoreSSDBackward(f16: f16, stateSize: $0) } }
            + [false, true].map { training(bf16: $0) }
    }
}

extension CUDADevice {
    /// Compiles (or takes from the caches) a module of the table and returns its entry points.
    public func compile(_ spec: CUDAModuleSpec) throws -> [String: CUDAKernel] {
        try compile(spec.source, name: spec.name, kernels: spec.kernels)
    }
}

/// A compiled module's entry points; taking one that is missing is an error naming it (not a trap).
package struct LoadedModule {
    let name: String
    let kernels: [String: CUDAKernel]
    package func entry(_ kernel: String) throws -> CUDAKernel {
        guard let k = kernels[kernel] else { throw Mamba2Error.invalidArgument("kernel \(kernel)", reason: "not an entry point of \(name)") }
        return k
    }
}

extension CUDADevice {
    package func load(_ spec: CUDAModuleSpec) throws -> LoadedModule { LoadedModule(name: spec.name, kernels: try compile(spec)) }
}

/// The model module's kernels as typed fields: call sites name a field, never a string.
package struct ModelKernels {
    package let embed, rmsnorm, rmsnormRows, gatedNorm, addInto, addBias, gatherRows, convPrefill, convPrefillRun, convPrefillRunHalf, convStep, ssdStep, gemv, argmax, fillNormal: CUDAKernel
    /// Decode's streaming path (bf16 weights, up to 16 rows): `CUDAKernelSource.decodeStream`.
    package let ssdStepN128, ssdStepRingBF16, toBF16: CUDAKernel
    /// m_gemv_tc by ring depth.
    package let gemvTC: [Int: CUDAKernel]
    /// One row's decode as one kernel (`CUDAKernelSource.decodePersistent`).
    package let decodePersistent, decodePersistentN128: CUDAKernel
    package init(device: CUDADevice, precision: WeightType) throws {
        let m = try device.load(CUDAKernelTable.model(precision))
        embed = try m.entry("m_embed"); rmsnorm = try m.entry("m_rmsnorm"); rmsnormRows = try m.entry("m_rmsnorm_rows")
        gatedNorm = try m.entry("m_gated_norm"); addInto = try m.entry("m_add_into")
        addBias = try m.entry("m_add_bias"); gatherRows = try m.entry("m_gather_rows"); convPrefill = try m.entry("m_conv_prefill")
        convPrefillRun = try m.entry("m_conv_prefill_run"); convPrefillRunHalf = try m.entry("m_conv_prefill_run_h")
        convStep = try m.entry("m_conv_step"); ssdStep = try m.entry("m_ssd_step"); gemv = try m.entry("m_gemv")
        argmax = try m.entry("m_argmax"); fillNormal = try m.entry("m_fill_normal")
        ssdStepN128 = try m.entry("m_ssd_step_n128"); ssdStepRingBF16 = try m.entry("m_ssd_step_ring_bf16")
        toBF16 = try m.entry("m_to_bf16")
        gemvTC = try Dictionary(uniqueKeysWithValues: CUDAModel.streamDepths.map { ($0, try m.entry("m_gemv_tc\($0)")) })
        decodePersistent = try m.entry("m_decode_persistent"); decodePersistentN128 = try m.entry("m_decode_persistent_n128")
    }
}

/// The plain float32 SSD's kernels.
package struct PlainSSDKernels {
    package let chunkState, statePassing, bmm, chunkScan, sequenceStates: CUDAKernel
    package init(device: CUDADevice) throws {
        let m = try device.load(CUDAKernelTable.plainSSD)
        chunkState = try m.entry("ssd_chunk_state"); statePassing = try m.entry("ssd_state_passing"); bmm = try m.entry("ssd_bmm")
        chunkScan = try m.entry("ssd_chunk_scan"); sequenceStates = try m.entry("ssd_sequence_states")
    }
}

/// The plain float32 SSD backward's kernels.
package struct PlainSSDBackwardKernels {
    package let gate, dstatesOut, statePassing, chunk, dt, heads, groups: CUDAKernel
    package init(device: CUDADevice) throws {
        let m = try device.load(CUDAKernelTable.plainSSDBackward)
        gate = try m.entry("ssd_bwd_gate"); dstatesOut = try m.entry("ssd_bwd_dstates_out")
        statePassing = try m.entry("ssd_bwd_state_passing"); chunk = try m.entry("ssd_bwd_chunk"); dt = try m.entry("ssd_bwd_dt")
        heads = try m.entry("ssd_bwd_heads"); groups = try m.entry("ssd_bwd_groups")
    }
}

/// The tensor-core SSD's kernels.
package struct TensorCoreSSDKernels {
    package let state, passing, scan, sequenceStates: CUDAKernel
    /// The fused forward (N = 64 or 128 only; nil otherwise).
    package let fused: CUDAKernel?
    /// The chunk states with their passing (`ssd_wg_chain`, then `ssd_segment_passing` where the chunks are split into
    /// ranges) and the scan on warp-group products (`CUDAKernelSource.ssdHopper`; N = 64 or 128 on an sm_90 device,
    /// else nil).
    package let warpGroup: (chain: CUDAKernel, segmentPassing: CUDAKernel, rangeStates: CUDAKernel, scan: CUDAKernel)?
    package init(device: CUDADevice, f16: Bool, stateSize: Int) throws {
        let m = try device.load(CUDAKernelTable.tensorCoreSSD(f16: f16, stateSize: stateSize))
        state = try m.entry("ssd_tc_state"); passing = try m.entry("ssd_tc_passing"); scan = try m.entry("ssd_tc_scan")
        sequenceStates = try m.entry("ssd_sequence_states")
        fused = stateSize % 64 == 0 ? try m.entry("ssd_tc_fused") : nil
        warpGroup = stateSize % 64 == 0 && device.hasWarpGroupProducts ? (try m.entry("ssd_wg_chain"), try m.entry("ssd_segment_passing"), try m.entry("ssd_range_states"), try m.entry("ssd_wg_scan")) : nil
    }
}

/// The tensor-core SSD backward's kernels.
package struct TensorCoreSSDBackwardKernels {
    package let gate, dstates, passing, chunk, dbc, finish, heads: CUDAKernel
    package init(device: CUDADevice, f16: Bool, stateSize: Int) throws {
        let m = try device.load(CUDAKernelTable.tensorCoreSSDBackward(f16: f16, stateSize: stateSize))
        gate = try m.entry("ssd_tc_bwd_gate"); dstates = try m.entry("ssd_tc_bwd_dstates"); passing = try m.entry("ssd_tc_bwd_passing")
        chunk = try m.entry("ssd_tc_bwd_chunk"); dbc = try m.entry("ssd_tc_bwd_dbc"); finish = try m.entry("ssd_tc_bwd_finish")
        heads = try m.entry("ssd_tc_bwd_heads")
    }
}

/// The training step's kernels.
package struct TrainingKernels {
    package let embed, embedBackward, rmsnorm, rmsnormBackward, conv4, conv8, convBackward4, convBackward8, gatedNorm,
                gatedNormBackward, crossEntropy, negExp, headGradients, sumSquares, adamW, toAct, fillNormal: CUDAKernel
    /// The norms' row kernels (`CUDAKernelSource.trainingNorms`).
    package let rmsnormRows, rmsnormBackwardRows, gatedNormRows, gatedNormBackwardRows: CUDAKernel
    /// The conv's streaming kernels (`CUDAKernelSource.trainingConv`).
    package let convSegment4, convSegment8, convSegmentBackward4, convSegmentBackward8: CUDAKernel
    package init(device: CUDADevice, bf16: Bool) throws {
        let m = try device.load(CUDAKernelTable.training(bf16: bf16))
        embed = try m.entry("t_embed"); embedBackward = try m.entry("t_embed_bwd"); rmsnorm = try m.entry("t_rmsnorm")
        rmsnormBackward = try m.entry("t_rmsnorm_bwd"); conv4 = try m.entry("t_conv4"); conv8 = try m.entry("t_conv8")
        convBackward4 = try m.entry("t_conv_bwd4"); convBackward8 = try m.entry("t_conv_bwd8")
        gatedNorm = try m.entry("t_gated_norm")
        gatedNormBackward = try m.entry("t_gated_norm_bwd"); crossEntropy = try m.entry("t_cross_entropy"); negExp = try m.entry("t_neg_exp")
        headGradients = try m.entry("t_head_grads"); sumSquares = try m.entry("t_sumsq"); adamW = try m.entry("t_adamw")
        toAct = try m.entry("t_to_act"); fillNormal = try m.entry("t_fill_normal")
        rmsnormRows = try m.entry("t_rmsnorm_rows"); rmsnormBackwardRows = try m.entry("t_rmsnorm_bwd_rows")
        gatedNormRows = try m.entry("t_gated_norm_rows"); gatedNormBackwardRows = try m.entry("t_gated_norm_bwd_rows")
        convSegment4 = try m.entry("t_conv_seg4"); convSegment8 = try m.entry("t_conv_seg8")
        convSegmentBackward4 = try m.entry("t_conv_seg_bwd4"); convSegmentBackward8 = try m.entry("t_conv_seg_bwd8")
    }
}
