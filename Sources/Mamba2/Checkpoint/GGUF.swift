#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A GGUF file, llama.cpp's single-file model format (versions 2 and 3, little-endian): a header, typed
/// metadata (`general.architecture`, hyperparameters, the tokenizer), a table of tensors and their data,
/// each tensor at an aligned offset. The file is mapped, not read; every count, length, offset and size
/// in it goes through checked arithmetic and is held to what the file can contain, so a truncated or
/// hostile file is refused with an error naming the file and the field, never read past its end.
///
/// Layout (all integers little-endian):
///   "GGUF" u32 version, u64 tensor_count, u64 kv_count,
///   kv_count × (string key, u32 type, value),
///   tensor_count × (string name, u32 n_dims, n_dims × u64 ne, u32 ggml_type, u64 offset),
///   padding to `general.alignment` (default 32), then the data; a tensor's bytes start at data + offset.
/// ne[0] is the fastest-varying dimension: a (rows, cols) row-major matrix is stored as ne = [cols, rows].
public struct GGUFFile: @unchecked Sendable {
    /// A metadata value.
    public indirect enum Value: Sendable, Equatable {
        case uint(UInt64), int(Int64), float(Double), bool(Bool), string(String), array([Value])

        public var intValue: Int? {
            switch self {
            case .uint(let v): return v <= UInt64(Int.max) ? Int(v) : nil
            case .int(let v): return Int(v)
            default: return nil
            }
        }
        public var doubleValue: Double? {
            switch self {
            case .float(let v): return v
            case .uint(let v): return Double(v)
            case .int(let v): return Double(v)
            default: return nil
            }
        }
        public var stringValue: String? { if case .string(let s) = self { return s } else { return nil } }
        public var boolValue: Bool? { if case .bool(let b) = self { return b } else { return nil } }
        public var arrayValue: [Value]? { if case .array(let a) = self { return a } else { return nil } }
    }

    /// The ggml element types this reader converts. Block types hold `blockElements` values in
    /// `blockBytes` bytes: Q8_0 an fp16 scale d and 32 int8 q (value d·q); Q4_0 d and 16 bytes of 4-bit q,
    /// low nibbles the first 16 values (value d·(q − 8)); Q4_1 d, an fp16 minimum m and the same nibbles
    /// (value d·q + m).
    public enum TensorType: UInt32, Sendable, CaseIterable {
        case f32 = 0, f16 = 1, q4_0 = 2, q4_1 = 3, q8_0 = 8, bf16 = 30

        public var name: String {
            switch self {
            case .f32: return "F32"; case .f16: return "F16"; case .bf16: return "BF16"
            case .q4_0: return "Q4_0"; case .q4_1: return "Q4_1"; case .q8_0: return "Q8_0"
            }
        }
        public var blockElements: Int { switch self { case .f32, .f16, .bf16: return 1; default: return 32 } }
        public var blockBytes: Int {
            switch self {
            case .f32: return 4; case .f16, .bf16: return 2
            case .q4_0: return 18; case .q4_1: return 20; case .q8_0: return 34
            }
        }
    }

    /// One tensor of the table.
    public struct TensorInfo: Sendable {
        public let name: String
        public let type: TensorType
        /// Dimensions in GGUF order (ne[0] fastest).
        public let ne: [Int]
        /// Row-major shape, slowest first (ne reversed), as PyTorch would hold it.
        public var shape: [Int] { ne.reversed() }
        public var count: Int { ne.reduce(1, *) }
        /// Absolute byte offset in the file.
        public let offset: Int
        public let byteCount: Int
    }

    public let path: String
    public let file: MappedFile
    public let version: Int
    public let metadata: [String: Value]
    /// Tensors in file order.
    public let tensorList: [TensorInfo]
    public let tensors: [String: TensorInfo]
    public let alignment: Int

    /// The first bytes of every GGUF file.
    public static let magic: [UInt8] = Array("GGUF".utf8)

    /// Whether the file at `path` starts with the GGUF magic (false for anything unreadable).
    public static func isGGUF(path: String) -> Bool {
        guard let f = try? MappedFile(path: path), f.count >= 4 else { return false }
        return f.bytes(0, 4) == magic
    }

    public init(path: String) throws {
        try self.init(file: try MappedFile(path: path))
    }

    public init(file: MappedFile) throws {
        path = file.path
        self.file = file
        var r = Reader(file: file)
        guard file.count >= 4, file.bytes(0, 4) == Self.magic else {
            throw Mamba2Error.checkpoint(file: path, tensor: nil, reason: "not a GGUF file (its first bytes are not \"GGUF\")")
        }
        r.position = 4
        let v = try r.u32("version")
        guard v == 2 || v == 3 else {
            throw Mamba2Error.checkpoint(file: path, tensor: nil, reason: "GGUF version \(v) is not supported (2 and 3 are)")
        }
        version = Int(v)
        let tensorCount = try r.count("tensor_count", minimumBytesEach: 8 + 4 + 4 + 8)
        let kvCount = try r.count("kv_count", minimumBytesEach: 8 + 4)
        var metadata: [String: Value] = [:]
        for _ in 0..<kvCount {
            let key = try r.string("a metadata key")
            let type = try r.u32("the type of '\(key)'")
            guard metadata[key] == nil else { throw r.error("metadata key '\(key)' appears twice") }
            metadata[key] = try r.value(type: type, field: key, depth: 0)
        }
        self.metadata = metadata
        var alignment = 32
        if let a = metadata["general.alignment"] {
            guard let n = a.intValue, n > 0, n <= 1 << 20, n & (n - 1) == 0 else {
                throw r.error("general.alignment \(a) is not a power of two up to 2^20")
            }
            alignment = n
        }
        self.alignment = alignment
        struct Pending { let name: String; let type: TensorType; let ne: [Int]; let offset: Int; let bytes: Int }
        var pending: [Pending] = []
        var seen = Set<String>()
        for _ in 0..<tensorCount {
            let name = try r.string("a tensor name")
            guard !seen.contains(name) else { throw r.error("tensor '\(name)' appears twice") }
            seen.insert(name)
            let nDims = try r.u32("n_dims of '\(name)'")
            guard nDims >= 1 && nDims <= 4 else { throw r.error("tensor '\(name)' has \(nDims) dimensions (1 to 4 allowed)") }
            var ne: [Int] = []
            var elements = 1
            for d in 0..<Int(nDims) {
                let raw = try r.u64("ne[\(d)] of '\(name)'")
                guard raw >= 1 && raw <= 1 << 40 else { throw r.error("tensor '\(name)' dimension \(d) is \(raw)") }
                let (m, o) = elements.multipliedReportingOverflow(by: Int(raw))
                guard !o && m <= 1 << 40 else { throw r.error("tensor '\(name)' has more than 2^40 elements") }
                elements = m
                ne.append(Int(raw))
            }
            let rawType = try r.u32("the type of '\(name)'")
            guard let type = TensorType(rawValue: rawType) else {
                throw Mamba2Error.checkpoint(file: path, tensor: name, reason: "ggml type \(rawType) is not supported (F32, F16, BF16, Q8_0, Q4_0, Q4_1 are)")
            }
            guard ne[0] % type.blockElements == 0 else {
                throw Mamba2Error.checkpoint(file: path, tensor: name, reason: "\(type.name) needs rows that are a multiple of \(type.blockElements) values, got \(ne[0])")
            }
            let bytes = (elements / type.blockElements) * type.blockBytes  // ≤ 2^40 · 34 / 32: no overflow
            let offset = try r.u64("the offset of '\(name)'")
            guard offset <= UInt64(Int.max), Int(offset) % alignment == 0 else {
                throw Mamba2Error.checkpoint(file: path, tensor: name, reason: "offset \(offset) is not a multiple of the alignment \(alignment)")
            }
            pending.append(Pending(name: name, type: type, ne: ne, offset: Int(offset), bytes: bytes))
        }
        // The data starts at the next multiple of the alignment after the table.
        let (padded, o1) = r.position.addingReportingOverflow(alignment - 1)
        guard !o1 else { throw r.error("the tensor table ends past any file") }
        let dataStart = padded / alignment * alignment
        var list: [TensorInfo] = []
        for p in pending {
            let (start, o2) = dataStart.addingReportingOverflow(p.offset)
            let (end, o3) = start.addingReportingOverflow(p.bytes)
            guard !o2, !o3, end <= file.count else {
                throw Mamba2Error.checkpoint(file: path, tensor: p.name, reason: "its \(p.bytes) bytes at offset \(p.offset) of the data (file byte \(o2 ? Int.max : start)) lie past the end of the file (\(file.count) bytes): truncated?")
            }
            list.append(TensorInfo(name: p.name, type: p.type, ne: p.ne, offset: start, byteCount: p.bytes))
        }
        tensorList = list
        tensors = Dictionary(list.map { ($0.name, $0) }, uniquingKeysWith: { a, _ in a })
    }

    /// The tensor's values as float32, row-major in `shape` (16-bit widened exactly, blocks dequantized).
    public func floats(_ t: TensorInfo) -> [Float] {
        guard t.count > 0, let base = file.base else { return [] }
        return Self.decode(t.type, base + t.offset, count: t.count)
    }

    /// `n` values of `type` stored at `p` as float32 (n a multiple of 32 for the block types; the caller
    /// guarantees n / blockElements · blockBytes bytes are readable there).
    public static func decode(_ type: TensorType, _ p: UnsafeRawPointer, count n: Int) -> [Float] {
        var out = [Float](repeating: 0, count: n)
        out.withUnsafeMutableBufferPointer { o in
            let dst = o.baseAddress!
            switch type {
            case .f32:
                memcpy(dst, p, n * 4)
            case .f16:
                for i in 0..<n { dst[i] = halfToFloat(p.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self)) }
            case .bf16:
                for i in 0..<n { dst[i] = Float(bitPattern: UInt32(p.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self)) << 16) }
            case .q8_0:
                for b in 0..<n / 32 {
                    let block = p + b * 34
                    let d = halfToFloat(block.loadUnaligned(as: UInt16.self))
                    for j in 0..<32 { dst[b * 32 + j] = d * Float(Int8(bitPattern: block.load(fromByteOffset: 2 + j, as: UInt8.self))) }
                }
            case .q4_0, .q4_1:
                let minimum = type == .q4_1
                for b in 0..<n / 32 {
                    let block = p + b * type.blockBytes
                    let d = halfToFloat(block.loadUnaligned(as: UInt16.self))
                    let m = minimum ? halfToFloat(block.loadUnaligned(fromByteOffset: 2, as: UInt16.self)) : 0
                    let qs = block + (minimum ? 4 : 2)
                    for j in 0..<16 {
                        let byte = qs.load(fromByteOffset: j, as: UInt8.self)
                        let lo = Float(byte & 0x0F), hi = Float(byte >> 4)
                        dst[b * 32 + j] = minimum ? d * lo + m : d * (lo - 8)
                        dst[b * 32 + j + 16] = minimum ? d * hi + m : d * (hi - 8)
                    }
                }
            }
        }
        return out
    }

    /// The bytes of a GGUF (version 3) file with these metadata and tensors (their data given as stored,
    /// `ne` in GGUF order), for tests and fuzzing seeds. Integers are written as u32 or u64 (i32 or i64)
    /// by size, floats as f32; an array takes its first element's type.
    public static func encode(metadata: [(String, Value)], tensors: [(name: String, type: TensorType, ne: [Int], data: [UInt8])],
                              alignment: Int = 32) -> [UInt8] {
        var out: [UInt8] = []
        func u32(_ v: UInt32) { withUnsafeBytes(of: v.littleEndian) { out += $0 } }
        func u64(_ v: UInt64) { withUnsafeBytes(of: v.littleEndian) { out += $0 } }
        func string(_ s: String) { u64(UInt64(s.utf8.count)); out += Array(s.utf8) }
        func type(_ v: Value) -> UInt32 {
            switch v {
            case .uint(let x): return x <= UInt64(UInt32.max) ? 4 : 10
            case .int(let x): return x >= Int64(Int32.min) && x <= Int64(Int32.max) ? 5 : 11
            case .float: return 6
            case .bool: return 7
            case .string: return 8
            case .array: return 9
            }
        }
        func value(_ v: Value, as t: UInt32) {
            switch v {
            case .uint(let x): if t == 4 { u32(UInt32(truncatingIfNeeded: x)) } else { u64(x) }
            case .int(let x): if t == 5 { u32(UInt32(bitPattern: Int32(truncatingIfNeeded: x))) } else { u64(UInt64(bitPattern: x)) }
            case .float(let x): u32(Float(x).bitPattern)
            case .bool(let b): out.append(b ? 1 : 0)
            case .string(let s): string(s)
            case .array(let items):
                let et = items.first.map(type) ?? 4
                u32(et); u64(UInt64(items.count))
                for item in items { value(item, as: et) }
            }
        }
        out += magic
        u32(3); u64(UInt64(tensors.count)); u64(UInt64(metadata.count))
        for (k, v) in metadata { string(k); u32(type(v)); value(v, as: type(v)) }
        var offset = 0
        var offsets: [Int] = []
        for t in tensors {
            offsets.append(offset)
            offset = (offset + t.data.count + alignment - 1) / alignment * alignment
        }
        for (t, o) in zip(tensors, offsets) {
            string(t.name); u32(UInt32(t.ne.count))
            for d in t.ne { u64(UInt64(d)) }
            u32(t.type.rawValue); u64(UInt64(o))
        }
        while out.count % alignment != 0 { out.append(0) }
        let dataStart = out.count
        for (t, o) in zip(tensors, offsets) {
            while out.count < dataStart + o { out.append(0) }
            out += t.data
        }
        return out
    }

    /// A bounded reader over the mapped bytes: every read checks that the file holds it.
    struct Reader {
        let file: MappedFile
        var position = 0

        func error(_ reason: String) -> Mamba2Error { .checkpoint(file: file.path, tensor: nil, reason: reason) }

        var remaining: Int { file.count - position }

        mutating func take(_ n: Int, _ field: String) throws -> UnsafeRawPointer {
            guard n >= 0, n <= remaining, let base = file.base else {
                throw error("truncated: \(field) needs \(n) bytes at byte \(position), the file has \(max(remaining, 0)) left")
            }
            defer { position += n }
            return base + position
        }
        mutating func u8(_ f: String) throws -> UInt8 { try take(1, f).load(as: UInt8.self) }
        mutating func u16(_ f: String) throws -> UInt16 { UInt16(littleEndian: try take(2, f).loadUnaligned(as: UInt16.self)) }
        mutating func u32(_ f: String) throws -> UInt32 { UInt32(littleEndian: try take(4, f).loadUnaligned(as: UInt32.self)) }
        mutating func u64(_ f: String) throws -> UInt64 { UInt64(littleEndian: try take(8, f).loadUnaligned(as: UInt64.self)) }

        /// A count of items that each take at least `minimumBytesEach` bytes: more than the rest of the
        /// file could hold is refused before anything is allocated for them.
        mutating func count(_ field: String, minimumBytesEach: Int) throws -> Int {
            let n = try u64(field)
            guard n <= UInt64(remaining / minimumBytesEach) else {
                throw error("\(field) is \(n), more than the \(remaining) bytes left could hold")
            }
            return Int(n)
        }

        mutating func string(_ field: String) throws -> String {
            let n = try u64("the length of \(field)")
            guard n <= UInt64(remaining) else { throw error("truncated: \(field) is \(n) bytes long, the file has \(remaining) left") }
            let p = try take(Int(n), field)
            return String(decoding: UnsafeRawBufferPointer(start: p, count: Int(n)), as: UTF8.self)
        }

        /// A value of GGUF type `type`: 0 u8, 1 i8, 2 u16, 3 i16, 4 u32, 5 i32, 6 f32, 7 bool, 8 string,
        /// 9 array (u32 element type, u64 count, elements), 10 u64, 11 i64, 12 f64.
        mutating func value(type: UInt32, field: String, depth: Int) throws -> Value {
            switch type {
            case 0: return .uint(UInt64(try u8(field)))
            case 1: return .int(Int64(Int8(bitPattern: try u8(field))))
            case 2: return .uint(UInt64(try u16(field)))
            case 3: return .int(Int64(Int16(bitPattern: try u16(field))))
            case 4: return .uint(UInt64(try u32(field)))
            case 5: return .int(Int64(Int32(bitPattern: try u32(field))))
            case 6: return .float(Double(Float(bitPattern: try u32(field))))
            case 7:
                let b = try u8(field)
                guard b <= 1 else { throw error("'\(field)' is a bool of value \(b)") }
                return .bool(b == 1)
            case 8: return .string(try string("'\(field)'"))
            case 9:
                guard depth < 2 else { throw error("'\(field)' nests arrays more than two deep") }
                let elementType = try u32("the element type of '\(field)'")
                let sizes: [UInt32: Int] = [0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 8: 8, 9: 12, 10: 8, 11: 8, 12: 8]
                guard let least = sizes[elementType] else { throw error("'\(field)' has elements of unknown type \(elementType)") }
                let n = try count("the length of '\(field)'", minimumBytesEach: least)
                var items: [Value] = []
                items.reserveCapacity(n)
                for _ in 0..<n { items.append(try value(type: elementType, field: field, depth: depth + 1)) }
                return .array(items)
            case 10: return .uint(try u64(field))
            case 11: return .int(Int64(bitPattern: try u64(field)))
            case 12: return .float(Double(bitPattern: try u64(field)))
            default: throw error("'\(field)' has unknown value type \(type)")
            }
        }
    }
}
