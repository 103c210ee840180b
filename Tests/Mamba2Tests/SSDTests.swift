import Mamba2
import Mamba2TestSupport
import Testing

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif


@Suite("SSD layer")
struct SSDTests {
    static let fixtureForms: [(SSDForm, Int)] = [(.recurrent, 32), (.quadratic, 32), (.chunked, 32), (.chunked, 7), (.chunked, 256), (.auto, 32)]

    // Every form reproduces the reference's y and final states. Tolerance 2e-5 relative: the golden
    // numbers are a float64 recurrence, and float32 accumulation over 100 steps stays well inside it.
    @Test("fixture ssd-small", arguments: fixtureForms)
    func fixtureSmall(form: SSDForm, chunk: Int) throws {
        let f = try SafeTensorsFile(path: fixture("ssd-small.safetensors"))
        let options = SSDOptions(form: form, chunkSize: chunk, dtSoftplus: true)
        let full = SSDInput(x: try f.tensor("x"), dt: try f.tensor("dt"), A: try f.tensor("A"), B: try f.tensor("B"),
                            C: try f.tensor("C"), D: try f.tensor("D"), z: try f.tensor("z"),
                            dtBias: try f.tensor("dt_bias"), initialStates: try f.tensor("initial_states"))
        let out = try SSD.run(full, options: options)
        let (ey, es) = (out.y.relativeError(to: try f.tensor("y")), out.finalStates.relativeError(to: try f.tensor("final_states")))
        print("ssd-small \(form.rawValue) Q=\(chunk): y rel. error \(ey), final states \(es)")
        #expect(ey < 2e-5)
        #expect(es < 2e-5)

        var plain = full
        plain.D = nil; plain.z = nil; plain.initialStates = nil
        let outPlain = try SSD.run(plain, options: options)
        #expect(outPlain.y.relativeError(to: try f.tensor("y_plain")) < 2e-5)
        #expect(outPlain.finalStates.relativeError(to: try f.tensor("final_states_plain")) < 2e-5)
    }

    struct Case: CustomStringConvertible, Sendable {
        var L: Int, H: Int, P: Int, G: Int, N: Int, Q: Int
        var D = 0, gate = false, initial = false, limit = false, strong = false, b = 1
        var description: String { "L\(L) H\(H) P\(P) G\(G) N\(N) Q\(Q) D\(D) z\(gate) h0\(initial) lim\(limit) strong\(strong) b\(b)" }
    }

    static let cases: [Case] = [
        Case(L: 64, H: 4, P: 8, G: 1, N: 16, Q: 64),                                      // L at Q
        Case(L: 50, H: 4, P: 8, G: 2, N: 16, Q: 64, D: 1),                               // L below Q
        Case(L: 100, H: 6, P: 5, G: 6, N: 7, Q: 7, D: 2, gate: true),                    // not a multiple; G = H; odd P, N
        Case(L: 300, H: 4, P: 3, G: 2, N: 9, Q: 64, gate: true, initial: true),          // several chunks
        Case(L: 33, H: 2, P: 4, G: 1, N: 8, Q: 1, D: 1, initial: true),                  // Q = 1
        Case(L: 600, H: 4, P: 16, G: 1, N: 32, Q: 256, D: 1, gate: true, initial: true, limit: true),
        Case(L: 200, H: 4, P: 8, G: 2, N: 16, Q: 64, D: 1, initial: true, strong: true), // dt·A ≤ −20 on some steps
        Case(L: 77, H: 8, P: 8, G: 4, N: 16, Q: 16, D: 2, gate: true, initial: true, limit: true, strong: true, b: 3),
    ]

    // The three forms agree on fresh random inputs. Tolerance 1e-5 relative (float32; the forms sum in
    // different orders, which moves results by a few ulps per step).
    @Test("forms agree on random inputs", arguments: cases)
    func formsAgree(c: Case) throws {
        var rng = SeededRNG()
        let input = randomSSDInput(&rng, b: c.b, L: c.L, H: c.H, P: c.P, G: c.G, N: c.N, D: c.D, gate: c.gate,
                                   initial: c.initial, strongDecay: c.strong)
        let limit: (lo: Float, hi: Float) = c.limit ? (0.002, 0.08) : (0, .infinity)
        let ref = try SSD.run(input, options: SSDOptions(form: .recurrent, chunkSize: c.Q, dtSoftplus: true, dtLimit: limit))
        for form in [SSDForm.quadratic, .chunked, .auto] {
            let out = try SSD.run(input, options: SSDOptions(form: form, chunkSize: c.Q, dtSoftplus: true, dtLimit: limit))
            let ey = out.y.relativeError(to: ref.y), es = out.finalStates.relativeError(to: ref.finalStates)
            #expect(ey <= 1e-5, "y: \(form) vs recurrent \(ey), \(c), seed \(rng.seed)")
            #expect(es <= 1e-5, "final states: \(form) vs recurrent \(es), \(c), seed \(rng.seed)")
            #expect(!out.y.hasNonFinite && !out.finalStates.hasNonFinite, "seed \(rng.seed)")
        }
    }

    // L = 65536 with dt·A down to −50: no inf or NaN, and within 1e-4 of a float64 recurrence
    // (float32 state carried over 65536 steps; 1e-4 is the issue's bound).
    @Test("stable over 65536 tokens")
    func stability() throws {
        var rng = SeededRNG()
        let (L, H, P, G, N) = (65536, 2, 4, 1, 8)
        var input = randomSSDInput(&rng, b: 1, L: L, H: H, P: P, G: G, N: N, D: 1, initial: true)
        // A = −5 here; raw dt of 10 gives dt ≈ 10, dt·A ≈ −50.
        input.A = Tensor(shape: [H], data: [-5, -2.5])
        for i in 0..<input.dt.count where rng.uniform() < 0.05 { input.dt.data[i] = 10 }
        let ref = recurrenceFloat64(input, softplus: true)
        for form in [SSDForm.chunked, .recurrent, .auto] {
            let out = try SSD.run(input, options: SSDOptions(form: form, chunkSize: 256, dtSoftplus: true))
            #expect(!out.y.hasNonFinite && !out.finalStates.hasNonFinite, "\(form) seed \(rng.seed)")
            let ey = out.y.relativeError(to: ref.y), es = out.finalStates.relativeError(to: ref.state)
            #expect(ey <= 1e-4, "\(form) y \(ey) seed \(rng.seed)")
            #expect(es <= 1e-4, "\(form) states \(es) seed \(rng.seed)")
        }
    }

    // A packed row of several sequences equals each sequence run alone; its per-sequence final states
    // equal theirs. Tolerance 1e-5 relative, as for the forms.
    @Test("packed sequences equal separate ones", arguments: [SSDForm.recurrent, .quadratic, .chunked])
    func packed(form: SSDForm) throws {
        var rng = SeededRNG()
        let lengths = [13, 1, 40, 27]
        let (H, P, G, N) = (4, 8, 2, 16)
        let total = lengths.reduce(0, +)
        let input = randomSSDInput(&rng, b: 1, L: total, H: H, P: P, G: G, N: N, D: 1, gate: true, initial: true)
        var seq: [Int32] = []
        for (i, n) in lengths.enumerated() { seq += [Int32](repeating: Int32(i * 3), count: n) }
        var packedInput = input
        packedInput.seqIdx = seq
        let options = SSDOptions(form: form, chunkSize: 16, dtSoftplus: true)
        let packed = try SSD.run(packedInput, options: options)
        #expect(packed.sequenceStates.shape == [lengths.count, H, P, N])
        var start = 0
        for (i, n) in lengths.enumerated() {
            let one = SSDInput(x: slice(input.x, start, n), dt: slice(input.dt, start, n), A: input.A,
                               B: slice(input.B, start, n), C: slice(input.C, start, n), D: input.D,
                               z: slice(input.z!, start, n), dtBias: input.dtBias,
                               initialStates: i == 0 ? input.initialStates : nil)
            let alone = try SSD.run(one, options: options)
            #expect(slice(packed.y, start, n).relativeError(to: alone.y) <= 1e-5, "sequence \(i) seed \(rng.seed)")
            let st = Tensor(shape: [1, H, P, N], data: Array(packed.sequenceStates.data[(i * H * P * N)..<((i + 1) * H * P * N)]))
            #expect(st.relativeError(to: alone.finalStates) <= 1e-5, "sequence \(i) state, seed \(rng.seed)")
            start += n
        }
        #expect(packed.finalStates.data == Array(packed.sequenceStates.data.suffix(H * P * N)))
    }

    // Prefill of k tokens (chunked), then one token at a time from the carried state, equals one pass.
    @Test("prefill then steps equals one pass")
    func prefillThenSteps() throws {
        var rng = SeededRNG()
        let (L, H, P, G, N) = (70, 4, 8, 1, 16)
        let input = randomSSDInput(&rng, b: 2, L: L, H: H, P: P, G: G, N: N, D: 1, gate: true, initial: true)
        let options = SSDOptions(form: .chunked, chunkSize: 16, dtSoftplus: true)
        let full = try SSD.run(input, options: options)
        for k in [1, 16, 45] {
            var pre = sliceInput(input, 0, k)
            pre.initialStates = input.initialStates
            var state = try SSD.run(pre, options: options).finalStates
            var ys: [Tensor] = [try SSD.run(pre, options: options).y]
            for t in k..<L {
                var step = sliceInput(input, t, 1)
                step.initialStates = state
                let out = try SSD.run(step, options: SSDOptions(form: .auto, dtSoftplus: true))
                #expect(out.form == .recurrent)
                state = out.finalStates
                ys.append(out.y)
            }
            let y = concatTime(ys)
            #expect(y.relativeError(to: full.y) <= 1e-5, "k=\(k) seed \(rng.seed)")
            #expect(state.relativeError(to: full.finalStates) <= 1e-5, "k=\(k) seed \(rng.seed)")
        }
    }

    @Test("bad input names the argument")
    func badInput() throws {
        var rng = SeededRNG()
        let good = randomSSDInput(&rng, b: 1, L: 8, H: 4, P: 2, G: 2, N: 4)
        func expectError(_ input: SSDInput, options: SSDOptions = SSDOptions(dtSoftplus: true), mentions word: String) {
            do {
                _ = try SSD.run(input, options: options)
                Issue.record("no error for a bad '\(word)'")
            } catch {
                #expect("\(error)".contains(word), "\(error)")
            }
        }
        var i = good; i.x = i.x.reshaped([1, 8, 8]); expectError(i, mentions: "'x'")
        i = good; i.dt = Tensor(zeros: [1, 8, 3]); expectError(i, mentions: "'dt'")
        i = good; i.A = Tensor(zeros: [5]); expectError(i, mentions: "'A'")
        i = good; i.B = Tensor(zeros: [1, 8, 3, 4]); i.C = Tensor(zeros: [1, 8, 3, 4]); expectError(i, mentions: "divisible")
        i = good; i.C = Tensor(zeros: [1, 8, 2, 5]); expectError(i, mentions: "'C'")
        i = good; i.D = Tensor(zeros: [3]); expectError(i, mentions: "'D'")
        i = good; i.z = Tensor(zeros: [1, 8, 4, 3]); expectError(i, mentions: "'z'")
        i = good; i.initialStates = Tensor(zeros: [1, 4, 2, 5]); expectError(i, mentions: "'initial_states'")
        i = good; i.dtBias = Tensor(zeros: [2]); expectError(i, mentions: "'dt_bias'")
        i = good; i.seqIdx = [0, 0, 1]; expectError(i, mentions: "'seq_idx'")
        i = good; i.seqIdx = [0, 0, 1, 1, 0, 0, 2, 2]; expectError(i, mentions: "decrease")
        i = good; i.A.data[0] = 0.5; expectError(i, mentions: "'A'")
        expectError(sliceInput(good, 0, 0), mentions: "empty")
        expectError(good, options: SSDOptions(chunkSize: 0, dtSoftplus: true), mentions: "chunk_size")
    }
}

// MARK: - helpers







@Suite("SSD form choice")
struct SSDFormChoiceTests {
    // auto measures once per shape and then sticks to its choice; a single token is always the recurrence.
    @Test("auto's choice is measured once and remembered")
    func remembered() {
        #expect(SSD.chooseForm(length: 1, chunkSize: 64, heads: 4, headDim: 8, stateSize: 16, groups: 1) == .recurrent)
        let first = SSD.chooseForm(length: 300, chunkSize: 64, heads: 4, headDim: 8, stateSize: 16, groups: 1)
        #expect(first == .chunked || first == .recurrent)
        for _ in 0..<3 { #expect(SSD.chooseForm(length: 300, chunkSize: 64, heads: 4, headDim: 8, stateSize: 16, groups: 1) == first) }
    }
}
