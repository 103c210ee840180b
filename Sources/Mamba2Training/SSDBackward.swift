import Mamba2
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

extension SSD {
    /// The plain reference backward: the recurrence run backwards in time (reverse-mode of
    ///   h_t = exp(dt_t·A)·h_{t−1} + dt_t·x_t⊗B_t,  y_t = (h_t·C_t + D·x_t)·silu(z_t)),
    /// in float64, keeping every state of the forward pass (memory O(L·H·P·N): for tests and small
    /// problems; `backward` is the fast chunked one). `gradY` is dLoss/dy (b, L, H, P); `gradFinalStates`
    /// dLoss/d(final states) (b, H, P, N) or nil. Packed rows (seqIdx): the state resets where a new
    /// sequence begins, and the initial state is the row's first sequence's (as in the forward).
    public static func backwardReference(_ input: SSDInput, options: SSDOptions, gradY: Tensor,
                                         gradFinalStates: Tensor? = nil) throws -> SSDGradients {
        let pr = try SSDProblem(input, options: options)
        guard input.sequenceInitialStates == nil else {
            throw Mamba2Error.invalidArgument("sequence_initial_states", reason: "the reference backward takes initial_states (one per row), not one per sequence")
        }
        let (b, L, H, P, N) = (pr.b, pr.L, pr.H, pr.P, pr.N)
        guard gradY.shape == [b, L, H, P] else { throw Mamba2Error.shape(argument: "grad_y", expected: "(b, L, H, P)", got: gradY.shape) }
        if let g = gradFinalStates, g.shape != [b, H, P, N] {
            throw Mamba2Error.shape(argument: "grad_final_states", expected: "(b, H, P, N)", got: g.shape)
        }
        let d: ([Float]) -> [Double] = { $0.map(Double.init) }
        let ssd = SSD64(b: b, L: L, H: H, P: P, G: pr.G, N: N, x: d(input.x.data), dtRaw: d(input.dt.data), A: d(input.A.data),
                        B: d(input.B.data), C: d(input.C.data), D: input.D.map { d($0.data) }, dPerChannel: input.D?.shape.count == 2,
                        z: input.z.map { d($0.data) }, dtBias: input.dtBias.map { d($0.data) },
                        initial: input.initialStates.map { d($0.data) }, softplus: options.dtSoftplus,
                        limit: (Double(options.dtLimit.lo), Double(options.dtLimit.hi)),
                        resets: input.seqIdx.map { seq in (0..<(b * L)).map { $0 % L > 0 && seq[$0] != seq[$0 - 1] } })
        let g = ssd.backward(gradY: d(gradY.data), gradFinal: gradFinalStates.map { d($0.data) })
        func t(_ v: [Double], _ shape: [Int]) -> Tensor { Tensor(shape: shape, data: v.map(Float.init)) }
        return SSDGradients(x: t(g.x, input.x.shape), dt: t(g.dtRaw, input.dt.shape), dtBias: t(g.dtBias, [H]), A: t(g.A, [H]),
                            B: t(g.B, input.B.shape), C: t(g.C, input.C.shape), D: input.D.map { t(g.D, $0.shape) },
                            z: input.z.map { t(g.z, $0.shape) }, initialStates: input.initialStates.map { t(g.initial, $0.shape) })
    }
}

/// The SSD as a plain float64 recurrence, forward and backward, one sequence per row: the reference
/// the fast float32 forms are checked against, and the SSD inside `ReferenceGradients`. Shapes as
/// `SSDInput` (flattened row-major); dt is raw (before bias, softplus and the clamp). `resets` (b·L), where
/// given, marks the tokens that begin a new sequence of a packed row: the state before them is zero.
struct SSD64 {
    let b: Int, L: Int, H: Int, P: Int, G: Int, N: Int
    var x: [Double], dtRaw: [Double], A: [Double], B: [Double], C: [Double]
    var D: [Double]?
    var dPerChannel: Bool
    var z: [Double]?
    var dtBias: [Double]?
    var initial: [Double]?
    var softplus: Bool
    var limit: (lo: Double, hi: Double)
    var resets: [Bool]? = nil

    struct Gradients { var x, dtRaw, dtBias, A, B, C, D, z, initial: [Double] }

    /// (dt, d dt / d raw) at token index rt (row·L + t), head h.
    func dt(_ rt: Int, _ h: Int) -> (Double, Double) {
        var u = dtRaw[rt * H + h] + (dtBias?[h] ?? 0)
        var du = 1.0
        if softplus {
            if u <= 20 { du = 1 / (1 + exp(-u)); u = log1p(exp(u)) }
        }
        let clamp = !(limit.lo == 0 && limit.hi == .infinity)
        if clamp && (u < limit.lo || u > limit.hi) { return (min(max(u, limit.lo), limit.hi), 0) }
        return (u, du)
    }

    /// Runs row r, head h forward from its initial state; calls visit(t, state after t, y before gate).
    func scan(_ r: Int, _ h: Int, visit: (Int, [Double], [Double]) -> Void) -> [Double] {
        let g = h / (H / G)
        var s = initial.map { Array($0[((r * H + h) * P * N)..<((r * H + h + 1) * P * N)]) } ?? [Double](repeating: 0, count: P * N)
        var yD = [Double](repeating: 0, count: P)
        for t in 0..<L {
            let rt = r * L + t
            if resets?[rt] == true { for k in 0..<(P * N) { s[k] = 0 } }
            let (d, _) = dt(rt, h)
            let decay = exp(d * A[h])
            for p in 0..<P {
                let xv = x[(rt * H + h) * P + p]
                var acc = 0.0
                for n in 0..<N {
                    let v = decay * s[p * N + n] + d * xv * B[(rt * G + g) * N + n]
                    s[p * N + n] = v
                    acc += v * C[(rt * G + g) * N + n]
                }
                if let D { acc += (dPerChannel ? D[h * P + p] : D[h]) * xv }
                yD[p] = acc
            }
            visit(t, s, yD)
        }
        return s
    }

    /// y (b, L, H, P) after the gate, and the final states (b, H, P, N).
    func forward() -> (y: [Double], final: [Double]) {
        var y = [Double](repeating: 0, count: b * L * H * P), fin = [Double](repeating: 0, count: b * H * P * N)
        for r in 0..<b {
            for h in 0..<H {
                let s = scan(r, h) { t, _, yD in
                    for p in 0..<P {
                        let i = ((r * L + t) * H + h) * P + p
                        var v = yD[p]
                        if let z { v *= z[i] / (1 + exp(-z[i])) }
                        y[i] = v
                    }
                }
                for k in 0..<(P * N) { fin[(r * H + h) * P * N + k] = s[k] }
            }
        }
        return (y, fin)
    }

    func backward(gradY: [Double], gradFinal: [Double]?) -> Gradients {
        var gx = [Double](repeating: 0, count: x.count), gdt = [Double](repeating: 0, count: dtRaw.count)
        var gB = [Double](repeating: 0, count: B.count), gC = [Double](repeating: 0, count: C.count)
        var gA = [Double](repeating: 0, count: H), gBias = [Double](repeating: 0, count: H)
        var gD = [Double](repeating: 0, count: D?.count ?? 0), gz = [Double](repeating: 0, count: z?.count ?? 0)
        var gInit = [Double](repeating: 0, count: initial == nil ? 0 : b * H * P * N)
        for r in 0..<b {
            for h in 0..<H {
                let g = h / (H / G)
                let a = A[h]
                // Forward, keeping the state after every step: states[t + 1] = h_t, states[0] = h_{−1}.
                var states = [[Double]]()
                states.append(initial.map { Array($0[((r * H + h) * P * N)..<((r * H + h + 1) * P * N)]) } ?? [Double](repeating: 0, count: P * N))
                var yD = [Double](repeating: 0, count: L * P)
                _ = scan(r, h) { t, s, y in
                    states.append(s)
                    for p in 0..<P { yD[t * P + p] = y[p] }
                }
                var gs = [Double](repeating: 0, count: P * N)
                if let gf = gradFinal { for k in 0..<(P * N) { gs[k] = gf[(r * H + h) * P * N + k] } }
                for t in stride(from: L - 1, through: 0, by: -1) {
                    let rt = r * L + t
                    let (d, dDt) = dt(rt, h)
                    let decay = exp(d * a)
                    let cOff = (rt * G + g) * N
                    // Through the gate and the skip.
                    var gyD = [Double](repeating: 0, count: P)
                    for p in 0..<P {
                        let i = (rt * H + h) * P + p
                        var gy = gradY[i]
                        if let z {
                            let zv = z[i], sig = 1 / (1 + exp(-zv))
                            gz[i] += gy * yD[t * P + p] * sig * (1 + zv * (1 - sig))
                            gy *= zv * sig
                        }
                        gyD[p] = gy
                        if let D {
                            let k = dPerChannel ? h * P + p : h
                            gD[k] += gy * x[i]
                            gx[i] += D[k] * gy
                        }
                    }
                    // y_t = h_t·C_t: into C_t and into h_t. A token that begins a sequence starts from zeros.
                    let reset = resets?[rt] == true
                    let ht = states[t + 1], hPrev = reset ? [Double](repeating: 0, count: P * N) : states[t]
                    for p in 0..<P {
                        for n in 0..<N {
                            gC[cOff + n] += gyD[p] * ht[p * N + n]
                            gs[p * N + n] += gyD[p] * C[cOff + n]
                        }
                    }
                    // h_t = exp(dt·A)·h_{t−1} + dt·x⊗B.
                    var gDecay = 0.0, gdtDirect = 0.0
                    for p in 0..<P {
                        let i = (rt * H + h) * P + p
                        let xv = x[i]
                        var gxp = 0.0
                        for n in 0..<N {
                            let gsv = gs[p * N + n], bn = B[cOff + n]
                            gDecay += gsv * hPrev[p * N + n]
                            gdtDirect += gsv * xv * bn
                            gxp += gsv * bn
                            gB[cOff + n] += gsv * d * xv
                        }
                        gx[i] += d * gxp
                    }
                    gA[h] += gDecay * decay * d
                    // dt = clamp(softplus(raw + bias)).
                    let gu = (gdtDirect + gDecay * decay * a) * dDt
                    gdt[rt * H + h] += gu
                    gBias[h] += gu
                    for k in 0..<(P * N) { gs[k] = reset ? 0 : gs[k] * decay }
                }
                if initial != nil { for k in 0..<(P * N) { gInit[(r * H + h) * P * N + k] = gs[k] } }
            }
        }
        return Gradients(x: gx, dtRaw: gdt, dtBias: gBias, A: gA, B: gB, C: gC, D: gD, z: gz, initial: gInit)
    }
}
