#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Dispatch

/// Work split across the machine's cores. One place decides how many threads the library uses.
public enum Parallel {
    /// Threads used by the library: MAMBA2_THREADS if set, else every online core.
    nonisolated(unsafe) public static var threadCount: Int = {
        if let s = getenv("MAMBA2_THREADS"), let n = Int(String(cString: s)), n > 0 { return n }
        return max(1, Int(sysconf(Int32(_SC_NPROCESSORS_ONLN))))
    }()

    /// Runs body(i) for i in 0..<count, spread over `threadCount` threads; returns when all are done.
    @inline(__always)
    public static func forEach(_ count: Int, _ body: (Int) -> Void) {
        if count <= 0 { return }
        if count == 1 || threadCount == 1 {
            for i in 0..<count { body(i) }
            return
        }
        // concurrentPerform runs iterations on Dispatch's shared pool of one thread per core.
        // With more iterations than threads we hand each thread a contiguous stripe, which keeps the
        // per-iteration overhead off small bodies.
        let stripes = min(count, threadCount)
        withoutActuallyEscaping(body) { body in
            let shared = UncheckedSendable(body)
            DispatchQueue.concurrentPerform(iterations: stripes) { s in
                let lo = s * count / stripes, hi = (s + 1) * count / stripes
                for i in lo..<hi { shared.value(i) }
            }
        }
    }
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

/// Hands a value to worker threads. Sound only where the workers touch disjoint data, which is how every
/// caller of `Parallel.forEach` uses it.
struct UncheckedSendable<T>: @unchecked Sendable {
    let value: T
    init(_ value: T) { self.value = value }
}
