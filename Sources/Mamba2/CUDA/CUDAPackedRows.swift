/// Packed rows (`SSDInput.seqIdx`) as the GPU's chunked kernels take them, from the sequences the CPU's
/// `SSDProblem` found (and checked: indices never decrease along a row).
///   seqStart (b, L): for every token, the row position where its sequence starts. A token of chunk c
///     sees token s of the chunk only when s ≥ its start, and takes the chunk's incoming state only when
///     its sequence began before the chunk (or is the row's first, which owns the initial state).
///   row, begin, end (S): each sequence's row and span [begin, end), for `ssd_sequence_states`.
struct CUDAPackedRows {
    let seqStart, row, begin, end: CUDABuffer
    /// S, the number of sequences over all rows.
    let count: Int

    /// Nil for rows of one sequence each (no seqIdx).
    init?(_ problem: SSDProblem) throws {
        guard problem.input.seqIdx != nil else { return nil }
        let L = problem.L
        var starts = [Int32](repeating: 0, count: problem.b * L)
        var rows: [Int32] = [], begins: [Int32] = [], ends: [Int32] = []
        for (r, segments) in problem.segments.enumerated() {
            for s in segments {
                for t in s.start..<s.end { starts[r * L + t] = Int32(s.start) }
                rows.append(Int32(r)); begins.append(Int32(s.start)); ends.append(Int32(s.end))
            }
        }
        seqStart = try CUDABuffer(count: starts.count)
        try seqStart.upload(starts)
        func upload(_ v: [Int32]) throws -> CUDABuffer { let b = try CUDABuffer(count: v.count); try b.upload(v); return b }
        row = try upload(rows); begin = try upload(begins); end = try upload(ends)
        count = rows.count
    }

    /// Launches `ssd_sequence_states` (after the chunked forward), writing (S, H, P, N) into `out`.
    func launchSequenceStates(_ kernel: CUDAKernel, b: Int, L: Int, H: Int, P: Int, G: Int, N: Int, Q: Int, nchunks: Int,
                              x: CUDABuffer, B: CUDABuffer, dtOut: CUDABuffer, cumOut: CUDABuffer, statesIn: CUDABuffer,
                              initial: CUDABuffer?, finalStates: CUDABuffer, out: CUDABuffer) throws {
        let a = KernelArguments()
        for v in [L, H, P, G, N, Q, nchunks] { a.add(Int32(v)) }
        a.add(row); a.add(begin); a.add(end); a.add(x); a.add(B); a.add(dtOut); a.add(cumOut); a.add(statesIn)
        a.add(initial?.pointer ?? 0); a.add(finalStates); a.add(out)
        try kernel.launch(grid: ((P * N + 255) / 256, H, count), block: (256, 1, 1), arguments: a)
    }
}
