/// Element types found in checkpoints.
public enum DType: String, Sendable, CaseIterable {
    case f32 = "F32", f16 = "F16", bf16 = "BF16", i64 = "I64", i32 = "I32"

    public var byteSize: Int {
        switch self { case .f32, .i32: return 4; case .f16, .bf16: return 2; case .i64: return 8 }
    }
    public var isFloat: Bool { self == .f32 || self == .f16 || self == .bf16 }
}

/// A tensor as a checkpoint stores it: dtype, shape and where its bytes lie in a mapped file.
/// Nothing is converted until `floats()` is asked for, so inspecting a checkpoint costs no copies.
public struct StoredTensor: @unchecked Sendable {
    public let name: String
    public let dtype: DType
    public let shape: [Int]
    /// The mapped file that holds the bytes (kept alive by this reference).
    public let file: MappedFile
    /// Byte offset of the first element in `file`.
    public let offset: Int
    /// Element strides (row-major contiguous for safetensors; pickles may carry others).
    public let strides: [Int]

    public var count: Int { shape.reduce(1, *) }

    public init(name: String, dtype: DType, shape: [Int], file: MappedFile, offset: Int, strides: [Int]? = nil) {
        self.name = name; self.dtype = dtype; self.shape = shape; self.file = file; self.offset = offset
        self.strides = strides ?? StoredTensor.contiguousStrides(shape)
    }

    static func contiguousStrides(_ shape: [Int]) -> [Int] {
        var s = [Int](repeating: 1, count: shape.count)
        var acc = 1
        for i in stride(from: shape.count - 1, through: 0, by: -1) { s[i] = acc; acc *= shape[i] }
        return s
    }

    var isContiguous: Bool { strides == StoredTensor.contiguousStrides(shape) }

    /// The elements as float32 (f16 and bf16 widened exactly), row-major.
    public func floats() -> [Float] {
        let n = count
        guard n > 0, let base = file.base else { return [] }
        let p = base + offset
        var out = [Float](repeating: 0, count: n)
        out.withUnsafeMutableBufferPointer { o in
            let dst = o.baseAddress!
            // Element index → storage index (handles non-contiguous pickled views).
            let contiguous = isContiguous
            func src(_ i: Int) -> Int {
                if contiguous { return i }
                var rem = i, idx = 0
                for d in stride(from: shape.count - 1, through: 0, by: -1) {
                    idx += (rem % shape[d]) * strides[d]
                    rem /= shape[d]
                }
                return idx
            }
            switch dtype {
            case .f32:
                if contiguous { memcpyFloats(dst, p, n) } else { for i in 0..<n { dst[i] = p.loadUnaligned(fromByteOffset: src(i) * 4, as: Float.self) } }
            case .bf16:
                for i in 0..<n {
                    let b = p.loadUnaligned(fromByteOffset: src(i) * 2, as: UInt16.self)
                    dst[i] = Float(bitPattern: UInt32(b) << 16)
                }
            case .f16:
                for i in 0..<n { dst[i] = halfToFloat(p.loadUnaligned(fromByteOffset: src(i) * 2, as: UInt16.self)) }
            case .i64:
                for i in 0..<n { dst[i] = Float(p.loadUnaligned(fromByteOffset: src(i) * 8, as: Int64.self)) }
            case .i32:
                for i in 0..<n { dst[i] = Float(p.loadUnaligned(fromByteOffset: src(i) * 4, as: Int32.self)) }
            }
        }
        return out
    }

    /// Drops the tensor's bytes from memory (`MappedFile.dropPages`) once they have been converted.
    public func dropPages() {
        guard count > 0 else { return }
        let span = zip(shape, strides).reduce(0) { $0 + ($1.0 - 1) * $1.1 } + 1  // the last element's index + 1
        file.dropPages(offset, span * dtype.byteSize)
    }

    /// The elements as integers (for id tensors).
    public func ints() -> [Int] {
        guard let base = file.base else { return [] }
        let p = base + offset
        switch dtype {
        case .i64: return (0..<count).map { Int(p.loadUnaligned(fromByteOffset: $0 * 8, as: Int64.self)) }
        case .i32: return (0..<count).map { Int(p.loadUnaligned(fromByteOffset: $0 * 4, as: Int32.self)) }
        default: return floats().map { Int($0) }
        }
    }

    public func tensor() -> Tensor { Tensor(shape: shape, data: floats()) }
}

@inline(__always)
func memcpyFloats(_ dst: UnsafeMutablePointer<Float>, _ src: UnsafeRawPointer, _ n: Int) {
    UnsafeMutableRawPointer(dst).copyMemory(from: src, byteCount: n * 4)
}

