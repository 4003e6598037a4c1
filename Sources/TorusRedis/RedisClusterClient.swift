import Torus

/// A client of a Redis Cluster: it reads the slot map (`CLUSTER SHARDS`, or
/// `CLUSTER SLOTS` before Redis 7) from a seed node, keeps one `RedisConnection`
/// per master it talks to (made when first needed, made again after it drops), and
/// sends each command to the master serving the slot of its key.
///
/// Redirects: a `-MOVED slot host:port` reply moves that slot to the node named in
/// the map at once, asks for a full refresh of the map, and sends the command again
/// there; an `-ASK slot host:port` (the slot is being migrated and the key is already
/// on the target) sends `ASKING` and the command to the target, together in one send,
/// without touching the map; a `-TRYAGAIN` (a multi-key command during a migration)
/// sends it again after `Configuration/tryAgainDelay`. Each command follows at most
/// `Configuration/maxRedirects` of these; one more fails it with
/// `RedisError.tooManyRedirects`.
///
/// Refresh: the map is read again after a `-MOVED`, a `-CLUSTERDOWN`, a slot no node
/// serves, a connection to a node failing or dropping, or a shard channel's slot
/// moving; never more than one read at a time (a request during one runs another
/// after it, at most once per `Configuration/minimumRefreshInterval`). The nodes of
/// the current map are asked first, then the seeds.
///
/// Failure: an error reply fails its command only (`RedisError.server`), as on a
/// connection. A node that cannot be reached fails the commands for its slots with
/// the connection's typed error (`.connectFailed`, `.connectionClosed`, `.timeout`)
/// while commands for the other nodes go on; nothing is retried but the redirects
/// (only the caller knows whether a command is idempotent).
///
/// Sharded Pub/Sub: `ssubscribe(_:)` subscribes to each channel on the master serving
/// the channel's slot, on a connection of its own per node (`SSUBSCRIBE` per slot);
/// `onPush` receives the pushes (`smessage`, `ssubscribe`, `sunsubscribe`). When a
/// node drops such a subscription (its connection closes, it answers `-MOVED`, or it
/// sends an `sunsubscribe` because the slot moved away) the client refreshes the map
/// and subscribes again on the new master, retrying every
/// `Configuration/retryDelay` while it cannot.
///
/// Pipelining: commands for one node sent in one turn of the loop leave in one send
/// (`pipeline(_:)` sends all of its commands in one turn).
///
/// Threading: the client's state belongs to `loop`. `send(_:key:_:)` and `slotMap`
/// are for the loop thread only; `connect`, `command`, `pipeline`, `ssubscribe`,
/// `sunsubscribe`, `spublish` and `close` are for any task or thread.
/// Ownership: its connections are ordinary `RedisConnection`s (in the ledger); `close()`
/// closes them all.
public final class RedisClusterClient: @unchecked Sendable {
    /// How the client talks to a cluster. A plain value.
    public struct Configuration: Sendable {
        /// How each connection to a node is opened (RESP3 by default; sharded Pub/Sub
        /// uses a connection of its own per node, so RESP2 works too).
        public var connection = RedisConfiguration()
        /// Redirects (`-MOVED`, `-ASK`, `-TRYAGAIN`) one command may follow.
        public var maxRedirects = 5
        /// The shortest time between two reads of the slot map.
        public var minimumRefreshInterval: Duration = .milliseconds(100)
        /// How long to wait before resubscribing when it failed.
        public var retryDelay: Duration = .milliseconds(250)
        /// How long to wait before sending a command again after `-TRYAGAIN`.
        public var tryAgainDelay: Duration = .milliseconds(20)

        public init() {}
    }

    /// What the client has done so far. A plain value.
    public struct Statistics: Sendable, Equatable {
        /// `-MOVED` redirects followed (of commands, and of `SSUBSCRIBE`s).
        public var moved = 0
        /// `-ASK` redirects followed.
        public var asked = 0
        /// Reads of the slot map that succeeded.
        public var refreshes = 0
        /// `SSUBSCRIBE`s sent again after a subscription was lost.
        public var resubscriptions = 0
    }

    public let loop: EventLoop
    /// The addresses the first map is read from (and read from again when no node
    /// of the current map answers).
    public let seeds: [SocketAddress]
    public let configuration: Configuration
    private let pushHandler: (@Sendable (RESPValue) -> Void)?

    // Loop-confined state.
    private var map = RedisClusterSlotMap()
    private var links: [SocketAddress: RedisClusterNodeLink] = [:]
    private var subscriberLinks: [SocketAddress: RedisClusterNodeLink] = [:]
    /// Wanted shard channels, and the node each is subscribed on (nil: not now).
    private var shardChannels: [String: SocketAddress?] = [:]
    private var refreshing = false
    private var refreshAgain = false
    private var lastRefresh: UInt64 = 0
    private var refreshTimer: Timer?
    private var retryTimer: Timer?
    /// Waiting for the read under way; for the next one.
    private var refreshWaiters: [(RedisError?) -> Void] = []
    private var laterRefreshWaiters: [(RedisError?) -> Void] = []
    private var isClosed = false
    private var stats = Statistics()

    private init(seeds: [SocketAddress], loop: EventLoop, configuration: Configuration,
                 onPush: (@Sendable (RESPValue) -> Void)?) {
        self.seeds = seeds
        self.loop = loop
        self.configuration = configuration
        pushHandler = onPush
    }

    /// Reads the slot map from the first seed that answers and returns a client
    /// ready for commands; throws (`.clusterMap` with every seed's failure) when none
    /// gave a usable map. `onPush` receives sharded Pub/Sub pushes on the loop. Any task.
    public static func connect(seeds: [SocketAddress], on loop: EventLoop,
                               configuration: Configuration = Configuration(),
                               onPush: (@Sendable (RESPValue) -> Void)? = nil) async throws(RedisError) -> RedisClusterClient {
        let client = RedisClusterClient(seeds: seeds, loop: loop, configuration: configuration, onPush: onPush)
        do throws(RedisError) {
            try await client.refreshSlotMap()
        } catch {
            await client.close()
            throw error
        }
        return client
    }

    // MARK: Commands, loop-thread face

    /// Sends one command to the master serving the slot of `key` (nil: a command
    /// without a key, sent to any master); `complete` runs on the loop with its reply
    /// once the redirects were followed. Loop thread only.
    public func send(_ arguments: [String], key: String?, _ complete: @escaping (Result<RESPValue, RedisError>) -> Void) {
        loop.assertInLoop()
        dispatch(Command(arguments: .text(arguments), slot: key.map(RedisClusterSlot.of)), to: nil, asking: false,
                 redirects: 0, complete)
    }

    /// The same for binary arguments and a binary key. Loop thread only.
    public func send(binary arguments: [[UInt8]], key: [UInt8]?,
                     _ complete: @escaping (Result<RESPValue, RedisError>) -> Void) {
        loop.assertInLoop()
        dispatch(Command(arguments: .binary(arguments), slot: key.map(RedisClusterSlot.of)), to: nil, asking: false,
                 redirects: 0, complete)
    }

    /// The current slot map (updated by redirects and refreshes). Loop thread only.
    public var slotMap: RedisClusterSlotMap {
        loop.assertInLoop()
        return map
    }

    /// What the client has done so far. Loop thread only.
    public var statistics: Statistics {
        loop.assertInLoop()
        return stats
    }

    // MARK: Commands, async face

    /// One command's reply, from the master serving the slot of `key` (nil: any
    /// master). An error reply throws `RedisError.server`. Any task.
    public func command(_ arguments: [String], key: String?) async throws(RedisError) -> RESPValue {
        let result: Result<RESPValue, RedisError> = await withCheckedContinuation { continuation in
            loop.runOnLoop { self.send(arguments, key: key) { continuation.resume(returning: $0) } }
        }
        taskResumedByLoop()
        return try result.get()
    }

    /// Many commands sent in one turn of the loop (those for one node in one send);
    /// their replies or errors in order. Unlike a connection's pipeline, a failed node
    /// fails only its own commands. Any task.
    public func pipeline(_ commands: [(arguments: [String], key: String?)]) async -> [Result<RESPValue, RedisError>] {
        await gatherReplies(on: loop, count: commands.count) { i, complete in
            self.send(commands[i].arguments, key: commands[i].key, complete)
        }
    }

    /// `SPUBLISH channel message` on the master serving the channel's slot; the number
    /// of subscribers that received it. Any task.
    @discardableResult
    public func spublish(_ channel: String, _ message: String) async throws(RedisError) -> Int64 {
        let reply = try await command(["SPUBLISH", channel, message], key: channel)
        guard let count = reply.integer else { throw .server("SPUBLISH: unexpected reply \(reply)") }
        return count
    }

    /// The slot map, as the client knows it now. Any task.
    public func currentSlotMap() async -> RedisClusterSlotMap {
        await onLoop { self.map }
    }

    /// What the client has done so far. Any task.
    public func currentStatistics() async -> Statistics {
        await onLoop { self.stats }
    }

    /// Reads the slot map again now (after one under way, if any); throws when no
    /// node gave a usable one (the old map stays). Any task.
    public func refreshSlotMap() async throws(RedisError) {
        let failure: RedisError? = await withCheckedContinuation { continuation in
            loop.runOnLoop { self.refreshNow { continuation.resume(returning: $0) } }
        }
        taskResumedByLoop()
        if let failure { throw failure }
    }

    /// A read of the map that starts now, or right after the one under way; `done`
    /// gets its failure (nil: read). Loop thread.
    private func refreshNow(_ done: @escaping (RedisError?) -> Void) {
        loop.assertInLoop()
        guard !isClosed else { return done(.connectionClosed("cluster client closed")) }
        if refreshing {
            laterRefreshWaiters.append(done)
            refreshAgain = true
            return
        }
        refreshWaiters.append(done)
        refreshTimer?.cancel()
        refreshTimer = nil
        startRefresh()
    }

    // MARK: Sharded Pub/Sub

    /// `SSUBSCRIBE`s to `channels`, each on the master serving its slot, now and after
    /// every loss of the subscription; pushes arrive through `onPush`. Any thread.
    public func ssubscribe(_ channels: [String]) {
        loop.runOnLoop { [self] in
            guard !isClosed else { return }
            for channel in channels where shardChannels[channel] == nil {
                shardChannels[channel] = .some(nil)
            }
            resubscribe()
        }
    }

    /// `SUNSUBSCRIBE`s from `channels` (and stops subscribing to them again). Any thread.
    public func sunsubscribe(_ channels: [String]) {
        loop.runOnLoop { [self] in
            var byNode: [SocketAddress: [String]] = [:]
            for channel in channels {
                guard let entry = shardChannels.removeValue(forKey: channel) else { continue }
                if let address = entry { byNode[address, default: []].append(channel) }
            }
            for (address, channels) in byNode {
                // One SUNSUBSCRIBE per slot: a node refuses channels of several slots.
                let bySlot = Dictionary(grouping: channels, by: RedisClusterSlot.of)
                for channels in bySlot.values {
                    subscriberLinks[address]?.connection?.sendExpectingPushes(["SUNSUBSCRIBE"] + channels.sorted())
                }
            }
        }
    }

    /// Closes every connection; commands still waiting fail with `.connectionClosed`,
    /// later ones at once. Returns once all are closed. Any task.
    public func close() async {
        let toClose: [RedisClusterNodeLink] = await onLoop {
            self.isClosed = true
            self.refreshTimer?.cancel()
            self.refreshTimer = nil
            self.retryTimer?.cancel()
            self.retryTimer = nil
            let waiters = self.refreshWaiters + self.laterRefreshWaiters
            self.refreshWaiters = []
            self.laterRefreshWaiters = []
            for waiter in waiters { waiter(.connectionClosed("cluster client closed")) }
            self.shardChannels = [:]
            let all = Array(self.links.values) + Array(self.subscriberLinks.values)
            self.links = [:]
            self.subscriberLinks = [:]
            return all
        }
        for link in toClose { await link.close() }
    }

    // MARK: Routing

    private enum Arguments {
        case text([String])
        case binary([[UInt8]])
    }

    private struct Command {
        let arguments: Arguments
        let slot: Int?

        func send(on connection: RedisConnection, _ complete: @escaping (Result<RESPValue, RedisError>) -> Void) {
            switch arguments {
            case .text(let arguments): connection.send(arguments, complete)
            case .binary(let arguments): connection.send(binary: arguments, complete)
            }
        }
    }

    /// Sends `command` to `target` (nil: where the map says), after `ASKING` when
    /// `asking`. Loop thread.
    private func dispatch(_ command: Command, to target: SocketAddress?, asking: Bool, redirects: Int,
                          _ complete: @escaping (Result<RESPValue, RedisError>) -> Void) {
        loop.assertInLoop()
        guard !isClosed else { return complete(.failure(.connectionClosed("cluster client closed"))) }
        let address: SocketAddress
        if let target {
            address = target
        } else if let slot = command.slot {
            guard let owner = map.address(forSlot: slot) else {
                requestRefresh()
                return complete(.failure(.clusterDown("no node serves slot \(slot)")))
            }
            address = owner
        } else {
            guard let any = anyMaster() else {
                requestRefresh()
                return complete(.failure(.clusterDown("no node in the slot map")))
            }
            address = any
        }
        link(for: address).withConnection { [self] result in
            switch result {
            case .failure(let error):
                complete(.failure(error))
            case .success(let connection):
                if asking { connection.send(["ASKING"]) { _ in } }
                command.send(on: connection) { [self] reply in
                    handle(reply, of: command, from: address, redirects: redirects, complete)
                }
            }
        }
    }

    /// A reply: given to the caller, or a redirect followed. Loop thread.
    private func handle(_ reply: Result<RESPValue, RedisError>, of command: Command, from address: SocketAddress,
                        redirects: Int, _ complete: @escaping (Result<RESPValue, RedisError>) -> Void) {
        guard case .failure(.server(let message)) = reply else { return complete(reply) }
        if let redirect = RedisClusterRedirect(message, from: address) {
            guard redirects < configuration.maxRedirects, !isClosed else {
                return complete(.failure(isClosed ? .connectionClosed("cluster client closed") : .tooManyRedirects(message)))
            }
            switch redirect.kind {
            case .moved:
                stats.moved += 1
                map.assign(slot: redirect.slot, to: redirect.address)
                requestRefresh()
                dispatch(command, to: redirect.address, asking: false, redirects: redirects + 1, complete)
            case .ask:
                stats.asked += 1
                dispatch(command, to: redirect.address, asking: true, redirects: redirects + 1, complete)
            }
        } else if message.hasPrefix("TRYAGAIN") {
            guard redirects < configuration.maxRedirects, !isClosed else {
                return complete(.failure(isClosed ? .connectionClosed("cluster client closed") : .tooManyRedirects(message)))
            }
            loop.schedule(after: configuration.tryAgainDelay) { [self] in
                dispatch(command, to: nil, asking: false, redirects: redirects + 1, complete)
            }
        } else if message.hasPrefix("CLUSTERDOWN") {
            requestRefresh()
            complete(.failure(.clusterDown(message)))
        } else {
            complete(reply)
        }
    }

    /// A master for a command without a key: one already connected, else the first.
    private func anyMaster() -> SocketAddress? {
        let masters = map.masters.map(\.address)
        return masters.first { links[$0]?.connection != nil } ?? masters.first
    }

    /// The command connection to `address`. Loop thread.
    private func link(for address: SocketAddress) -> RedisClusterNodeLink {
        if let link = links[address] { return link }
        let link = RedisClusterNodeLink(address: address, loop: loop, configuration: configuration.connection)
        link.onDown = { [weak self] _ in self?.requestRefresh() }
        links[address] = link
        return link
    }

    // MARK: Refreshing the map

    /// Reads the map again: at once when none was read for
    /// `minimumRefreshInterval`, else after it; one read at a time. Loop thread.
    private func requestRefresh() {
        loop.assertInLoop()
        guard !isClosed else { return }
        if refreshing {
            refreshAgain = true
            return
        }
        guard refreshTimer == nil else { return }
        let interval = UInt64(configuration.minimumRefreshInterval.nanoseconds)
        let due = lastRefresh == 0 ? 0 : lastRefresh &+ interval
        if loop.now >= due {
            startRefresh()
        } else {
            refreshTimer = loop.schedule(after: .nanoseconds(Int64(due - loop.now))) { [self] in
                refreshTimer = nil
                if !refreshing && !isClosed { startRefresh() }
            }
        }
    }

    private func startRefresh() {
        refreshing = true
        refreshAgain = false
        refreshWaiters += laterRefreshWaiters
        laterRefreshWaiters = []
        var candidates: [SocketAddress] = []
        let known = map.masters.map(\.address)
        for address in known.filter({ links[$0]?.connection != nil }) + known + seeds where !candidates.contains(address) {
            candidates.append(address)
        }
        readMap(from: candidates[...], failures: [])
    }

    /// Asks the first of `candidates` for the map (`CLUSTER SHARDS`, then `CLUSTER
    /// SLOTS` when the node does not know it); the next one when that fails.
    private func readMap(from candidates: ArraySlice<SocketAddress>, failures: [String]) {
        guard !isClosed else { return finishRefresh(.connectionClosed("cluster client closed")) }
        guard let address = candidates.first else {
            return finishRefresh(.clusterMap(failures.isEmpty ? "no node to ask" : failures.joined(separator: "; ")))
        }
        let rest = candidates.dropFirst()
        link(for: address).withConnection { [self] result in
            let connection: RedisConnection
            switch result {
            case .success(let open): connection = open
            case .failure(let error): return readMap(from: rest, failures: failures + ["\(address): \(error)"])
            }
            connection.send(["CLUSTER", "SHARDS"]) { [self] reply in
                switch reply {
                case .success(let value):
                    do throws(RedisError) {
                        apply(try RedisClusterSlotMap.parse(shards: value, host: address.host))
                    } catch {
                        readMap(from: rest, failures: failures + ["\(address): \(error)"])
                    }
                case .failure(.server):
                    // Before Redis 7: CLUSTER SLOTS.
                    connection.send(["CLUSTER", "SLOTS"]) { [self] reply in
                        do throws(RedisError) {
                            apply(try RedisClusterSlotMap.parse(slots: try reply.get(), host: address.host))
                        } catch {
                            readMap(from: rest, failures: failures + ["\(address): \(error)"])
                        }
                    }
                case .failure(let error):
                    readMap(from: rest, failures: failures + ["\(address): \(error)"])
                }
            }
        }
    }

    private func apply(_ newMap: RedisClusterSlotMap) {
        guard newMap.assignedSlots > 0 else {
            return finishRefresh(.clusterMap("the node serves no slots (not a cluster yet?)"))
        }
        map = newMap
        stats.refreshes += 1
        finishRefresh(nil)
    }

    private func finishRefresh(_ failure: RedisError?) {
        refreshing = false
        lastRefresh = loop.now
        let waiters = refreshWaiters
        refreshWaiters = []
        for waiter in waiters { waiter(failure) }
        guard !isClosed else { return }
        if refreshAgain {
            refreshAgain = false
            requestRefresh()
        }
        resubscribe()
    }

    // MARK: Subscriptions

    /// Subscribes every wanted channel that is not subscribed now on the master of its
    /// slot (one `SSUBSCRIBE` per slot). Loop thread.
    private func resubscribe() {
        loop.assertInLoop()
        guard !isClosed else { return }
        var bySlot: [Int: [String]] = [:]
        for (channel, node) in shardChannels where node == nil {
            bySlot[RedisClusterSlot.of(channel), default: []].append(channel)
        }
        for (slot, channels) in bySlot {
            guard let address = map.address(forSlot: slot) else {
                requestRefresh()
                scheduleRetry()
                continue
            }
            for channel in channels { shardChannels[channel] = .some(address) }
            subscriberLink(for: address).withConnection { [self] result in
                switch result {
                case .success(let connection):
                    // Channels dropped (or unsubscribed) meanwhile are not sent.
                    let still = channels.filter { shardChannels[$0] == .some(address) }.sorted()
                    guard !still.isEmpty else { return }
                    stats.resubscriptions += 1
                    connection.sendExpectingPushes(["SSUBSCRIBE"] + still)
                case .failure:
                    for channel in channels where shardChannels[channel] == .some(address) {
                        shardChannels[channel] = .some(nil)
                    }
                    scheduleRetry()
                }
            }
        }
    }

    /// Refreshes the map and subscribes again after `retryDelay`.
    private func scheduleRetry() {
        guard !isClosed, retryTimer == nil else { return }
        retryTimer = loop.schedule(after: configuration.retryDelay) { [self] in
            retryTimer = nil
            requestRefresh()
        }
    }

    /// The Pub/Sub connection to `address`. Loop thread.
    private func subscriberLink(for address: SocketAddress) -> RedisClusterNodeLink {
        if let link = subscriberLinks[address] { return link }
        let link = RedisClusterNodeLink(address: address, loop: loop, configuration: configuration.connection)
        link.onPush = { [weak self] value in self?.received(push: value, from: address) }
        link.onUnmatchedReply = { [weak self] value in self?.received(unmatched: value, from: address) }
        link.onDown = { [weak self] _ in self?.lost(address) }
        subscriberLinks[address] = link
        return link
    }

    /// A push on a Pub/Sub connection: handed on; an `sunsubscribe` of a channel
    /// still wanted means the node dropped it (its slot moved).
    private func received(push value: RESPValue, from address: SocketAddress) {
        if let parts = value.elements, parts.count >= 2, parts[0].string == "sunsubscribe",
           let channel = parts[1].string, shardChannels[channel] == .some(address) {
            shardChannels[channel] = .some(nil)
            requestRefresh()
        }
        pushHandler?(value)
    }

    /// An error reply on a Pub/Sub connection: a `-MOVED` to an `SSUBSCRIBE`.
    private func received(unmatched value: RESPValue, from address: SocketAddress) {
        guard case .error(let message) = value, let redirect = RedisClusterRedirect(message, from: address) else { return }
        if redirect.kind == .moved {
            stats.moved += 1
            map.assign(slot: redirect.slot, to: redirect.address)
        }
        for (channel, node) in shardChannels where node == address && RedisClusterSlot.of(channel) == redirect.slot {
            shardChannels[channel] = .some(nil)
        }
        requestRefresh()
    }

    /// A Pub/Sub connection closed: its channels are subscribed again elsewhere (or
    /// there, once it is back) after the refresh; a subscription that cannot be made
    /// then is retried (`resubscribe`).
    private func lost(_ address: SocketAddress) {
        for (channel, node) in shardChannels where node == address {
            shardChannels[channel] = .some(nil)
        }
        requestRefresh()
    }

    // MARK: Helpers

    /// Runs `body` on the loop and returns its result. Any task.
    private func onLoop<T: Sendable>(_ body: @escaping @Sendable () -> T) async -> T {
        let value: T = await withCheckedContinuation { continuation in
            loop.runOnLoop { continuation.resume(returning: body()) }
        }
        taskResumedByLoop()
        return value
    }
}
