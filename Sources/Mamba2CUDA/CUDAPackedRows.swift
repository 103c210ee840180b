import Mamba2
/// Packed rows (`SSDInput.seqIdx`, or the model's prefill of prompts of different lengths) as the GPU's
/// kernels take them: sequences as runs of tokens along rows of length L.
///   seqStart (b, L): for every token, the row position where its sequence starts. A token of chunk c
///     sees token s of the chunk only when s ≥ its start, and takes the chunk's incoming state only when
///     its sequence began before the chunk (or is the row's first, which owns the initial state).
///   tokenEnd, tokenSequence (b, L): where its sequence ends (exclusive) and which it is (for the model's
///     causal conv, whose taps stop at the sequence's start and whose decode state is kept per sequence).
///   row, begin, end (S): each sequence's row and span [begin, end), for `ssd_sequence_states`.
struct CUDAPackedRows {
    let seqStart, tokenEnd, tokenSequence, row, begin, end: CUDABuffer
    /// S, the number of sequences over all rows.
    let count: Int
    /// Each sequence's last token, as an index over all rows' tokens (r·L + end − 1).
    let lastTokens: [Int]

    /// From the sequences the CPU's `SSDProblem` found (and checked: indices never decrease along a row);
    /// nil for rows of one sequence each (no seqIdx).
    init?(on device: CUDADevice, _ problem: SSDProblem) throws {
        guard problem.input.seqIdx != nil else { return nil }
        try self.init(on: device, rowLength: problem.L, rows: problem.segments.map { $0.map { ($0.start, $0.end) } })
    }

    /// Sequences of these lengths one after the other in a single row.
    init(on device: CUDADevice, lengths: [Int]) throws {
        var spans: [(Int, Int)] = []
        var t = 0
        for n in lengths { spans.append((t, t + n)); t += n }
        try self.init(on: device, rowLength: t, rows: [spans])
    }

    /// rows[r]: the spans [start, end) covering row r in order.
    init(on device: CUDADevice, rowLength L: Int, rows: [[(start: Int, end: Int)]]) throws {
        var starts = [Int32](repeating: 0, count: rows.count * L), ends = starts, ordinals = starts
        var rowOf: [Int32] = [], begins: [Int32] = [], endsOf: [Int32] = [], last: [Int] = []
        for (r, spans) in rows.enumerated() {
            for (start, end) in spans {
                for t in start..<end {
                    starts[r * L + t] = Int32(start); ends[r * L + t] = Int32(end); ordinals[r * L + t] = Int32(rowOf.count)
                }
                rowOf.append(Int32(r)); begins.append(Int32(start)); endsOf.append(Int32(end)); last.append(r * L + end - 1)
            }
        }
        func upload(_ v: [Int32]) throws -> CUDABuffer { let b = try CUDABuffer(count: v.count, on: device); try b.upload(v); return b }
        seqStart = try upload(starts); tokenEnd = try upload(ends); tokenSequence = try upload(ordinals)
        row = try upload(rowOf); begin = try upload(begins); end = try upload(endsOf)
        count = rowOf.count
        lastTokens = last
    }

    /// Launches `ssd_sequence_states` (after the chunked forward), writing (S, H, P, N) into `out`.
    func launchSequenceStates(_ kernel: CUDAKernel, L: Int, H: Int, P: Int, G: Int, N: Int, Q: Int, nchunks: Int,
                              x: CUDABuffer, B: CUDABuffer, dtOut: CUDABuffer, cumOut: CUDABuffer, statesIn: CUDABuffer,
                              initial: CUDABuffer?, finalStates: CUDABuffer, out: CUDABuffer) throws {
        let a = KernelArguments()
        for v in [L, H, P, G, N, Q, nchunks] { a.add(Int32(v)) }
        a.add(row); a.add(begin); a.add(end); a.add(x); a.add(B); a.add(dtOut); a.add(cumOut); a.add(statesIn)
        a.add(initial?.pointer ?? 0); a.add(finalStates); a.add(out)
        try kernel.launch(grid: ((P * N + 255) / 256, H, count), block: (256, 1, 1), arguments: a)
    }
}
