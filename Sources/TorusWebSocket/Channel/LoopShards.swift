import Synchronization
import Torus

/// A set of WebSocket connections split by loop: each loop's part is touched only on
/// that loop's thread, so adding, removing and delivering need no lock. Only finding
/// (or making) a loop's part takes the lock, and the list of parts is an immutable
/// array replaced when a loop first appears, so a broadcast reads it without copying.
final class LoopShards: Sendable {
    final class Shard: WebSocketMembership, @unchecked Sendable {
        let loop: EventLoop
        /// Loop thread only.
        var members: [ObjectIdentifier: WebSocketConnection] = [:]

        init(loop: EventLoop) { self.loop = loop }

        /// Adds `ws` (on `ws`'s loop, which is this shard's).
        func add(_ ws: WebSocketConnection) {
            guard ws.closeInfo == nil else { return }
            members[ObjectIdentifier(ws)] = ws
            ws.memberships[ObjectIdentifier(self)] = self
        }

        func remove(_ ws: WebSocketConnection) {
            members[ObjectIdentifier(ws)] = nil
            ws.memberships[ObjectIdentifier(self)] = nil
        }
    }

    private let state = Mutex<[Shard]>([])

    init() {}

    /// The part for `loop`, made on first use. Safe from any thread.
    func shard(for loop: EventLoop) -> Shard {
        state.withLock { shards in
            if let s = shards.first(where: { $0.loop === loop }) { return s }
            let s = Shard(loop: loop)
            shards = shards + [s]
            return s
        }
    }

    /// Every loop's part. Safe from any thread.
    var shards: [Shard] { state.withLock { $0 } }

    /// Runs `body` on each part's loop thread (inline for the calling loop's part).
    func forEachShard(_ body: @escaping @Sendable (Shard) -> Void) {
        for shard in shards {
            if shard.loop.inLoop { body(shard) } else { shard.loop.execute { body(shard) } }
        }
    }

    /// Total members, counted on each loop.
    func count() async -> Int {
        var total = 0
        for shard in shards {
            total += await withCheckedContinuation { (c: CheckedContinuation<Int, Never>) in
                shard.loop.runOnLoop { c.resume(returning: shard.members.count) }
            }
        }
        return total
    }
}
