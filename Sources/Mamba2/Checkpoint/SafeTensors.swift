import CMamba2Kernels
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A `.safetensors` file: an 8-byte little-endian header length, a JSON header naming each tensor's
/// dtype, shape and byte range, then the data. The file is mapped, and every byte range is checked
/// against the file before anything is read.
public struct SafeTensorsFile: Sendable {
    public let path: String
    public let tensors: [String: StoredTensor]
    public let metadata: [String: String]

    public init(path: String) throws {
        self.path = path
        let file = try MappedFile(path: path)
        func bad(_ reason: String, _ tensor: String? = nil) -> Mamba2Error { .checkpoint(file: path, tensor: tensor, reason: reason) }
        guard file.count >= 8, let base = file.base else { throw bad("file is \(file.count) bytes, too short for a safetensors header") }
        let rawLength = UInt64(littleEndian: base.loadUnaligned(as: UInt64.self))
        let headerLength = rawLength > UInt64(Int.max / 2) ? Int.max / 2 : Int(rawLength)
        guard headerLength <= file.count - 8 else {
            throw bad("header length \(headerLength) runs past the end of the file (\(file.count) bytes): truncated or not a safetensors file")
        }
        let header = try JSON.parse(file.bytes(8, headerLength), source: "the header of \(path)")
        guard let entries = header.objectValue else { throw bad("header is not a JSON object") }
        let dataStart = 8 + headerLength
        let dataSize = file.count - dataStart
        var tensors: [String: StoredTensor] = [:]
        var metadata: [String: String] = [:]
        for (name, entry) in entries {
            if name == "__metadata__" {
                guard let fields = entry.objectValue else { throw bad("__metadata__ is not a JSON object") }
                for (k, v) in fields { metadata[k] = v.stringValue ?? v.serialized }
                continue
            }
            guard let dtName = entry["dtype"]?.stringValue else { throw bad("entry has no dtype", name) }
            guard let dtype = DType(rawValue: dtName) else {
                throw bad("unsupported dtype \(dtName) (supported: F32, F16, BF16, I64, I32)", name)
            }
            guard let shapeJ = entry["shape"]?.arrayValue else { throw bad("entry has no shape", name) }
            let shape = shapeJ.compactMap { $0.intValue }
            guard shape.count == shapeJ.count, shape.allSatisfy({ $0 >= 0 }) else { throw bad("shape is not a list of sizes", name) }
            guard let offs = entry["data_offsets"]?.arrayValue?.compactMap({ $0.intValue }), offs.count == 2 else {
                throw bad("entry has no data_offsets [begin, end]", name)
            }
            let (begin, end) = (offs[0], offs[1])
            let (count, overflow) = shape.reduce((1, false)) { acc, d in
                let (m, o) = acc.0.multipliedReportingOverflow(by: d); return (m, acc.1 || o)
            }
            let (bytes, bytesOverflow) = count.multipliedReportingOverflow(by: dtype.byteSize)
            guard !overflow, !bytesOverflow else { throw bad("shape \(shape) is too large", name) }
            guard begin >= 0, end >= begin, end - begin == bytes else {
                throw bad("data_offsets [\(begin), \(end)] do not hold \(count) elements of \(dtName) (shape \(shape))", name)
            }
            guard end <= dataSize else {
                throw bad("data [\(begin), \(end)) runs past the end of the file's data (\(dataSize) bytes): truncated file", name)
            }
            tensors[name] = StoredTensor(name: name, dtype: dtype, shape: shape, file: file, offset: dataStart + begin)
        }
        // Tensors own disjoint byte ranges (an overlap would let one tensor's bytes be read as another's).
        let ranges = tensors.values.map { (name: $0.name, begin: $0.offset, end: $0.offset + $0.count * $0.dtype.byteSize) }
            .filter { $0.end > $0.begin }.sorted { $0.begin < $1.begin }
        for (a, b) in zip(ranges, ranges.dropFirst()) where b.begin < a.end {
            throw bad("data of \(b.name) overlaps that of \(a.name)", b.name)
        }
        self.tensors = tensors
        self.metadata = metadata
    }

    public subscript(name: String) -> StoredTensor? { tensors[name] }

    /// The tensor converted to float32, or an error naming the file and the tensor.
    public func tensor(_ name: String) throws -> Tensor {
        guard let t = tensors[name] else { throw Mamba2Error.checkpoint(file: path, tensor: name, reason: "missing") }
        return t.tensor()
    }

    /// Writes tensors as a safetensors file (float32, bfloat16 or float16 as `dtype` says), names sorted.
    /// Written to a temporary file first and renamed, so an interrupted write never leaves a half file.
    public static func write(_ tensors: [(String, Tensor)], to path: String, dtype: DType = .f32,
                             metadata: [String: String] = [:]) throws {
        guard dtype.isFloat else { throw Mamba2Error.invalidArgument("dtype", reason: "writing supports F32, BF16 and F16") }
        var header: [String: JSON] = [:]
        if !metadata.isEmpty { header["__metadata__"] = .object(metadata.mapValues { .string($0) }) }
        var offset = 0
        let sorted = tensors.sorted { $0.0 < $1.0 }
        for (name, t) in sorted {
            let bytes = t.count * dtype.byteSize
            header[name] = .object(["dtype": .string(dtype.rawValue), "shape": .array(t.shape.map { .number(Double($0)) }),
                                    "data_offsets": .array([.number(Double(offset)), .number(Double(offset + bytes))])])
            offset += bytes
        }
        var headerBytes = Array(JSON.object(header).serialized.utf8)
        while (8 + headerBytes.count) % 8 != 0 { headerBytes.append(0x20) }  // align data to 8 bytes
        var out = [UInt8]()
        out.reserveCapacity(8 + headerBytes.count + offset)
        withUnsafeBytes(of: UInt64(headerBytes.count).littleEndian) { out.append(contentsOf: $0) }
        out.append(contentsOf: headerBytes)
        for (_, t) in sorted {
            switch dtype {
            case .f32: t.data.withUnsafeBytes { out.append(contentsOf: $0) }
            default:
                let half = roundedTo16Bits(t.data, bfloat: dtype == .bf16)
                half.withUnsafeBytes { out.append(contentsOf: $0) }
            }
        }
        try writeFileAtomically(out, to: path)
    }
}

/// Writes bytes to `path` through a temporary sibling and a rename.
public func writeFileAtomically(_ bytes: [UInt8], to path: String) throws {
    let tmp = path + ".tmp-\(getpid())"
    let fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
    guard fd >= 0 else { throw Mamba2Error.io(path: path, reason: "cannot create: \(String(cString: strerror(errno)))") }
    var written = 0
    let ok: Bool = bytes.withUnsafeBytes { buf in
        while written < buf.count {
            let n = write(fd, buf.baseAddress! + written, buf.count - written)
            if n <= 0 { return false }
            written += n
        }
        return true
    }
    close(fd)
    guard ok, rename(tmp, path) == 0 else {
        unlink(tmp)
        throw Mamba2Error.io(path: path, reason: "write failed: \(String(cString: strerror(errno)))")
    }
}
