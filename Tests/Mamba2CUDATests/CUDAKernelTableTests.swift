import Mamba2
import Mamba2CUDA
import Mamba2TestSupport
import Testing

// What can be checked of the GPU code without a GPU (scripts/check_kernels.py compiles the table's sources
// with NVRTC; the GPU itself is checked by `mamba2 selftest --device cuda`).
@Suite("CUDA without a GPU")
struct CUDAWithoutGPUTests {
    @Test("the kernel table: unique names, every entry point defined in its source")
    func table() {
        let all = CUDAKernelTable.all
        // the model per precision; the plain SSD forward and backward; the tensor-core forward and backward per
        // element type and state size; the training step in f32 and bf16
        #expect(all.count == WeightType.floatingPoint.count + 2 + 2 * 2 * CUDAKernelTable.tensorCoreStateSizes.count + 2)
        #expect(Set(all.map(\.name)).count == all.count)
        for m in all {
            for k in m.kernels {
                #expect(m.source.contains("__global__") && m.source.range(of: " " + k + "(") != nil, "\(m.name): \(k) not defined")
            }
        }
        // Each precision's model module takes its own element type.
        #expect(CUDAKernelTable.model(.bf16).source.hasPrefix("#define ACT 1\n"))
        #expect(CUDAKernelTable.model(.f16).source.hasPrefix("#define ACT 2\n"))
    }

    @Test("the streaming decode's stages: whole 256-column steps that divide the inputs, and fit shared memory")
    func streamStages() {
        // d_model and d_ssm of the released shapes (130m … 2.7b) and rows 1–16.
        for n in [768, 1024, 1536, 2048, 2560, 3072, 4096, 5120] {
            for rows in 1...CUDAModel.streamRows {
                let columns = CUDAModel.streamColumns(rows: rows, in: n)
                #expect(columns % 256 == 0 && n % columns == 0 && columns <= 1280, "in \(n), \(rows) rows: \(columns) columns")
                guard let stages = CUDAModel.streamStages(rows: rows, in: n) else {
                    Issue.record("in \(n), \(rows) rows: no ring fits")
                    continue
                }
                #expect(CUDAModel.streamDepths.contains(stages) && stages >= 3, "in \(n), \(rows) rows: \(stages) stages")
                #expect(CUDAModel.streamShared(stages: stages, columns: columns, rows: rows, in: n) <= CUDAModel.streamSharedLimit)
            }
        }
        // A stage of 16 rows × 1,280 columns where the inputs leave room (2.7b's in_proj at one row).
        #expect(CUDAModel.streamColumns(rows: 1, in: 2560) == 1280)
    }

    @Test("decode's default path at 2–8 rows by layer size: streaming for 130m–780m, cuBLAS for 1.3b and 2.7b")
    func decodePathBySize() {
        // As measured on the H200 (results/gpu-decode-paths.txt): a shape moving across streamLayerBytes, by a
        // change of the threshold or of what it counts, changes which path its batches decode on.
        for shape in ModelShape.allCases {
            let c = shape.config, large = shape == .b13 || shape == .b27
            #expect((CUDAModel.layerMatrixBytes(c) > CUDAModel.streamLayerBytes) == large, "\(shape.rawValue)")
            #expect(CUDAModel.plainGEMVRowsDefault(c) == (large ? 1 : CUDAModel.gemvRows), "\(shape.rawValue)")
        }
        // 2.7b's layer: in_proj (2 · 5,120 + 2 · 128 + 80 rows) and out_proj (2,560 rows), 2,560 bf16 inputs each.
        #expect(CUDAModel.layerMatrixBytes(ModelShape.b27.config) == (10_576 + 5_120) * 2_560 * 2)
    }

    @Test("the Hopper chain kernel's plan: every chunk in one range, the heads of a block divide a group's, ranges' end states fit their room")
    func chainPlan() {
        for (b, nchunks, H, G) in [(32, 16, 32, 1), (4, 128, 32, 1), (1, 512, 32, 1), (1, 128, 80, 1), (3, 63, 8, 1), (2, 3, 4, 2),
                                   (1, 1, 24, 1), (7, 2, 6, 3), (1, 8192, 80, 1)] {
            let plan = CUDATensorCoreSSD.chainPlan(rows: b, chunks: nchunks, heads: H, groups: G, multiprocessors: 132)
            #expect((H / G) % plan.heads == 0 && plan.heads <= CUDATensorCoreSSD.chainHeadsMax)
            // the ranges cover the chunks, none empty
            #expect(plan.ranges * plan.rangeLength >= nchunks && (plan.ranges - 1) * plan.rangeLength < nchunks, "\(b) \(nchunks) \(H)")
            // several ranges' end states (float32), incoming states (16-bit) and α take the room of the 16-bit chunk states
            #expect(plan.ranges == 1 || 4 * plan.ranges <= nchunks)
        }
        // Rows × heads that fill the H200's 132 multiprocessors take one range; one long row is split so that its
        // blocks fill them: 16,384 tokens (128 chunks) of 32 heads in 4 ranges (128 blocks), 65,536 in 16.
        #expect(CUDATensorCoreSSD.chainPlan(rows: 32, chunks: 16, heads: 32, groups: 1, multiprocessors: 132) == (4, 16, 1))
        #expect(CUDATensorCoreSSD.chainPlan(rows: 4, chunks: 128, heads: 32, groups: 1, multiprocessors: 132) == (4, 32, 4))
        #expect(CUDATensorCoreSSD.chainPlan(rows: 1, chunks: 512, heads: 32, groups: 1, multiprocessors: 132) == (4, 32, 16))
    }

    // Asserts on every host: a GPU number the driver does not list is refused (with no driver, every number
    // is); where there is no driver, loading a model onto the GPU names what is missing.
    @Test("asking for a GPU that is not there is an error that names what is missing")
    func noGPU() {
        #expect(throws: (any Error).self) { try CUDADevice(ordinal: CUDADevice.count + 3) }
        guard CUDADevice.count == 0 else { return }
        do {
            _ = try LanguageModel.load(directory: fixture("tiny-hf"), device: .cuda(0))
            Issue.record("a GPU model loaded without a GPU")
        } catch {
            #expect("\(error)".contains("CUDA driver") || "\(error)".contains("NVRTC"), "\(error)")
        }
    }
}
