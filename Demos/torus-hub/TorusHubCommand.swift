import ArgumentParser
import DemoSupport
import Glibc
import Logging
import ServiceLifecycle
import Torus
import TorusHub
import TorusRedis
import UnixSignals

/// The smart-home gateway: routers over a framed TCP protocol, an HTTP API for
/// commands and state, event streams for apps.
@main
struct TorusHubCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "torus-hub",
        abstract: "Smart-home gateway on Torus: router links, HTTP API, event streams, WebSocket faces.",
        discussion: """
            Prints one "listening on HOST:PORT" line per face that accepts, in this order: \
            first the HTTP port (API, event streams, and the WebSocket /app and /web faces), \
            then the router port. SIGINT or SIGTERM stops gracefully (WebSocket clients get \
            close 1001) and prints the ledger; the exit status is 0 only when it is quiescent.

            HTTP API: GET /healthz, GET /devices, GET /devices/{id}, \
            POST /devices/{id}/commands[?timeout=MS], GET /events[?routers=a,b] \
            (server-sent events), GET /metrics (Prometheus), GET /debug/ledger (JSON). \
            WebSocket: /app[?routers=a,b] (send {"subscribe":[...]} / {"unsubscribe":[...]}), \
            /web[?feeds=routers,stats] (every event; feeds add routers coming and going and \
            periodic stats). GET / is the hub's own page (a live dashboard over /web).

            Routers authenticate (protocol version 2: HMAC-SHA256 over a nonce with the \
            router's secret) against the credential file (--credentials). On first start \
            without one, the hub writes it (mode 0600) with an admin token and a secret for \
            router r1, and prints both. --add-router ID adds a router's secret to the file \
            and prints it; SIGHUP reloads the file without dropping authorized routers.

            Every HTTP route but /healthz needs an API token: Authorization: Bearer TOKEN \
            (event streams and WebSockets also take ?access_token=TOKEN, for browsers). \
            Tokens carry routers (* or a list) and rights: read (devices, events), \
            command, admin (also /metrics, /debug/ledger). --add-token ROUTERS:RIGHTS \
            adds one and prints it. A reload that revokes a token ends its streams \
            (WebSocket close 1008).

            TLS, each face on its own: --tls-cert/--tls-key (and --tls-ca, \
            --tls-client-auth) make the HTTP face HTTPS and its WebSocket faces WSS; \
            --router-tls-cert/--router-tls-key (and --router-tls-ca, \
            --router-tls-client-auth none|optional|required: routers present \
            certificates) put the router links on TLS. Routers still prove their secret.

            Cluster: --redis redis://HOST:PORT (one Redis server) or --redis-cluster \
            HOST:PORT,... (a Redis Cluster) with --node-id NAME makes this hub one node of a \
            cluster sharing that Redis (and one credential file): each router's attachment \
            is a lease (--lease-seconds), GET /devices on any node lists every node's \
            routers, commands reach a router on any node, and every router's events reach \
            subscribers on every node. Without either: a single hub, no Redis.
            """)

    @OptionGroup var common: CommonOptions
    /// The HTTP face (API, event streams, /app and /web): HTTPS and WSS.
    @OptionGroup var tls: TLSOptions
    /// The router face.
    @OptionGroup var routerTLS: RouterTLSOptions

    @Option(help: "TCP port routers connect to (0: any).")
    var routerPort: UInt16 = 7100

    @Option(help: "HTTP API port (0: any); printed first.")
    var httpPort: UInt16 = 8080

    @Option(help: "Seconds of silence after which a router is disconnected (routers heartbeat at a third of it).")
    var heartbeatTimeout: Double = 30

    @Option(help: "Seconds a command waits for the router's reply before 504 (?timeout=MS overrides).")
    var commandTimeout: Double = 10

    @Option(help: "Largest router frame in bytes (type byte + payload).")
    var maxFrame: Int = HubFrame.defaultMaxFrame

    @Option(help: "Events queued per subscriber before the oldest are dropped.")
    var subscriberQueue: Int = 256

    @Option(help: "Seconds between pings on idle server-sent-event streams (/events).")
    var pingInterval: Double = 15

    @Option(help: "WebSocket faces: seconds without anything from a client before a ping (0: no pings).")
    var wsPingInterval: Double = 15

    @Option(help: "WebSocket faces: seconds to wait for any sign of life after a ping before closing the client.")
    var wsPingTimeout: Double = 10

    @Option(help: "WebSocket faces: seconds a closing handshake may take before the socket is closed anyway.")
    var wsCloseTimeout: Double = 5

    @Option(help: "WebSocket faces: what to do with a subscriber whose write queue is above the high water mark (drop: it misses events; disconnect: close 1008).")
    var wsSlowSubscribers: String = "drop"

    @Option(help: "Bytes queued for one HTTP/WebSocket client above which it counts as slow (the write queue's high water mark; the low one is a quarter).")
    var subscriberHighWater: Int = 256 << 10

    @Option(help: "Bytes per provided receive buffer. One page by default: router frames, HTTP requests and events are small, and a page-sized buffer is resident after its first use, so RSS reaches its plateau within seconds instead of creeping as rare large reads touch more pages of 16 KiB buffers.")
    var receiveBufferSize: Int = 4096

    @Option(help: "Bytes per outbound pool chunk (one page by default, for the same reason).")
    var outboundChunkSize: Int = 4096

    @Option(help: "The credential file (JSON: router secrets, API token hashes); written with an admin token and router r1 on first start.")
    var credentials: String = "torus-hub-credentials.json"

    @Option(help: "Add a router with a generated secret to the credential file, print the secret and exit.")
    var addRouter: String?

    @Option(help: ArgumentHelp("Add an API token to the credential file, print it once and exit. ROUTERS:RIGHTS, e.g. r1,r2:read,command or *:read (rights: read, command, admin).", valueName: "ROUTERS:RIGHTS"))
    var addToken: String?

    @Flag(help: "Also accept protocol version 1 routers (HELLO without proof). For tests of the old protocol only.")
    var insecureRouters = false

    @Option(help: "Seconds a router link may take to authenticate before it is refused.")
    var authTimeout: Double = 5

    @Option(help: "Failed router authentications a source address may make in a burst; then its links are refused until it earns tokens back.")
    var authFailureBurst: Int = 10

    @Option(help: "Failed router authentications per second a source address earns back.")
    var authFailureRate: Double = 1

    @Option(help: "Router links of one source address that may wait for authentication at once.")
    var maxUnauthenticated: Int = 64

    @Option(help: "HTTP connections one source address may hold (not counting upgraded WebSockets); beyond: 503 and close. 0: no limit.")
    var maxHttpConnectionsPerSource: Int = 1024

    @Option(help: ArgumentHelp("Join a cluster of hubs sharing this Redis: redis://[[USER]:PASSWORD@]HOST[:PORT][/DB].", valueName: "URL"))
    var redis: String?

    @Option(help: ArgumentHelp("Join a cluster of hubs sharing this Redis Cluster, found through any of these nodes: HOST:PORT,... (or redis://[[USER]:PASSWORD@]HOST:PORT,...; the first one's credentials are used). Keys go to the master serving their slot; the channels are sharded Pub/Sub.", valueName: "SEEDS"))
    var redisCluster: String?

    @Option(help: "This node's name in the cluster (letters, digits, - _ .; unique per node). Needed with --redis or --redis-cluster.")
    var nodeID: String?

    @Option(help: "Cluster: seconds a router's attachment lives in Redis without renewal (a dead node's routers are free after it).")
    var leaseSeconds: Double = 15

    @Option(help: "The dashboard's folder (index.html, dashboard/*) served at /; default: the files shipped with TorusHub.")
    var dashboardRoot: String?

    @Flag(help: "Do not serve the dashboard page at / (the /web feeds stay).")
    var noDashboard = false

    @Option(help: "Seconds between the stats samples of /web?feeds=stats (the dashboard's charts; an hour of them is kept). 0: none.")
    var dashboardStatsInterval: Double = 2

    func validate() throws {
        guard authTimeout > 0, authFailureBurst >= 1, authFailureRate > 0, maxUnauthenticated >= 1,
              maxHttpConnectionsPerSource >= 0 else {
            throw ValidationError("authentication limits must be positive")
        }
        if redis != nil && redisCluster != nil { throw ValidationError("give --redis or --redis-cluster, not both") }
        if let redis, RedisURL(redis) == nil {
            throw ValidationError("--redis takes redis://[[USER]:PASSWORD@]HOST[:PORT][/DB]")
        }
        if let redisCluster {
            guard let seeds = Self.clusterSeeds(redisCluster), !seeds.isEmpty else {
                throw ValidationError("--redis-cluster takes HOST:PORT,... (or redis://HOST:PORT,...)")
            }
            guard seeds.allSatisfy({ $0.database == 0 }) else { throw ValidationError("a Redis Cluster has only database 0") }
        }
        if redis != nil || redisCluster != nil {
            guard let nodeID, HubClusterConfiguration.isValidNodeID(nodeID) else {
                throw ValidationError("--redis and --redis-cluster need --node-id NAME (letters, digits, - _ .; at most 64 bytes)")
            }
            guard leaseSeconds >= 0.3 else { throw ValidationError("--lease-seconds must be at least 0.3") }
        }
        guard heartbeatTimeout > 0, commandTimeout > 0, pingInterval > 0, wsPingTimeout > 0, wsCloseTimeout > 0 else {
            throw ValidationError("timeouts and intervals must be positive")
        }
        guard wsPingInterval >= 0 else { throw ValidationError("--ws-ping-interval must be 0 or positive") }
        guard ["drop", "disconnect"].contains(wsSlowSubscribers) else {
            throw ValidationError("--ws-slow-subscribers must be drop or disconnect")
        }
        guard subscriberHighWater >= 4096 else { throw ValidationError("--subscriber-high-water must be at least 4096") }
        guard dashboardStatsInterval == 0 || dashboardStatsInterval >= 0.1 else {
            throw ValidationError("--dashboard-stats-interval must be 0 or at least 0.1")
        }
        guard maxFrame >= 64 else { throw ValidationError("--max-frame must be at least 64") }
        guard receiveBufferSize >= 512, outboundChunkSize >= 512 else {
            throw ValidationError("buffer sizes must be at least 512 bytes")
        }
    }

    mutating func run() async throws {
        if let addRouter {
            guard HubFrame.isValidID(addRouter) else { throw ValidationError("invalid router id \(addRouter)") }
            var store = FileManagerless.exists(credentials) ? try HubCredentials.load(path: credentials) : HubCredentials()
            let secret = HubCredentials.newSecret()
            store.routers[addRouter] = secret
            try store.write(path: credentials)
            DemoRuntime.say("router \(addRouter) secret (base64): \(HubCredentials.base64(secret))  (in \(credentials))")
            return
        }
        if let addToken {
            let grant = try Self.parseGrant(addToken)
            var store = FileManagerless.exists(credentials) ? try HubCredentials.load(path: credentials) : HubCredentials()
            let token = HubCredentials.newToken()
            store.tokens[token.hash] = grant
            try store.write(path: credentials)
            DemoRuntime.say("token (\(addToken)): \(token.token)  (its hash is in \(credentials))")
            return
        }
        let store = try Self.loadOrCreateCredentials(at: credentials)
        try common.prepareProcess()
        var loopConfiguration = common.configuration
        loopConfiguration.receiveBufferSize = receiveBufferSize
        loopConfiguration.outboundChunkSize = outboundChunkSize
        let group = try EventLoopGroup(loops: common.threads, configuration: loopConfiguration)
        var configuration = HubConfiguration()
        configuration.host = common.host
        configuration.routerPort = routerPort
        configuration.httpPort = httpPort
        configuration.heartbeatTimeout = .milliseconds(Int(heartbeatTimeout * 1000))
        configuration.commandTimeout = .milliseconds(Int(commandTimeout * 1000))
        configuration.maxFrame = maxFrame
        configuration.subscriberQueueLimit = subscriberQueue
        configuration.pingInterval = .milliseconds(Int(pingInterval * 1000))
        configuration.webSocket.pingInterval = wsPingInterval > 0 ? .milliseconds(Int(wsPingInterval * 1000)) : nil
        configuration.webSocket.pingTimeout = .milliseconds(Int(wsPingTimeout * 1000))
        configuration.webSocket.closeTimeout = .milliseconds(Int(wsCloseTimeout * 1000))
        configuration.webSocket.slowSubscribers = wsSlowSubscribers == "drop" ? .drop : .disconnect
        configuration.subscriberWriteHighWater = subscriberHighWater
        configuration.subscriberWriteLowWater = subscriberHighWater / 4
        configuration.socket = common.socketOptions
        configuration.http.tls = try tls.serverContext(alpn: ["http/1.1"])
        configuration.routerTLS = try routerTLS.serverContext()
        configuration.credentials = store
        configuration.auth.insecureRouters = insecureRouters
        configuration.auth.authTimeout = .milliseconds(Int(authTimeout * 1000))
        configuration.auth.failureBurst = authFailureBurst
        configuration.auth.failureRefillPerSecond = authFailureRate
        configuration.auth.maxUnauthenticatedPerSource = maxUnauthenticated
        configuration.http.maxConnectionsPerSource = maxHttpConnectionsPerSource > 0 ? maxHttpConnectionsPerSource : nil
        if let redis, let url = RedisURL(redis), let nodeID {
            var cluster = HubClusterConfiguration(redis: try url.address(), nodeID: nodeID)
            cluster.redisConfiguration = url.applied(to: cluster.redisConfiguration)
            cluster.leaseTime = .milliseconds(Int(leaseSeconds * 1000))
            configuration.cluster = cluster
        }
        if let redisCluster, let seeds = Self.clusterSeeds(redisCluster), let first = seeds.first, let nodeID {
            var cluster = HubClusterConfiguration(redisCluster: try seeds.map { try $0.address() }, nodeID: nodeID)
            cluster.redisConfiguration = first.applied(to: cluster.redisConfiguration)
            cluster.leaseTime = .milliseconds(Int(leaseSeconds * 1000))
            configuration.cluster = cluster
        }
        configuration.dashboard.servesPage = !noDashboard
        configuration.dashboard.root = dashboardRoot
        if dashboardStatsInterval > 0 {
            configuration.dashboard.statsInterval = .milliseconds(Int(dashboardStatsInterval * 1000))
            configuration.dashboard.statsHistory = max(1, Int(3600 / dashboardStatsInterval))
        } else {
            configuration.dashboard.statsInterval = nil
        }
        let hub = try Hub.start(on: group, configuration: configuration)
        let reload = CredentialReloader(hub: hub, path: credentials, logger: configuration.logger)
        await DemoRuntime.serve([hub, reload], listeningOn: [hub.httpAddress, hub.routerAddress], group: group,
                                options: common, label: "torus-hub")
    }

    /// `HOST:PORT,...` (each may be a `redis://` URL) as seed URLs; nil when one does
    /// not parse.
    static func clusterSeeds(_ text: String) -> [RedisURL]? {
        var seeds: [RedisURL] = []
        for part in text.split(separator: ",") {
            let spec = part.trimmingCharacters(in: .whitespaces)
            guard let url = RedisURL(spec.hasPrefix("redis://") ? spec : "redis://" + spec) else { return nil }
            seeds.append(url)
        }
        return seeds
    }

    /// `ROUTERS:RIGHTS` (`*` or ids separated by commas, then rights) as a grant.
    static func parseGrant(_ text: String) throws -> HubCredentials.TokenGrant {
        let parts = text.split(separator: ":", maxSplits: 1).map(String.init)
        guard parts.count == 2 else { throw ValidationError("--add-token takes ROUTERS:RIGHTS, e.g. r1,r2:read") }
        let routers = parts[0] == "*" ? nil : parts[0].split(separator: ",").map(String.init)
        if let bad = routers?.first(where: { !HubFrame.isValidID($0) }) { throw ValidationError("invalid router id \(bad)") }
        let rights = parts[1].split(separator: ",").map(String.init)
        guard !rights.isEmpty, rights.allSatisfy({ HubRight(rawValue: $0) != nil }) else {
            throw ValidationError("rights are read, command and admin")
        }
        return HubCredentials.TokenGrant(routers: routers, rights: rights)
    }

    /// Loads the credential file, or (first start) writes one with mode 0600: an
    /// admin token and a secret for router r1, both printed once.
    static func loadOrCreateCredentials(at path: String) throws -> HubCredentials {
        if FileManagerless.exists(path) { return try HubCredentials.load(path: path) }
        let admin = HubCredentials.newToken()
        let secret = HubCredentials.newSecret()
        let store = HubCredentials(routers: ["r1": secret],
                                   tokens: [admin.hash: .init(routers: nil, rights: ["admin"])])
        try store.write(path: path, exclusive: true)
        DemoRuntime.say("created credential file \(path) (mode 0600)")
        DemoRuntime.say("admin token: \(admin.token)")
        DemoRuntime.say("router r1 secret (base64): \(HubCredentials.base64(secret)); add routers with --add-router ID")
        return store
    }
}

/// File existence without Foundation.
enum FileManagerless {
    static func exists(_ path: String) -> Bool { access(path, F_OK) == 0 }
}

/// Reloads the credential file on SIGHUP until the graceful shutdown; a file that
/// does not parse is logged and the credentials in force are kept.
struct CredentialReloader: Service {
    let hub: Hub
    let path: String
    let logger: Logger

    func run() async throws {
        let signals = await UnixSignalsSequence(trapping: .sighup)
        await cancelWhenGracefulShutdown {
            for await _ in signals {
                do {
                    hub.reloadCredentials(try HubCredentials.load(path: path))
                } catch {
                    logger.error("credential reload failed; keeping the credentials in force", metadata: [
                        "path": "\(path)", "error": "\(error)",
                    ])
                }
            }
        }
    }
}
