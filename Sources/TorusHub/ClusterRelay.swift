import Synchronization
import Torus

/// Where a relay's batches go: publishes them on the home loop.
protocol ClusterRelaySink: AnyObject, Sendable {
    /// Publishes `batch` in order and calls `ClusterRelay.finished` once per message.
    /// Home loop.
    func publishEvents(_ batch: [ClusterRelay.Outgoing])
}

/// The way a node's router events go out to the other nodes of its cluster:
/// gathered per loop during a turn, handed to the home loop (which owns the Redis
/// connection) in one hop per loop turn, published there one `PUBLISH` each, in the
/// order they were gathered. A router is on one loop, so its events keep their order.
///
/// **Backpressure, not loss.** Events handed over and not yet confirmed by Redis are
/// counted (`inFlight`). At `limit` the relay is saturated: the router link that sent
/// the event stops reading (`hold`), so routers wait in their TCP buffers instead of
/// the hub growing or dropping; when the count falls to half the limit every held
/// link reads again. The wait is bounded by the Redis command timeout (a stalled
/// Redis fails its commands, which empties the count). A held link still hands over the
/// events it had already read (the rest of its receive buffer); only events that
/// arrive while Redis is away, or more than `slack` beyond the limit, are dropped,
/// and counted.
///
/// Threading: `relay` and `hold` on the router's loop; `published` on the home loop;
/// the counters from any thread.
final class ClusterRelay: @unchecked Sendable {
    /// One loop's gathered events and its held links. Its loop's thread only.
    /// One event for the other nodes: its channel and the encoded message.
    struct Outgoing: Sendable {
        let channel: [UInt8]
        let message: [UInt8]
    }

    struct Lane {
        var messages: [Outgoing] = []
        var flushScheduled = false
        /// Held links, each once however many of its events found the relay full.
        var held: [ObjectIdentifier: RouterLink] = [:]
    }

    let home: EventLoop
    let limit: Int
    /// How far beyond `limit` held links' already-read events may go (many receive
    /// buffers full of small events) before events are dropped.
    static let slack = 65536
    private let lanes = LoopShards<Lane> { Lane() }
    private let inFlight = Atomic<Int>(0)
    private let anyHeld = Atomic<Bool>(false)
    let holds = Atomic<Int>(0)
    /// Publishes each batch on the home loop and calls `finished` for every message.
    /// Set once, by the owner's initializer, before any event.
    weak var sink: (any ClusterRelaySink)?
    private let dropped: @Sendable (Int) -> Void

    init(home: EventLoop, limit: Int, dropped: @escaping @Sendable (Int) -> Void) {
        self.home = home
        self.limit = max(2, limit)
        self.dropped = dropped
    }

    /// Events handed over and not yet confirmed (momentary).
    var eventsInFlight: Int { inFlight.load(ordering: .relaxed) }

    /// Whether senders should stop reading now (momentary).
    var isSaturated: Bool { inFlight.load(ordering: .relaxed) >= limit }

    /// Queues `message` for the home loop; flushed once at the end of this loop's turn.
    /// The router's loop.
    func relay(_ message: Outgoing, on loop: EventLoop) {
        guard inFlight.add(1, ordering: .relaxed).newValue <= limit + Self.slack else {
            inFlight.subtract(1, ordering: .relaxed)
            return dropped(1)
        }
        let lane = lanes.shard(for: loop)
        lane.value.messages.append(message)
        guard !lane.value.flushScheduled else { return }
        lane.value.flushScheduled = true
        loop.nextTick { [self] in flush(lane) }
    }

    /// Hands the lane's events to the home loop in one hop. The lane's loop.
    private func flush(_ lane: LoopShards<Lane>.Shard) {
        lane.value.flushScheduled = false
        let batch = lane.value.messages
        lane.value.messages = []
        guard !batch.isEmpty else { return }
        guard let sink else { return finished(batch.count) }
        if lane.loop === home {
            sink.publishEvents(batch)
        } else {
            home.execute { sink.publishEvents(batch) }
        }
    }

    /// `count` events confirmed or failed by Redis (or never sent): frees their
    /// places and, once the count is down to half the limit, lets held links read.
    /// Any thread.
    func finished(_ count: Int = 1) {
        let left = inFlight.subtract(count, ordering: .relaxed).newValue
        if left <= limit / 2, anyHeld.load(ordering: .relaxed) { releaseAll() }
    }

    /// Stops `link` reading while the relay is saturated (checked again here, on the
    /// link's loop, so a release that already ran cannot leave it held). The link's loop.
    func hold(_ link: RouterLink) {
        guard isSaturated, link.connection.isOpen else { return }
        let lane = lanes.shard(for: link.loop)
        let key = ObjectIdentifier(link)
        guard lane.value.held[key] == nil else { return }  // already held
        link.connection.pauseReading()
        lane.value.held[key] = link
        holds.add(1, ordering: .relaxed)
        anyHeld.store(true, ordering: .relaxed)
        // The count may have fallen in between: never hold with nobody to release.
        if !isSaturated { releaseAll() }
    }

    /// Every held link reads again (each on its loop). Any thread.
    func releaseAll() {
        guard anyHeld.exchange(false, ordering: .relaxed) else { return }
        lanes.forEachShard { lane in  // on each lane's loop
            let held = lane.value.held
            lane.value.held.removeAll(keepingCapacity: true)
            for link in held.values where link.connection.isOpen { link.connection.resumeReading() }
        }
    }
}
