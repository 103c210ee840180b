import CMamba2Kernels
import Synchronization

/// The SSD layer: one selective state space model with a scalar decay per head, in three forms that give
/// the same numbers. Entry point `SSD.run`.
public enum SSD {
    /// Computes the layer. Throws `Mamba2Error` naming the argument when shapes or values are wrong.
    public static func run(_ input: SSDInput, options: SSDOptions = SSDOptions()) throws -> SSDOutput {
        let pr = try SSDProblem(input, options: options)
        let form = options.form == .auto
            ? chooseForm(length: pr.L, chunkSize: options.chunkSize, heads: pr.H, headDim: pr.P, stateSize: pr.N, groups: pr.G)
            : options.form
        var y = Tensor(zeros: [pr.b, pr.L, pr.H, pr.P])
        var fin = Tensor(zeros: [pr.b, pr.H, pr.P, pr.N])
        var seq = Tensor(zeros: [pr.sequenceCount, pr.H, pr.P, pr.N])
        y.data.withUnsafeMutableBufferPointer { yb in
        fin.data.withUnsafeMutableBufferPointer { fb in
        seq.data.withUnsafeMutableBufferPointer { sb in
            switch form {
            case .recurrent, .auto:
                SSDRecurrent.run(pr, y: yb.baseAddress!, finalStates: fb.baseAddress!, sequenceStates: sb.baseAddress!)
            case .chunked:
                SSDChunked.run(pr, chunkSize: options.chunkSize, y: yb.baseAddress!, finalStates: fb.baseAddress!,
                               sequenceStates: sb.baseAddress!)
            case .quadratic:
                SSDChunked.run(pr, chunkSize: pr.L, y: yb.baseAddress!, finalStates: fb.baseAddress!,
                               sequenceStates: sb.baseAddress!)
            }
            applySkipAndGate(pr, y: yb.baseAddress!)
        }}}
        return SSDOutput(y: y, finalStates: fin, sequenceStates: seq, form: form)
    }

    /// The automatic choice. A single token runs as a recurrence (the decode step). Longer inputs run in
    /// whichever of the recurrent and chunked forms is faster on this machine for this layer shape: the
    /// first call for a shape times both once on a probe of min(L, 512) tokens and remembers the winner.
    /// (On the 2-core development machine the chunked form wins from 2 tokens on; on a 16-core host whose
    /// OpenBLAS fell back to generic kernels the recurrence, threaded over heads, won at every length.)
    /// The quadratic form is never chosen: its L×L matrix costs O(L²) memory and time.
    public static func chooseForm(length L: Int, chunkSize: Int, heads H: Int, headDim P: Int,
                                  stateSize N: Int, groups G: Int) -> SSDForm {
        if L < recurrentBelow { return .recurrent }
        let probe = min(L, 512)
        let key = FormKey(H: H, P: P, N: N, G: G, Q: chunkSize, probe: probe, threads: Parallel.threadCount)
        if let known = formChoices.withLock({ $0[key] }) { return known }
        let input = SSDInput.synthetic(L: probe, H: H, P: P, G: G, N: N)
        func time(_ form: SSDForm) -> Double {
            var best = Double.infinity
            for _ in 0..<2 {
                let t0 = monotonicSeconds()
                _ = try? SSD.run(input, options: SSDOptions(form: form, chunkSize: chunkSize, dtSoftplus: true))
                best = min(best, monotonicSeconds() - t0)
            }
            return best
        }
        let choice: SSDForm = time(.chunked) <= time(.recurrent) ? .chunked : .recurrent
        formChoices.withLock { $0[key] = choice }
        return choice
    }

    /// Sequences shorter than this run as a recurrence under `auto` without measuring.
    nonisolated(unsafe) public static var recurrentBelow = 2

    struct FormKey: Hashable { let H, P, N, G, Q, probe, threads: Int }
    static let formChoices = Mutex<[FormKey: SSDForm]>([:])

    /// y ← (y + D·x) · silu(z), per token, in parallel over rows of tokens.
    static func applySkipAndGate(_ pr: SSDProblem, y: UnsafeMutablePointer<Float>) {
        let D = pr.input.D, z = pr.input.z
        if D == nil && z == nil { return }
        let (H, P) = (pr.H, pr.P)
        let tokens = pr.b * pr.L
        let yS = SharedPointer(y)
        let dPerChannel = D?.shape.count == 2
        pr.input.x.data.withUnsafeBufferPointer { xb in
            let x = SharedPointer(xb.baseAddress!)
            Parallel.forEach(tokens) { t in
                let yt = yS.p + t * H * P, xt = x.p + t * H * P
                if let D {
                    for h in 0..<H {
                        for p in 0..<P {
                            yt[h * P + p] += (dPerChannel ? D.data[h * P + p] : D.data[h]) * xt[h * P + p]
                        }
                    }
                }
                if let z {
                    z.data.withUnsafeBufferPointer { zb in mk_mul_silu(H * P, yt, zb.baseAddress! + t * H * P) }
                }
            }
        }
    }
}
