import HTTPTypes
import Synchronization
import Torus
import TorusTLS

/// An HTTP/1.1 client on a Torus loop, with a bounded keep-alive pool per host:port.
///
/// ```swift
/// let client = HTTPClient(loop: loop)
/// let response = try await client.get("https://localhost:8443/json")
/// let bytes = try await response.body.collect(upTo: 1 << 20)
/// await client.shutdown()
/// ```
///
/// - Requests may be made from any task, concurrently; each uses one connection at a
///   time. Connections live on `loop` (their I/O runs there); a task that prefers the
///   loop as its executor avoids thread hops.
/// - A response body is streamed from the socket as it is iterated. When it ends the
///   connection goes back to the pool; when it is dropped (or fails) before its end,
///   the connection is closed instead.
/// - Timeouts: `connectTimeout`, `idleTimeout` (nothing received; also closes idle
///   pooled connections) and `requestTimeout` (the whole exchange, body included).
/// - A request that fails on a *reused* connection before any response byte arrived
///   (the server closed the idle connection meanwhile) is retried once on a new
///   connection when its body can be sent again (no body, or `.bytes`).
/// - `https://` runs TLS on the same ring (``HTTPClientConfiguration/tls``): the
///   server's certificate is verified against the URL's host, and a failed
///   handshake is ``HTTPClientError/tls(_:)`` naming why.
/// - Redirects are not followed unless `configuration.redirects` says so.
/// - `shutdown()` closes the idle connections; busy ones close when their exchange
///   ends. Later requests fail with ``HTTPClientError/shutdown``.
public final class HTTPClient: Sendable {
    public let loop: EventLoop
    public let configuration: HTTPClientConfiguration
    let pool: HTTPClientPool
    /// The https context: the configured one, or the default made on first use.
    private let tlsContext: Mutex<TLSContext?>

    public init(loop: EventLoop, configuration: HTTPClientConfiguration = HTTPClientConfiguration()) {
        self.loop = loop
        self.configuration = configuration
        pool = HTTPClientPool(maxPerHost: configuration.maxConnectionsPerHost)
        tlsContext = Mutex(configuration.tls)
    }

    /// The context https connections use (made once when none was configured).
    private func httpsContext() throws(HTTPClientError) -> TLSContext {
        do throws(TLSError) {
            return try tlsContext.withLock { (context: inout TLSContext?) throws(TLSError) -> TLSContext in
                if let context { return context }
                let made = try TLSContext(.client(trustRoots: .system, alpn: ["http/1.1"]))
                context = made
                return made
            }
        } catch {
            throw .tls(error)
        }
    }

    // MARK: Conveniences

    public func get(_ url: String, headerFields: HTTPFields = [:]) async throws -> HTTPClientResponse {
        try await execute(HTTPClientRequest(method: .get, url: url, headerFields: headerFields))
    }

    public func post(_ url: String, body: [UInt8], headerFields: HTTPFields = [:]) async throws -> HTTPClientResponse {
        try await execute(HTTPClientRequest(method: .post, url: url, headerFields: headerFields, body: .bytes(body)))
    }

    /// Idle (pooled) and open (busy plus idle) connections to `scheme://host:port`.
    public func connectionCounts(scheme: HTTPClientRequest.Scheme = .http, host: String,
                                 port: UInt16) -> (idle: Int, open: Int) {
        pool.counts(HTTPClientPoolKey(scheme: scheme, host: host, port: port))
    }

    /// Closes the pooled connections and refuses new requests.
    public func shutdown() async {
        for connection in pool.shutdown() { await connection.close() }
    }

    // MARK: Execution

    /// Sends `request` and returns once the response head has arrived; the body
    /// streams from `response.body`.
    public func execute(_ request: HTTPClientRequest) async throws -> HTTPClientResponse {
        var request = request
        var followed = 0
        while true {
            let response = try await executeOnce(request)
            guard case .follow(let max) = configuration.redirects,
                  let next = Self.redirect(from: request, response: response) else { return response }
            guard followed < max else {
                response.body.reader.abandon()
                throw HTTPClientError.tooManyRedirects
            }
            followed += 1
            // Drain a small redirect body so the connection can be reused.
            if (try? await response.body.collect(upTo: 64 * 1024)) == nil { response.body.reader.abandon() }
            request = next
        }
    }

    private func executeOnce(_ request: HTTPClientRequest) async throws -> HTTPClientResponse {
        let key = HTTPClientPoolKey(request)
        let deadline = RequestDeadline(loop: loop, pool: pool)
        if let t = configuration.requestTimeout { deadline.start(after: t) }
        var attempt = 0
        while true {
            attempt += 1
            let connection: HTTPClientConnection
            let reused: Bool
            do {
                (connection, reused) = try await obtain(key, deadline: deadline)
            } catch {
                deadline.cancel()
                throw error
            }
            deadline.attach(connection)
            do {
                connection.begin(isHEAD: request.method == .head)
                if HTTPClientConnection.sendsInFullDuplex(request) {
                    // The body goes out beside the reading of the response: a server may
                    // answer (and stream its answer) while the body arrives.
                    connection.startUpload(request)
                } else {
                    do {
                        try await connection.send(request)
                    } catch {
                        // The server may have answered early (401, 503…) and closed:
                        // that answer is the response; else the send error stands.
                        if error is CancellationError { throw error }
                        if connection.receivedBytes == 0 {
                            let early = try? await connection.readHead()
                            if early == nil { throw error }
                        }
                        connection.poison()
                    }
                }
                let head = try await connection.readHead()
                return makeResponse(head, connection, deadline: deadline)
            } catch {
                connection.abort()
                pool.discard(key)
                // When the deadline fired, whatever the close surfaced as (a reset, EPIPE)
                // is reported as the timeout it was.
                let mapped = deadline.hasFired ? .requestTimeout
                    : error is CancellationError ? nil : HTTPClientError.from(error)
                if reused, attempt == 1, connection.receivedBytes == 0, mapped == .connectionClosed,
                   request.body?.isReplayable ?? true {
                    configuration.logger.debug("pooled connection was closed by the server; retrying",
                                               metadata: ["authority": "\(request.authority)"])
                    continue
                }
                deadline.cancel()
                configuration.logger.debug("request failed", metadata: [
                    "method": "\(request.method)", "authority": "\(request.authority)",
                    "target": "\(request.target)", "error": "\(mapped.map { "\($0)" } ?? "\(error)")",
                ])
                if let mapped { throw mapped }
                throw error
            }
        }
    }

    private func obtain(_ key: HTTPClientPoolKey, deadline: RequestDeadline) async throws -> (HTTPClientConnection, Bool) {
        let waiter = HTTPClientPool.Waiter()
        deadline.watch(waiter, key: key)
        let checkout = try await pool.checkout(key, waiter: waiter)
        switch checkout {
        case .reuse(let connection):
            return (connection, true)
        case .open:
            do {
                let address = try SocketAddress.tcp(key.host, key.port)
                var options = configuration.socket
                options.idleTimeout = configuration.idleTimeout
                let tls = key.scheme == .https ? try httpsContext() : nil
                let io = try await AsyncConnection.connect(to: address, on: loop, tls: tls, serverName: key.serverName,
                                                           options: options, timeout: configuration.connectTimeout)
                return (HTTPClientConnection(io: io, key: key, limits: configuration.limits), false)
            } catch {
                pool.discard(key)
                if error is CancellationError { throw error }
                throw HTTPClientError.from(error, connecting: true)
            }
        }
    }

    private func makeResponse(_ head: HTTPResponseHead, _ connection: HTTPClientConnection,
                              deadline: RequestDeadline) -> HTTPClientResponse {
        let pool = self.pool
        let discard: @Sendable (HTTPClientConnection) -> Void = { connection in
            connection.abort()
            pool.discard(connection.key)
        }
        // The exchange is over when the response has ended and the request has gone out
        // whole (its upload may still be queuing the last bytes): only then does the
        // connection go back to the pool, and the request's deadline stops.
        let finish: @Sendable (HTTPClientConnection?, Bool) -> Void = { connection, reusable in
            guard let connection else {
                deadline.cancel()
                return
            }
            guard reusable else {
                deadline.cancel()
                discard(connection)
                return
            }
            connection.whenUploaded { uploaded in
                deadline.cancel()
                if uploaded && connection.isOpen { pool.release(connection) } else { discard(connection) }
            }
        }
        let reader: HTTPClientBodyReader
        if let body = connection.takeCompleteBody() {
            let trailers = connection.trailers
            finish(connection, connection.isReusable)
            reader = HTTPClientBodyReader(connection: nil, prefetched: body, trailers: trailers) { _, _ in }
        } else {
            reader = HTTPClientBodyReader(connection: connection, deadline: deadline, finishExchange: finish)
        }
        return HTTPClientResponse(head: head, body: HTTPClientResponse.Body(reader: reader))
    }

    static func redirect(from request: HTTPClientRequest, response: HTTPClientResponse) -> HTTPClientRequest? {
        let code = response.status.code
        guard [301, 302, 303, 307, 308].contains(code), let location = response.headerFields[.location] else { return nil }
        var next = request
        if location.hasPrefix("/") {
            next.target = location
        } else if let url = HTTPClientRequest.parse(location) {
            next.scheme = url.scheme
            next.host = url.host
            next.port = url.port
            next.target = url.target
            // Not from input: a constant, valid field name; the failable init cannot fail.
            next.headerFields[HTTPField.Name("Host")!] = nil
        } else {
            return nil
        }
        if code == 303 || ((code == 301 || code == 302) && request.method == .post) {
            if request.method != .head { next.method = .get }
            next.body = nil
        } else if let body = request.body, !body.isReplayable {
            return nil  // a streamed body cannot be sent again
        }
        return next
    }
}

/// The `requestTimeout` of one request: a loop timer that, when it fires, fails the
/// request wherever it is (waiting for a connection, or on its connection).
/// Loop-confined state; methods are safe from any thread (they hop to the loop).
final class RequestDeadline: @unchecked Sendable {
    let loop: EventLoop
    let pool: HTTPClientPool
    private var timer: Timer?
    private let firedFlag = Atomic<Bool>(false)
    private var fired: Bool {
        get { firedFlag.load(ordering: .acquiring) }
        set { firedFlag.store(newValue, ordering: .releasing) }
    }
    /// Whether the request ran out of time (safe from any thread).
    var hasFired: Bool { fired }
    private var cancelled = false
    private var connection: HTTPClientConnection?
    private var waiter: (HTTPClientPool.Waiter, HTTPClientPoolKey)?

    init(loop: EventLoop, pool: HTTPClientPool) {
        self.loop = loop
        self.pool = pool
    }

    func start(after delay: Duration) {
        loop.runOnLoop { [self] in
            guard !cancelled else { return }
            timer = loop.schedule(after: delay) { [self] in
                timer = nil
                fired = true
                connection?.abort(.requestTimeout)
                if let (w, key) = waiter { pool.fail(w, key: key, with: HTTPClientError.requestTimeout) }
                connection = nil
                waiter = nil
            }
        }
    }

    func watch(_ w: HTTPClientPool.Waiter, key: HTTPClientPoolKey) {
        loop.runOnLoop { [self] in
            if fired { pool.fail(w, key: key, with: HTTPClientError.requestTimeout) } else { waiter = (w, key) }
        }
    }

    func attach(_ c: HTTPClientConnection) {
        loop.runOnLoop { [self] in
            waiter = nil
            if fired { c.abort(.requestTimeout) } else if !cancelled { connection = c }
        }
    }

    func cancel() {
        loop.runOnLoop { [self] in
            cancelled = true
            timer?.cancel()
            timer = nil
            connection = nil
            waiter = nil
        }
    }
}
