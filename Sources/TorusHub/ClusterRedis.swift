import Synchronization
import Torus
import TorusRedis

/// The Redis a hub cluster shares, behind one face, in either deployment:
///
/// - **One server** (`HubClusterConfiguration.Deployment.server`): two `RedisClient`s,
///   both reconnecting with backoff: one for commands and publishes (`PUBLISH`), one
///   for the subscriptions (`SUBSCRIBE`; pushes are `message`).
/// - **A Redis Cluster** (`.cluster`): one `RedisClusterClient`, which sends each
///   command to the master serving its key's slot (following `MOVED`/`ASK`) and keeps
///   the subscriptions as sharded Pub/Sub (`SSUBSCRIBE` on the channel's master,
///   `SPUBLISH` there; pushes are `smessage`), resubscribing when a slot moves. Its
///   first slot map is read in the background, again and again with backoff until a
///   seed answers, so a node starts while its Redis is away, as with one server.
///
/// Every command names its key, which one server ignores and a cluster routes by.
/// The subscriptions' state is reported through `onSubscribed`, the command side's
/// through `onConnected` (one server: its connection's status; a cluster: whether a
/// slot map has been read: a master that cannot be reached then fails its own
/// commands with a typed error, which the hub treats as an outage of those keys).
///
/// Threading: `send`, `publish` are for the home loop; `command`, `pipeline`, `close`
/// for any task; `isConnected` any thread.
final class ClusterRedis: @unchecked Sendable {
    typealias Reply = Result<RESPValue, RedisError>

    let home: EventLoop
    let deployment: HubClusterConfiguration.Deployment
    /// The subscriptions' pushes (the message kind is `message` or `smessage`).
    private let onPush: @Sendable (RESPValue) -> Void
    private let onConnected: @Sendable (Bool) -> Void
    private let onSubscribed: @Sendable (Bool) -> Void
    private let backend = Mutex<Backend>(.connecting)
    private let connected = Atomic<Bool>(false)

    private enum Backend {
        /// A cluster's first slot map is not read yet (or the face is closed).
        case connecting
        case server(store: RedisClient, bus: RedisClient)
        case cluster(RedisClusterClient)
        case closed
    }

    /// Loop-confined (home): shard channels whose `SSUBSCRIBE` a node confirmed.
    private var confirmedShardChannels: Set<String> = []
    private var channels: [String] = []

    init(deployment: HubClusterConfiguration.Deployment, home: EventLoop,
         onPush: @escaping @Sendable (RESPValue) -> Void,
         onConnected: @escaping @Sendable (Bool) -> Void,
         onSubscribed: @escaping @Sendable (Bool) -> Void) {
        self.deployment = deployment
        self.home = home
        self.onPush = onPush
        self.onConnected = onConnected
        self.onSubscribed = onSubscribed
    }

    /// `PUBLISH` or `SPUBLISH`: what one publish costs Redis is one command either way.
    var isSharded: Bool {
        if case .cluster = deployment { return true }
        return false
    }

    /// True while commands can go out (momentary). Any thread.
    var isConnected: Bool { connected.load(ordering: .relaxed) }

    /// Starts connecting and subscribes to `channels` once connected (again after
    /// every reconnect or slot move). Once; from outside the loops.
    func start(subscribeTo channels: [String], configuration: RedisConfiguration, backoff: RedisClient.Backoff) {
        switch deployment {
        case .server(let address):
            let store = RedisClient(address: address, on: home, configuration: configuration, backoff: backoff,
                                    onStatus: { [weak self] status in self?.setConnected(status == .connected) })
            let bus = RedisClient(address: address, on: home, configuration: configuration, backoff: backoff,
                                  onPush: onPush, onStatus: { [onSubscribed] status in onSubscribed(status == .connected) })
            bus.subscribe(channels)
            backend.withLock { $0 = .server(store: store, bus: bus) }
        case .cluster(let seeds):
            home.execute { [self] in self.channels = channels }
            var settings = RedisClusterClient.Configuration()
            settings.connection = configuration
            Task { await self.connectCluster(seeds: seeds, settings: settings, backoff: backoff) }
        }
    }

    /// Reads the first slot map, retrying with backoff until a seed answers or the
    /// face is closed.
    private func connectCluster(seeds: [SocketAddress], settings: RedisClusterClient.Configuration,
                                backoff: RedisClient.Backoff) async {
        var delay = backoff.initial
        while true {
            let push: @Sendable (RESPValue) -> Void = { [weak self] value in self?.clusterPush(value) }
            if let client = try? await RedisClusterClient.connect(seeds: seeds, on: home, configuration: settings,
                                                                   onPush: push) {
                let kept = backend.withLock { state -> Bool in
                    guard case .connecting = state else { return false }
                    state = .cluster(client)
                    return true
                }
                guard kept else { return await client.close() }
                setConnected(true)
                home.execute { [self] in client.ssubscribe(channels) }
                return
            }
            guard case .connecting = backend.withLock({ $0 }) else { return }
            try? await Task.sleep(for: delay)
            delay = min(delay * 2, backoff.maximum)
        }
    }

    private func setConnected(_ up: Bool) {
        guard connected.exchange(up, ordering: .relaxed) != up else { return }
        onConnected(up)
    }

    /// A push from one of the cluster's shard subscriptions. Home loop.
    private func clusterPush(_ value: RESPValue) {
        if let parts = value.elements, parts.count >= 2, let kind = parts[0].string, let channel = parts[1].string,
           kind == "ssubscribe" || kind == "sunsubscribe" {
            let before = confirmedShardChannels.count == channels.count
            if kind == "ssubscribe" { confirmedShardChannels.insert(channel) } else { confirmedShardChannels.remove(channel) }
            let after = confirmedShardChannels.count == channels.count
            if before != after { onSubscribed(after) }
            return
        }
        onPush(value)
    }

    // MARK: Commands

    /// Sends one command about `key`; `complete` runs on the home loop. Home loop.
    func send(_ arguments: [String], key: String, _ complete: @escaping (Reply) -> Void = { _ in }) {
        home.assertInLoop()
        switch backend.withLock({ $0 }) {
        case .server(let store, _): store.send(arguments, complete)
        case .cluster(let client): client.send(arguments, key: key, complete)
        case .connecting, .closed: complete(.failure(.connectionClosed("cluster: Redis unavailable")))
        }
    }

    /// Publishes `message` on `channel` (`PUBLISH`, or `SPUBLISH` on a cluster); the
    /// reply is the number of subscribers that got it. Home loop.
    func publish(channel: [UInt8], message: [UInt8], _ complete: @escaping (Reply) -> Void = { _ in }) {
        home.assertInLoop()
        switch backend.withLock({ $0 }) {
        case .server(let store, _): store.send(binary: [Self.publishVerb, channel, message], complete)
        case .cluster(let client): client.send(binary: [Self.shardedPublishVerb, channel, message], key: channel, complete)
        case .connecting, .closed: complete(.failure(.connectionClosed("cluster: Redis unavailable")))
        }
    }

    private static let publishVerb = Array("PUBLISH".utf8)
    private static let shardedPublishVerb = Array("SPUBLISH".utf8)

    /// One command's reply. Any task.
    func command(_ arguments: [String], key: String) async throws(RedisError) -> RESPValue {
        switch backend.withLock({ $0 }) {
        case .server(let store, _): return try await store.command(arguments)
        case .cluster(let client): return try await client.command(arguments, key: key)
        case .connecting, .closed: throw .connectionClosed("cluster: Redis unavailable")
        }
    }

    /// Many commands in one turn; their replies in order. Any task.
    func pipeline(_ commands: [(arguments: [String], key: String)]) async -> [Reply] {
        switch backend.withLock({ $0 }) {
        case .server(let store, _):
            do {
                return try await store.pipeline(commands.map(\.arguments))
            } catch {
                return commands.map { _ in .failure(error) }
            }
        case .cluster(let client):
            return await client.pipeline(commands.map { ($0.arguments, $0.key) })
        case .connecting, .closed:
            return commands.map { _ in .failure(.connectionClosed("cluster: Redis unavailable")) }
        }
    }

    /// Closes every connection (a cluster still reading its first map stops trying).
    /// Any task; once.
    func close() async {
        let state = backend.withLock { state -> Backend in
            let was = state
            state = .closed
            return was
        }
        // Closing is not an outage: no status callback.
        connected.store(false, ordering: .relaxed)
        switch state {
        case .server(let store, let bus):
            await bus.close()
            await store.close()
        case .cluster(let client):
            await client.close()
        case .connecting, .closed:
            break
        }
    }
}
