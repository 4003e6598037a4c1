import HTTPTypes
import Synchronization
import Torus
import TorusTLS

/// An HTTP/1.1 server: one `SO_REUSEPORT` listener per loop of a group, a router
/// shared by all loops, one `HTTPConnectionHandler` per connection.
///
/// Ownership: the server owns its listeners and the per-loop registries of live
/// connections (used by `shutdown` to close idle keep-alive connections and to let
/// busy ones finish); each connection belongs to the loop that accepted it.
public final class HTTPServer: Sendable {
    let state: HTTPServerState
    let server: Server

    /// The bound address (the real port when 0 was asked for).
    public var address: SocketAddress { server.address }

    /// Starts serving `router` on every loop of `group`. Call from outside the loops.
    public static func start(on group: EventLoopGroup, address: SocketAddress, router: HTTPRouter,
                             configuration: HTTPServerConfiguration = HTTPServerConfiguration()) throws -> HTTPServer {
        try start(on: group.loops, address: address, router: router, configuration: configuration)
    }

    public static func start(on loops: [EventLoop], address: SocketAddress, router: HTTPRouter,
                             configuration: HTTPServerConfiguration = HTTPServerConfiguration()) throws -> HTTPServer {
        let state = HTTPServerState(router: router, configuration: configuration)
        var options = configuration.socket
        options.idleTimeout = configuration.keepAliveTimeout
        let tls = configuration.tls
        let server = try Server.start(on: loops, address: address, options: options) { connection in
            if let tls { connection.installTLS(tls) }
            return HTTPConnectionHandler(server: state, connection: connection)
        }
        return HTTPServer(state: state, server: server)
    }

    private init(state: HTTPServerState, server: Server) {
        self.state = state
        self.server = server
    }

    /// Connections refused so far because their source address held
    /// `maxConnectionsPerSource` already.
    public var refusedConnections: Int { state.sources?.refused ?? 0 }

    /// Live HTTP connections on all loops (a momentary count).
    public func connectionCount() async -> Int {
        await state.registries.sum { $0.value.count }
    }

    /// Graceful shutdown: stop accepting, close idle keep-alive connections, let
    /// requests in progress finish for up to `grace`, then close what is left.
    public func shutdown(grace: Duration = .seconds(10)) async {
        server.close()
        state.registries.forEachShard { shard in
            for handler in shard.value.members { handler.beginStopping() }
        }
        let clock = ContinuousClock()
        let deadline = clock.now + grace
        while clock.now < deadline {
            if await connectionCount() == 0 { return }
            try? await Task.sleep(for: .milliseconds(20))
        }
        state.registries.forEachShard { shard in
            for handler in shard.value.members { handler.connection.close() }
        }
    }
}

/// State shared by every connection of a server: immutable router and configuration,
/// plus one registry per loop (each touched only by its own loop thread, found by the
/// loop's identity: two standalone loops never share one).
final class HTTPServerState: @unchecked Sendable {
    let router: HTTPRouter
    let configuration: HTTPServerConfiguration
    let optionsResponse = PrecomputedResponse(headerFields: [.allow: "GET, HEAD, POST, PUT, DELETE, OPTIONS"], body: [])
    let registries = LoopShards<IndexedSet<HTTPConnectionHandler>> { IndexedSet(index: \.registrySlot) }
    /// Per-request events are logged only when the logger is at debug level (checked
    /// once, so the hot path pays nothing at the default level).
    let logsRequests: Bool
    /// Each loop's spare request work (`HTTPScratch`), made on first use.
    private let scratches = LoopShards<HTTPScratch?> { nil }

    /// The route for `head`. Here, on the router's owner, the router is borrowed in
    /// place; a caller reaching through `server.router` copied it first (a retain and a
    /// release of each of its three arrays per request).
    func match(_ head: RequestHead) -> HTTPRouter.Match { router.match(head) }

    /// `loop`'s scratch. Loop thread only.
    func scratch(for loop: EventLoop) -> HTTPScratch {
        let shard = scratches.shard(for: loop)
        if let s = shard.value { return s }
        let s = HTTPScratch(loop: loop, limits: configuration.limits)
        shard.value = s
        return s
    }

    /// Spare request work kept on all loops (a momentary count; tests).
    func spareWorkCount() async -> Int {
        await scratches.sum { $0.value?.spareCount ?? 0 }
    }

    /// Open connections per source address, when `maxConnectionsPerSource` is set.
    let sources: SourceConnectionCount?

    init(router: HTTPRouter, configuration: HTTPServerConfiguration) {
        self.router = router
        self.configuration = configuration
        logsRequests = configuration.logger.logLevel <= .debug
        sources = configuration.maxConnectionsPerSource.map { SourceConnectionCount(limit: $0) }
    }

    /// Registers a new connection's handler, or returns false when its source holds
    /// `maxConnectionsPerSource` already (then it is not registered). Loop thread of
    /// `handler`'s connection.
    func register(_ handler: HTTPConnectionHandler) -> Bool {
        if let sources, !sources.open(handler.connection.remoteAddress) { return false }
        registries.shard(for: handler.connection.loop).value.insert(handler)
        return true
    }

    /// Forgets a registered handler (closed or upgraded); idempotent. Loop thread of
    /// `handler`'s connection.
    func unregister(_ handler: HTTPConnectionHandler) {
        guard registries.shard(for: handler.connection.loop).value.remove(handler) else { return }
        sources?.close(handler.connection.remoteAddress)
    }
}

/// Connections open per source address (the address without the port), against a
/// limit. Any thread: a lock held for one dictionary operation.
final class SourceConnectionCount: Sendable {
    let limit: Int
    private let open = Mutex<[String: Int]>([:])
    private let refusedCount = Atomic<Int>(0)

    init(limit: Int) { self.limit = max(1, limit) }

    var refused: Int { refusedCount.load(ordering: .relaxed) }

    /// Counts a new connection from `address`; false (not counted) at the limit.
    func open(_ address: SocketAddress?) -> Bool {
        let key = address?.host ?? "?"
        let admitted = open.withLock { table in
            let n = table[key, default: 0]
            guard n < limit else { return false }
            table[key] = n + 1
            return true
        }
        if !admitted { refusedCount.add(1, ordering: .relaxed) }
        return admitted
    }

    /// A counted connection from `address` closed (or left the count).
    func close(_ address: SocketAddress?) {
        let key = address?.host ?? "?"
        open.withLock { table in
            guard let n = table[key] else { return }
            table[key] = n > 1 ? n - 1 : nil
        }
    }
}
