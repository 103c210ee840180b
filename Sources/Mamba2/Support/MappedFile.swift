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
        // Non-blocking, so that a FIFO in place of a file is refused below instead of waiting for a writer.
        let fd = open(path, O_RDONLY | O_NONBLOCK)
        guard fd >= 0 else { throw Mamba2Error.io(path: path, reason: String(cString: strerror(errno))) }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw Mamba2Error.io(path: path, reason: String(cString: strerror(errno))) }
        guard (st.st_mode & S_IFMT) == S_IFREG else {
            throw Mamba2Error.io(path: path, reason: "not a regular file (\(Self.kind(st.st_mode))); a model, config or tokenizer must be one")
        }
        count = Int(st.st_size)
        if count == 0 { base = nil; return }
        let p = mmap(nil, count, PROT_READ, MAP_PRIVATE, fd, 0)
        guard let p, p != MAP_FAILED else { throw Mamba2Error.io(path: path, reason: "mmap failed: \(String(cString: strerror(errno)))") }
        base = UnsafeRawPointer(p)
    }

    deinit { if let base { munmap(UnsafeMutableRawPointer(mutating: base), count) } }

    /// Lets the kernel drop the pages of bytes [offset, offset+length) (widened to whole pages) from this
    /// process's memory: the mapping is private and never written, so a later read maps them again from the
    /// file. The loaders call it after converting a tensor, so that a checkpoint read whole does not stay
    /// resident beside the weights made from it (1.3b in bf16: 2.5 GiB of file pages on top of the model).
    public func dropPages(_ offset: Int, _ length: Int) {
        guard let base, length > 0, offset >= 0, offset < count else { return }
        let page = Int(sysconf(Int32(_SC_PAGESIZE)))
        let start = offset / page * page, end = min(count, offset + min(length, count - offset))
        _ = madvise(UnsafeMutableRawPointer(mutating: base + start), end - start, MADV_DONTNEED)
    }

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

    static func kind(_ mode: mode_t) -> String {
        switch mode & S_IFMT {
        case S_IFIFO: return "a FIFO"
        case S_IFDIR: return "a directory"
        case S_IFCHR: return "a character device"
        case S_IFSOCK: return "a socket"
        case S_IFBLK: return "a block device"
        default: return "not a file"
        }
    }

    /// Reads a text input whole: a regular file by mapping, a pipe, FIFO or terminal (`/dev/stdin`) by reading
    /// until its end; a directory or anything else is an error naming the path.
    public static func readText(_ path: String) throws -> [UInt8] {
        let fd = open(path, O_RDONLY)
        guard fd >= 0 else { throw Mamba2Error.io(path: path, reason: String(cString: strerror(errno))) }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw Mamba2Error.io(path: path, reason: String(cString: strerror(errno))) }
        switch st.st_mode & S_IFMT {
        case S_IFREG: return try readAll(path)
        case S_IFIFO, S_IFCHR, S_IFSOCK:
            var out: [UInt8] = []
            var chunk = [UInt8](repeating: 0, count: 1 << 16)
            while true {
                let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
                if n < 0 && errno == EINTR { continue }
                guard n >= 0 else { throw Mamba2Error.io(path: path, reason: String(cString: strerror(errno))) }
                if n == 0 { return out }
                out.append(contentsOf: chunk[0..<n])
            }
        default:
            throw Mamba2Error.io(path: path, reason: "not a text input (\(kind(st.st_mode)))")
        }
    }
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
