import Synchronization
import Torus
import TorusHTTP
import TorusTLS

/// What a client offers and how long it waits. A plain value; `Sendable`.
public struct WebSocketClientConfiguration: Sendable {
    /// Per-connection settings (limits, ping liveness, close timeout).
    public var connection = WebSocketConfiguration()
    /// Subprotocols to offer, most preferred first.
    public var subprotocols: [String] = []
    /// permessage-deflate offer, or nil to not offer it.
    public var deflate: PerMessageDeflateConfiguration?
    /// Extra request header fields (`Origin`, `Authorization`, ...).
    public var headers: [HandshakeHeader] = []
    /// Socket options (keepalive, user timeout, write water marks).
    public var socket = SocketOptions()
    public var connectTimeout: Duration = .seconds(10)
    /// The server's response head must arrive within this long.
    public var handshakeTimeout: Duration = .seconds(10)
    /// Largest response head accepted.
    public var maxResponseHeadSize = 16 << 10
    /// The client `TLSContext` for `wss://` (trust roots, client certificate; the
    /// host name is verified unless the context turns it off). nil (the default):
    /// one context per process trusting the system's roots, made on first use.
    public var tls: TLSContext? = nil

    public init(connection: WebSocketConfiguration = WebSocketConfiguration(), subprotocols: [String] = [],
                deflate: PerMessageDeflateConfiguration? = nil, headers: [HandshakeHeader] = []) {
        self.connection = connection
        self.subprotocols = subprotocols
        self.deflate = deflate
        self.headers = headers
    }
}

/// A `ws://` or `wss://host:port/path?query` URL. A plain value. The host is a
/// numeric address or `localhost`; over `wss://` it is also the name the server's
/// certificate is verified against (and the SNI name).
public struct WebSocketURL: Sendable, Hashable {
    public var host: String
    public var port: UInt16
    /// Path and query, starting with `/`.
    public var target: String
    /// `wss://`: TLS with ``WebSocketClientConfiguration/tls``.
    public var secure: Bool

    public init(host: String, port: UInt16, target: String = "/", secure: Bool = false) {
        self.host = host
        self.port = port
        self.target = target.hasPrefix("/") ? target : "/" + target
        self.secure = secure
    }

    /// Parses the URL with the HTTP client's parser (`ws` is `http` there, `wss`
    /// is `https`): the same authority, port and target rules, the same defaults
    /// (80, 443).
    public init(_ string: String) throws(WebSocketError) {
        let lowered = string.prefix(6).lowercased()
        let asHTTP: String
        if lowered.hasPrefix("ws://") {
            asHTTP = "http://" + string.dropFirst(5)
        } else if lowered.hasPrefix("wss://") {
            asHTTP = "https://" + string.dropFirst(6)
        } else {
            throw .invalidURL(string)
        }
        guard let url = HTTPClientRequest.parse(asHTTP) else { throw .invalidURL(string) }
        self.init(host: url.host, port: url.port, target: url.target, secure: url.scheme == .https)
    }

    /// The `Host` field value (no port when it is the scheme's default).
    var hostField: String {
        HTTPClientRequest(scheme: secure ? .https : .http, host: host, port: port).authority
    }
}

/// Opens client connections: TCP connect, the opening handshake (RFC 6455 4.1) with
/// an optional permessage-deflate offer, then a ``WebSocketConnection`` in the client
/// role (masked frames, waits for the server to close the TCP connection first).
public enum WebSocketClient {
    /// Connects to a `ws://` or `wss://` URL. Safe from any task; the connection
    /// lives on `loop`. Over `wss://` a failed TLS handshake throws its `TLSError`
    /// (an unverifiable certificate names why).
    public static func connect(to url: String, on loop: EventLoop,
                               configuration: WebSocketClientConfiguration = WebSocketClientConfiguration())
        async throws -> WebSocketConnection {
        try await connect(to: try WebSocketURL(url), on: loop, configuration: configuration)
    }

    public static func connect(host: String, port: UInt16, path: String = "/", on loop: EventLoop,
                               configuration: WebSocketClientConfiguration = WebSocketClientConfiguration())
        async throws -> WebSocketConnection {
        try await connect(to: WebSocketURL(host: host, port: port, target: path), on: loop, configuration: configuration)
    }

    public static func connect(to url: WebSocketURL, on loop: EventLoop,
                               configuration: WebSocketClientConfiguration = WebSocketClientConfiguration())
        async throws -> WebSocketConnection {
        defer { taskResumedByLoop() }
        return try await withCheckedThrowingContinuation { (c: CheckedContinuation<WebSocketConnection, any Error>) in
            loop.runOnLoop {
                connect(to: url, on: loop, configuration: configuration) { result in
                    switch result {
                    case .success(let ws): c.resume(returning: ws)
                    case .failure(let error): c.resume(throwing: error)
                    }
                }
            }
        }
    }

    /// The callback face (loop thread only): `done` runs on the loop once the
    /// handshake completed or failed. On success it runs before any frame is read,
    /// so callbacks set there see every message.
    public static func connect(to url: WebSocketURL, on loop: EventLoop,
                               configuration: WebSocketClientConfiguration = WebSocketClientConfiguration(),
                               done: @escaping (Result<WebSocketConnection, any Error>) -> Void) {
        let address: SocketAddress
        do {
            address = try SocketAddress.tcp(url.host, url.port)
        } catch {
            return done(.failure(error))
        }
        let tls: TLSContext?
        do {
            tls = url.secure ? try configuration.tls ?? defaultTLSContext() : nil
        } catch {
            return done(.failure(error))
        }
        let handshake = ClientHandshakeHandler(url: url, configuration: configuration, done: done)
        Connection.connect(to: address, on: loop, options: configuration.socket, timeout: configuration.connectTimeout,
                           makeHandler: { connection in
                               if let tls { connection.installTLS(tls, serverName: url.host) }
                               return handshake
                           },
                           done: { result in
                               if case .failure(let error) = result { handshake.finish(.failure(error)) }
                           })
    }

    /// The default `wss://` context (system roots), shared by the connections that
    /// use it at the same time and freed with the last of them (held weakly here:
    /// loading the system's roots once per burst of connections, not per connection,
    /// and no OpenSSL object outliving its users).
    private static let sharedTLS = Mutex(WeakTLSContext())

    static func defaultTLSContext() throws(TLSError) -> TLSContext {
        try sharedTLS.withLock { (shared: inout WeakTLSContext) throws(TLSError) -> TLSContext in
            if let context = shared.context { return context }
            let made = try TLSContext(.client(trustRoots: .system))
            shared.context = made
            return made
        }
    }
}

/// A context held without keeping it alive.
struct WeakTLSContext {
    weak var context: TLSContext?
}

/// The client's handler until the server's 101 arrives: sends the request, reads the
/// response head with the HTTP response parser, checks it, then hands the connection
/// to a `WebSocketConnection` with the bytes that followed the head. Loop thread only.
final class ClientHandshakeHandler: ConnectionHandler {
    let url: WebSocketURL
    let configuration: WebSocketClientConfiguration
    let handshake: ClientHandshake
    private var done: ((Result<WebSocketConnection, any Error>) -> Void)?
    private var parser: HTTPResponseParser
    private var timer: Timer?

    init(url: WebSocketURL, configuration: WebSocketClientConfiguration,
         done: @escaping (Result<WebSocketConnection, any Error>) -> Void) {
        self.url = url
        self.configuration = configuration
        self.done = done
        handshake = ClientHandshake(subprotocols: configuration.subprotocols, deflate: configuration.deflate)
        parser = HTTPResponseParser(limits: HTTPLimits(maxHeadBytes: max(configuration.maxResponseHeadSize, 64),
                                                       maxHeaderCount: 256))
    }

    func finish(_ result: Result<WebSocketConnection, any Error>) {
        timer?.cancel()
        timer = nil
        guard let d = done else { return }
        done = nil
        d(result)
    }

    func connected(_ connection: Connection) {
        var request = "GET \(url.target) HTTP/1.1\r\nHost: \(url.hostField)\r\n"
        for h in handshake.requestHeaders + configuration.headers { request += "\(h.name): \(h.value)\r\n" }
        request += "\r\n"
        connection.send(request)
        timer = connection.loop.schedule(after: configuration.handshakeTimeout) { [weak self, unowned connection] in
            self?.timer = nil
            connection.close(error: WebSocketError.handshakeFailed("no response within the handshake timeout"))
        }
    }

    func received(_ bytes: ReceivedBytes, from connection: Connection) {
        guard done != nil else { return }
        let input = bytes.unsafeBytes
        var head: HTTPResponseHead?
        let consumed: Int
        do {
            consumed = try parser.parse(input) { event in
                guard case .head(let h) = event else { return .proceed }  // 1xx before the 101
                head = h
                return .pause
            }
        } catch {
            let reason = error == .headTooLarge ? "response head too large" : "malformed response: \(error.detail)"
            return connection.close(error: WebSocketError.handshakeFailed(reason))
        }
        guard let head else { return }
        let result: ClientHandshake.Result
        do {
            result = try handshake.validateResponse(status: head.status.code, headers: head)
        } catch {
            return connection.close(error: WebSocketError.handshakeFailed(error.reason))
        }
        let ws = WebSocketConnection(connection: connection, role: .client, subprotocol: result.subprotocol,
                                     deflate: result.deflate,
                                     configuration: SharedWebSocketConfiguration(configuration.connection), request: nil)
        connection.handler = ws
        finish(.success(ws))
        ws.start(leftover: UnsafeRawBufferPointer(rebasing: input[consumed...]))
    }

    func inputClosed(_ connection: Connection) {
        connection.close(error: WebSocketError.handshakeFailed("connection closed during the handshake"))
    }

    func closed(_ connection: Connection, error: (any Error)?) {
        finish(.failure(error ?? WebSocketError.handshakeFailed("connection closed during the handshake")))
    }

}

/// The server's handshake response, as read by the HTTP response parser.
extension HTTPResponseHead: WebSocketHandshakeHeaders {}
