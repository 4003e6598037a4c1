import Crypto
import Logging
import Synchronization
import Torus
import TorusRedis

/// This node's part in a cluster of hubs that share one Redis (a server, or a Redis
/// Cluster: see `ClusterRedis`): where each router is attached, commands to routers
/// on other nodes, and every router's events.
///
/// - **Directory.** A router's attachment is a lease in Redis: `PREFIX router:ID` holds
///   the node's name and expires after `leaseTime` unless renewed. A node claims the
///   lease when a router comes online (`SET … GET`: the previous holder, if another
///   node, is told through its channel to drop its stale link at once, after checking
///   the lease is really gone), renews every lease it holds at a third of
///   `leaseTime` with a script that renews only a lease still its own (or free), and
///   releases it (again only if its own) when the link ends. A renewal that finds
///   another node's name closes the local link. Each node also writes its routers'
///   descriptions to `PREFIX node:NODE:routers` (rewritten whole on each renewal and
///   expiring with the leases) and its name to `PREFIX nodes`; that is what `/devices`
///   on other nodes lists. A node that dies stops renewing: its leases and its hash
///   expire, and the first lister removes its name.
/// - **Events.** Each event is published once to `PREFIX events` by the node its router
///   is on; every other node receives it on its subscriber connection and hands it
///   to its own subscribers, encoding it once there. One connection publishes, in the
///   order events reach it, and a router is on one node at a time, so a router's
///   events keep their order on every node.
/// - **Commands.** A node asked for a router it does not hold reads the router's lease
///   and publishes the command to the owner's channel `PREFIX node:NODE`; the owner
///   runs it like a local one and publishes the outcome back. Nobody listening
///   (`PUBLISH` answers 0), Redis down, or no answer within the command's timeout plus
///   `replyGrace`: 503.
/// - **Outage.** Nothing waits for Redis: while it is away, cross-node commands and
///   lookups fail at once (503), events for other nodes are dropped and counted, local
///   routers, commands and subscribers carry on. When Redis is back, the node renews
///   (and so re-claims) every lease at once and resubscribes.
///
/// The Redis side is a `ClusterRedis`: on one server two connections (commands and
/// publishes; subscriptions), on a Redis Cluster one client routing every command by
/// its key, with sharded Pub/Sub (`SPUBLISH`, `SSUBSCRIBE`) for the channels. The
/// scripts are sent by their SHA (`EVALSHA`) and, where a server answers `NOSCRIPT`
/// (a fresh or restarted server, or a cluster master that never saw them), once in
/// full (`EVAL`, which also loads them there).
///
/// Threading: the Redis connections and the mutable state live on `home` (the
/// group's first loop); `relay`, `attached`, `detached` and the async lookups may be
/// called from any thread and hop there.
final class HubCluster: ClusterRelaySink, @unchecked Sendable {
    let configuration: HubClusterConfiguration
    let keys: ClusterKeys
    let home: EventLoop
    let directory: RouterDirectory
    let logger: Logger
    let counters = ClusterCounters()
    /// Hands an event from another node to this node's subscribers.
    private let deliver: @Sendable (String, [UInt8]) -> Void
    /// Hands another node's router coming or going (a `/web` routers-feed message)
    /// to this node's feed.
    private let announce: @Sendable ([UInt8]) -> Void
    private let redisBox = Mutex<ClusterRedis?>(nil)
    /// Events on their way out to the other nodes (see `ClusterRelay`).
    let relay: ClusterRelay
    private let leaseMs: String
    /// The event channels (`HubClusterConfiguration.eventChannels`), as bytes.
    private let eventChannels: [[UInt8]]

    // Loop-confined (home):
    private var phase = Phase.running
    private var waiting: [UInt64: RemoteCommand] = [:]
    private var nextRequest: UInt64 = 1
    private var renewal: Timer?

    enum Phase { case running, stopped }

    /// A command this node forwarded, waiting for the owning node's answer.
    struct RemoteCommand {
        let timer: Timer
        let done: (CommandOutcome) -> Void
    }

    init(configuration: HubClusterConfiguration, home: EventLoop, directory: RouterDirectory, logger: Logger,
         deliver: @escaping @Sendable (String, [UInt8]) -> Void,
         announce: @escaping @Sendable ([UInt8]) -> Void) {
        self.configuration = configuration
        keys = ClusterKeys(prefix: configuration.keyPrefix)
        self.home = home
        self.directory = directory
        self.logger = logger
        self.deliver = deliver
        self.announce = announce
        leaseMs = String(max(1, configuration.leaseTime.nanoseconds / 1_000_000))
        let keys = ClusterKeys(prefix: configuration.keyPrefix)
        eventChannels = (0..<max(1, configuration.eventChannels)).map { Array(keys.events(shard: $0).utf8) }
        relay = ClusterRelay(home: home, limit: configuration.maxEventsInFlight) { [counters] count in
            counters.eventsDropped.add(count, ordering: .relaxed)
        }
        relay.sink = self
    }

    var nodeID: String { configuration.nodeID }

    /// True while both connections are up (momentary): commands and publishes can
    /// go out, and this node hears its channel.
    var isConnected: Bool {
        counters.connected.load(ordering: .relaxed) && counters.subscribed.load(ordering: .relaxed)
    }

    private var store: ClusterRedis? { redisBox.withLock { $0 } }

    /// Starts connecting to Redis (it keeps reconnecting until `close`) and renewing.
    /// Once; from outside the loops.
    func start() {
        var settings = configuration.redisConfiguration
        settings.clientName = "torus-hub-" + nodeID
        let redis = ClusterRedis(deployment: configuration.deployment, home: home, onPush: { [weak self] value in
            self?.received(value)
        }, onConnected: { [weak self] up in
            guard let self else { return }
            counters.connected.store(up, ordering: .relaxed)
            logger.notice(up ? "cluster: Redis connected" : "cluster: Redis unavailable", metadata: ["node": "\(nodeID)"])
            // Back (or first up): claim every lease this node holds at once.
            if up { home.execute { [weak self] in self?.renew() } }
        }, onSubscribed: { [weak self] up in
            self?.counters.subscribed.store(up, ordering: .relaxed)
        })
        redisBox.withLock { $0 = redis }
        let channels = (0..<eventChannels.count).map { keys.events(shard: $0) } + [keys.channel(of: nodeID)]
        redis.start(subscribeTo: channels, configuration: settings,
                    backoff: configuration.backoff)
        let period = configuration.leaseTime / 3
        home.execute { [self] in
            guard phase == .running else { return }
            renewal = home.scheduleRepeating(every: period) { [weak self] _ in self?.renew() }
        }
    }

    /// Releases this node's leases (so its routers are free for other nodes at once),
    /// fails the commands still waiting for other nodes, and closes both connections.
    /// From outside the loops; once.
    func close() async {
        let ids: [String] = await withCheckedContinuation { continuation in
            home.execute { [self] in
                phase = .stopped
                renewal?.cancel()
                renewal = nil
                let all = waiting
                waiting.removeAll()
                for (_, command) in all {
                    command.timer.cancel()
                    command.done(.unreachable)
                }
                continuation.resume(returning: directory.all().compactMap(\.id))
            }
        }
        taskResumedByLoop()
        guard let redis = store else { return }
        if redis.isConnected {
            var release = ids.map { (arguments: ["EVAL", Self.releaseScript, "1", keys.lease($0), nodeID], key: keys.lease($0)) }
            release.append((["DEL", keys.routers(of: nodeID)], keys.routers(of: nodeID)))
            release.append((["SREM", keys.nodes, nodeID], keys.nodes))
            _ = await redis.pipeline(release)
        }
        await redis.close()
    }

    // MARK: Directory

    /// A router came online on this node (any thread): claim its lease.
    func attached(_ link: RouterLink) {
        guard let id = link.id else { return }
        let description = Self.describe(link, node: nodeID)
        home.execute { [self] in
            // Redis away: the first renewal after it is back claims the lease.
            guard phase == .running, let store, store.isConnected else { return }
            store.send(["SET", keys.lease(id), nodeID, "PX", leaseMs, "GET"], key: keys.lease(id)) { [self] reply in
                guard case .success(.bulkString(let bytes)) = reply else { return }
                let previous = String(decoding: bytes, as: UTF8.self)
                guard previous != nodeID else { return }
                counters.takeoversSent.add(1, ordering: .relaxed)
                publish(.takeover(router: id, node: nodeID), to: previous)
            }
            let hash = keys.routers(of: nodeID)
            store.send(["HSET", hash, id, description], key: hash)
            store.send(["PEXPIRE", hash, leaseMs], key: hash)
            store.send(["SADD", keys.nodes, nodeID], key: keys.nodes)
            announcePresence(HubDashboardFeeds.attachedMessage(description), router: id)
        }
    }

    /// Tells the other nodes' `/web` routers feeds that a router of this node came or
    /// went (one `PUBLISH` on the router's event channel, so it stays in order with
    /// the router's events). Home loop.
    private func announcePresence(_ text: String, router: String) {
        guard let store else { return }
        let message = ClusterMessage.presence(origin: nodeID, message: Array(text.utf8)).encoded
        store.publish(channel: eventChannel(of: router), message: message)
    }

    /// The event channel a router's events and presence take: FNV-1a of its id, so
    /// every node picks the same one.
    private func eventChannel(of router: String) -> [UInt8] {
        guard eventChannels.count > 1 else { return eventChannels[0] }
        var hash: UInt32 = 2_166_136_261
        for byte in router.utf8 { hash = (hash ^ UInt32(byte)) &* 16_777_619 }
        return eventChannels[Int(hash % UInt32(eventChannels.count))]
    }

    /// A router's link on this node ended (any thread): release its lease if it is
    /// still this node's.
    func detached(_ id: String) {
        home.execute { [self] in
            // Redis away: the lease expires, and the next renewal rewrites the hash.
            guard phase == .running, let store, store.isConnected else { return }
            store.send(["EVAL", Self.releaseScript, "1", keys.lease(id), nodeID], key: keys.lease(id))
            store.send(["HDEL", keys.routers(of: nodeID), id], key: keys.routers(of: nodeID))
            announcePresence(HubDashboardFeeds.detachedMessage(id, node: nodeID), router: id)
        }
    }

    /// Renews every lease this node holds (re-claiming free ones) and rewrites its
    /// routers' hash. Home loop.
    private func renew() {
        home.assertInLoop()
        guard phase == .running, let store, store.isConnected else { return }
        let links = directory.all()
        var fields: [String] = []
        fields.reserveCapacity(links.count * 2)
        for link in links {
            guard let id = link.id else { continue }
            fields.append(id)
            fields.append(Self.describe(link, node: nodeID))
            renewLease(of: id, store) { [weak self] renewed in
                if !renewed { self?.leaseLost(link) }
            }
        }
        // One transaction on the hash's own key (so on one cluster node too).
        let hash = keys.routers(of: nodeID)
        store.send(["MULTI"], key: hash)
        store.send(["DEL", hash], key: hash)
        if !fields.isEmpty { store.send(["HSET", hash] + fields, key: hash) }
        store.send(["PEXPIRE", hash, leaseMs], key: hash)
        store.send(["EXEC"], key: hash)
        store.send(["SADD", keys.nodes, nodeID], key: keys.nodes)
    }

    /// Renews `id`'s lease by the script's SHA, sending the script itself where the
    /// server does not know it (`NOSCRIPT`); `done(false)` when another node holds
    /// the lease. Home loop.
    private func renewLease(of id: String, _ store: ClusterRedis, _ done: @escaping (Bool) -> Void) {
        let key = keys.lease(id)
        store.send(["EVALSHA", Self.renewSHA, "1", key, nodeID, leaseMs], key: key) { [self] reply in
            if case .failure(.server(let message)) = reply, message.hasPrefix("NOSCRIPT") {
                store.send(["EVAL", Self.renewScript, "1", key, nodeID, leaseMs], key: key) { reply in
                    if case .success(.integer(0)) = reply { done(false) }
                }
                return
            }
            if case .success(.integer(0)) = reply { done(false) }
        }
    }

    /// Another node holds the lease of a router still linked here: this link is stale.
    private func leaseLost(_ link: RouterLink) {
        counters.leasesLost.add(1, ordering: .relaxed)
        logger.notice("cluster: router's lease is another node's; closing the local link", metadata: [
            "router": "\(link.id ?? "?")", "node": "\(nodeID)",
        ])
        link.loop.execute { link.sayGoodbye(.replaced, reason: "replaced: the router's lease is another hub node's") }
    }

    /// Renews the lease `KEYS[1]` for node `ARGV[1]` (`ARGV[2]` ms) when it is that
    /// node's or free; 1 when renewed, 0 when another node holds it.
    static let renewScript = """
        local owner = redis.call('GET', KEYS[1])
        if owner == false or owner == ARGV[1] then
          redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
          return 1
        end
        return 0
        """
    static let renewSHA = Insecure.SHA1.hash(data: Array(renewScript.utf8)).map { byte in
        let digits = Array("0123456789abcdef".utf8)
        return String(decoding: [digits[Int(byte >> 4)], digits[Int(byte & 15)]], as: UTF8.self)
    }.joined()
    /// Deletes the lease `KEYS[1]` only when node `ARGV[1]` holds it.
    static let releaseScript = """
        if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
        return 0
        """

    /// What other nodes' `/devices` show for a router of this node.
    static func describe(_ link: RouterLink, node: String) -> String {
        #"{"id":"\#(link.id ?? "")","node":"\#(node)","remote":"\#(link.remote)","connected_at":\#(link.stats?.connectedAt ?? 0)}"#
    }

    // MARK: Lookups (any task)

    /// The node holding `router`'s lease, nil when none. Throws when Redis is away.
    func owner(of router: String) async throws(RedisError) -> String? {
        guard let store, store.isConnected else { throw .connectionClosed("cluster: Redis unavailable") }
        return try await store.command(["GET", keys.lease(router)], key: keys.lease(router)).string
    }

    /// The routers on other nodes, as `/devices` shows them (id, JSON). Throws when
    /// Redis is away. Forgets the names of nodes whose routers' hash has expired.
    func remoteDevices() async throws(RedisError) -> [(id: String, json: String)] {
        guard let store, store.isConnected else { throw .connectionClosed("cluster: Redis unavailable") }
        let nodes = (try await store.command(["SMEMBERS", keys.nodes], key: keys.nodes).elements ?? [])
            .compactMap(\.string).filter { $0 != nodeID }.sorted()
        guard !nodes.isEmpty else { return [] }
        let replies = await store.pipeline(nodes.map { (["HGETALL", keys.routers(of: $0)], keys.routers(of: $0)) })
        var found: [(id: String, json: String)] = []
        var gone: [String] = []
        for (node, reply) in zip(nodes, replies) {
            let entries = Self.pairs(try reply.get())
            if entries.isEmpty { gone.append(node) }
            found += entries
        }
        if !gone.isEmpty { _ = try? await store.command(["SREM", keys.nodes] + gone, key: keys.nodes) }
        return found
    }

    /// One router on another node, as `/devices/{id}` shows it; nil when it is on none.
    func remoteDevice(_ router: String) async throws(RedisError) -> String? {
        guard let owner = try await owner(of: router), owner != nodeID, let store else { return nil }
        return try await store.command(["HGET", keys.routers(of: owner), router], key: keys.routers(of: owner)).string
    }

    /// A hash's field/value pairs, from a RESP3 map or a RESP2 flat array.
    private static func pairs(_ value: RESPValue) -> [(id: String, json: String)] {
        switch value {
        case .map(let pairs):
            return pairs.compactMap { pair in
                guard let id = pair.key.string, let json = pair.value.string else { return nil }
                return (id, json)
            }
        case .array(let flat):
            return stride(from: 0, to: flat.count - 1, by: 2).compactMap { i in
                guard let id = flat[i].string, let json = flat[i + 1].string else { return nil }
                return (id, json)
            }
        default:
            return []
        }
    }

    // MARK: Commands

    /// Runs a command on the node that holds `router`. `.offline` when no node does;
    /// `.unreachable` when Redis is away or the node does not answer. Any task.
    func command(router: String, body: [UInt8], timeout: Duration) async -> CommandOutcome {
        let owner: String?
        do {
            owner = try await self.owner(of: router)
        } catch {
            return .unreachable
        }
        guard let owner, owner != nodeID else { return .offline }
        let outcome = await withCheckedContinuation { (continuation: CheckedContinuation<CommandOutcome, Never>) in
            home.execute { [self] in
                forward(router: router, body: body, timeout: timeout, to: owner) { continuation.resume(returning: $0) }
            }
        }
        taskResumedByLoop()
        return outcome
    }

    /// Publishes the command to `owner`'s channel and waits for its answer. Home loop.
    private func forward(router: String, body: [UInt8], timeout: Duration, to owner: String,
                         done: @escaping (CommandOutcome) -> Void) {
        // Both connections: the answer comes back on the subscriber one.
        guard phase == .running, isConnected else { return done(.unreachable) }
        guard waiting.count < configuration.maxRemoteCommands else { return done(.overloaded) }
        let request = nextRequest
        nextRequest &+= 1
        let timer = home.schedule(after: timeout + configuration.replyGrace) { [self] in
            finish(request, .unreachable)
        }
        waiting[request] = RemoteCommand(timer: timer, done: done)
        counters.commandsForwarded.add(1, ordering: .relaxed)
        let timeoutMs = UInt32(clamping: timeout.nanoseconds / 1_000_000)
        publish(.command(from: nodeID, request: request, timeoutMs: timeoutMs, router: router, body: body),
                to: owner) { [self] reply in
            // Delivered to the owner's subscriber: its answer comes on our channel.
            if case .success(.integer(let receivers)) = reply, receivers > 0 { return }
            finish(request, .unreachable)
        }
    }

    private func finish(_ request: UInt64, _ outcome: CommandOutcome) {
        guard let command = waiting.removeValue(forKey: request) else { return }
        command.timer.cancel()
        command.done(outcome)
    }

    /// Runs a command another node forwarded, and publishes its outcome back. Home loop.
    private func serve(from node: String, request: UInt64, timeoutMs: UInt32, router: String, body: [UInt8]) {
        counters.commandsServed.add(1, ordering: .relaxed)
        let answer: @Sendable (CommandOutcome) -> Void = { [weak self] outcome in
            guard let self else { return }
            home.execute { self.publish(.reply(request: request, outcome: outcome), to: node) }
        }
        guard let link = directory.link(for: router) else { return answer(.offline) }
        let timeout = Duration.milliseconds(Int64(timeoutMs))
        link.loop.execute { link.command(body, timeout: timeout) { answer($0) } }
    }

    // MARK: Pub/Sub

    /// Publishes `message` to `node`'s channel. Home loop.
    private func publish(_ message: ClusterMessage, to node: String,
                         _ done: @escaping (Result<RESPValue, RedisError>) -> Void = { _ in }) {
        guard let store else { return done(.failure(.connectionClosed("cluster closed"))) }
        store.publish(channel: Array(keys.channel(of: node).utf8), message: message.encoded, done)
    }

    /// Publishes a local router's event for the other nodes, through the relay (one
    /// hop to the home loop per loop turn; backpressure on `link` when Redis falls
    /// behind). Dropped and counted while Redis is away. The link's loop.
    func relay(router: String, payload: [UInt8], from link: RouterLink) {
        guard isConnected else {
            counters.eventsDropped.add(1, ordering: .relaxed)
            return
        }
        var message: [UInt8] = []
        message.reserveCapacity(payload.count + router.utf8.count + nodeID.utf8.count + 3)
        ClusterMessage.event(origin: nodeID, router: router, payload: payload).encode(into: &message)
        relay.relay(ClusterRelay.Outgoing(channel: eventChannel(of: router), message: message), on: link.loop)
        if relay.isSaturated { relay.hold(link) }
    }

    /// One loop's batch of events, published in order, one `PUBLISH` each. Home loop.
    func publishEvents(_ batch: [ClusterRelay.Outgoing]) {
        guard phase == .running, let store, store.isConnected else {
            counters.eventsDropped.add(batch.count, ordering: .relaxed)
            relay.finished(batch.count)
            return
        }
        for outgoing in batch {
            store.publish(channel: outgoing.channel, message: outgoing.message) { [self] reply in
                if case .success = reply {
                    counters.eventsPublished.add(1, ordering: .relaxed)
                } else {
                    counters.eventsDropped.add(1, ordering: .relaxed)
                }
                relay.finished()
            }
        }
    }

    /// A push on the subscriber connection. Home loop.
    private func received(_ value: RESPValue) {
        guard let parts = value.elements, parts.count == 3, parts[0].string == "message" || parts[0].string == "smessage",
              case .bulkString(let bytes) = parts[2] else { return }  // subscribe confirmations
        guard let message = ClusterMessage.decode(bytes) else {
            counters.badMessages.add(1, ordering: .relaxed)
            logger.warning("cluster: a message that does not decode; dropped", metadata: [
                "channel": "\(parts[1].string ?? "?")", "bytes": "\(bytes.count)",
            ])
            return
        }
        switch message {
        case .event(let origin, let router, let payload):
            guard origin != nodeID else { return }  // our own, back from Redis
            counters.eventsReceived.add(1, ordering: .relaxed)
            deliver(router, payload)
        case .command(let from, let request, let timeoutMs, let router, let body):
            serve(from: from, request: request, timeoutMs: timeoutMs, router: router, body: body)
        case .reply(let request, let outcome):
            finish(request, outcome)  // a late answer finds nothing
        case .takeover(let router, let node):
            takenOver(router, by: node)
        case .presence(let origin, let message):
            guard origin != nodeID else { return }
            announce(message)
        }
    }

    /// Another node claimed `router`: close the local link once the lease confirms it
    /// is no longer this node's (a newer local link may have claimed it back since).
    private func takenOver(_ router: String, by node: String) {
        guard node != nodeID, directory.link(for: router) != nil, let store else { return }
        store.send(["GET", keys.lease(router)], key: keys.lease(router)) { [self] reply in
            guard case .success(let value) = reply, value.string != nodeID,
                  let link = directory.link(for: router) else { return }
            counters.takeoversReceived.add(1, ordering: .relaxed)
            logger.info("cluster: router attached to another node; closing the local link", metadata: [
                "router": "\(router)", "node": "\(nodeID)", "new_node": "\(node)",
            ])
            link.loop.execute { link.sayGoodbye(.replaced, reason: "replaced: attached to hub node \(node)") }
        }
    }
}

/// The cluster's counters (any thread), in `/metrics` as `torus_hub_cluster_*`.
final class ClusterCounters: Sendable {
    /// The command connection is up.
    let connected = Atomic<Bool>(false)
    /// The subscriber connection is up (and its subscriptions sent).
    let subscribed = Atomic<Bool>(false)
    let eventsPublished = Atomic<Int>(0)
    let eventsReceived = Atomic<Int>(0)
    let eventsDropped = Atomic<Int>(0)
    let badMessages = Atomic<Int>(0)
    let commandsForwarded = Atomic<Int>(0)
    let commandsServed = Atomic<Int>(0)
    let leasesLost = Atomic<Int>(0)
    let takeoversSent = Atomic<Int>(0)
    let takeoversReceived = Atomic<Int>(0)
}
