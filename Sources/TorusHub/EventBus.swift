import Synchronization
import Torus
import TorusWebSocket

/// One event a router sent, as subscribers receive it.
public struct HubEvent: Sendable, Equatable {
    public let router: String
    /// The EVENT frame's payload, unchanged (shared, copy-on-write).
    public let payload: [UInt8]
    /// Hub-wide sequence number (order of arrival at the hub).
    public let sequence: UInt64
    /// The WebSocket text frame of the `/app` and `/web` faces, when it was encoded
    /// at publication (once per event, shared by every WebSocket subscriber).
    let encodedFrame: WebSocketFrame?

    public init(router: String, payload: [UInt8], sequence: UInt64) {
        self.init(router: router, payload: payload, sequence: sequence, encodeFrame: false)
    }

    /// `encodeFrame`: encode the WebSocket frame now (when WebSocket subscribers
    /// exist), so every one of them sends the same bytes.
    init(router: String, payload: [UInt8], sequence: UInt64, encodeFrame: Bool) {
        self.router = router
        self.payload = payload
        self.sequence = sequence
        encodedFrame = encodeFrame ? HubEventJSON.frame(router: router, sequence: sequence, payload: payload) : nil
    }

    /// The event as the WebSocket faces send it: one unmasked text frame carrying
    /// `{"router":ID,"seq":N,"data":PAYLOAD-AS-A-JSON-STRING}` (see `HubEventJSON`).
    public var webSocketFrame: WebSocketFrame {
        encodedFrame ?? HubEventJSON.frame(router: router, sequence: sequence, payload: payload)
    }

    public static func == (a: HubEvent, b: HubEvent) -> Bool {
        a.router == b.router && a.payload == b.payload && a.sequence == b.sequence
    }
}

/// Something that receives router events: a server-sent-events stream or a
/// WebSocket `/app` client (the `/web` face is one `WebSocketChannel` instead).
///
/// Threading: a subscriber belongs to one loop (`loop`); `wants` and `deliver` are
/// called on that loop's thread only. `deliver` must not block and must bound what
/// it keeps (a slow subscriber drops or disconnects, it never grows the hub).
public protocol HubSubscriber: AnyObject, Sendable {
    var loop: EventLoop { get }
    /// True when the subscriber wants events from `router`.
    func wants(_ router: String) -> Bool
    /// One event. Returns false when it was dropped (queue full).
    func deliver(_ event: HubEvent) -> Bool
    /// The bus is closing (hub shutdown): finish.
    func busClosed()
}

/// Fans router events out to subscribers on every loop.
///
/// Subscribers are kept per loop and touched only on their loop. Publishing from a
/// router's loop posts one job per loop that has subscribers (not one per
/// subscriber); that job hands the event to the loop's subscribers in turn. The
/// event's payload array is shared by all of them.
public final class EventBus: Sendable {
    private let lanes = LoopShards<Lane> { Lane() }
    private let closed = Atomic<Bool>(false)
    private let counters: HubCounters

    /// Subscribers of one loop. `subscribers` is confined to that loop's thread;
    /// `count` is read by publishers on any thread.
    final class Lane: @unchecked Sendable {
        var subscribers: [ObjectIdentifier: any HubSubscriber] = [:]
        let count = Atomic<Int>(0)
    }

    init(loops: [EventLoop], counters: HubCounters) {
        self.counters = counters
        for loop in loops { _ = lanes.shard(for: loop) }
    }

    /// Adds `subscriber` (on its loop). Returns false when the bus has closed.
    @discardableResult
    public func subscribe(_ subscriber: any HubSubscriber) -> Bool {
        guard !closed.load(ordering: .acquiring) else { return false }
        let lane = lanes.shard(for: subscriber.loop).value
        lane.subscribers[ObjectIdentifier(subscriber)] = subscriber
        lane.count.store(lane.subscribers.count, ordering: .releasing)
        return true
    }

    /// Removes `subscriber` (on its loop). Idempotent.
    public func unsubscribe(_ subscriber: any HubSubscriber) {
        let lane = lanes.shard(for: subscriber.loop).value
        lane.subscribers[ObjectIdentifier(subscriber)] = nil
        lane.count.store(lane.subscribers.count, ordering: .releasing)
    }

    /// Subscribers on all loops (momentary).
    public var subscriberCount: Int { lanes.shards.reduce(0) { $0 + $1.object.count.load(ordering: .relaxed) } }

    /// Publishes `event` to every interested subscriber. Any thread.
    public func publish(_ event: HubEvent) {
        guard !closed.load(ordering: .relaxed) else { return }
        for shard in lanes.shards where shard.object.count.load(ordering: .acquiring) > 0 {
            shard.loop.execute { [counters] in
                let lane = shard.value
                var delivered = 0
                var dropped = 0
                for subscriber in lane.subscribers.values where subscriber.wants(event.router) {
                    if subscriber.deliver(event) { delivered += 1 } else { dropped += 1 }
                }
                if delivered > 0 { counters.eventsDelivered.add(delivered, ordering: .relaxed) }
                if dropped > 0 { counters.eventsDropped.add(dropped, ordering: .relaxed) }
            }
        }
    }

    /// Closes the bus: no new subscribers, every current one is told to finish.
    public func close() {
        guard !closed.exchange(true, ordering: .acquiringAndReleasing) else { return }
        lanes.forEachShard { shard in
            let lane = shard.value
            let all = Array(lane.subscribers.values)
            lane.subscribers.removeAll()
            lane.count.store(0, ordering: .releasing)
            for s in all { s.busClosed() }
        }
    }
}
