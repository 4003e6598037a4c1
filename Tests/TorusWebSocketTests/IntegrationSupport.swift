import Foundation
import Testing
import Torus
import TorusHTTP
import TorusTestSupport
@testable import TorusWebSocket

/// Starts an HTTP server with the routes `configure` adds, on `loops`, at a free
/// loopback port. Call from a test task (not a loop thread).
func startServer(on loops: [EventLoop], socket: SocketOptions = SocketOptions(),
                 _ configure: (inout HTTPRouter) -> Void) throws -> HTTPServer {
    var router = HTTPRouter()
    configure(&router)
    var configuration = HTTPServerConfiguration()
    configuration.socket = socket
    return try HTTPServer.start(on: loops, address: try .tcp("127.0.0.1", 0), router: router,
                                configuration: configuration)
}

extension HTTPServer {
    var port: UInt16 { address.port ?? 0 }
}

/// A server-side echo: text stays text, binary stays binary.
@Sendable func echo(_ ws: WebSocketConnection) {
    ws.onText = { ws, text in ws.send(text: text) }
    ws.onBinary = { ws, bytes in ws.send(binary: bytes) }
}

/// A server-side echo from borrowed bytes (`onMessageBytes`, nothing allocated).
@Sendable func borrowedEcho(_ ws: WebSocketConnection) {
    ws.onMessageBytes = { ws, kind, bytes in ws.send(bytes, as: kind) }
}

/// Records server-side close infos.
final class CloseLog: Sendable {
    let infos = Locked<[WebSocketCloseInfo]>([])
    @Sendable func watch(_ ws: WebSocketConnection) {
        ws.onClose = { [self] _, info in infos.withLock { $0.append(info) } }
    }
    func waitFor(_ count: Int = 1) async -> [WebSocketCloseInfo] {
        _ = await eventually { infos.current.count >= count }
        return infos.current
    }
}

func connectClient(_ server: HTTPServer, path: String = "/", on loop: EventLoop, deflate: Bool = false,
                   configure: (inout WebSocketClientConfiguration) -> Void = { _ in }) async throws -> WebSocketConnection {
    var configuration = WebSocketClientConfiguration(deflate: deflate ? PerMessageDeflateConfiguration() : nil)
    configure(&configuration)
    return try await WebSocketClient.connect(host: "127.0.0.1", port: server.port, path: path, on: loop,
                                             configuration: configuration)
}

/// ASCII text of `count` bytes (valid UTF-8, compressible).
func testText(_ count: Int) -> String {
    let alphabet = Array("The quick brown fox jumps over the lazy dog 0123456789. ".utf8)
    var bytes = [UInt8](repeating: 0, count: count)
    for i in 0..<count { bytes[i] = alphabet[(i &* 7 &+ i / 13) % alphabet.count] }
    return String(decoding: bytes, as: UTF8.self)
}

/// A client that speaks raw bytes over an `AsyncConnection`: it does the opening
/// handshake by hand and then sends arbitrary (also invalid) frames, decoding what
/// the server answers. One task at a time.
final class RawClient {
    let connection: AsyncConnection
    var buffer: [UInt8] = []
    var decoder = MessageDecoder(role: .client)
    private(set) var sawEOF = false

    init(_ connection: AsyncConnection) { self.connection = connection }

    static func connect(port: UInt16, on loop: EventLoop) async throws -> RawClient {
        RawClient(try await AsyncConnection.connect(to: try .tcp("127.0.0.1", port), on: loop))
    }

    /// Sends a request head with `fields` and returns the response head.
    func request(_ path: String = "/", fields: [(String, String)], then bytes: [UInt8] = []) async throws -> String {
        var text = "GET \(path) HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        for (n, v) in fields { text += "\(n): \(v)\r\n" }
        try await connection.write(Array((text + "\r\n").utf8) + bytes)
        while true {
            if let end = buffer.firstRange(of: [13, 10, 13, 10])?.lowerBound {
                let head = String(decoding: buffer[..<end], as: UTF8.self)
                buffer.removeFirst(end + 4)
                return head
            }
            guard let chunk = try await connection.read() else { return String(decoding: buffer, as: UTF8.self) }
            buffer += chunk
        }
    }

    /// A valid upgrade; returns the response head.
    @discardableResult
    func handshake(_ path: String = "/", extra: [(String, String)] = [], then bytes: [UInt8] = []) async throws -> String {
        try await request(path, fields: [("Upgrade", "websocket"), ("Connection", "Upgrade"),
                                         ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
                                         ("Sec-WebSocket-Version", "13")] + extra, then: bytes)
    }

    func send(_ bytes: [UInt8]) async throws { try await connection.write(bytes) }

    /// The next event from the server, or nil at EOF.
    func next() async throws -> WebSocketEvent? {
        while true {
            if !buffer.isEmpty {
                var event: WebSocketEvent?
                var used = 0
                try buffer.withUnsafeBytes { raw in
                    var input = raw
                    event = try decoder.next(&input)
                    used = raw.count - input.count
                }
                buffer.removeFirst(used)
                if let event { return event }
            }
            guard let chunk = try await connection.read() else {
                sawEOF = true
                return nil
            }
            buffer += chunk
        }
    }

    /// Events until EOF (or an error: a reset also ends the stream).
    func eventsUntilEOF() async -> [WebSocketEvent] {
        var out: [WebSocketEvent] = []
        while let e = try? await next() { out.append(e) }
        return out
    }

    func close() async { await connection.close(flush: false) }
}

/// The close frames among `events`.
func closeCodes(_ events: [WebSocketEvent]) -> [UInt16?] {
    events.compactMap { if case .close(let code, _) = $0 { return code?.rawValue } else { return nil } }
}

/// Runs `body` on `loop`'s thread and returns its result.
func onLoop<T: Sendable>(_ loop: EventLoop, _ body: @escaping @Sendable () -> T) async -> T {
    await withCheckedContinuation { c in loop.execute { c.resume(returning: body()) } }
}

/// The next message, or nil when none arrives within `within`.
func nextMessage(_ ws: WebSocketConnection, within: Duration) async throws -> WebSocketMessage? {
    try await withThrowingTaskGroup(of: WebSocketMessage?.self) { tasks in
        tasks.addTask { try await ws.nextMessage() }
        tasks.addTask {
            try await Task.sleep(for: within)
            return nil
        }
        let first = try await tasks.next() ?? nil
        tasks.cancelAll()
        return first
    }
}
