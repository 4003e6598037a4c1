import Synchronization
import Torus

/// A broadcast channel (EventMachine's `EM::Channel`) for server-side connections.
///
/// `broadcast` encodes the frame **once** into a `SharedBytes` and queues the same
/// bytes on every subscriber's write queue (no per-subscriber copy). Subscribers on
/// other loops get the frame through their loop's job queue (`loop.execute`), so
/// each loop touches only its own subscribers. The frame is uncompressed (RSV1
/// clear), valid whether or not a subscriber negotiated permessage-deflate.
///
/// Slow subscribers: a subscriber whose write queue is above its high water mark
/// (`SocketOptions.writeHighWater`) is not writable; the ``SlowSubscriberPolicy``
/// then drops the message for it, or disconnects it (close 1008, then the socket
/// closes within the close timeout).
///
/// Subscribers leave when they close. Safe from any thread.
public final class WebSocketChannel: Sendable {
    public enum SlowSubscriberPolicy: Sendable, Hashable {
        /// Skip this message for a subscriber that is not writable.
        case drop
        /// Close a subscriber that is not writable (1008 "slow consumer").
        case disconnect
    }

    public let policy: SlowSubscriberPolicy
    let shards = WebSocketShards()
    private let dropped = Atomic<Int>(0)
    private let disconnected = Atomic<Int>(0)
    private let delivered = Atomic<Int>(0)

    public init(policy: SlowSubscriberPolicy = .drop) {
        self.policy = policy
    }

    /// Messages skipped for slow subscribers (policy `.drop`).
    public var droppedCount: Int { dropped.load(ordering: .relaxed) }
    /// Subscribers closed for being slow (policy `.disconnect`).
    public var disconnectedCount: Int { disconnected.load(ordering: .relaxed) }
    /// Frames queued to subscribers.
    public var deliveredCount: Int { delivered.load(ordering: .relaxed) }

    /// Adds `ws` (server side). Safe from any thread: joins on `ws`'s loop.
    public func subscribe(_ ws: WebSocketConnection) {
        // Not from input: API misuse (a client-side connection subscribed).
        precondition(ws.role == .server, "WebSocketChannel sends unmasked frames: server-side connections only")
        let shard = shards.shard(for: ws.loop)
        ws.loop.runOnLoop { shard.value.add(ws) }
    }

    /// Removes `ws`. Safe from any thread.
    public func unsubscribe(_ ws: WebSocketConnection) {
        let shard = shards.shard(for: ws.loop)
        ws.loop.runOnLoop { shard.value.remove(ws) }
    }

    /// Subscribers right now.
    public func subscriberCount() async -> Int { await shards.count() }

    public func broadcast(text: String, excluding: WebSocketConnection? = nil) {
        broadcast(WebSocketFrame(text: text), excluding: excluding)
    }

    public func broadcast(binary: [UInt8], excluding: WebSocketConnection? = nil) {
        broadcast(WebSocketFrame(binary: binary), excluding: excluding)
    }

    /// Queues `frame` on every subscriber (but `excluding`).
    public func broadcast(_ frame: WebSocketFrame, excluding: WebSocketConnection? = nil) {
        let skip = excluding.map { ObjectIdentifier($0) }
        shards.forEachShard { [self] shard in deliver(frame, to: shard, skipping: skip) }
    }

    /// Loop thread of `shard`.
    private func deliver(_ frame: WebSocketFrame, to shard: WebSocketShards.Shard, skipping: ObjectIdentifier?) {
        var sent = 0
        var slow: [WebSocketConnection] = []
        for (id, ws) in shard.value.members where id != skipping {
            guard ws.isOpen else { continue }
            if ws.isWritable {
                if ws.send(frame) { sent += 1 }
            } else {
                slow.append(ws)
            }
        }
        if sent > 0 { delivered.add(sent, ordering: .relaxed) }
        guard !slow.isEmpty else { return }
        switch policy {
        case .drop:
            dropped.add(slow.count, ordering: .relaxed)
        case .disconnect:
            disconnected.add(slow.count, ordering: .relaxed)
            for ws in slow {
                shard.value.remove(ws)
                ws.fail(code: .policyViolation, reason: "slow consumer", error: WebSocketError.slowConsumer)
            }
        }
    }
}
