import Synchronization
import Torus
import TorusHTTP
import TorusWebSocket

/// The optional feeds of the `/web` face, for pages that show the hub itself (its
/// own dashboard): `GET /web?feeds=routers,stats` (either or both).
///
/// - `routers`: `{"attached":DEVICE}` when a router comes online on this node (DEVICE
///   as in `GET /devices`), `{"detached":{"id":"r1"}}` when it goes (in a cluster
///   both carry `"node"`). A page reads `GET /devices` once for the routers already
///   there (and, in a cluster, again now and then for other nodes' routers).
/// - `stats` (token with the admin right, like `/metrics`): first
///   `{"stats_history":[SAMPLE,…]}` (the samples kept, oldest first), then
///   `{"stats":SAMPLE}` every `statsInterval` (see `HubStatsSample`).
///
/// Without `feeds` a `/web` client gets exactly what it always did. Each message is
/// encoded once and queued as the same bytes on every client of the feed, through a
/// `WebSocketChannel` per feed; the stats sample is taken once per interval by one
/// task, whether one page or a hundred watch.
///
/// Threading: any thread (atomics, a lock around the history).
final class HubDashboardFeeds: Sendable {
    enum Feed: String, CaseIterable, Sendable {
        case routers
        case stats
    }

    let configuration: HubDashboardConfiguration
    let presence = WebSocketChannel(policy: .drop)
    let stats = WebSocketChannel(policy: .drop)
    let presenceClients = Atomic<Int>(0)
    let statsClients = Atomic<Int>(0)
    private let history: Mutex<StatsHistory>
    private let sampler = Mutex<Task<Void, Never>?>(nil)

    init(configuration: HubDashboardConfiguration) {
        self.configuration = configuration
        history = Mutex(StatsHistory(capacity: max(0, configuration.statsHistory)))
    }

    // MARK: Admission

    /// The feeds asked for in `?feeds=`, or the refusal: an unknown feed, or stats
    /// without sampling (400); stats with a token that is not admin (403).
    func admission(_ head: RequestHead, token: GrantedToken, access: HubAccess) -> WebSocketAdmission<WebAdmission> {
        var feeds: Set<Feed> = []
        for name in (HubAPI.queryValue(head.query, "feeds") ?? "").split(separator: ",") {
            guard let feed = Feed(rawValue: String(name)) else {
                return .refuse(.badRequest, headerFields: [:], reason: "unknown feed (feeds: routers, stats)")
            }
            feeds.insert(feed)
        }
        if feeds.contains(.stats) {
            guard configuration.statsInterval != nil else {
                return .refuse(.badRequest, headerFields: [:], reason: "this hub takes no stats samples")
            }
            guard token.grant.allows(.admin) else { return access.forbidden(.admin).webSocketAdmission() }
        }
        return .admit(WebAdmission(token: token, feeds: feeds))
    }

    /// A `/web` client that asked for feeds joins them (on its loop, after its
    /// `{"subscribed":["*"]}`); stats clients get the history first. `closed` runs
    /// when it closes, after it has left the feeds' counts.
    func join(_ ws: WebSocketConnection, _ feeds: Set<Feed>, closed: @escaping () -> Void) {
        if feeds.contains(.routers) {
            presenceClients.add(1, ordering: .relaxed)
            presence.subscribe(ws)
        }
        if feeds.contains(.stats) {
            statsClients.add(1, ordering: .relaxed)
            ws.send(text: HubStatsSample.historyMessage(history.withLock { $0.samples }))
            stats.subscribe(ws)
        }
        ws.onClose = { [self] _, _ in
            if feeds.contains(.routers) { presenceClients.subtract(1, ordering: .relaxed) }
            if feeds.contains(.stats) { statsClients.subtract(1, ordering: .relaxed) }
            closed()
        }
    }

    // MARK: Routers

    /// A router came online on this node (its loop).
    func attached(_ link: RouterLink, node: String?) {
        guard presenceClients.load(ordering: .relaxed) > 0 else { return }
        presence.broadcast(text: Self.attachedMessage(HubAPI.deviceJSON(link, node: node)))
    }

    /// A router of this node went offline (its loop).
    func detached(_ id: String, node: String?) {
        guard presenceClients.load(ordering: .relaxed) > 0 else { return }
        presence.broadcast(text: Self.detachedMessage(id, node: node))
    }

    /// Another node's router came or went (a message it already formatted). Any thread.
    func announce(_ message: [UInt8]) {
        guard presenceClients.load(ordering: .relaxed) > 0 else { return }
        presence.broadcast(text: String(decoding: message, as: UTF8.self))
    }

    static func attachedMessage(_ deviceJSON: String) -> String { #"{"attached":"# + deviceJSON + "}" }

    /// Router ids and node names need no escaping (`HubFrame.isValidID`,
    /// `HubClusterConfiguration.isValidNodeID`).
    static func detachedMessage(_ id: String, node: String?) -> String {
        #"{"detached":{"id":"\#(id)""# + (node.map { #","node":"\#($0)""# } ?? "") + "}}"
    }

    // MARK: Stats

    /// Starts the sampler (when `statsInterval` is set): a task that takes a sample
    /// every interval, keeps it, and sends it to the stats clients.
    func start(core: HubCore) {
        guard let interval = configuration.statsInterval, let loop = core.group.first else { return }
        let task = Task { [self] in
            while !Task.isCancelled {
                do { try await loop.sleep(for: interval) } catch { break }
                let sample = await Self.sample(core)
                history.withLock { $0.append(sample) }
                if statsClients.load(ordering: .relaxed) > 0 { stats.broadcast(text: sample.message) }
            }
        }
        sampler.withLock { $0 = task }
    }

    /// Stops the sampler and waits for it (its timer leaves the ring before the
    /// hub's loops shut down).
    func stop() async {
        guard let task = sampler.withLock({ $0.take() }) else { return }
        task.cancel()
        await task.value
    }

    /// The samples kept, oldest first.
    var samples: [HubStatsSample] { history.withLock { $0.samples } }

    /// One sample now: every loop's ledger (each taken on its loop), memory, counts.
    static func sample(_ core: HubCore) async -> HubStatsSample {
        var ledger = LedgerSnapshot()
        for loop in core.group { ledger = ledger + (await loop.ledgerSnapshot()) }
        let heap = heapBytes()
        return HubStatsSample(time: HubClock.wallSeconds(), residentBytes: residentBytes(),
                              heapInUseBytes: heap.inUse, heapReservedBytes: heap.reserved, ledger: ledger,
                              routers: core.directory.count,
                              webClients: core.webSockets.webClients.load(ordering: .relaxed),
                              events: core.counters.events)
    }
}

/// What `/web`'s admission found: the token and the feeds asked for.
struct WebAdmission: Sendable {
    let token: GrantedToken
    let feeds: Set<HubDashboardFeeds.Feed>
}

/// The last `capacity` stats samples, oldest first (the runtime's one FIFO, the
/// oldest dropped when full).
struct StatsHistory: ~Copyable {
    let capacity: Int
    private var ring = RingBuffer<HubStatsSample>()

    init(capacity: Int) { self.capacity = capacity }

    mutating func append(_ sample: HubStatsSample) {
        guard capacity > 0 else { return }
        if ring.count == capacity { _ = ring.popFirst() }
        ring.append(sample)
    }

    /// Oldest first.
    var samples: [HubStatsSample] { (0..<ring.count).map { ring[$0] } }
}
