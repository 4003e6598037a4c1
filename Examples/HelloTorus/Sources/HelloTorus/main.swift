// An HTTP and WebSocket server on Torus: `GET /` says hello, `/echo` echoes every
// WebSocket message, `/chat` sends every message to everyone connected.
// Usage: hello-torus [--port N]   (default 8080; 0 picks a free port). SIGINT or
// SIGTERM shuts it down gracefully; it prints the ledger and exits 0 when quiescent.
import Glibc
import Torus
import TorusHTTP
import TorusWebSocket
import Logging
import ServiceLifecycle

let port = UInt16(CommandLine.arguments.drop { $0 != "--port" }.dropFirst().first ?? "8080") ?? 8080
let group = try EventLoopGroup(loops: 2)                 // two threads, one io_uring each
let chat = WebSocketChannel()                            // encodes each message once for all subscribers
var router = HTTPRouter()
router.get("/") { _ in .text("Hello from Torus!\n") }
router.webSocket("/echo") { ws in ws.onMessageBytes = { ws, kind, bytes in ws.send(bytes, as: kind) } }
router.webSocket("/chat") { ws in
    chat.subscribe(ws)
    ws.onText = { _, text in chat.broadcast(text: text) }
}
let server = try HTTPServer.start(on: group, address: try .tcp("127.0.0.1", port), router: router)
print("listening on \(server.address)")
fflush(nil)                                              // scripts wait for that line
// SIGTERM or SIGINT: stop accepting, let requests in progress finish, then return.
try await ServiceGroup(services: [server], gracefulShutdownSignals: [.sigterm, .sigint],
                       logger: Logger(label: "hello-torus")).run()
let ledger = await group.shutdownGracefully()            // close the rest, drain every completion
print(ledger)
exit(ledger.isQuiescent ? 0 : 1)
