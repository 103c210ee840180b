import Mamba2
import CMamba2CUDA

/// GPUs of this process joined for collectives through NCCL (loaded at run time, as cuBLAS is): one
/// communicator per device, ranks in the order given. The door that tensor-parallel inference (a block's
/// all-reduce) and data-parallel training (the gradients') go through; `mamba2 selftest --device cuda --gpus N`
/// checks it. NCCL takes each GPU once: two `CUDADevice` objects of one GPU cannot both be ranks.
public final class CUDACommunicator: CUDARankReduction, @unchecked Sendable {
    public let devices: [CUDADevice]
    let comms: [UnsafeMutableRawPointer?]

    /// Element types of a collective (NCCL's float32, bfloat16, float16).
    public enum ElementType: Int32, Sendable { case f32 = 0, bf16 = 1, f16 = 2
        var bytes: Int { self == .f32 ? 4 : 2 }
    }

    public init(devices: [CUDADevice]) throws {
        guard !devices.isEmpty else { throw Mamba2Error.invalidArgument("gpus", reason: "no devices to join") }
        let ordinals = devices.map(\.ordinal)
        guard Set(ordinals).count == ordinals.count else {
            throw Mamba2Error.invalidArgument("gpus", reason: "GPU \(ordinals) given more than once: NCCL takes each GPU once")
        }
        var err = [CChar](repeating: 0, count: 1024)
        var handles = [UnsafeMutableRawPointer?](repeating: nil, count: devices.count)
        let o32 = ordinals.map { Int32($0) }
        guard mkc_nccl_init_all(o32, Int32(devices.count), &handles, &err, Int32(err.count)) == 0 else {
            throw Mamba2Error.invalidArgument("gpus", reason: cString(err))
        }
        self.devices = devices
        comms = handles
    }

    deinit { for c in comms { mkc_nccl_destroy(c) } }

    /// The NCCL library loaded and its version (as NCCL numbers it: 22703 for 2.27.3); nil before any communicator.
    public static var library: (path: String, version: Int)? {
        var v: Int32 = 0
        guard mkc_nccl_version(&v) == 0 else { return nil }
        return (String(cString: mkc_nccl_path()), Int(v))
    }

    /// buffers[i] ← Σ_j buffers[j] over the first `count` elements, on every device, queued on each device's
    /// stream (the devices' calls grouped, so one thread drives them all without deadlock).
    public func allReduceSum(_ buffers: [CUDABuffer], count: Int, type: ElementType = .f32) throws {
        try allReduceSum([buffers], counts: [count], type: type)
    }

    /// The same for several tensors in one NCCL group (one launch a device): sets[k][i] is rank i's buffer of
    /// tensor k, counts[k] its float32 elements.
    public func allReduceSum(_ sets: [[CUDABuffer]], counts: [Int]) throws { try allReduceSum(sets, counts: counts, type: .f32) }

    /// The same in `type`; with `side`, queued on each device's side stream (`CUDADevice.openSideStream`; the
    /// caller orders it after the values' producers with `CUDAEvent`s: data-parallel training's buckets beside the
    /// backward).
    public func allReduceSum(_ sets: [[CUDABuffer]], counts: [Int], type: ElementType, side: Bool = false) throws {
        guard sets.count == counts.count else {
            throw Mamba2Error.invalidArgument("buffers", reason: "\(sets.count) sets of buffers for \(counts.count) counts")
        }
        for (k, set) in sets.enumerated() {
            guard set.count == devices.count else {
                throw Mamba2Error.invalidArgument("buffers[\(k)]", reason: "\(set.count) buffers for \(devices.count) devices")
            }
            for (i, (b, d)) in zip(set, devices).enumerated() {
                guard b.device === d else { throw Mamba2Error.invalidArgument("buffers[\(k)][\(i)]", reason: "lies on another device than rank \(i)'s") }
                let (bytes, overflow) = counts[k].multipliedReportingOverflow(by: type.bytes)
                guard counts[k] >= 0, !overflow, bytes <= b.count * 4 else {
                    throw Mamba2Error.invalidArgument("count", reason: "\(counts[k]) elements do not fit buffers[\(k)][\(i)] (\(b.count * 4) bytes)")
                }
            }
        }
        try check(mkc_nccl_group_start(), "starting a group")
        var first: Int32 = 0
        for (set, n) in zip(sets, counts) {
            for i in devices.indices {
                let r = mkc_nccl_all_reduce_sum(devices[i].handle, comms[i], set[i].pointer, n, type.rawValue, side ? 1 : 0)
                if r != 0 && first == 0 { first = r }
            }
        }
        try check(mkc_nccl_group_end(), "ending the group")
        try check(first, "queuing an all-reduce")
    }

    func check(_ r: Int32, _ doing: String) throws {
        guard r == 0 else {
            throw Mamba2Error.invalidArgument("gpus", reason: "NCCL error \(r) \(doing): \(String(cString: mkc_nccl_error(r)))")
        }
    }
}
