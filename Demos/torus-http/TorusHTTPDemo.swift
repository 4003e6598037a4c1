import ArgumentParser
import DemoSupport
import HTTPTypes
import Torus
import TorusHTTP
import TorusTLS

/// TechEmpower-style HTTP server: `/plaintext`, `/json`, `POST /echo`, `/static/*`.
/// With `--tls-cert` and `--tls-key` it serves HTTPS (ALPN `http/1.1`) on the same ring.
@main
struct TorusHTTPDemo: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "torus-http",
        abstract: "HTTP/1.1 server on Torus: plaintext, json, echo and static files.")

    @OptionGroup var common: CommonOptions
    @OptionGroup var tls: TLSOptions

    @Option(help: "Port to listen on (0: any).")
    var port: UInt16 = 8080

    @Option(help: "Folder served under /static/ (nothing outside it is ever served: openat2 with RESOLVE_BENEATH).")
    var root = "."

    @Flag(help: """
        Follow symbolic links under --root whose target stays inside it (relative targets); \
        without it every link is refused (404). A link leaving the root is never followed.
        """)
    var followSymlinks = false

    @Option(help: "Seconds a request may take to arrive before 408.")
    var requestTimeout: Int = 30

    @Option(help: "Largest request body accepted, in bytes (larger: 413).")
    var maxBodyBytes: Int = HTTPLimits.default.maxBodyBytes

    func validate() throws {
        guard maxBodyBytes >= 0 else { throw ValidationError("--max-body-bytes must be 0 or more") }
    }

    mutating func run() async throws {
        try common.prepareProcess()
        var router = HTTPRouter()
        // First, so a root that cannot be served stops the demo before any loop starts.
        try router.files("/static", root: root, followSymlinks: followSymlinks)
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
        let group = try EventLoopGroup(loops: common.threads, configuration: common.configuration)
        var configuration = HTTPServerConfiguration()
        configuration.requestTimeout = .seconds(requestTimeout)
        configuration.limits.maxBodyBytes = maxBodyBytes
        configuration.socket = common.socketOptions
        configuration.tls = try tls.serverContext(alpn: ["http/1.1"])
        let server = try HTTPServer.start(on: group, address: try .tcp(common.host, port), router: router,
                                          configuration: configuration)
        await DemoRuntime.serve([server], listeningOn: [server.address], group: group, options: common,
                                label: "torus-http")
    }
}
