import Foundation
import Hummingbird
import Logging
import Mamba2
import ServiceLifecycle

/// Ends the batcher's work within a bound when the server is told to stop (SIGTERM or SIGINT): it takes
/// no new requests (503), lets running and waiting ones finish for up to `timeout`, then ends whatever is
/// left (streams close with finish_reason "length" and `[DONE]`), so that the HTTP server, which shuts
/// down after it, finds every response complete.
struct BatcherDrainService: Service {
    let batcher: ContinuousBatcher
    let timeout: Duration
    let logger: Logger

    func run() async throws {
        // Returns when shutdown begins (or throws when the group is cancelled: then stop at once).
        try? await gracefulShutdown()
        batcher.beginDraining()
        let start = ContinuousClock.now
        while !batcher.isIdle && ContinuousClock.now - start < timeout {
            try? await Task.sleep(for: .milliseconds(20))
        }
        if !batcher.isIdle { logger.info("shutdown: ending requests still running after \(timeout)") }
        batcher.stop()
    }
}

extension CompletionServer {
    /// Serves until SIGTERM or SIGINT, then shuts down gracefully: no new requests; running ones get up to
    /// `shutdownTimeout` to finish before they are ended; then the listener closes and this returns.
    public func run(shutdownTimeout: Duration, logger: Logger = Logger(label: "mamba2.serve")) async throws {
        let app = Application(router: makeRouter(),
                              configuration: .init(address: .hostname(options.host, port: options.port), serverName: "mamba2"),
                              logger: logger)
        // Shutdown runs in reverse order: the drain first, then the HTTP server.
        let group = ServiceGroup(configuration: .init(
            services: [app, BatcherDrainService(batcher: batcher, timeout: shutdownTimeout, logger: logger)],
            gracefulShutdownSignals: [.sigterm, .sigint], cancellationSignals: [], logger: logger))
        try await group.run()
    }
}
