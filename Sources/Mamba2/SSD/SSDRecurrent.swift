import CMamba2Kernels
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The recurrent form: one token at a time, h_t = exp(dt_t·A)·h_{t−1} + dt_t·x_t⊗B_t, y_t = h_t·C_t.
/// Linear in L, memory of one (P, N) state per head. The plain reference every other form is tested
/// against, and (one token long) the decode step. Threaded over (row, head), vectorized over N.
package enum SSDRecurrent {
    /// The scan kernel a recurrence of `tokens` tokens of head dimension P takes on this host ("transposed
    /// avx512", "plain"; mk_ssd_scan_form).
    package static func scanPath(tokens: Int, headDim P: Int) -> String {
        let form = mk_ssd_scan_form(Int32(clamping: tokens), Int32(clamping: P))
        return form == 0 ? "plain" : "transposed " + CPUKernelLevel(code: form).rawValue
    }

    /// Writes the SSM output (before D and the gate) to y (b, L, H, P) and the states.
    static func run(_ pr: SSDProblem, y: UnsafeMutablePointer<Float>, finalStates: UnsafeMutablePointer<Float>,
                    sequenceStates: UnsafeMutablePointer<Float>) {
        let (L, H, P, G, N) = (pr.L, pr.H, pr.P, pr.G, pr.N)
        let stateSize = P * N
        let yS = SharedPointer(y), finS = SharedPointer(finalStates), seqS = SharedPointer(sequenceStates)
        pr.withInputPointers { ptrs in
            let (x, B, C, dt) = (ptrs.x, ptrs.B, ptrs.C, ptrs.dt)
            Parallel.forEach(pr.b * H) { job in
                let (r, h) = (job / H, job % H)
                let g = h / pr.headsPerGroup
                let a = pr.A[h]
                let state = UnsafeMutablePointer<Float>.allocate(capacity: stateSize)
                let dth = UnsafeMutablePointer<Float>.allocate(capacity: L)
                let decay = UnsafeMutablePointer<Float>.allocate(capacity: L)
                defer { state.deallocate(); dth.deallocate(); decay.deallocate() }
                for seg in pr.segments[r] {
                    pr.loadInitialState(row: r, head: h, segment: seg, into: state)
                    let n = seg.end - seg.start
                    let rt0 = r * L + seg.start
                    for t in 0..<n {
                        let d = dt.p[(rt0 + t) * H + h]
                        dth[t] = d
                        decay[t] = expf(d * a)
                    }
                    mk_ssd_scan(Int32(n), Int32(P), Int32(N), state, decay, dth,
                                x.p + (rt0 * H + h) * P, H * P, B.p + (rt0 * G + g) * N, G * N,
                                C.p + (rt0 * G + g) * N, G * N, yS.p + (rt0 * H + h) * P, H * P)
                    (seqS.p + (seg.ordinal * H + h) * stateSize).update(from: state, count: stateSize)
                }
                (finS.p + (r * H + h) * stateSize).update(from: state, count: stateSize)
            }
        }
    }
}
