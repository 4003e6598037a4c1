import ServiceLifecycle
import Torus

extension HTTPServer: Service {
    /// Serves until graceful shutdown, then `shutdown()`: stops accepting, closes idle
    /// keep-alive connections and lets requests in progress finish (up to its default
    /// grace) before closing what is left.
    ///
    /// When the task is cancelled instead (a service group escalating, or a parent
    /// task ending), every connection closes at once and `CancellationError` is thrown.
    public func run() async throws {
        try await untilGracefulShutdown { await shutdown(grace: .zero) }
        await shutdown()
    }

    /// `run()` with the time requests in progress get to finish once graceful
    /// shutdown begins.
    public func run(shutdownGrace: Duration) async throws {
        try await untilGracefulShutdown { await shutdown(grace: .zero) }
        await shutdown(grace: shutdownGrace)
    }
}
