import Foundation
import Synchronization

/// Many generations at once on one backend, as a server runs them. Each running request holds a row of
/// the backend's state table (a slot: its conv window and SSM state, fixed in size however long the
/// text). Between decode steps, waiting prompts are prefilled together, packed, under a token budget;
/// then every running sequence advances by one batched step. Requests join and leave at every step, and a
/// request whose stream is dropped frees its slot at the next one. One thread owns the backend.
///
/// A sequence's tokens do not depend on what else runs: each samples with its own sampler, on its own
/// row (the batched step computes each row as a step of that row alone would, up to float rounding).
public final class ContinuousBatcher: @unchecked Sendable {
    public struct Options: Sendable {
        /// Rows of the backend's state table: requests that run at once.
        public var slots: Int
        /// Prompt tokens one prefill between two decode steps takes at most (a longer prompt goes alone), so
        /// that new prompts do not stall the streams that run.
        public var prefillTokenBudget: Int
        /// Requests that may wait for a slot; more are refused (`SubmitError.queueFull`).
        public var queueLimit: Int
        /// Bytes of prefix states kept (0: no cache). The state at the end of each prompt and at the end of
        /// each generation is kept; a prompt that extends one restores it and prefills only the rest.
        public var cacheBytes: Int
        /// With the cache on, a long prompt's state is also kept at every multiple of this many tokens (a
        /// multiple of the model's chunk size; 0: only at the end), so that prompts sharing a long beginning
        /// but not its end (a system prompt and different questions) restore the longest common block.
        /// nil: 1024 rounded up to a multiple of the chunk size.
        public var cacheBlockTokens: Int?
        /// Events (tokens and text pieces) a request's stream holds for a reader that does not keep up; one
        /// more ends the request with `StreamError.readerTooSlow` and frees its slot, so that a slow
        /// reader costs bounded memory and never holds the batch back.
        public var streamBufferLimit: Int
        /// Sequences shorter than this many tokens are not kept in the cache (nil: the backend's
        /// `snapshotBreakEvenTokens`, below which re-prefilling costs less than taking the snapshot).
        public var cacheMinTokens: Int?
        /// Seconds the oldest waiting request may wait for others to gather before a prefill (only while
        /// other requests run and fewer than a quarter of the slots could be filled).
        public var admissionDelay: Double
        /// Told of first tokens and decode steps (a server's latency histograms); called on the loop's thread.
        public var observer: (any ContinuousBatcherObserver)?
        public init(slots: Int = 8, prefillTokenBudget: Int = 4096, queueLimit: Int = 64, cacheBytes: Int = 0,
                    cacheBlockTokens: Int? = nil, cacheMinTokens: Int? = nil, streamBufferLimit: Int = 8192, admissionDelay: Double = 0.02,
                    observer: (any ContinuousBatcherObserver)? = nil) {
            self.slots = slots; self.prefillTokenBudget = prefillTokenBudget; self.queueLimit = queueLimit; self.cacheBytes = cacheBytes
            self.cacheBlockTokens = cacheBlockTokens; self.cacheMinTokens = cacheMinTokens; self.streamBufferLimit = streamBufferLimit
            self.admissionDelay = admissionDelay; self.observer = observer
        }
    }

    /// How a request's stream can end other than normally.
    public enum StreamError: Error, Sendable, CustomStringConvertible {
        /// The reader left this many events unread: the request was ended to bound its memory.
        case readerTooSlow(bufferedEvents: Int)
        public var description: String {
            switch self {
            case let .readerTooSlow(n): "the client read too slowly: \(n) events waited unread, so the request was ended"
            }
        }
    }

    public enum SubmitError: Error, Sendable, CustomStringConvertible {
        case queueFull(limit: Int)
        case stopped
        case draining
        public var description: String {
            switch self {
            case let .queueFull(limit): "the queue is full (\(limit) requests wait for a slot); try again later"
            case .stopped: "the server has stopped"
            case .draining: "the server is shutting down and takes no new requests"
            }
        }
    }

    /// Counters since start, and the queue and batch now.
    public struct Metrics: Sendable {
        public var requests = 0, promptTokens = 0, generatedTokens = 0, decodeSteps = 0, prefills = 0
        public var waiting = 0, running = 0
        /// Sum over decode steps of the rows they advanced (mean batch size = this / decodeSteps).
        public var rowsStepped = 0
        /// Prompts that restored a cached prefix state, and the prompt tokens that saved prefilling.
        public var cacheHits = 0, cachedTokens = 0
        /// Bytes and entries in the prefix cache.
        public var cacheBytes = 0, cacheEntries = 0
        /// Requests ended because their readers fell a whole stream buffer behind.
        public var slowReaders = 0
        public init() {}
    }

    /// A request as the loop sees it. Only the loop thread touches it, except `cancelled`.
    final class Job: @unchecked Sendable {
        var sequence: GenerationSequence
        let continuation: AsyncThrowingStream<Generation, Error>.Continuation
        let cancelled = Atomic<Bool>(false)
        var row = -1
        /// Prompt tokens restored from the prefix cache (not prefilled).
        var cached = 0
        var info: GenerationInfo
        var decodeStart = 0.0
        let submitted = monotonicSeconds()
        /// The reader fell behind by the stream's whole buffer.
        var tooSlow = false
        /// A queued step fed this request's last token: its state is a token ahead of its text until the
        /// step's choice is taken (and stays so if it ends meanwhile).
        var overstepped = false
        init(sequence: GenerationSequence, continuation: AsyncThrowingStream<Generation, Error>.Continuation, info: GenerationInfo) {
            self.sequence = sequence; self.continuation = continuation; self.info = info
        }
    }

    public let backend: any Mamba2Backend
    public let tokenizer: Tokenizer?
    public let options: Options
    /// Guards `pending`, `stopping` and `metrics`; the loop waits on it for work.
    let condition = NSCondition()
    var pending: [Job] = []
    var stopping = false
    var draining = false
    /// Requests submitted and not yet finished.
    var live = 0
    /// Snapshot interval within long prefills (0: none).
    let blockTokens: Int
    /// Shortest sequence whose state the cache keeps.
    let cacheMinTokens: Int
    var metricsValue = Metrics()
    var thread: Thread?
    /// Only the loop thread touches it.
    var cache: PrefixStateCache

    /// Starts the loop's thread. The backend is the batcher's from now on: use it for nothing else. Call
    /// `stop()` when done (the thread keeps the batcher alive until then).
    public init(backend: any Mamba2Backend, tokenizer: Tokenizer?, options: Options = Options()) throws {
        guard options.slots >= 1, options.slots <= 4096 else {
            throw Mamba2Error.invalidArgument("slots", reason: "must be in 1...4096, not \(options.slots)")
        }
        guard options.prefillTokenBudget >= 1, options.queueLimit >= 1, options.streamBufferLimit >= 1 else {
            throw Mamba2Error.invalidArgument("prefill budget / queue / stream buffer", reason: "the budget and the limits must be ≥ 1")
        }
        let chunk = max(backend.config.chunkSize, 1)
        let block = options.cacheBlockTokens ?? (1024 + chunk - 1) / chunk * chunk
        guard block >= 0, block % chunk == 0 else {
            throw Mamba2Error.invalidArgument("cache block", reason: "must be 0 or a multiple of the model's chunk size \(chunk), not \(block)")
        }
        blockTokens = options.cacheBytes > 0 ? block : 0
        cacheMinTokens = max(options.cacheMinTokens ?? backend.snapshotBreakEvenTokens, 1)
        self.backend = backend
        self.tokenizer = tokenizer
        self.options = options
        cache = PrefixStateCache(capacityBytes: options.cacheBytes)
        try backend.reserveRows(options.slots)
        // The thread holds the batcher until `stop()` ends the loop.
        let t = Thread { self.loop() }
        t.name = "mamba2-batcher"
        thread = t
        t.start()
    }

    public var metrics: Metrics {
        condition.lock(); defer { condition.unlock() }
        return metricsValue
    }

    /// Queues a generation; its stream yields tokens and text as they come, then the summary. Throws at
    /// once for bad parameters, an empty prompt or ids outside the vocabulary, a full queue, or after
    /// `stop`. Dropping the stream (or cancelling the task that reads it) ends the request.
    public func submit(prompt: [Int], parameters: GenerateParameters) throws -> AsyncThrowingStream<Generation, Error> {
        try parameters.validate()
        guard !prompt.isEmpty else { throw Mamba2Error.invalidArgument("prompt", reason: "empty prompt: give at least one token") }
        let vocab = backend.config.vocabSize
        if let bad = prompt.first(where: { $0 < 0 || $0 >= vocab }) {
            throw Mamba2Error.invalidArgument("prompt", reason: "token id \(bad) is outside the vocabulary (0..<\(vocab))")
        }
        let (stream, continuation) = AsyncThrowingStream<Generation, Error>.makeStream(bufferingPolicy: .bufferingOldest(options.streamBufferLimit))
        let info = GenerationInfo(promptTokens: prompt.count, generatedTokens: 0, prefillSeconds: 0, decodeSeconds: 0,
                                  stopReason: .maxTokens, device: backend.deviceDescription)
        let job = Job(sequence: GenerationSequence(prompt: prompt, parameters: parameters, tokenizer: tokenizer),
                      continuation: continuation, info: info)
        condition.lock()
        defer { condition.unlock() }
        if stopping { throw SubmitError.stopped }
        if draining { throw SubmitError.draining }
        guard pending.count < options.queueLimit else {
            throw SubmitError.queueFull(limit: options.queueLimit)
        }
        pending.append(job)
        live += 1
        metricsValue.requests += 1
        metricsValue.promptTokens += prompt.count
        metricsValue.waiting = pending.count
        continuation.onTermination = { [weak self] _ in
            job.cancelled.store(true, ordering: .relaxed)
            self?.wake()
        }
        condition.signal()
        return stream
    }

    /// Stops taking requests; running and waiting ones are ended (their streams finish with what they
    /// have, stop reason `cancelled`), and the loop's thread exits.
    public func stop() {
        condition.lock()
        stopping = true
        condition.signal()
        condition.unlock()
    }

    /// Takes no new requests (`submit` throws `.draining`) while running and waiting ones go on; `stop()`
    /// then ends whatever is left. A server calls this when told to shut down, waits for `isIdle` up to
    /// a bound, then stops.
    public func beginDraining() {
        condition.lock(); draining = true; condition.unlock()
    }

    /// No request runs or waits.
    public var isIdle: Bool {
        condition.lock(); defer { condition.unlock() }
        return live == 0
    }

    func wake() {
        condition.lock(); condition.signal(); condition.unlock()
    }

    // MARK: the loop

    func loop() {
        let V = backend.config.paddedVocabSize
        var running: [Job] = []
        var logits = [Float](repeating: 0, count: options.slots * V)
        /// The requests (rows 0..<n in order) of a greedy step queued on the backend and not yet collected.
        var queued: [Job]?
        while true {
            condition.lock()
            while pending.isEmpty && running.isEmpty && !stopping { condition.wait() }
            if stopping {
                let rest = pending
                pending = []
                metricsValue.waiting = 0
                condition.unlock()
                for j in rest + running { j.sequence.cancel(); finish(j) }
                return
            }
            // Admit waiting requests into free slots, packed under the prefill budget (the first always fits).
            // While others run, a prefill waits until a quarter of the slots can be filled or the oldest
            // request has waited `admissionDelay`: on a GPU a prefill of one short prompt cost ~5 ms, three
            // decode steps of 64 rows, and requests that end one by one had the server prefilling at every step.
            var admitted: [Job] = []
            var budget = options.prefillTokenBudget
            let free = options.slots - running.count
            let gathered = pending.count >= min(free, max(1, options.slots / 4))
            let due = pending.first.map { monotonicSeconds() - $0.submitted >= options.admissionDelay } ?? false
            while running.isEmpty || gathered || due, let j = pending.first, admitted.count < free {
                let n = j.sequence.promptCount
                if !admitted.isEmpty && n > budget { break }
                budget -= n
                admitted.append(pending.removeFirst())
            }
            metricsValue.waiting = pending.count
            condition.unlock()

            // Requests whose readers left: free their slots.
            leave(&running) { j in
                guard j.cancelled.load(ordering: .relaxed) else { return false }
                j.sequence.cancel(); finish(j)
                return true
            }
            admitted.removeAll { j in
                guard j.cancelled.load(ordering: .relaxed) else { return false }
                j.sequence.cancel(); finish(j)
                return true
            }

            if !admitted.isEmpty {
                // Rows 0..<running.count run; the newcomers take the next ones.
                for (k, j) in admitted.enumerated() { j.row = running.count + k }
                let t0 = monotonicSeconds()
                do {
                    // A prompt that extends a cached prefix starts from its state and prefills the rest.
                    for j in admitted {
                        if options.cacheBytes > 0, let hit = cache.longestPrefix(of: j.sequence.tokens) {
                            try backend.setState(hit.state, row: j.row)
                            j.cached = hit.count
                        } else {
                            try backend.resetState(row: j.row)
                        }
                    }
                    try prefill(admitted, into: &logits)
                } catch {
                    for j in admitted { j.continuation.finish(throwing: error); ended() }
                    admitted = []
                }
                let dt = monotonicSeconds() - t0
                for (k, j) in admitted.enumerated() {
                    j.info.prefillSeconds = dt
                    j.decodeStart = monotonicSeconds()
                    if j.sequence.wantsToken() {
                        logits.withUnsafeBufferPointer { advance(j, UnsafeBufferPointer(rebasing: $0[(k * V)..<((k + 1) * V)])) }
                    }
                }
                running += admitted
                options.observer?.prefill(seconds: monotonicSeconds() - t0, tokens: admitted.reduce(0) { $0 + $1.sequence.promptCount - $1.cached },
                                          requests: admitted.count)
                condition.lock()
                metricsValue.prefills += 1
                metricsValue.generatedTokens += admitted.count { $0.sequence.generatedCount > 0 }
                for j in admitted where j.cached > 0 { metricsValue.cacheHits += 1; metricsValue.cachedTokens += j.cached }
                publishCache()
                condition.unlock()
            }

            // One decode step for every sequence that wants another token.
            leave(&running) { j in
                if j.sequence.wantsToken() { return false }
                remember(j); finish(j)
                return true
            }
            // The requests whose next tokens this iteration takes (in the order of `chosen`, or of the logits).
            var stepped = running
            var chosen: [(id: Int, logprob: Float)]?
            let stepStart = monotonicSeconds()
            do {
                if let q = queued {
                    // A greedy step queued last time ran while the host streamed: take its choices for the
                    // requests it stepped that still run (requests admitted since wait for the next step).
                    queued = nil
                    let r = try backend.collectArgmaxStep()
                    let alive = Set(running.map { ObjectIdentifier($0) })
                    stepped = []
                    var c: [(id: Int, logprob: Float)] = []
                    for (k, j) in q.enumerated() where alive.contains(ObjectIdentifier(j)) {
                        stepped.append(j); c.append(r[k]); j.overstepped = false
                    }
                    chosen = c
                } else {
                    if running.isEmpty { publishRunning(0); continue }
                    let tokens = running.map { $0.sequence.lastToken! }
                    let rows = running.map(\.row)
                    // All plain greedy: the backend may choose on its device and send back only the choices.
                    if running.allSatisfy({ $0.sequence.isPlainGreedy }) { chosen = try backend.stepArgmax(tokens, rows: rows) }
                    if chosen == nil {
                        try logits.withUnsafeMutableBufferPointer { buf in
                            try backend.step(tokens, rows: rows, logits: UnsafeMutableBufferPointer(rebasing: buf[0..<(rows.count * V)]))
                        }
                    }
                }
                if let chosen, try queueNext(running, stepped: stepped, chosen: chosen) { queued = running }
            } catch {
                queued = nil
                for j in running { j.continuation.finish(throwing: error); ended() }
                running = []
                publishRunning(0)
                continue
            }
            // Sampling is per row and independent: rows run in parallel when there are several (64 greedy
            // rows of a 50K vocabulary took ~16 ms on one thread, ten times a GPU's decode step).
            if let chosen {
                // Streaming a token (detokenizing, waking its reader) is per row too: in parallel for many rows.
                let jobs = stepped
                let take: @Sendable (Int) -> Void = { k in
                    self.advance(jobs[k], chosen: SampledToken(id: chosen[k].id, logprob: chosen[k].logprob, top: []))
                }
                if jobs.count >= 8 { DispatchQueue.concurrentPerform(iterations: jobs.count, execute: take) } else { (0..<jobs.count).forEach(take) }
            } else {
                logits.withUnsafeBufferPointer { buf in
                    let base = SharedPointer(UnsafeMutablePointer(mutating: buf.baseAddress!))
                    let jobs = stepped
                    let sample: @Sendable (Int) -> Void = { k in self.advance(jobs[k], UnsafeBufferPointer(start: base.p + k * V, count: V)) }
                    if jobs.count >= 4 { DispatchQueue.concurrentPerform(iterations: jobs.count, execute: sample) } else { (0..<jobs.count).forEach(sample) }
                }
            }
            options.observer?.decodeStep(seconds: monotonicSeconds() - stepStart, rows: stepped.count)
            condition.lock()
            metricsValue.decodeSteps += 1
            metricsValue.rowsStepped += stepped.count
            metricsValue.generatedTokens += stepped.count  // one token a row: counted once a step, not under the lock per token
            metricsValue.running = running.count
            condition.unlock()
        }
    }

    /// Queues the next greedy step on the backend before this step's tokens are streamed, so that the device
    /// steps while the host detokenizes and wakes readers (on a GPU that host work was a tenth of a step).
    /// Every running request is fed the token it was just given (or, if it joined since, the one its prefill
    /// gave). A request that ends after all (its last token, a stop token or string) has stepped once more for
    /// nothing; its state is then a token ahead of its text, so it is not kept in the prefix cache, and when
    /// such a request would be kept there, nothing is queued. Needs rows 0..<n in order, all plain greedy.
    func queueNext(_ running: [Job], stepped: [Job], chosen: [(id: Int, logprob: Float)]) throws -> Bool {
        guard !running.isEmpty, running.allSatisfy({ $0.sequence.isPlainGreedy }),
              running.enumerated().allSatisfy({ $0.element.row == $0.offset }) else { return false }
        var next: [ObjectIdentifier: Int] = [:]
        for (j, c) in zip(stepped, chosen) {
            next[ObjectIdentifier(j)] = c.id
            let p = j.sequence.parameters
            let ends = j.sequence.generatedCount + 1 >= p.maxTokens || p.stopTokenIDs.contains(c.id)
            if ends && options.cacheBytes > 0 && j.sequence.tokens.count >= cacheMinTokens { return false }
        }
        let tokens = running.map { next[ObjectIdentifier($0)] ?? $0.sequence.lastToken! }
        guard try backend.queueArgmaxStep(tokens) else { return false }
        for j in running { j.overstepped = true }
        return true
    }

    /// Takes the requests `leaves` picks out of `running` and keeps the rest in rows 0..<n, in row order:
    /// each request beyond the new count moves (its state copied on the backend) into a row one that left
    /// freed. A step then runs on rows 0..<n, which a GPU steps without moving states around (stepping
    /// scattered rows cost it 144 copies per row and step: 43 ms a step at 64 rows).
    func leave(_ running: inout [Job], _ leaves: (Job) -> Bool) {
        let before = running.count
        running.removeAll(where: leaves)
        if running.count < before { compact(&running) }
    }

    /// Moves the requests in rows ≥ n into the free rows below n (n = running.count), and sorts by row.
    /// A request whose state fails to move ends with that error, and the rest are compacted again.
    func compact(_ running: inout [Job]) {
        while true {
            let n = running.count
            let held = Set(running.map(\.row))
            var holes = (0..<n).filter { !held.contains($0) }.makeIterator()
            var failed = Set<ObjectIdentifier>()
            for j in running where j.row >= n {
                let hole = holes.next()!
                do { try backend.copyState(from: j.row, to: hole); j.row = hole } catch {
                    j.continuation.finish(throwing: error)
                    ended()
                    failed.insert(ObjectIdentifier(j))
                }
            }
            running.sort { $0.row < $1.row }
            if failed.isEmpty { return }
            running.removeAll { failed.contains(ObjectIdentifier($0)) }
        }
    }

    /// Prefills the admitted prompts from where their states stand, packed, and leaves each one's next-token
    /// logits at its index in `logits`. With the cache on, a prompt is cut at every multiple of the block
    /// size (counted from its first token) and the state there is kept, as is the state at its end.
    func prefill(_ jobs: [Job], into logits: inout [Float]) throws {
        let V = backend.config.paddedVocabSize
        var position = jobs.map(\.cached)
        var scratch = [Float](repeating: 0, count: jobs.count * V)
        while true {
            var part: [Int] = [], pieces: [[Int]] = []
            for (k, j) in jobs.enumerated() where position[k] < j.sequence.promptCount {
                var end = j.sequence.promptCount
                if blockTokens > 0 { end = min(end, (position[k] / blockTokens + 1) * blockTokens) }
                part.append(k)
                pieces.append(Array(j.sequence.tokens[position[k]..<end]))
            }
            if part.isEmpty { break }
            try scratch.withUnsafeMutableBufferPointer { buf in
                try backend.prefill(pieces, rows: part.map { jobs[$0].row },
                                    lastLogits: UnsafeMutableBufferPointer(rebasing: buf[0..<(part.count * V)]))
            }
            for (m, k) in part.enumerated() {
                position[k] += pieces[m].count
                let j = jobs[k]
                if position[k] == j.sequence.promptCount {
                    logits.replaceSubrange((k * V)..<((k + 1) * V), with: scratch[(m * V)..<((m + 1) * V)])
                }
                if options.cacheBytes > 0, position[k] >= cacheMinTokens {
                    let prefix = Array(j.sequence.tokens[0..<position[k]])
                    if !cache.contains(prefix) { cache.insert(tokens: prefix, state: try backend.state(row: j.row)) }
                }
            }
        }
    }

    /// Call with the lock held.
    func publishCache() {
        metricsValue.cacheBytes = cache.usedBytes
        metricsValue.cacheEntries = cache.count
    }

    /// Keeps the state of a sequence that ended normally, covering every token fed (all but the last
    /// chosen): the next turn of a conversation re-sends them.
    func remember(_ j: Job) {
        guard options.cacheBytes > 0, j.row >= 0, !j.overstepped, j.sequence.stopReason != .cancelled, j.sequence.generatedCount >= 1,
              j.sequence.tokens.count - 1 >= cacheMinTokens,
              let state = try? backend.state(row: j.row) else { return }
        cache.insert(tokens: Array(j.sequence.tokens.dropLast()), state: state)
        condition.lock(); publishCache(); condition.unlock()
    }

    func publishRunning(_ n: Int) {
        condition.lock(); metricsValue.running = n; condition.unlock()
    }

    /// Samples a job's next token from its logits and streams it.
    func advance(_ j: Job, _ logits: UnsafeBufferPointer<Float>) {
        let (token, text) = j.sequence.accept(logits)
        streamed(j, token, text)
    }

    /// Streams a token the device chose.
    func advance(_ j: Job, chosen: SampledToken) {
        let (token, text) = j.sequence.accept(chosen: chosen)
        streamed(j, token, text)
    }

    func streamed(_ j: Job, _ token: SampledToken, _ text: String?) {
        j.info.generatedTokens += 1
        if j.info.generatedTokens == 1 { options.observer?.firstToken(secondsSinceSubmit: monotonicSeconds() - j.submitted) }
        send(j, .token(token))
        if let text, !text.isEmpty { send(j, .chunk(text)) }
    }

    /// Yields an event; a reader whose buffer is full has its request ended at the next step.
    func send(_ j: Job, _ e: Generation) {
        if case .dropped = j.continuation.yield(e) {
            j.tooSlow = true
            j.cancelled.store(true, ordering: .relaxed)
        }
    }

    /// Counts a request as done (the lock is taken here).
    func ended() {
        condition.lock(); live -= 1; condition.unlock()
    }

    /// Ends a job's stream: held-back text, then the summary.
    func finish(_ j: Job) {
        defer { ended() }
        if j.tooSlow {
            metricsAdd { $0.slowReaders += 1 }
            j.continuation.finish(throwing: StreamError.readerTooSlow(bufferedEvents: options.streamBufferLimit))
            return
        }
        if let rest = j.sequence.finishText(), !rest.isEmpty { j.continuation.yield(.chunk(rest)) }
        j.info.stopReason = j.sequence.stopReason
        j.info.decodeSeconds = j.decodeStart > 0 ? monotonicSeconds() - j.decodeStart : 0
        j.continuation.yield(.info(j.info))
        j.continuation.finish()
    }

    func metricsAdd(_ f: (inout Metrics) -> Void) {
        condition.lock(); f(&metricsValue); condition.unlock()
    }
}

/// What a server measures of a batcher as it runs (latency histograms). Called on the batcher's thread:
/// keep it quick.
public protocol ContinuousBatcherObserver: Sendable {
    /// A request's first token, this long after it was submitted (queueing and prefill included).
    func firstToken(secondsSinceSubmit: Double)
    /// A decode step that gave `rows` requests one token each in `seconds`.
    func decodeStep(seconds: Double, rows: Int)
    /// A packed prefill of `requests` prompts, `tokens` tokens in all (cached tokens not counted), with
    /// their first tokens, in `seconds`.
    func prefill(seconds: Double, tokens: Int, requests: Int)
}

extension ContinuousBatcherObserver {
    public func prefill(seconds: Double, tokens: Int, requests: Int) {}
}
