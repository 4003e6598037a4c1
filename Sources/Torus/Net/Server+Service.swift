import ServiceLifecycle

extension Server: Service {
    /// Serves until graceful shutdown, then stops accepting on every loop (connections
    /// already open stay open until they close or their loop stops).
    ///
    /// Under a `ServiceGroup` this is how a process stops a server on SIGTERM. When the
    /// task is cancelled before graceful shutdown, it stops accepting the same way and
    /// throws `CancellationError`.
    public func run() async throws {
        try await untilGracefulShutdown(whenCancelled: close)
        close()
    }
}

/// Returns when graceful shutdown begins (a `ServiceGroup`'s signal, or its
/// `triggerGracefulShutdown`). When the task is cancelled first, runs `stopNow` —
/// close everything without grace — and throws `CancellationError`. The first half
/// of every server's `run()`; the second is its graceful stop.
public func untilGracefulShutdown(whenCancelled stopNow: () async -> Void) async throws {
    do {
        try await gracefulShutdown()
    } catch {
        await stopNow()
        throw error
    }
}
