import CMamba2Kernels

/// A weight matrix (rows, cols), row-major, held once in the type the model computes with: float32, or 16-bit
/// values, or llama.cpp's Q8_0 / Q4_0 blocks (34 / 18 bytes per 32 weights of a row).
///
/// Why one copy: the model used to keep every matrix in float32 for the prefill and a second copy in the decode
/// type, so `--weights-dtype bf16` took 6 bytes a weight instead of 2 (2.7b: 16.2 GB instead of 5.4). Every path
/// now reads this one: the decode GEMV and the own prefill kernels take each type as it is, and where the BLAS
/// is the faster prefill it multiplies rows widened up to 512 at a time (`mk_gemm_widened`).
package struct HeldMatrix: Sendable {
    package let rows: Int
    package let cols: Int
    package let type: WeightType
    /// (rows, cols) float32 when `type` is .f32, else empty.
    private let f32: [Float]
    /// The 16-bit values (rows · cols) or the blocks (rows · cols / 32 blocks, as 17 or 9 UInt16s each), else empty.
    private let packed: [UInt16]

    /// Holds `values` (rows · cols, row-major) as `type`: rounded to nearest even for bf16 / f16, quantized per
    /// block of 32 for Q8_0 / Q4_0 (cols a multiple of 32: the caller checks, as the model does at load).
    package init(_ values: [Float], rows: Int, cols: Int, type: WeightType) {
        precondition(values.count == rows * cols, "HeldMatrix: \(values.count) values for \(rows) × \(cols)")
        precondition(!type.isBlockQuantized || cols % 32 == 0, "HeldMatrix: \(type.rawValue) rows must be multiples of 32 long")
        self.rows = rows; self.cols = cols; self.type = type
        switch type {
        case .f32:
            f32 = values; packed = []
        case .bf16, .f16:
            f32 = []; packed = roundedTo16Bits(values, bfloat: type == .bf16)
        case .q8_0, .q4_0:
            var out = [UInt16](repeating: 0, count: type.bytes(values.count) / 2)
            values.withUnsafeBufferPointer { vp in out.withUnsafeMutableBytes { op in
                let o = op.baseAddress!.assumingMemoryBound(to: UInt8.self)
                if type == .q8_0 { mk_quantize_q8_0(values.count / 32, 32, vp.baseAddress!, o) }
                else { mk_quantize_q4_0(values.count / 32, 32, vp.baseAddress!, o) }
            }}
            f32 = []; packed = out
        }
    }

    /// Bytes the matrix's storage takes.
    package var byteCount: Int { f32.count * 4 + packed.count * 2 }

    /// The stored bytes, as the C kernels take them with `type.code`.
    package func withUnsafeBytes<R>(_ body: (UnsafeRawPointer) throws -> R) rethrows -> R {
        if type == .f32 { return try f32.withUnsafeBytes { try body($0.baseAddress!) } }
        return try packed.withUnsafeBytes { try body($0.baseAddress!) }
    }

    /// Rows r0 ..< r0 + n widened to float32 into `out` (n · cols values).
    package func widenRows(_ r0: Int, count n: Int, into out: UnsafeMutablePointer<Float>) {
        precondition(r0 >= 0 && n >= 0 && r0 + n <= rows, "HeldMatrix: rows \(r0)..<\(r0 + n) of \(rows)")
        if type == .f32 {
            f32.withUnsafeBufferPointer { out.update(from: $0.baseAddress! + r0 * cols, count: n * cols) }
            return
        }
        withUnsafeBytes { mk_weight_rows($0, type.code, Int32(cols), r0, n, out) }
    }

    /// The whole matrix as float32 (the held values widened exactly; blocks dequantized).
    package func floats() -> [Float] {
        if type == .f32 || rows * cols == 0 { return f32 }
        return [Float](unsafeUninitializedCapacity: rows * cols) { buf, n in
            widenRows(0, count: rows, into: buf.baseAddress!)
            n = rows * cols
        }
    }
}
