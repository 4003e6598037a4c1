import HTTPTypes
import Logging
import Torus
import TorusHTTP

/// What a WebSocket route accepts. A plain value; `Sendable`.
public struct WebSocketServerConfiguration: Sendable {
    /// Per-connection settings (limits, ping liveness, close timeout).
    public var connection = WebSocketConfiguration()
    /// Subprotocols we speak, most preferred first (the first one the client offered wins).
    public var subprotocols: [String] = []
    /// permessage-deflate preferences, or nil to never negotiate it.
    public var deflate: PerMessageDeflateConfiguration?
    /// Origin check: called with the request's `Origin` (nil when absent); false
    /// answers 403. Nil: every origin is accepted.
    public var originCheck: (@Sendable (String?) -> Bool)?
    /// Whether each connection keeps its upgrade request (``WebSocketConnection/request``)
    /// after the `upgraded` callback returns. Off by default: the request is there
    /// while the callback runs (read what you need then), and an idle connection does
    /// not carry it (about 300 bytes each). The async `serve` form always keeps it.
    public var keepsUpgradeRequest: Bool

    public init(connection: WebSocketConfiguration = WebSocketConfiguration(), subprotocols: [String] = [],
                deflate: PerMessageDeflateConfiguration? = nil, originCheck: (@Sendable (String?) -> Bool)? = nil,
                keepsUpgradeRequest: Bool = false) {
        self.connection = connection
        self.subprotocols = subprotocols
        self.deflate = deflate
        self.originCheck = originCheck
        self.keepsUpgradeRequest = keepsUpgradeRequest
    }

    /// An origin check that accepts exactly these origins (and requests without one
    /// when `allowMissing`, e.g. non-browser clients).
    public static func allowingOrigins(_ origins: Set<String>, allowMissing: Bool = true) -> @Sendable (String?) -> Bool {
        { origin in origin.map { origins.contains($0) } ?? allowMissing }
    }
}

extension RequestHead: WebSocketHandshakeHeaders {
    public func values(forHeader name: String) -> [String] { headers(named: name) }
}

extension HTTPRouter {
    /// A WebSocket endpoint at `path`: validates the opening handshake (RFC 6455 4.2),
    /// checks the origin, picks a subprotocol, negotiates permessage-deflate, answers
    /// 101 and hands the connection to a ``WebSocketConnection``. `upgraded` runs on
    /// the connection's loop before any frame is read: set the callbacks there, or
    /// start a task that iterates `ws.messages`. Invalid requests get 400/403/426.
    public mutating func webSocket(_ path: String,
                                   configuration: WebSocketServerConfiguration = WebSocketServerConfiguration(),
                                   registry: WebSocketRegistry? = nil,
                                   _ upgraded: @escaping @Sendable (WebSocketConnection) -> Void) {
        webSocket(path, configuration: configuration, registry: registry,
                  admit: { _, _ in .admit(()) }, { ws, _ in upgraded(ws) })
    }

    /// A WebSocket endpoint whose requests are admitted (or refused) before the 101:
    /// `admit` runs on the loop once the handshake is valid, with the request head and
    /// the peer's address, and either refuses (with the status and header fields it
    /// gives: 401 with `WWW-Authenticate`, 403, 429) or admits with a context value
    /// (what it found out: who the client is, what it may do) that `upgraded` receives.
    public mutating func webSocket<Context: Sendable>(
        _ path: String, configuration: WebSocketServerConfiguration = WebSocketServerConfiguration(),
        registry: WebSocketRegistry? = nil,
        admit: @escaping @Sendable (RequestHead, SocketAddress?) -> WebSocketAdmission<Context>,
        _ upgraded: @escaping @Sendable (WebSocketConnection, Context) -> Void
    ) {
        // One copy of the connection settings for every connection of the route.
        let shared = SharedWebSocketConfiguration(configuration.connection)
        upgrade(path) { head, peer in
            WebSocketUpgrade.decide(head, peer: peer, configuration: configuration, shared: shared, registry: registry,
                                    admit: admit, upgraded: upgraded)
        }
    }

    /// The async form: `serve` runs in a task that prefers the connection's loop as
    /// its executor; the connection is closed (1000) when it returns, or failed with
    /// 1011 when it throws.
    public mutating func webSocket(_ path: String,
                                   configuration: WebSocketServerConfiguration = WebSocketServerConfiguration(),
                                   registry: WebSocketRegistry? = nil,
                                   serve: @escaping @Sendable (WebSocketConnection) async throws -> Void) {
        // `serve` starts after the upgrade callback: it may read the request.
        var configuration = configuration
        configuration.keepsUpgradeRequest = true
        webSocket(path, configuration: configuration, registry: registry) { ws in
            Task(executorPreference: ws.loop) {
                do {
                    try await serve(ws)
                    await ws.close()
                } catch {
                    ws.configuration.logger.warning("WebSocket handler threw; closing 1011",
                                                    metadata: ws.logMetadata(["error": "\(error)"]))
                    await ws.close(code: .internalError, reason: "")
                }
            }
        }
    }
}

/// What a WebSocket route's admission check decided about a valid upgrade request.
public enum WebSocketAdmission<Context: Sendable>: Sendable {
    /// Upgrade; the route's `upgraded` callback receives `Context`.
    case admit(Context)
    /// Answer with this status, header fields and reason (as the body), then close.
    case refuse(HTTPResponse.Status, headerFields: HTTPFields, reason: String)
}

enum WebSocketUpgrade {
    static func decide<Context: Sendable>(
        _ head: RequestHead, peer: SocketAddress?, configuration: WebSocketServerConfiguration,
        shared settings: SharedWebSocketConfiguration, registry: WebSocketRegistry?,
        admit: @Sendable (RequestHead, SocketAddress?) -> WebSocketAdmission<Context>,
        upgraded: @escaping @Sendable (WebSocketConnection, Context) -> Void
    ) -> HTTPUpgradeDecision {
        let logger = configuration.connection.logger
        if let check = configuration.originCheck, !check(head.header(named: "Origin")) {
            logger.info("handshake refused", metadata: [
                "path": "\(head.path)", "status": "403", "reason": "origin not allowed",
                "origin": "\(head.header(named: "Origin") ?? "none")",
            ])
            return .reject(.forbidden, headerFields: [:], reason: "origin not allowed")
        }
        let accept: ServerHandshakeAccept
        do {
            accept = try WebSocketHandshake.acceptUpgrade(
                method: head.methodString, httpVersion: head.version.description, headers: head,
                configuration: ServerHandshakeConfiguration(subprotocols: configuration.subprotocols,
                                                            deflate: configuration.deflate))
        } catch {
            logger.info("handshake refused", metadata: [
                "path": "\(head.path)", "status": "\(error.status)", "reason": "\(error.reason)",
            ])
            return .reject(HTTPResponse.Status(code: error.status), headerFields: fields(error.headers),
                           reason: error.reason)
        }
        let context: Context
        switch admit(head, peer) {
        case .admit(let admitted):
            context = admitted
        case .refuse(let status, let fields, let reason):
            logger.info("handshake refused", metadata: [
                "path": "\(head.path)", "status": "\(status.code)", "reason": "\(reason)",
            ])
            return .reject(status, headerFields: fields, reason: reason)
        }
        // A connection that keeps its upgrade request keeps it in storage of its own,
        // not the parser's (reserved for the largest head). Otherwise it borrows the
        // parser's only while `upgraded` runs.
        let keeps = configuration.keepsUpgradeRequest
        let request = keeps ? head.compacted() : head
        return .accept(headerFields: fields(accept.responseHeaders)) { connection in
            WebSocketConnection(connection: connection, role: .server, subprotocol: accept.subprotocol,
                                deflate: accept.deflate, configuration: settings, request: request) { ws in
                registry?.add(ws)
                upgraded(ws, context)
                if !keeps { ws.dropUpgradeRequest() }
            }
        }
    }

    static func fields(_ headers: [HandshakeHeader]) -> HTTPFields {
        var fields = HTTPFields()
        for h in headers {
            if let name = HTTPField.Name(h.name) { fields.append(HTTPField(name: name, value: h.value)) }
        }
        return fields
    }
}
