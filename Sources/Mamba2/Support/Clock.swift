#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Monotonic time in seconds, for benchmarks and progress reports.
@inline(__always)
public func monotonicSeconds() -> Double {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return Double(ts.tv_sec) + Double(ts.tv_nsec) * 1e-9
}

/// Peak resident memory of this process in bytes (Linux: VmHWM; macOS: ru_maxrss).
public func peakResidentBytes() -> Int {
    var usage = rusage()
    #if os(Linux)
    getrusage(RUSAGE_SELF.rawValue, &usage)
    #else
    getrusage(RUSAGE_SELF, &usage)
    #endif
    #if os(Linux)
    return Int(usage.ru_maxrss) * 1024
    #else
    return Int(usage.ru_maxrss)
    #endif
}

/// Current resident memory in bytes (Linux: /proc/self/statm; elsewhere the peak).
public func currentResidentBytes() -> Int {
    #if os(Linux)
    if let f = fopen("/proc/self/statm", "r") {
        defer { fclose(f) }
        var size = 0, resident = 0
        if withUnsafeMutablePointer(to: &size, { s in withUnsafeMutablePointer(to: &resident) { r in
            fscanfTwo(f, s, r) } }) { return resident * Int(sysconf(Int32(_SC_PAGESIZE))) }
    }
    #endif
    return peakResidentBytes()
}

#if os(Linux)
private func fscanfTwo(_ f: UnsafeMutablePointer<FILE>, _ a: UnsafeMutablePointer<Int>, _ b: UnsafeMutablePointer<Int>) -> Bool {
    var buf = [CChar](repeating: 0, count: 256)
    guard fgets(&buf, 256, f) != nil else { return false }
    let len = buf.firstIndex(of: 0) ?? buf.count
    let parts = String(decoding: buf[0..<len].map { UInt8(bitPattern: $0) }, as: UTF8.self).split(separator: " ")
    guard parts.count >= 2, let x = Int(parts[0]), let y = Int(parts[1]) else { return false }
    a.pointee = x; b.pointee = y
    return true
}
#endif
