import ArgumentParser
import DemoSupport
import HTTPTypes
import Torus
import TorusHTTP

/// TechEmpower-style HTTP server: `/plaintext`, `/json`, `POST /echo`, `/static/*`.
struct TorusHTTPDemo: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "torus-http",
        abstract: "HTTP/1.1 server on Torus: plaintext, json, echo and static files.")

    @OptionGroup var common: CommonOptions

    @Option(help: "Port to listen on (0: any).")
    var port: UInt16 = 8080

    @Option(help: "Folder served under /static/.")
    var root = "."

    @Option(help: "Seconds a request may take to arrive before 408.")
    var requestTimeout: Int = 30

    func run() throws {
        DemoRuntime.blockSignals()
        try common.applyLimits()
        let group = try EventLoopGroup(loops: common.threads, configuration: common.configuration)
        var router = HTTPRouter()
        router.get("/plaintext", fixed: PrecomputedResponse(contentType: "text/plain", body: "Hello, World!",
                                                           headerFields: [.server: "torus"]))
        router.get("/json", fixed: PrecomputedResponse(contentType: "application/json",
                                                      body: #"{"message":"Hello, World!"}"#,
                                                      headerFields: [.server: "torus"]))
        router.post("/echo") { request in
            let type = request.header("content-type") ?? "application/octet-stream"
            return HTTPServerResponse(headerFields: [.contentType: type], body: .stream { writer in
                for try await chunk in request.body { try await writer.write(chunk) }
            })
        }
        router.get("/debug/ledger") { request in
            let ledger = await request.loop.ledgerSnapshot()
            return .text(ledger.description)
        }
        router.files("/static", root: root)
        var configuration = HTTPServerConfiguration()
        configuration.requestTimeout = .seconds(requestTimeout)
        configuration.socket = common.socketOptions
        let server = try HTTPServer.start(on: group, address: try .tcp(common.host, port), router: router,
                                          configuration: configuration)
        DemoRuntime.say("listening on \(server.address)")
        DemoRuntime.startStats(group, every: common.statsInterval)
        let sig = DemoRuntime.waitForSignal()
        DemoRuntime.stopGracefully(server.shutdown)
        DemoRuntime.shutdown(group, signal: sig)
    }
}

TorusHTTPDemo.main()
