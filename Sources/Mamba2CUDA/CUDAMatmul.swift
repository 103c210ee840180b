import Mamba2
import CMamba2CUDA

/// The three products of a linear layer y = x·Wᵀ (W (out, in) row-major, as PyTorch stores a Linear) on
/// cuBLAS, row-major on both sides, with float32 accumulation: the forward, and the backward's input and
/// weight gradients. Operands are device addresses; `ab` is the type of both matrix inputs, `c` the
/// output's (0 f32, 1 bf16). f32 inputs run pedantic (no TF32), so the f32 training mode is exact float32.
package struct CUDAMatmul {
    let device: CUDADevice
    /// The inputs' element type and the type of outputs that feed further products (0 f32, 1 bf16).
    let ab: Int32

    package init(device: CUDADevice, bf16: Bool) throws {
        try device.openBLAS()
        self.device = device
        ab = bf16 ? 1 : 0
    }

    private func call(_ what: String, _ r: Int32) throws {
        guard r == 0 else { throw Mamba2Error.invalidArgument("device", reason: "cuBLAS GEMM (\(what)) failed with status \(r)") }
    }

    private static func dims(_ v: Int...) throws -> [Int32] {
        try v.map { n in
            guard let i = Int32(exactly: n), i >= 0 else { throw Mamba2Error.invalidArgument("matrix size", reason: "\(n) does not fit cuBLAS's 32-bit sizes") }
            return i
        }
    }

    private static func ptr(_ a: UInt64) -> UnsafeRawPointer? { UnsafeRawPointer(bitPattern: UInt(a)) }

    /// Y (rows, out) = X (rows, in) · Wᵀ + beta·Y; Y float32 (outputActivation false) or the input type.
    package func forward(rows: Int, out: Int, in inF: Int, x: UInt64, w: UInt64, y: UInt64, beta: Float, outputActivation: Bool) throws {
        let d = try Self.dims(rows, out, inF)
        // column-major: Yᵀ (out, rows) = op_T(W as (in, out)) · Xᵀ (in, rows)
        try call("\(rows)×\(inF) · \(inF)×\(out)", mkc_gemm(device.handle, 1, 0, d[1], d[0], d[2], 1, Self.ptr(w), d[2], Self.ptr(x), d[2], ab, beta,
                                                         UnsafeMutableRawPointer(bitPattern: UInt(y)), d[1], outputActivation ? ab : 0, 1))
    }

    /// dX (rows, in) = dY (rows, out) · W (out, in) + beta·dX, float32 (outputActivation false) or the input type.
    package func backwardInput(rows: Int, out: Int, in inF: Int, dy: UInt64, w: UInt64, dx: UInt64, beta: Float, outputActivation: Bool = false) throws {
        let d = try Self.dims(rows, out, inF)
        // column-major: dXᵀ (in, rows) = W as (in, out) · dYᵀ (out, rows)
        try call("\(rows)×\(out) · \(out)×\(inF)", mkc_gemm(device.handle, 0, 0, d[2], d[0], d[1], 1, Self.ptr(w), d[2], Self.ptr(dy), d[1], ab, beta,
                                                         UnsafeMutableRawPointer(bitPattern: UInt(dx)), d[2], outputActivation ? ab : 0, 1))
    }

    /// dW (out, in) += dYᵀ (out, rows) · X (rows, in), float32 (beta 1: gradients accumulate).
    package func backwardWeight(rows: Int, out: Int, in inF: Int, dy: UInt64, x: UInt64, dw: UInt64, beta: Float = 1) throws {
        let d = try Self.dims(rows, out, inF)
        // column-major: dWᵀ (in, out) = Xᵀ (in, rows) · op_T(dYᵀ (out, rows))
        try call("\(out)×\(rows) · \(rows)×\(inF)", mkc_gemm(device.handle, 0, 1, d[2], d[1], d[0], 1, Self.ptr(x), d[2], Self.ptr(dy), d[1], ab, beta,
                                                         UnsafeMutableRawPointer(bitPattern: UInt(dw)), d[2], 0, 1))
    }
}
