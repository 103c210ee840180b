import Mamba2
import CMamba2CUDA

/// One NVIDIA GPU as one caller drives it, reached through the driver API and NVRTC loaded at run time
/// (no CUDA build): the device's primary context, and a stream, a cuBLAS handle, a workspace and compiled
/// kernels of its own. Several can exist at once, on one GPU (each with its own stream) or on several.
/// Asking for one where there is no GPU or driver throws an error that says what is missing.
public final class CUDADevice: @unchecked Sendable {
    let handle: OpaquePointer
    /// The GPU's number as the driver counts them.
    public let ordinal: Int
    public let name: String
    public let totalMemory: Int
    public let computeCapability: (major: Int, minor: Int)
    /// Streaming multiprocessors (132 on an H100 SXM / H200).
    public let multiprocessors: Int
    /// Kernels are compiled for the device's own architecture: "sm_90a" for an H100/H200 (sm_90 with the
    /// architecture-specific features, `wgmma` among them, which `hasWarpGroupProducts` gates), else "sm_XY".
    public var architecture: String {
        "sm_\(computeCapability.major)\(computeCapability.minor)" + (hasWarpGroupProducts ? "a" : "")
    }
    /// Whether kernels compiled for this device have Hopper's warp-group products (`wgmma`): compute capability 9.0
    /// exactly, since sm_90a code runs on no other architecture.
    public var hasWarpGroupProducts: Bool { computeCapability.major == 9 && computeCapability.minor == 0 }
    /// Whether the device has Hopper's (sm_90) bulk copies, mbarrier byte counts and programmatic dependent
    /// launch. The kernels built on them (the streaming products, the persistent decode) compile to empty
    /// bodies before sm_90; the host chooses them, and launches dependently, only where this holds.
    public var hasSM90Features: Bool { computeCapability.major >= 9 }
    /// Every module this device compiled: name, whether its CUBIN came from the on-disk cache, seconds.
    public private(set) var compileLog: [(name: String, fromCache: Bool, seconds: Double)] = []
    /// Bytes of `CUDABuffer`s this object holds now, and the most it has held (what a training step's peak
    /// memory is measured by; cuBLAS's workspace and the context are not counted).
    public internal(set) var allocatedBytes = 0
    public internal(set) var peakAllocatedBytes = 0
    /// Modules compiled by this device object, by source name (each compiled once per object).
    var modules: [String: UnsafeMutableRawPointer] = [:]

    /// Opens GPU `ordinal` (0: the first the driver lists).
    public init(ordinal: Int = 0) throws {
        var err = [CChar](repeating: 0, count: 512)
        guard let h = mkc_device_open(Int32(clamping: ordinal), &err, Int32(err.count)) else {
            throw Mamba2Error.invalidArgument("device", reason: cString(err))
        }
        handle = h
        self.ordinal = ordinal
        var n = [CChar](repeating: 0, count: 256)
        var mem = 0, major: Int32 = 0, minor: Int32 = 0
        let r = mkc_device_info(h, &n, Int32(n.count), &mem, &major, &minor)
        guard r == 0 else { mkc_device_close(h); throw CUDADevice.error(r, "reading the device's properties") }
        name = cString(n)
        totalMemory = mem
        computeCapability = (Int(major), Int(minor))
        multiprocessors = Int(mkc_multiprocessors(h))
    }

    deinit { mkc_device_close(handle) }

    /// GPUs 0..<n (for --gpus N), `first` standing for GPU 0 when given; an error naming how many the driver
    /// sees when n is out of range.
    public static func first(_ n: Int, reusing first: CUDADevice? = nil) throws -> [CUDADevice] {
        let present = count
        guard n >= 1, n <= present else {
            throw Mamba2Error.invalidArgument("gpus", reason: "\(n) GPUs asked for; this machine's driver sees \(present)")
        }
        return try (0..<n).map { i in if let first, first.ordinal == i { first } else { try CUDADevice(ordinal: i) } }
    }

    /// GPUs the driver sees; 0 where there is no driver.
    public static var count: Int {
        var err = [CChar](repeating: 0, count: 512)
        guard mkc_load(&err, Int32(err.count)) == 0 else { return 0 }
        var n: Int32 = 0
        return mkc_device_count(&n) == 0 ? Int(n) : 0
    }

    static func error(_ code: Int32, _ doing: String) -> Mamba2Error {
        .invalidArgument("device", reason: "CUDA error \(code) \(doing): \(String(cString: mkc_error_string(code)))")
    }

    /// Compiles CUDA C++ with NVRTC for this device and returns the named kernels.
    public func compile(_ source: String, name: String, kernels: [String]) throws -> [String: CUDAKernel] {
        var log = [CChar](repeating: 0, count: 16384)
        var cached: Int32 = 0
        let module: UnsafeMutableRawPointer
        if let m = modules[name + "\u{0}" + source] { module = m } else {
            var m: UnsafeMutableRawPointer?
            let t0 = monotonicSeconds()
            let r = mkc_compile(handle, source, name, architecture, &m, &cached, &log, Int32(log.count))
            compileLog.append((name, cached != 0, monotonicSeconds() - t0))
            guard r == 0, let m else { throw Mamba2Error.invalidArgument("kernel \(name)", reason: "compilation failed: \(cString(log))") }
            modules[name + "\u{0}" + source] = m
            module = m
        }
        var out: [String: CUDAKernel] = [:]
        for k in kernels {
            var f: UnsafeMutableRawPointer?
            let e = mkc_function(handle, module, k, &f)
            guard e == 0, let f else { throw CUDADevice.error(e, "finding kernel \(k)") }
            out[k] = CUDAKernel(device: self, function: f)
        }
        return out
    }

    /// This object's stream and cuBLAS handle as numbers (to tell two device objects apart).
    public var streamID: UInt64 { mkc_stream_id(handle) }
    public var blasID: UInt64 { mkc_blas_id(handle) }

    /// Waits until everything queued on this device's stream has run.
    public func synchronize() throws {
        let r = mkc_synchronize(handle)
        guard r == 0 else { throw CUDADevice.error(r, "waiting for the device") }
    }

    /// Free and total memory of the GPU as the driver reports it (all processes).
    public func memoryInfo() throws -> (free: Int, total: Int) {
        var free = 0, total = 0
        let r = mkc_mem_info(handle, &free, &total)
        guard r == 0 else { throw CUDADevice.error(r, "reading the memory in use") }
        return (free, total)
    }

    /// Starts the peak of `peakAllocatedBytes` again from what is held now.
    public func resetPeakMemory() { peakAllocatedBytes = allocatedBytes }

    /// Opens this device's cuBLAS handle (once).
    func openBLAS() throws {
        var err = [CChar](repeating: 0, count: 512)
        guard mkc_blas_open(handle, &err, Int32(err.count)) == 0 else { throw Mamba2Error.invalidArgument("device", reason: cString(err)) }
    }
}

/// A compiled kernel.
public struct CUDAKernel: @unchecked Sendable {
    let device: CUDADevice
    let function: UnsafeMutableRawPointer

    /// Launches with the given grid and block and the kernel's parameters in order.
    /// `dependent`: may start before the previous kernel ends (programmatic dependent launch); only for
    /// kernels that wait for it (griddepcontrol.wait) before reading its outputs. Before sm_90 (no such
    /// launch; the kernels' waits compile to nothing) it is an ordinary launch.
    public func launch(grid: (Int, Int, Int), block: (Int, Int, Int), sharedBytes: Int = 0,
                       arguments: KernelArguments, dependent: Bool = false) throws {
        var args: [UnsafeMutableRawPointer?] = arguments.storage
        let early = dependent && device.hasSM90Features
        let r = args.withUnsafeMutableBufferPointer { a in
            (early ? mkc_launch_dependent : mkc_launch)(device.handle, function, UInt32(grid.0), UInt32(grid.1), UInt32(grid.2), UInt32(block.0),
                                                            UInt32(block.1), UInt32(block.2), UInt32(sharedBytes), a.baseAddress)
        }
        guard r == 0 else { throw CUDADevice.error(r, "launching a kernel") }
    }

    /// Allows `bytes` of dynamic shared memory (over the default 48 KiB).
    /// Blocks of this kernel one multiprocessor runs at once (the occupancy calculator's answer).
    public func blocksPerMultiprocessor(threads: Int, sharedBytes: Int = 0) throws -> Int {
        var n: Int32 = 0
        let r = mkc_blocks_per_sm(device.handle, function, Int32(threads), Int32(sharedBytes), &n)
        guard r == 0 else { throw CUDADevice.error(r, "asking the occupancy of a kernel") }
        return Int(n)
    }

    public func allowSharedMemory(_ bytes: Int) throws {
        let r = mkc_set_max_shared(device.handle, function, Int32(bytes))
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
/// Freed when the last reference goes; it keeps its device open until then. A view (`view(at:count:)`)
/// is a range of another buffer, which it keeps alive and never frees.
public final class CUDABuffer: @unchecked Sendable {
    public let device: CUDADevice
    public private(set) var pointer: UInt64 = 0
    public let count: Int
    /// The buffer a view lies in (nil: this buffer owns its memory).
    let owner: CUDABuffer?

    /// `count` float32 slots of this buffer from slot `offset` (a view: no copy, no allocation).
    public func view(at offset: Int, count n: Int) -> CUDABuffer {
        precondition(offset >= 0 && n >= 0 && offset + n <= count, "view \(offset) + \(n) outside a buffer of \(count)")
        return CUDABuffer(viewOf: self, offset: offset, count: n)
    }

    /// `n` 16-bit slots from 16-bit slot `offset` (which must be even: views start on 4-byte boundaries).
    public func halfView(at offset: Int, count n: Int) -> CUDABuffer {
        precondition(offset % 2 == 0, "a 16-bit view starts at an even element")
        return view(at: offset / 2, count: (n + 1) / 2)
    }

    private init(viewOf parent: CUDABuffer, offset: Int, count n: Int) {
        device = parent.device
        owner = parent.owner ?? parent
        pointer = parent.pointer + UInt64(offset * 4)
        count = n
    }

    public init(count: Int, on device: CUDADevice) throws {
        self.device = device
        self.count = count
        owner = nil
        let (bytes, overflow) = max(count, 1).multipliedReportingOverflow(by: 4)
        guard !overflow else { throw Mamba2Error.invalidArgument("device", reason: "\(count) floats do not fit in memory") }
        let r = mkc_alloc(device.handle, bytes, &pointer)
        guard r == 0 else {
            throw Mamba2Error.invalidArgument("device", reason: "out of GPU memory: \(bytes) bytes more could not be allocated on \(device.name) (\(String(cString: mkc_error_string(r)))); lower the batch, the length or the model size")
        }
        device.allocatedBytes += bytes
        device.peakAllocatedBytes = max(device.peakAllocatedBytes, device.allocatedBytes)
    }

    /// 16-bit values (bf16 or fp16 bit patterns); `count` is then the number of float32 slots the
    /// allocation spans (halves rounded up to pairs).
    public convenience init(halves: [UInt16], on device: CUDADevice) throws {
        try self.init(count: (halves.count + 1) / 2, on: device)
        try upload(halves)
    }

    public convenience init(_ values: [Float], on device: CUDADevice) throws {
        try self.init(count: values.count, on: device)
        try upload(values)
    }

    /// An allocation of at least `bytes` bytes (rounded up to whole float32 slots).
    public convenience init(bytes: Int, on device: CUDADevice) throws { try self.init(count: (bytes + 3) / 4, on: device) }

    /// Copies plain values (floats, 16-bit patterns, Int32 token ids) to the start of the buffer.
    public func upload<T: BitwiseCopyable>(_ values: [T]) throws {
        precondition(values.count * MemoryLayout<T>.stride <= count * 4)
        let r = values.withUnsafeBytes { mkc_copy_to_device(device.handle, pointer, $0.baseAddress, $0.count) }
        guard r == 0 else { throw CUDADevice.error(r, "copying to the device") }
    }

    /// Copies values to the buffer starting at float32 slot `atFloat`.
    public func upload<T: BitwiseCopyable>(_ values: [T], atFloat offset: Int) throws {
        let bytes = values.count * MemoryLayout<T>.stride
        precondition(offset >= 0 && offset * 4 + bytes <= count * 4)
        let r = values.withUnsafeBytes { mkc_copy_to_device(device.handle, pointer + UInt64(offset * 4), $0.baseAddress, $0.count) }
        guard r == 0 else { throw CUDADevice.error(r, "copying to the device") }
    }

    /// out.count float32 values of `buffer` from slot `offset`, into host memory the caller holds.
    static func download(_ buffer: CUDABuffer, at offset: Int, into out: UnsafeMutableBufferPointer<Float>) throws {
        precondition(offset >= 0 && offset + out.count <= buffer.count)
        let r = mkc_copy_to_host(buffer.device.handle, out.baseAddress, buffer.pointer + UInt64(offset * 4), out.count * 4)
        guard r == 0 else { throw CUDADevice.error(r, "copying from the device") }
    }

    /// n 16-bit values from 16-bit slot `offset` (a bf16 state's rows).
    public func download(halves n: Int, at offset: Int) throws -> [UInt16] {
        precondition(offset >= 0 && (offset + n) * 2 <= count * 4)
        return try [UInt16](unsafeUninitializedCapacity: n) { buf, initialized in
            let r = mkc_copy_to_host(device.handle, buf.baseAddress, pointer + UInt64(offset * 2), n * 2)
            initialized = n
            guard r == 0 else { throw CUDADevice.error(r, "copying from the device") }
        }
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
        let r = mkc_copy_to_host(device.handle, out.baseAddress, pointer, out.count * MemoryLayout<T>.stride)
        guard r == 0 else { throw CUDADevice.error(r, "copying from the device") }
    }

    /// The whole buffer as float32.
    public func download() throws -> [Float] { try download(count, as: Float.self) }

    /// Sets the first `words` 32-bit words to a bit pattern (asynchronously, in stream order).
    public func fill(at offset: Int = 0, words: Int? = nil, bitPattern: UInt32) throws {
        precondition(offset >= 0 && offset + (words ?? count - offset) <= count)
        let r = mkc_fill32(device.handle, pointer + UInt64(offset * 4), bitPattern, words ?? count - offset)
        guard r == 0 else { throw CUDADevice.error(r, "filling device memory") }
    }

    /// Queues a copy of `bytes` bytes from `source` (at byte offset `from`) to this buffer (at `to`), on
    /// this buffer's device.
    public func copy(bytes: Int, from source: CUDABuffer, at from: Int = 0, to: Int = 0) throws {
        precondition(from >= 0 && to >= 0 && bytes >= 0 && from + bytes <= source.count * 4 && to + bytes <= count * 4)
        let r = mkc_copy_on_device(device.handle, pointer + UInt64(to), source.pointer + UInt64(from), bytes)
        guard r == 0 else { throw CUDADevice.error(r, "copying on the device") }
    }

    deinit {
        if owner == nil, pointer != 0 {
            _ = mkc_free(device.handle, pointer)
            device.allocatedBytes -= max(count, 1) * 4
        }
    }
}

func cString(_ chars: [CChar]) -> String {
    let bytes = chars.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }
    return String(decoding: bytes, as: UTF8.self)
}

/// A captured sequence of kernel launches, replayed with one call (a CUDA graph). Captured on several devices'
/// streams at once (the ranks of a tensor-parallel model, their NCCL calls included), it is one graph a
/// device, launched in the order given.
public final class CUDAGraph: @unchecked Sendable {
    let parts: [(device: CUDADevice, exec: UnsafeMutableRawPointer)]

    /// Captures what `body` launches on `device`'s stream (nothing runs while capturing).
    public convenience init(on device: CUDADevice, capturing body: () throws -> Void) throws {
        try self.init(on: [device], capturing: body)
    }

    /// Captures what `body` launches on each of `devices`' streams (a device given twice is captured once).
    public init(on devices: [CUDADevice], capturing body: () throws -> Void) throws {
        var unique: [CUDADevice] = []
        for d in devices where !unique.contains(where: { $0 === d }) { unique.append(d) }
        var begun: [CUDADevice] = []
        var failure: Error?
        for d in unique {
            let r = mkc_capture_begin(d.handle)
            guard r == 0 else { failure = CUDADevice.error(r, "starting a graph capture on cuda:\(d.ordinal)"); break }
            begun.append(d)
        }
        if failure == nil { do { try body() } catch { failure = error } }
        var made: [(device: CUDADevice, exec: UnsafeMutableRawPointer)] = []
        for d in begun {
            var e: UnsafeMutableRawPointer?
            let r = mkc_capture_end(d.handle, &e)  // every capture begun is ended, whatever failed
            if r == 0, let e { made.append((d, e)) } else if failure == nil {
                failure = CUDADevice.error(r, "instantiating a captured graph on cuda:\(d.ordinal)")
            }
        }
        if let failure {
            for (d, e) in made { mkc_graph_destroy(d.handle, e) }
            throw failure
        }
        parts = made
    }

    public func launch() throws {
        for (d, e) in parts {
            let r = mkc_graph_launch(d.handle, e)
            guard r == 0 else { throw CUDADevice.error(r, "launching a graph on cuda:\(d.ordinal)") }
        }
    }

    deinit { for (d, e) in parts { mkc_graph_destroy(d.handle, e) } }
}

/// A point in one of a device's two streams that the other can wait for: the main stream (compute) and the
/// side stream (collectives beside it, `CUDADevice.openSideStream`).
public final class CUDAEvent: @unchecked Sendable {
    let device: CUDADevice
    let handle: UnsafeMutableRawPointer

    public init(on device: CUDADevice) throws {
        var e: UnsafeMutableRawPointer?
        let r = mkc_event_create(device.handle, &e)
        guard r == 0, let e else { throw CUDADevice.error(r, "creating an event") }
        self.device = device
        handle = e
    }

    /// Records the event at the end of what is queued now on the main stream (`side`: on the side stream).
    public func record(side: Bool = false) throws {
        let r = mkc_event_record(device.handle, handle, side ? 1 : 0)
        guard r == 0 else { throw CUDADevice.error(r, "recording an event on the \(side ? "side" : "main") stream") }
    }

    /// Makes the main stream (`side`: the side stream) wait, before what is queued on it next, for the work
    /// before the event's last record.
    public func wait(side: Bool = false) throws {
        let r = mkc_stream_wait_event(device.handle, handle, side ? 1 : 0)
        guard r == 0 else { throw CUDADevice.error(r, "waiting for an event on the \(side ? "side" : "main") stream") }
    }

    deinit { mkc_event_destroy(device.handle, handle) }
}

extension CUDADevice {
    /// Makes the device's side stream (once): collectives queued there run beside the main stream's kernels.
    public func openSideStream() throws {
        let r = mkc_side_stream_open(handle)
        guard r == 0 else { throw CUDADevice.error(r, "creating a second stream") }
    }
}
