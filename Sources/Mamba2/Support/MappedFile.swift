#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A file mapped read-only into memory: weights are read in place, never copied whole first.
public final class MappedFile: @unchecked Sendable {
    public let path: String
    public let count: Int
    /// Start of the mapping (nil for an empty file).
    public let base: UnsafeRawPointer?

    public init(path: String) throws {
        self.path = path
        let fd = open(path, O_RDONLY)
        guard fd >= 0 else { throw Mamba2Error.io(path: path, reason: String(cString: strerror(errno))) }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw Mamba2Error.io(path: path, reason: String(cString: strerror(errno))) }
        guard (st.st_mode & S_IFMT) == S_IFREG else { throw Mamba2Error.io(path: path, reason: "not a regular file") }
        count = Int(st.st_size)
        if count == 0 { base = nil; return }
        let p = mmap(nil, count, PROT_READ, MAP_PRIVATE, fd, 0)
        guard let p, p != MAP_FAILED else { throw Mamba2Error.io(path: path, reason: "mmap failed: \(String(cString: strerror(errno)))") }
        base = UnsafeRawPointer(p)
    }

    deinit { if let base { munmap(UnsafeMutableRawPointer(mutating: base), count) } }

    /// Bytes [offset, offset+length) as an array; the caller has checked the range.
    public func bytes(_ offset: Int, _ length: Int) -> [UInt8] {
        guard length > 0, let base else { return [] }
        return Array(UnsafeRawBufferPointer(start: base + offset, count: length))
    }

    /// Reads a whole (small) file as bytes.
    public static func readAll(_ path: String) throws -> [UInt8] {
        let f = try MappedFile(path: path)
        return f.bytes(0, f.count)
    }

    public static func exists(_ path: String) -> Bool { access(path, F_OK) == 0 }
}

/// mkdir -p: creates the directory and its missing parents.
public func makeDirectories(_ path: String) throws {
    var current = path.hasPrefix("/") ? "" : "."
    for part in path.split(separator: "/") {
        current += "/" + part
        if mkdir(current, 0o755) != 0 && errno != EEXIST {
            throw Mamba2Error.io(path: current, reason: "cannot create directory: " + String(cString: strerror(errno)))
        }
    }
}
