import Synchronization
import Torus

/// The live WebSocket connections of a server (on every loop), for a graceful
/// shutdown that sends each a close frame (1001, "going away") and waits for them.
///
/// Pass it to `HTTPRouter.webSocket(_:configuration:registry:_:)`; connections join
/// on upgrade and leave when they close. Safe from any thread; each loop's part is
/// confined to that loop.
public final class WebSocketRegistry: Sendable {
    let shards = WebSocketShards()
    private let closing = Mutex<(code: CloseCode, reason: String)?>(nil)

    public init() {}

    /// Adds `ws` (loop thread). After `closeAll` started, closes it at once instead.
    func add(_ ws: WebSocketConnection) {
        if let (code, reason) = closing.withLock({ $0 }) {
            ws.close(code: code, reason: reason)
            return
        }
        shards.shard(for: ws.loop).value.add(ws)
    }

    /// Live connections right now.
    public func count() async -> Int { await shards.count() }

    /// Sends every connection a close frame with `code`, waits up to `grace` for the
    /// closing handshakes, then closes the sockets that are left. Connections that
    /// upgrade afterwards are closed the same way at once.
    public func closeAll(code: CloseCode = .goingAway, reason: String = "server shutting down",
                         grace: Duration = .seconds(5)) async {
        closing.withLock { $0 = (code, reason) }
        shards.forEachShard { shard in
            for ws in Array(shard.value.members.values) { ws.close(code: code, reason: reason) }
        }
        let clock = ContinuousClock()
        let deadline = clock.now + grace
        while clock.now < deadline {
            if await count() == 0 { return }
            try? await Task.sleep(for: .milliseconds(10))
        }
        shards.forEachShard { shard in
            for ws in Array(shard.value.members.values) { ws.connection.close(error: WebSocketError.closeTimeout) }
        }
    }
}
