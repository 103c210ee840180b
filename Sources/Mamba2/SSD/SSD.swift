import CMamba2Kernels

/// The SSD layer: one selective state space model with a scalar decay per head, in three forms that give
/// the same numbers. Entry point `SSD.run`.
public enum SSD {
    /// Computes the layer. Throws `Mamba2Error` naming the argument when shapes or values are wrong.
    public static func run(_ input: SSDInput, options: SSDOptions = SSDOptions()) throws -> SSDOutput {
        let pr = try SSDProblem(input, options: options)
        let form = options.form == .auto ? chooseForm(length: pr.L, chunkSize: options.chunkSize) : options.form
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

    /// The automatic choice. Measured with `mamba2 bench ssd` on the mamba2-130m layer (2 cores, AVX-512):
    /// the chunked form is ahead from 2 tokens on (its GEMMs beat the recurrence's streaming of the
    /// state through cache), so the recurrence runs only single tokens, the decode step. The quadratic
    /// form is never chosen: its L×L matrix costs O(L²) memory and time.
    public static func chooseForm(length L: Int, chunkSize: Int) -> SSDForm {
        L < recurrentBelow ? .recurrent : .chunked
    }

    /// Sequences shorter than this run as a recurrence under `auto`.
    nonisolated(unsafe) public static var recurrentBelow = 2

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
