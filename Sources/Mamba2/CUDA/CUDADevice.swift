import CMamba2CUDA

/// An NVIDIA GPU reached through the driver API and NVRTC loaded at run time (no CUDA build). Asking
/// for it where there is no GPU or driver throws an error that says what is missing.
public final class CUDADevice: @unchecked Sendable {
    public let name: String
    public let totalMemory: Int
    public let computeCapability: (major: Int, minor: Int)
    /// Streaming multiprocessors (132 on an H100 SXM / H200).
    public let multiprocessors: Int
    /// "sm_90" for an H100/H200: kernels are compiled for the device's own architecture.
    public var architecture: String { "sm_\(computeCapability.major)\(computeCapability.minor)" }
    /// Every module this device compiled: name, whether its CUBIN came from the on-disk cache, seconds.
    public private(set) var compileLog: [(name: String, fromCache: Bool, seconds: Double)] = []

    public init() throws {
        var err = [CChar](repeating: 0, count: 512)
        if mkc_open(&err, Int32(err.count)) != 0 { throw Mamba2Error.invalidArgument("device", reason: cString(err)) }
        var n = [CChar](repeating: 0, count: 256)
        var mem = 0, major: Int32 = 0, minor: Int32 = 0
        let r = mkc_device_info(&n, Int32(n.count), &mem, &major, &minor)
        guard r == 0 else { throw CUDADevice.error(r, "reading the device's properties") }
        name = cString(n)
        totalMemory = mem
        computeCapability = (Int(major), Int(minor))
        multiprocessors = Int(mkc_multiprocessors())
    }

    static func error(_ code: Int32, _ doing: String) -> Mamba2Error {
        .invalidArgument("device", reason: "CUDA error \(code) \(doing): \(String(cString: mkc_error_string(code)))")
    }

    /// Compiles CUDA C++ with NVRTC for this device and returns the named kernels.
    public func compile(_ source: String, name: String, kernels: [String]) throws -> [String: CUDAKernel] {
        var module: UnsafeMutableRawPointer?
        var log = [CChar](repeating: 0, count: 16384)
        var cached: Int32 = 0
        let t0 = monotonicSeconds()
        let r = mkc_compile(source, name, architecture, &module, &cached, &log, Int32(log.count))
        compileLog.append((name, cached != 0, monotonicSeconds() - t0))
        guard r == 0, let module else { throw Mamba2Error.invalidArgument("kernel \(name)", reason: "compilation failed: \(cString(log))") }
        var out: [String: CUDAKernel] = [:]
        for k in kernels {
            var f: UnsafeMutableRawPointer?
            let e = mkc_function(module, k, &f)
            guard e == 0, let f else { throw CUDADevice.error(e, "finding kernel \(k)") }
            out[k] = CUDAKernel(function: f)
        }
        return out
    }
}

/// A compiled kernel.
public struct CUDAKernel: @unchecked Sendable {
    let function: UnsafeMutableRawPointer

    /// Launches with the given grid and block and the kernel's parameters in order.
    /// `dependent`: may start before the previous kernel ends (programmatic dependent launch); only for
    /// kernels that wait for it (griddepcontrol.wait) before reading its outputs.
    public func launch(grid: (Int, Int, Int), block: (Int, Int, Int), sharedBytes: Int = 0,
                       arguments: KernelArguments, dependent: Bool = false) throws {
        var args: [UnsafeMutableRawPointer?] = arguments.storage
        let r = args.withUnsafeMutableBufferPointer { a in
            (dependent ? mkc_launch_dependent : mkc_launch)(function, UInt32(grid.0), UInt32(grid.1), UInt32(grid.2), UInt32(block.0),
                                                            UInt32(block.1), UInt32(block.2), UInt32(sharedBytes), a.baseAddress)
        }
        guard r == 0 else { throw CUDADevice.error(r, "launching a kernel") }
    }

    /// Allows `bytes` of dynamic shared memory (over the default 48 KiB).
    public func allowSharedMemory(_ bytes: Int) throws {
        let r = mkc_set_max_shared(function, Int32(bytes))
        guard r == 0 else { throw CUDADevice.error(r, "allowing \(bytes) bytes of shared memory") }
    }
}

/// Kernel parameters: each value copied into its own small allocation, as cuLaunchKernel takes them.
public final class KernelArguments {
    var storage: [UnsafeMutableRawPointer] = []
    /// Buffers passed as arguments stay allocated as long as the arguments do.
    var retained: [CUDABuffer] = []
    public init() {}
    public func add<T: BitwiseCopyable>(_ value: T) {
        let p = UnsafeMutableRawPointer.allocate(byteCount: MemoryLayout<T>.size, alignment: MemoryLayout<T>.alignment)
        p.storeBytes(of: value, as: T.self)
        storage.append(p)
    }
    public func add(_ buffer: CUDABuffer) { retained.append(buffer); add(buffer.pointer) }
    deinit { for p in storage { p.deallocate() } }
}

/// Device memory holding float32 values (`count` of them), or 16-bit values (`halves`).
public final class CUDABuffer: @unchecked Sendable {
    public private(set) var pointer: UInt64 = 0
    public let count: Int

    public init(count: Int) throws {
        self.count = count
        let r = mkc_alloc(max(count, 1) * 4, &pointer)
        guard r == 0 else { throw CUDADevice.error(r, "allocating \(count * 4) bytes") }
    }

    /// 16-bit values (bf16 or fp16 bit patterns); `count` is then the number of float32 slots the
    /// allocation spans (halves rounded up to pairs).
    public convenience init(halves: [UInt16]) throws {
        try self.init(count: (halves.count + 1) / 2)
        try upload(halves)
    }

    public convenience init(_ values: [Float]) throws {
        try self.init(count: values.count)
        try upload(values)
    }

    /// An allocation of at least `bytes` bytes (rounded up to whole float32 slots).
    public convenience init(bytes: Int) throws { try self.init(count: (bytes + 3) / 4) }

    /// Copies plain values (floats, 16-bit patterns, Int32 token ids) to the start of the buffer.
    public func upload<T: BitwiseCopyable>(_ values: [T]) throws {
        precondition(values.count * MemoryLayout<T>.stride <= count * 4)
        let r = values.withUnsafeBytes { mkc_copy_to_device(pointer, $0.baseAddress, $0.count) }
        guard r == 0 else { throw CUDADevice.error(r, "copying to the device") }
    }

    /// The first n values of a plain type.
    public func download<T: BitwiseCopyable>(_ n: Int, as: T.Type) throws -> [T] {
        var failure: Error?
        let out = [T](unsafeUninitializedCapacity: n) { buf, initialized in
            do { try download(into: buf) } catch { failure = error }
            initialized = n  // plain values: any bits copied in are values (and thrown away with the error)
        }
        if let failure { throw failure }
        return out
    }

    /// The first out.count values, into host memory the caller holds (no array made).
    public func download<T: BitwiseCopyable>(into out: UnsafeMutableBufferPointer<T>) throws {
        precondition(out.count * MemoryLayout<T>.stride <= count * 4)
        let r = mkc_copy_to_host(out.baseAddress, pointer, out.count * MemoryLayout<T>.stride)
        guard r == 0 else { throw CUDADevice.error(r, "copying from the device") }
    }

    /// The whole buffer as float32.
    public func download() throws -> [Float] { try download(count, as: Float.self) }

    /// Sets the first `words` 32-bit words to a bit pattern (asynchronously, in stream order).
    public func fill(words: Int? = nil, bitPattern: UInt32) throws {
        let r = mkc_fill32(pointer, bitPattern, words ?? count)
        guard r == 0 else { throw CUDADevice.error(r, "filling device memory") }
    }

    deinit { if pointer != 0 { _ = mkc_free(pointer) } }
}

func cString(_ chars: [CChar]) -> String {
    let bytes = chars.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }
    return String(decoding: bytes, as: UTF8.self)
}

/// A captured sequence of kernel launches, replayed with one call (a CUDA graph).
public final class CUDAGraph: @unchecked Sendable {
    let exec: UnsafeMutableRawPointer

    /// Captures what `body` launches (nothing runs while capturing).
    public init(capturing body: () throws -> Void) throws {
        var r = mkc_capture_begin()
        guard r == 0 else { throw CUDADevice.error(r, "starting a graph capture") }
        var failure: Error?
        do { try body() } catch { failure = error }
        var e: UnsafeMutableRawPointer?
        r = mkc_capture_end(&e)
        if let failure { throw failure }
        guard r == 0, let e else { throw CUDADevice.error(r, "instantiating a captured graph") }
        exec = e
    }

    public func launch() throws {
        let r = mkc_graph_launch(exec)
        guard r == 0 else { throw CUDADevice.error(r, "launching a graph") }
    }

    deinit { mkc_graph_destroy(exec) }
}

public func cudaSynchronize() throws {
    let r = mkc_synchronize()
    guard r == 0 else { throw CUDADevice.error(r, "waiting for the device") }
}
