/// A read-only view of the entries of a ZIP file, enough for `torch.save` archives: stored (not
/// compressed) entries, ZIP64 sizes and offsets. Entries point into the mapped file; nothing is copied.
public struct ZipArchive: Sendable {
    public struct Entry: Sendable {
        public let name: String
        /// Byte offset of the entry's data in the file.
        public let dataOffset: Int
        public let size: Int
        /// 0 = stored. Anything else is refused when read.
        public let method: Int
    }

    public let file: MappedFile
    public let entries: [String: Entry]

    public init(file: MappedFile) throws {
        self.file = file
        let path = file.path
        func bad(_ reason: String) -> Mamba2Error { .checkpoint(file: path, tensor: nil, reason: reason) }
        guard let base = file.base, file.count >= 22 else { throw bad("too short to be a ZIP archive (\(file.count) bytes)") }
        func u16(_ o: Int) -> Int { Int(UInt16(littleEndian: base.loadUnaligned(fromByteOffset: o, as: UInt16.self))) }
        func u32(_ o: Int) -> Int { Int(UInt32(littleEndian: base.loadUnaligned(fromByteOffset: o, as: UInt32.self))) }
        func u64(_ o: Int) -> Int {
            let v = UInt64(littleEndian: base.loadUnaligned(fromByteOffset: o, as: UInt64.self))
            return v > UInt64(Int.max / 8) ? Int.max / 8 : Int(v)  // capped: sums of a few such values cannot overflow
        }
        // End of central directory: the last 22+ bytes (a comment may follow it).
        var eocd = -1
        var o = file.count - 22
        let lowest = max(0, file.count - 22 - 65535)
        while o >= lowest {
            if u32(o) == 0x0605_4B50 { eocd = o; break }
            o -= 1
        }
        guard eocd >= 0 else { throw bad("no ZIP end-of-central-directory record: truncated or not a torch.save archive") }
        var count = u16(eocd + 10)
        var cdOffset = u32(eocd + 16)
        var cdSize = u32(eocd + 12)
        // ZIP64: a locator just before the EOCD points at the ZIP64 EOCD record.
        if eocd >= 20, u32(eocd - 20) == 0x0706_4B50 {
            let z = u64(eocd - 20 + 8)
            guard z + 56 <= file.count, u32(z) == 0x0606_4B50 else { throw bad("corrupt ZIP64 end-of-central-directory record") }
            count = u64(z + 32); cdSize = u64(z + 40); cdOffset = u64(z + 48)
        }
        guard cdOffset + cdSize <= file.count else { throw bad("central directory runs past the end of the file: truncated") }
        var entries: [String: Entry] = [:]
        var p = cdOffset
        for _ in 0..<count {
            guard p + 46 <= file.count, u32(p) == 0x0201_4B50 else { throw bad("corrupt central directory entry at byte \(p)") }
            let method = u16(p + 10)
            var size = u32(p + 24)
            var compressed = u32(p + 20)
            let nameLen = u16(p + 28), extraLen = u16(p + 30), commentLen = u16(p + 32)
            var local = u32(p + 42)
            guard p + 46 + nameLen + extraLen <= file.count else { throw bad("central directory entry runs past the end of the file") }
            let name = String(decoding: file.bytes(p + 46, nameLen), as: UTF8.self)
            // ZIP64 extra field: the 0xFFFFFFFF fields, in order, are replaced by 8-byte values.
            var e = p + 46 + nameLen
            let eEnd = e + extraLen
            while e + 4 <= eEnd {
                let id = u16(e), len = u16(e + 2)
                if id == 0x0001 {
                    var q = e + 4
                    if size == 0xFFFF_FFFF, q + 8 <= e + 4 + len { size = u64(q); q += 8 }
                    if compressed == 0xFFFF_FFFF, q + 8 <= e + 4 + len { compressed = u64(q); q += 8 }
                    if local == 0xFFFF_FFFF, q + 8 <= e + 4 + len { local = u64(q); q += 8 }
                }
                e += 4 + len
            }
            guard local + 30 <= file.count, u32(local) == 0x0403_4B50 else {
                throw bad("entry '\(name)': local header missing at byte \(local): truncated or corrupt")
            }
            let dataOffset = local + 30 + u16(local + 26) + u16(local + 28)
            // A stored entry's size is its data's size; the bytes read are [dataOffset, dataOffset + size).
            if method == 0, size != compressed {
                throw bad("entry '\(name)': stored, but its size (\(size)) differs from its stored size (\(compressed))")
            }
            guard dataOffset + compressed <= file.count, dataOffset + size <= file.count || method != 0 else {
                throw bad("entry '\(name)': data [\(dataOffset), \(dataOffset + max(size, compressed))) runs past the end of the file (\(file.count) bytes): truncated")
            }
            entries[name] = Entry(name: name, dataOffset: dataOffset, size: method == 0 ? size : compressed, method: method)
            p += 46 + nameLen + extraLen + commentLen
        }
        self.entries = entries
    }

    /// A ZIP archive of stored (uncompressed) entries, as torch.save writes them (no ZIP64: for small files,
    /// test inputs and fuzzing seeds).
    public static func stored(_ entries: [(name: String, data: [UInt8])]) -> [UInt8] {
        var out: [UInt8] = [], central: [UInt8] = []
        func u16(_ v: Int, _ b: inout [UInt8]) { withUnsafeBytes(of: UInt16(truncatingIfNeeded: v).littleEndian) { b += $0 } }
        func u32(_ v: Int, _ b: inout [UInt8]) { withUnsafeBytes(of: UInt32(truncatingIfNeeded: v).littleEndian) { b += $0 } }
        for (name, data) in entries {
            let offset = out.count, n = Array(name.utf8)
            u32(0x0403_4B50, &out); u16(20, &out); u16(0, &out); u16(0, &out); u16(0, &out); u16(0, &out)
            u32(0, &out); u32(data.count, &out); u32(data.count, &out); u16(n.count, &out); u16(0, &out)
            out += n + data
            u32(0x0201_4B50, &central); u16(20, &central); u16(20, &central); u16(0, &central); u16(0, &central)
            u16(0, &central); u16(0, &central); u32(0, &central); u32(data.count, &central); u32(data.count, &central)
            u16(n.count, &central); u16(0, &central); u16(0, &central); u16(0, &central); u16(0, &central)
            u32(0, &central); u32(offset, &central)
            central += n
        }
        let cdOffset = out.count
        out += central
        u32(0x0605_4B50, &out); u16(0, &out); u16(0, &out); u16(entries.count, &out); u16(entries.count, &out)
        u32(central.count, &out); u32(cdOffset, &out); u16(0, &out)
        return out
    }

    /// The bytes of a stored entry.
    public func data(_ entry: Entry) throws -> [UInt8] {
        guard entry.method == 0 else {
            throw Mamba2Error.checkpoint(file: file.path, tensor: nil, reason: "entry '\(entry.name)' is compressed (method \(entry.method)); torch.save archives store entries uncompressed")
        }
        return file.bytes(entry.dataOffset, entry.size)
    }
}
