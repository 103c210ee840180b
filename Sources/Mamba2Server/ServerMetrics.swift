import Mamba2
import Prometheus
import Synchronization

/// What `GET /metrics` shows, in Prometheus's text format (through swift-prometheus): the batcher's
/// counters and gauges, and latency histograms it reports as it runs (time to first token, time per
/// output token, decode batch size).
///
/// The batcher keeps its counters itself (the core has no metrics dependency); a scrape adds what they
/// grew by since the last scrape to this registry's counters, so that both stay monotonic.
public final class ServerMetrics: ContinuousBatcherObserver, @unchecked Sendable {
    public let registry = PrometheusCollectorRegistry()
    let timeToFirstToken: DurationHistogram
    let timePerOutputToken: DurationHistogram
    let batchSize: ValueHistogram
    let prefillTime: DurationHistogram
    let counters: [(KeyPath<ContinuousBatcher.Metrics, Int>, Counter)]
    let gauges: [(KeyPath<ContinuousBatcher.Metrics, Int>, Gauge)]
    /// The batcher's counters at the last scrape.
    let seen = Mutex<ContinuousBatcher.Metrics>(.init())

    public init() {
        let r = registry
        func name(_ n: String, _ help: String) -> MetricNameDescriptor { .init(namespace: "mamba2", metricName: n, helpText: help) }
        // Buckets from 5 ms (a short prompt on the GPU) to 30 s (a long prompt behind a full queue).
        timeToFirstToken = r.makeDurationHistogram(
            descriptor: name("time_to_first_token_seconds", "Time from a request's arrival to its first token (queueing and prefill included)."),
            buckets: [.milliseconds(5), .milliseconds(10), .milliseconds(25), .milliseconds(50), .milliseconds(100), .milliseconds(250),
                      .milliseconds(500), .seconds(1), .milliseconds(2500), .seconds(5), .seconds(10), .seconds(30)])
        // One observation per token: the decode step that made it.
        timePerOutputToken = r.makeDurationHistogram(
            descriptor: name("time_per_output_token_seconds", "Duration of the decode step that gave each token after the first."),
            buckets: [.milliseconds(1), .microseconds(2500), .milliseconds(5), .milliseconds(10), .milliseconds(20), .milliseconds(40),
                      .milliseconds(80), .milliseconds(160), .milliseconds(320), .milliseconds(640), .milliseconds(1280)])
        batchSize = r.makeValueHistogram(descriptor: name("decode_batch_size", "Requests advanced by each decode step."),
                                         buckets: [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096])
        prefillTime = r.makeDurationHistogram(
            descriptor: name("prefill_seconds", "Duration of each packed prefill between decode steps (with its first tokens)."),
            buckets: [.milliseconds(1), .milliseconds(2), .milliseconds(5), .milliseconds(10), .milliseconds(20), .milliseconds(50),
                      .milliseconds(100), .milliseconds(250), .milliseconds(500), .seconds(1), .milliseconds(2500), .seconds(10)])
        func counter(_ n: String, _ help: String, _ k: KeyPath<ContinuousBatcher.Metrics, Int>) -> (KeyPath<ContinuousBatcher.Metrics, Int>, Counter) {
            (k, r.makeCounter(descriptor: name(n, help)))
        }
        counters = [
            counter("requests_total", "Generation requests accepted (one per prompt).", \.requests),
            counter("prompt_tokens_total", "Prompt tokens accepted.", \.promptTokens),
            counter("generated_tokens_total", "Tokens generated.", \.generatedTokens),
            counter("decode_steps_total", "Batched decode steps.", \.decodeSteps),
            counter("prefills_total", "Packed prefills.", \.prefills),
            counter("prefix_cache_hits_total", "Prompts that restored a cached prefix state.", \.cacheHits),
            counter("prefix_cache_tokens_total", "Prompt tokens restored from the prefix cache instead of prefilled.", \.cachedTokens),
            counter("slow_readers_total", "Requests ended because their client fell a whole stream buffer behind.", \.slowReaders),
        ]
        gauges = [
            (\.cacheBytes, r.makeGauge(descriptor: name("prefix_cache_bytes", "Bytes of states in the prefix cache."))),
            (\.cacheEntries, r.makeGauge(descriptor: name("prefix_cache_entries", "States in the prefix cache."))),
            (\.waiting, r.makeGauge(descriptor: name("queue_depth", "Requests waiting for a slot."))),
            (\.running, r.makeGauge(descriptor: name("running", "Requests running (the batch size now)."))),
        ]
    }

    public func firstToken(secondsSinceSubmit s: Double) {
        timeToFirstToken.recordNanoseconds(Int64(max(s, 0) * 1e9))
    }

    public func decodeStep(seconds s: Double, rows: Int) {
        let ns = Int64(max(s, 0) * 1e9)
        for _ in 0..<rows { timePerOutputToken.recordNanoseconds(ns) }
        batchSize.record(Double(rows))
    }

    public func prefill(seconds s: Double, tokens: Int, requests: Int) {
        prefillTime.recordNanoseconds(Int64(max(s, 0) * 1e9))
    }

    /// The text of a scrape, with the batcher's counters as they stand now.
    public func scrape(_ m: ContinuousBatcher.Metrics) -> String {
        seen.withLock { last in
            for (k, c) in counters where m[keyPath: k] > last[keyPath: k] { c.increment(by: Int64(m[keyPath: k] - last[keyPath: k])) }
            last = m
        }
        for (k, g) in gauges { g.set(Double(m[keyPath: k])) }
        return registry.emitToString()
    }
}
