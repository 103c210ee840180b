import ArgumentParser
import Mamba2
import Mamba2Training
import Mamba2CUDA
import Mamba2Diagnostics

/// Runs the three SSD forms on one input and shows that they agree, and how long each took.
struct DemoCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "demo", abstract: "The SSD layer's three forms on one input: agreement and timing."
    )
    @OptionGroup var compute: ComputeOptions
    @Option(help: "Sequence length L.") var length: Int = 2048

    func run() throws {
        try compute.apply()
        guard length >= 1 else { throw ValidationError("--length must be at least 1") }
        let bench = SSDBenchmark()
        let input = SSDInput.synthetic(L: length, H: bench.heads, P: bench.headDim, G: bench.groups, N: bench.stateSize)
        print("SSD layer, mamba2-130m shape: L=\(length) H=\(bench.heads) P=\(bench.headDim) N=\(bench.stateSize), threads \(Parallel.threadCount)")
        var reference: SSDOutput?
        var rows: [[String]] = []
        for form in [SSDForm.recurrent, .quadratic, .chunked, .auto] {
            let t0 = monotonicSeconds()
            let out = try SSD.run(input, options: SSDOptions(form: form, chunkSize: 256, dtSoftplus: true))
            let ms = (monotonicSeconds() - t0) * 1000
            if reference == nil { reference = out }
            rows.append([form == .auto ? "auto (\(out.form.rawValue))" : form.rawValue, fixed(ms, 1),
                         sci(out.y.relativeError(to: reference!.y)), sci(out.finalStates.relativeError(to: reference!.finalStates))])
        }
        print(table(["form", "ms", "y rel. err vs recurrent", "final state rel. err"], rows), terminator: "")
    }
}
