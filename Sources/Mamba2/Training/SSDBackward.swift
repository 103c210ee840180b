#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Gradients of an SSD call with respect to every input (the training issue's first brick).
public struct SSDGradients: Sendable {
    public var x: Tensor              // (b, L, H, P)
    public var dt: Tensor             // (b, L, H): with respect to the raw dt, before bias/softplus/clamp
    public var dtBias: Tensor         // (H)
    public var A: Tensor              // (H)
    public var B: Tensor              // (b, L, G, N)
    public var C: Tensor              // (b, L, G, N)
    public var D: Tensor?             // like D
    public var z: Tensor?             // (b, L, H, P)
    public var initialStates: Tensor? // (b, H, P, N)
}

extension SSD {
    /// The plain reference backward: the recurrence run backwards in time (reverse-mode of
    ///   h_t = exp(dt_t·A)·h_{t−1} + dt_t·x_t⊗B_t,  y_t = (h_t·C_t + D·x_t)·silu(z_t)),
    /// keeping every state of the forward pass (memory O(L·H·P·N): for tests and small problems; the
    /// chunked backward is the fast one to come). `gradY` is dLoss/dy (b, L, H, P); `gradFinalStates`
    /// dLoss/d(final states) (b, H, P, N) or nil. Packed sequences (seqIdx) are not supported here.
    public static func backwardReference(_ input: SSDInput, options: SSDOptions, gradY: Tensor,
                                         gradFinalStates: Tensor? = nil) throws -> SSDGradients {
        let pr = try SSDProblem(input, options: options)
        guard input.seqIdx == nil, input.sequenceInitialStates == nil else {
            throw Mamba2Error.invalidArgument("seq_idx", reason: "the reference backward takes one sequence per row")
        }
        let (b, L, H, P, G, N) = (pr.b, pr.L, pr.H, pr.P, pr.G, pr.N)
        guard gradY.shape == [b, L, H, P] else { throw Mamba2Error.shape(argument: "grad_y", expected: "(b, L, H, P)", got: gradY.shape) }
        if let g = gradFinalStates, g.shape != [b, H, P, N] {
            throw Mamba2Error.shape(argument: "grad_final_states", expected: "(b, H, P, N)", got: g.shape)
        }
        let x = input.x.data, Bm = input.B.data, Cm = input.C.data
        let rawDt = input.dt.data
        let D = input.D, z = input.z
        let dPerChannel = D?.shape.count == 2
        let clamp = !(options.dtLimit.lo == 0 && options.dtLimit.hi == .infinity)

        var gx = [Double](repeating: 0, count: x.count), gdt = [Double](repeating: 0, count: rawDt.count)
        var gB = [Double](repeating: 0, count: Bm.count), gC = [Double](repeating: 0, count: Cm.count)
        var gA = [Double](repeating: 0, count: H), gBias = [Double](repeating: 0, count: H)
        var gD = [Double](repeating: 0, count: D?.count ?? 0), gz = [Double](repeating: 0, count: z?.count ?? 0)
        var gInit = [Double](repeating: 0, count: b * H * P * N)

        for r in 0..<b {
            for h in 0..<H {
                let g = h / pr.headsPerGroup
                let a = Double(pr.A[h])
                // Forward, keeping the state before every step: states[t] = h_{t−1}.
                var states = [[Double]](repeating: [], count: L + 1)
                var s = [Double](repeating: 0, count: P * N)
                if let h0 = input.initialStates { for k in 0..<(P * N) { s[k] = Double(h0.data[(r * H + h) * P * N + k]) } }
                var yD = [Double](repeating: 0, count: L * P)
                for t in 0..<L {
                    states[t] = s
                    let rt = r * L + t
                    let d = Double(pr.dt[rt * H + h]), decay = exp(d * a)
                    for p in 0..<P {
                        let xv = Double(x[(rt * H + h) * P + p])
                        var acc = 0.0
                        for n in 0..<N {
                            let v = decay * s[p * N + n] + d * xv * Double(Bm[(rt * G + g) * N + n])
                            s[p * N + n] = v
                            acc += v * Double(Cm[(rt * G + g) * N + n])
                        }
                        if let D { acc += Double(dPerChannel ? D.data[h * P + p] : D.data[h]) * xv }
                        yD[t * P + p] = acc
                    }
                }
                states[L] = s
                // Backward.
                var gs = [Double](repeating: 0, count: P * N)
                if let gf = gradFinalStates { for k in 0..<(P * N) { gs[k] = Double(gf.data[(r * H + h) * P * N + k]) } }
                for t in stride(from: L - 1, through: 0, by: -1) {
                    let rt = r * L + t
                    let d = Double(pr.dt[rt * H + h]), decay = exp(d * a)
                    let cOff = (rt * G + g) * N, bOff = cOff
                    // Through the gate and the skip.
                    var gyD = [Double](repeating: 0, count: P)
                    for p in 0..<P {
                        let i = (rt * H + h) * P + p
                        var gy = Double(gradY.data[i])
                        if let z {
                            let zv = Double(z.data[i]), sig = 1 / (1 + exp(-zv))
                            gz[i] += gy * yD[t * P + p] * sig * (1 + zv * (1 - sig))
                            gy *= zv * sig
                        }
                        gyD[p] = gy
                        if let D {
                            let k = dPerChannel ? h * P + p : h
                            gD[k] += gy * Double(x[i])
                            gx[i] += Double(D.data[k]) * gy
                        }
                    }
                    // y_t = h_t·C_t: into C_t and into h_t.
                    let ht = states[t + 1], hPrev = states[t]
                    for p in 0..<P {
                        for n in 0..<N {
                            gC[cOff + n] += gyD[p] * ht[p * N + n]
                            gs[p * N + n] += gyD[p] * Double(Cm[cOff + n])
                        }
                    }
                    // h_t = exp(dt·A)·h_{t−1} + dt·x⊗B.
                    var gDecay = 0.0, gdtDirect = 0.0
                    for p in 0..<P {
                        let i = (rt * H + h) * P + p
                        let xv = Double(x[i])
                        var gxp = 0.0
                        for n in 0..<N {
                            let gsv = gs[p * N + n]
                            let bn = Double(Bm[bOff + n])
                            gDecay += gsv * hPrev[p * N + n]
                            gdtDirect += gsv * xv * bn
                            gxp += gsv * bn
                            gB[bOff + n] += gsv * d * xv
                        }
                        gx[i] += d * gxp
                    }
                    let gdtTotal = gdtDirect + gDecay * decay * a
                    gA[h] += gDecay * decay * d
                    // dt = clamp(softplus(raw + bias)).
                    var u = Double(rawDt[rt * H + h]) + Double(input.dtBias?.data[h] ?? 0)
                    var gu = gdtTotal
                    if options.dtSoftplus { gu *= u <= 20 ? 1 / (1 + exp(-u)) : 1; u = u <= 20 ? log1p(exp(u)) : u }
                    if clamp && (u < Double(options.dtLimit.lo) || u > Double(options.dtLimit.hi)) { gu = 0 }
                    gdt[rt * H + h] += gu
                    gBias[h] += gu
                    for k in 0..<(P * N) { gs[k] *= decay }
                }
                for k in 0..<(P * N) { gInit[(r * H + h) * P * N + k] = gs[k] }
            }
        }
        func t(_ v: [Double], _ shape: [Int]) -> Tensor { Tensor(shape: shape, data: v.map(Float.init)) }
        return SSDGradients(x: t(gx, input.x.shape), dt: t(gdt, input.dt.shape), dtBias: t(gBias, [H]), A: t(gA, [H]),
                            B: t(gB, input.B.shape), C: t(gC, input.C.shape), D: D.map { t(gD, $0.shape) },
                            z: z.map { t(gz, $0.shape) }, initialStates: input.initialStates.map { t(gInit, $0.shape) })
    }
}
