import ServiceLifecycle
import Torus

extension Hub: Service {
    /// Serves until graceful shutdown, then `shutdown(grace:)` with the configuration's
    /// `shutdownGrace`: routers get BYE, WebSocket clients close 1001, requests in
    /// progress finish. The caller shuts the loop group down afterwards.
    ///
    /// When the task is cancelled instead, everything closes at once (no grace) and
    /// `CancellationError` is thrown.
    public func run() async throws {
        try await untilGracefulShutdown { await shutdown(grace: .zero) }
        await shutdown(grace: configuration.shutdownGrace)
    }
}
