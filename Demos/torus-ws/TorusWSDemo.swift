import ArgumentParser
import DemoSupport
import Torus
import TorusHTTP
import TorusTLS
import TorusWebSocket

/// WebSocket server: echo at `/` (what Autobahn|Testsuite drives), a broadcast chat
/// room at `/chat`, the ledger at `/debug/ledger`. With `--tls-cert` and `--tls-key`
/// it serves WSS (and HTTPS) on the same ring.
@main
struct TorusWSDemo: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "torus-ws",
        abstract: "WebSocket server on Torus: echo at /, broadcast chat at /chat.")

    @OptionGroup var common: CommonOptions
    @OptionGroup var tls: TLSOptions

    @Option(help: "Port to listen on (0: any).")
    var port: UInt16 = 9001

    @Option(help: "Largest message accepted, in bytes (larger: close 1009).")
    var maxMessageSize: Int = 16 << 20

    @Flag(help: "Do not negotiate permessage-deflate.")
    var noDeflate = false

    @Option(help: "Seconds of silence before a ping; the same again without an answer closes (0: no pings).")
    var pingInterval: Int = 30

    @Option(help: "Chat: what to do with a subscriber that cannot keep up (drop or disconnect).")
    var slowSubscribers: String = "drop"

    func validate() throws {
        guard ["drop", "disconnect"].contains(slowSubscribers) else {
            throw ValidationError("--slow-subscribers must be drop or disconnect")
        }
    }

    mutating func run() async throws {
        try common.prepareProcess()
        let group = try EventLoopGroup(loops: common.threads, configuration: common.configuration)

        var settings = WebSocketConfiguration()
        settings.maxMessageSize = maxMessageSize
        settings.maxFrameSize = maxMessageSize
        settings.pingInterval = pingInterval > 0 ? .seconds(pingInterval) : nil
        settings.pingTimeout = .seconds(max(pingInterval, 1))
        let configuration = WebSocketServerConfiguration(connection: settings,
                                                         deflate: noDeflate ? nil : PerMessageDeflateConfiguration())
        let registry = WebSocketRegistry()
        let chat = WebSocketChannel(policy: slowSubscribers == "drop" ? .drop : .disconnect)

        var router = HTTPRouter()
        router.webSocket("/", configuration: configuration, registry: registry) { ws in
            // Echo, preserving the message type, straight from the receive buffer (no
            // allocation per message). While the peer does not read our echoes, stop
            // reading its messages (TCP flow control slows it down).
            ws.onMessageBytes = { ws, kind, bytes in
                ws.send(bytes, as: kind)
                if !ws.isWritable { ws.pauseReading() }
            }
            ws.onWritable = { ws in ws.resumeReading() }
        }
        router.webSocket("/chat", configuration: configuration, registry: registry) { ws in
            chat.subscribe(ws)
            ws.onText = { _, text in chat.broadcast(text: text) }
            ws.onBinary = { _, bytes in chat.broadcast(binary: bytes) }
        }
        router.get("/debug/ledger") { request in
            let ledger = await request.loop.ledgerSnapshot()
            return .text(ledger.description)
        }

        var http = HTTPServerConfiguration()
        http.socket = common.socketOptions
        http.tls = try tls.serverContext(alpn: ["http/1.1"])
        let server = try HTTPServer.start(on: group, address: try .tcp(common.host, port), router: router,
                                          configuration: http)
        // Stopped last one first: the HTTP server stops accepting and lets requests
        // finish, then every WebSocket client gets close 1001.
        let webSockets = AtGracefulShutdown {
            await registry.closeAll(code: .goingAway, reason: "server shutting down", grace: .seconds(5))
        }
        await DemoRuntime.serve([webSockets, server], listeningOn: [server.address], group: group,
                                options: common, label: "torus-ws")
    }
}
