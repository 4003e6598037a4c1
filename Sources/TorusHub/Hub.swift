import Logging
import Synchronization
import Torus
import TorusHTTP
import TorusTLS

/// Settings of a hub.
public struct HubConfiguration: Sendable {
    public var host = "127.0.0.1"
    /// TCP port routers connect to (0: any).
    public var routerPort: UInt16 = 7100
    /// HTTP API port (0: any). The WebSocket faces (`/app`, `/web`) live on it too.
    public var httpPort: UInt16 = 8080
    /// A router silent for this long is disconnected (routers heartbeat at a third of it).
    public var heartbeatTimeout: Duration = .seconds(30)
    /// How long `POST /devices/{id}/commands` waits for the REPLY by default
    /// (`?timeout=MS` overrides it per request, up to `maxCommandTimeout`).
    public var commandTimeout: Duration = .seconds(10)
    public var maxCommandTimeout: Duration = .seconds(60)
    /// Largest frame (type byte + payload) accepted from a router.
    public var maxFrame = HubFrame.defaultMaxFrame
    /// Commands that may wait for one router's replies at once (more: 503).
    public var maxPendingCommands = 1024
    /// Events queued per subscriber before the oldest are dropped.
    public var subscriberQueueLimit = 256
    /// Seconds between pings on an idle server-sent-events stream (liveness of
    /// `/events` subscribers; the WebSocket faces have their own, in `webSocket`).
    public var pingInterval: Duration = .seconds(15)
    /// The WebSocket faces `/app` and `/web`: ping liveness, slow subscribers, limits.
    public var webSocket = HubWebSocketConfiguration()
    /// Write queue water marks of the HTTP port's connections (API, event streams,
    /// WebSockets), overriding `socket`'s: above the high mark a WebSocket subscriber
    /// counts as slow. The hub's messages are small, so a quarter MiB of backlog
    /// already means a client that does not keep up.
    public var subscriberWriteHighWater = 256 << 10
    public var subscriberWriteLowWater = 64 << 10
    /// Socket options of both faces (keepalive, user timeout, send timeout).
    public var socket = SocketOptions()
    /// The HTTP server's limits and timeouts; its `tls` makes the HTTP face (API,
    /// event streams, the WebSocket /app and /web faces) HTTPS and WSS. The hub holds
    /// at most 1,024 HTTP connections per source address that have not upgraded to a
    /// WebSocket (`maxConnectionsPerSource`; beyond it: 503 and close), so a flood from
    /// one address cannot take every descriptor. Unless set here, its
    /// `firstRequestTimeout` is `auth.authTimeout`: a connection that has not sent a
    /// request by then closes, and one refused with 401 or 429 is closed after the answer.
    public var http: HTTPServerConfiguration = {
        var http = HTTPServerConfiguration()
        http.maxConnectionsPerSource = 1024
        return http
    }()
    /// TLS on the router port: a server `TLSContext` (its client authentication
    /// decides whether routers must present certificates, verified against its CA;
    /// a router link's verified subject is logged when it authenticates). Routers
    /// still prove their secret over TLS. nil (the default): plaintext router links.
    public var routerTLS: TLSContext? = nil
    /// How long WebSocket closing handshakes and HTTP requests in progress may take
    /// once a graceful shutdown begins (`run()` under a service group).
    public var shutdownGrace: Duration = .seconds(5)
    /// Router secrets the hub checks proofs against, and the API tokens every HTTP
    /// route but `/healthz` requires (see `HubRight`); replace them at run time with
    /// `Hub.reloadCredentials`.
    public var credentials = HubCredentials()
    /// Router authentication: the insecure version 1, the auth timeout, and the
    /// per-source limits on failed proofs and unauthenticated links.
    public var auth = RouterAuthConfiguration()
    /// One node of a cluster sharing routers, commands and events through Redis
    /// (see `HubCluster`). nil (the default): a single hub, no Redis.
    public var cluster: HubClusterConfiguration? = nil
    /// The hub's own page at `/` and the `/web` feeds it reads (routers coming and
    /// going, periodic stats); see `HubDashboardFeeds`.
    public var dashboard = HubDashboardConfiguration()
    /// Where operational events go: router links opened and closed (with the reason),
    /// protocol errors, command timeouts, bad requests, slow subscribers. Nothing is
    /// logged per event or per command at the default level.
    public var logger = Logger(label: "torus.hub")

    public init() {}
}

/// State every part of the hub shares: configuration, the router directory, the
/// event bus and counters. Immutable references, each safe from any thread.
final class HubCore: Sendable {
    let configuration: HubConfiguration
    let directory: RouterDirectory
    let events: EventBus
    let webSockets: HubWebSockets
    let counters: HubCounters
    let credentials: CredentialStore
    /// Per-source limits on router links (failed proofs, unauthenticated links).
    let authLimits: AuthLimits
    /// API tokens: who may read, command and administer.
    let access: HubAccess
    let group: [EventLoop]
    let startedAt = MonotonicClock.now()
    /// The HTTP server, once started (its refusal count is in /metrics).
    let httpServer = Mutex<HTTPServer?>(nil)
    /// This node's part in a cluster (nil: a single hub).
    let cluster: HubCluster?
    /// The `/web` feeds of the dashboard (routers, stats).
    let dashboard: HubDashboardFeeds

    init(configuration: HubConfiguration, loops: [EventLoop]) {
        self.configuration = configuration
        group = loops
        let counters = HubCounters()
        self.counters = counters
        credentials = CredentialStore(configuration.credentials)
        authLimits = AuthLimits(configuration.auth)
        access = HubAccess(credentials: credentials, limits: AuthLimits(configuration.auth), counters: counters)
        let directory = RouterDirectory()
        self.directory = directory
        let events = EventBus(loops: loops, counters: counters)
        self.events = events
        let webSockets = HubWebSockets(configuration: configuration.webSocket, logger: configuration.logger)
        self.webSockets = webSockets
        let dashboard = HubDashboardFeeds(configuration: configuration.dashboard)
        self.dashboard = dashboard
        cluster = configuration.cluster.map { cluster in
            HubCluster(configuration: cluster, home: loops[0], directory: directory, logger: configuration.logger,
                       deliver: { router, payload in
                           Self.deliver(router: router, payload: payload, events: events, webSockets: webSockets,
                                        counters: counters)
                       }, announce: { message in dashboard.announce(message) })
        }
    }

    /// Publishes an event of `link`'s router (on the link's loop): to this node's
    /// faces, and to the other nodes of its cluster.
    func publish(router: String, payload: [UInt8], from link: RouterLink) {
        Self.deliver(router: router, payload: payload, events: events, webSockets: webSockets, counters: counters)
        cluster?.relay(router: router, payload: payload, from: link)
    }

    /// Hands an event to this node's faces: the bus (event streams, `/app`) and the
    /// `/web` channel. The WebSocket frame is encoded here, once, when any WebSocket
    /// client is connected. Any thread.
    static func deliver(router: String, payload: [UInt8], events: EventBus, webSockets: HubWebSockets,
                        counters: HubCounters) {
        let event = HubEvent(router: router, payload: payload, sequence: counters.nextEventSequence(),
                             encodeFrame: webSockets.hasSubscribers)
        events.publish(event)
        webSockets.broadcast(event)
    }
}

/// The smart-home gateway on Torus: routers connect over TCP with the framed
/// protocol of `HubFrame`, an HTTP API lists them and forwards commands, and
/// subscribers receive their events.
///
/// Ownership: the hub owns its two servers; the loops (and so every connection)
/// belong to the group it was started on. Stop with `shutdown`, then shut the group
/// down (the ledger must then be quiescent).
public final class Hub: Sendable {
    let core: HubCore
    let routerServer: Server
    let httpServer: HTTPServer

    /// Where the HTTP API listens (the real port when 0 was asked for).
    public var httpAddress: SocketAddress { httpServer.address }
    /// Where routers connect.
    public var routerAddress: SocketAddress { routerServer.address }
    public var directory: RouterDirectory { core.directory }
    public var events: EventBus { core.events }
    public var counters: HubCounters { core.counters }
    public var configuration: HubConfiguration { core.configuration }
    /// This node's name when it is one node of a cluster.
    public var clusterNodeID: String? { core.cluster?.nodeID }
    /// Whether this cluster node's Redis connection is up (momentary; false for a
    /// single hub).
    public var clusterConnected: Bool { core.cluster?.isConnected ?? false }
    /// WebSocket clients connected right now, per face (momentary).
    public var webSocketClients: (app: Int, web: Int) {
        (core.webSockets.appClients.load(ordering: .relaxed), core.webSockets.webClients.load(ordering: .relaxed))
    }

    /// Starts both faces on every loop of `group`. Call from outside the loops.
    /// `extendRoutes` may add routes (or upgrade hooks) to the HTTP router.
    public static func start(on group: EventLoopGroup, configuration: HubConfiguration = HubConfiguration(),
                             extendRoutes: (inout HTTPRouter, HubContext) -> Void = { _, _ in }) throws -> Hub {
        let core = HubCore(configuration: configuration, loops: group.loops)
        var router = HubAPI.router(core: core, group: group)
        core.webSockets.install(into: &router, core: core)
        try HubDashboardPage.install(into: &router, configuration: configuration.dashboard, logger: configuration.logger)
        extendRoutes(&router, HubContext(core: core))
        // Routers' port first: closing a plain server on failure is synchronous.
        var routerOptions = configuration.socket
        routerOptions.idleTimeout = configuration.heartbeatTimeout
        let routerServer = try Server.start(on: group, address: try .tcp(configuration.host, configuration.routerPort),
                                            tls: configuration.routerTLS, options: routerOptions) { connection in
            RouterLink(hub: core, connection: connection)
        }
        var http = configuration.http
        http.socket = configuration.socket
        http.socket.writeHighWater = configuration.subscriberWriteHighWater
        http.socket.writeLowWater = min(configuration.subscriberWriteLowWater, configuration.subscriberWriteHighWater)
        // Every request carries its token, so a client has `authTimeout` to send its
        // first one; a connection that sent nothing by then closes (the router port's
        // rule, on the HTTP face).
        if http.firstRequestTimeout == nil { http.firstRequestTimeout = configuration.auth.authTimeout }
        let httpServer: HTTPServer
        do {
            httpServer = try HTTPServer.start(on: group, address: try .tcp(configuration.host, configuration.httpPort),
                                              router: router, configuration: http)
        } catch {
            routerServer.close()
            throw error
        }
        core.httpServer.withLock { $0 = httpServer }
        core.cluster?.start()
        core.dashboard.start(core: core)
        return Hub(core: core, routerServer: routerServer, httpServer: httpServer)
    }

    private init(core: HubCore, routerServer: Server, httpServer: HTTPServer) {
        self.core = core
        self.routerServer = routerServer
        self.httpServer = httpServer
    }

    /// Replaces the credential store (any thread; the demo calls it on SIGHUP).
    /// Authenticated links whose router's secret is unchanged are kept; those whose
    /// secret was removed or changed get BYE and close. Open event streams and
    /// WebSocket clients whose token was revoked end now (stream end, close 1008);
    /// those whose grant narrowed receive only what it allows from now on.
    public func reloadCredentials(_ credentials: HubCredentials) {
        core.credentials.replace(with: credentials)
        core.access.credentialsChanged(credentials)
        core.configuration.logger.info("credentials reloaded", metadata: [
            "routers": "\(credentials.routers.count)", "tokens": "\(credentials.tokens.count)",
        ])
        for link in core.directory.all() {
            link.loop.execute { link.recheckCredentials() }
        }
    }

    /// Graceful stop: no new routers or HTTP connections; a cluster node releases
    /// its routers' leases and leaves Redis; event streams end; every
    /// WebSocket client gets close 1001 (up to `grace` for the closing handshakes);
    /// every router gets BYE and its link closes (waiting commands fail with 502);
    /// HTTP requests in progress get up to `grace` to finish. Then shut the group down.
    public func shutdown(grace: Duration = .seconds(5)) async {
        core.configuration.logger.info("hub shutting down", metadata: [
            "routers": "\(core.directory.count)", "grace": "\(grace)",
        ])
        routerServer.close()
        await core.dashboard.stop()
        // Leases released first: other nodes see the routers free at once.
        await core.cluster?.close()
        core.events.close()
        for link in core.directory.all() {
            link.loop.execute { link.sayGoodbye(.hubStopping, reason: "hub shutting down") }
        }
        async let webSockets: Void = core.webSockets.closeAll(grace: grace)
        await httpServer.shutdown(grace: grace)
        await webSockets
    }
}

/// What route extensions may use: the directory and the bus.
public struct HubContext: Sendable {
    let core: HubCore
    public var directory: RouterDirectory { core.directory }
    public var events: EventBus { core.events }
    public var configuration: HubConfiguration { core.configuration }
}

