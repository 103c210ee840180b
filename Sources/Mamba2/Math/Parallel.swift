#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import CMamba2Kernels

/// Work split across the machine's cores. One place decides how many threads the library uses.
public enum Parallel {
    /// The most threads the library will run (the pool counts them in 32 bits; no machine needs more).
    public static let maxThreads = 1024

    /// Threads used by the library: MAMBA2_THREADS if set (at most `maxThreads`), else every online core.
    nonisolated(unsafe) public static var threadCount: Int = {
        if let s = getenv("MAMBA2_THREADS"), let n = Int(String(cString: s)), n > 0 { return min(n, maxThreads) }
        return max(1, Int(sysconf(Int32(_SC_NPROCESSORS_ONLN))))
    }()

    /// Runs body(i) for i in 0..<count, spread over `threadCount` threads; returns when all are done.
    /// Work goes to a persistent pool of threads (CMamba2Kernels' mk_pool_run) in contiguous stripes,
    /// MK_PARTS_PER_THREAD per thread, taken as threads come free (a slower core takes fewer). Nothing is
    /// allocated per call, so the decode step can use it per token.
    @inline(__always)
    public static func forEach(_ count: Int, _ body: (Int) -> Void) {
        if count <= 0 { return }
        let threads = threadCount
        if count == 1 || threads == 1 {
            for i in 0..<count { body(i) }
            return
        }
        let stripes = min(count, threads * Int(MK_PARTS_PER_THREAD))
        // The closure is handed to the pool by address: never stored, never escaping, no allocation.
        withoutActuallyEscaping(body) { body in withUnsafePointer(to: body) { bodyPointer in
            var job = StripedJob(count: count, stripes: stripes, body: UnsafeRawPointer(bodyPointer))
            withUnsafeMutablePointer(to: &job) { ptr in
                mk_pool_run(Int32(stripes), Int32(threads), { ctx, s in
                    let job = ctx!.assumingMemoryBound(to: StripedJob.self).pointee
                    let body = job.body.assumingMemoryBound(to: ((Int) -> Void).self).pointee
                    let lo = Int(s) * job.count / job.stripes
                    let hi = (Int(s) + 1) * job.count / job.stripes
                    for i in lo..<hi { body(i) }
                }, ptr)
            }
        }}
    }
}

/// One parallel section: `count` iterations in `stripes` contiguous stripes; body points at the
/// caller's `(Int) -> Void` closure, alive for the whole section.
struct StripedJob {
    let count: Int
    let stripes: Int
    let body: UnsafeRawPointer
}


extension Parallel {
    /// Splits 0..<count into at most `threadCount` contiguous stripes and runs body(stripe, range) for
    /// each on its own thread. Lets a caller give each thread its own scratch memory (index by stripe).
    public static func forEachStripe(_ count: Int, _ body: (Int, Range<Int>) -> Void) {
        if count <= 0 { return }
        let stripes = min(count, threadCount)
        forEach(stripes) { s in body(s, (s * count / stripes)..<((s + 1) * count / stripes)) }
    }
}
