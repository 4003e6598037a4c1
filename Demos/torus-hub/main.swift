import ArgumentParser
import DemoSupport
import Torus
import TorusHub

/// The smart-home gateway: routers over a framed TCP protocol, an HTTP API for
/// commands and state, event streams for apps.
struct TorusHubCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "torus-hub",
        abstract: "Smart-home gateway on Torus: router links, HTTP API, event streams.",
        discussion: """
            Prints one "listening on HOST:PORT" line per face that accepts, in this order: \
            first the HTTP port (API, event streams, and the WebSocket /app and /web faces \
            once they land), then the router port. SIGINT or SIGTERM stops gracefully and \
            prints the ledger; the exit status is 0 only when it is quiescent.

            HTTP API: GET /healthz, GET /devices, GET /devices/{id}, \
            POST /devices/{id}/commands[?timeout=MS], GET /events[?routers=a,b] \
            (server-sent events), GET /metrics (Prometheus), GET /debug/ledger (JSON).
            """)

    @OptionGroup var common: CommonOptions

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

    @Option(help: "Seconds between pings on idle event streams.")
    var pingInterval: Double = 15

    @Option(help: "Bytes per provided receive buffer. One page by default: router frames, HTTP requests and events are small, and a page-sized buffer is resident after its first use, so RSS reaches its plateau within seconds instead of creeping as rare large reads touch more pages of 16 KiB buffers.")
    var receiveBufferSize: Int = 4096

    @Option(help: "Bytes per outbound pool chunk (one page by default, for the same reason).")
    var outboundChunkSize: Int = 4096

    func validate() throws {
        guard heartbeatTimeout > 0, commandTimeout > 0, pingInterval > 0 else {
            throw ValidationError("timeouts and intervals must be positive")
        }
        guard maxFrame >= 64 else { throw ValidationError("--max-frame must be at least 64") }
        guard receiveBufferSize >= 512, outboundChunkSize >= 512 else {
            throw ValidationError("buffer sizes must be at least 512 bytes")
        }
    }

    func run() throws {
        DemoRuntime.blockSignals()
        try common.applyLimits()
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
        configuration.socket = common.socketOptions
        let hub = try Hub.start(on: group, configuration: configuration)
        DemoRuntime.say("listening on \(hub.httpAddress)")
        DemoRuntime.say("listening on \(hub.routerAddress)")
        DemoRuntime.startStats(group, every: common.statsInterval)
        let sig = DemoRuntime.waitForSignal()
        DemoRuntime.stopGracefully { grace in await hub.shutdown(grace: grace) }
        DemoRuntime.shutdown(group, signal: sig)
    }
}

TorusHubCommand.main()
