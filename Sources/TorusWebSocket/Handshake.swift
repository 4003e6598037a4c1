/// The opening handshake of RFC 6455 section 4, independent of any HTTP
/// library: callers pass the method, version and a ``WebSocketHandshakeHeaders``
/// view, and get header fields back. Stateless; all functions are pure.
public enum WebSocketHandshake {
    /// The GUID of RFC 6455 section 1.3.
    public static let guid = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
    /// The only protocol version this implementation speaks.
    public static let version = "13"

    /// `Sec-WebSocket-Accept` for a key: base64(SHA-1(key + GUID)).
    public static func acceptValue(forKey key: String) -> String {
        Base64.encode(SHA1.hash(Array((key + guid).utf8)))
    }

    /// Whether `key` is the base64 encoding of exactly 16 bytes.
    public static func isValidKey(_ key: String) -> Bool {
        key.utf8.count == 24 && Base64.decode(key)?.count == 16
    }

    /// A fresh client key: 16 bytes from `SystemRandomNumberGenerator`, base64.
    public static func makeClientKey() -> String {
        var g = SystemRandomNumberGenerator()
        return Base64.encode((0..<16).map { _ in UInt8.random(in: .min ... .max, using: &g) })
    }

    /// The subprotocol to answer with: the first of `supported` (our order of
    /// preference) that the client offered. Subprotocol names are compared exactly.
    public static func selectSubprotocol(offered: [String], supported: [String]) -> String? {
        supported.first { offered.contains($0) }
    }
}

/// What a server accepts and offers (a plain value; `Sendable`).
public struct ServerHandshakeConfiguration: Hashable, Sendable {
    /// Subprotocols we speak, most preferred first.
    public var subprotocols: [String]
    /// permessage-deflate preferences, or `nil` to never negotiate it.
    public var deflate: PerMessageDeflateConfiguration?

    public init(subprotocols: [String] = [], deflate: PerMessageDeflateConfiguration? = nil) {
        self.subprotocols = subprotocols
        self.deflate = deflate
    }
}

/// A valid upgrade request: answer `101 Switching Protocols` with
/// ``responseHeaders``. A plain value; `Sendable`.
public struct ServerHandshakeAccept: Hashable, Sendable {
    public var acceptValue: String
    public var subprotocol: String?
    /// The agreed permessage-deflate parameters, or `nil` if not negotiated.
    public var deflate: PerMessageDeflateAgreement?
    /// `Upgrade`, `Connection`, `Sec-WebSocket-Accept` and, when chosen,
    /// `Sec-WebSocket-Protocol` and `Sec-WebSocket-Extensions`.
    public var responseHeaders: [HandshakeHeader]
}

/// A refused upgrade request: answer with ``status`` and ``headers`` (e.g.
/// `426` with `Sec-WebSocket-Version: 13`). A plain value; `Sendable`.
public struct HandshakeRejection: Error, Hashable, Sendable {
    /// 400 (malformed), 405 (not GET) or 426 (unsupported version).
    public var status: Int
    public var reason: String
    public var headers: [HandshakeHeader]

    public init(status: Int, reason: String, headers: [HandshakeHeader] = []) {
        self.status = status
        self.reason = reason
        self.headers = headers
    }
}

extension WebSocketHandshake {
    /// Server side: validates an upgrade request (RFC 6455 section 4.2.1) and
    /// builds the response.
    ///
    /// - Parameters:
    ///   - method: the request method, e.g. `GET` (case-sensitive).
    ///   - httpVersion: e.g. `HTTP/1.1`; HTTP/1.1 or a later 1.x is required.
    ///   - headers: the request's header fields.
    ///   - configuration: the subprotocols and permessage-deflate settings we accept.
    public static func acceptUpgrade(method: String, httpVersion: String,
                                     headers: some WebSocketHandshakeHeaders,
                                     configuration: ServerHandshakeConfiguration = .init())
        throws(HandshakeRejection) -> ServerHandshakeAccept {
        guard method == "GET" else {
            throw HandshakeRejection(status: 405, reason: "WebSocket upgrade requires GET",
                                     headers: [HandshakeHeader("Allow", "GET")])
        }
        guard isHTTP11OrLater(httpVersion) else {
            throw HandshakeRejection(status: 400, reason: "WebSocket upgrade requires HTTP/1.1")
        }
        guard headers.listContainsToken("Upgrade", "websocket") else {
            throw HandshakeRejection(status: 400, reason: "missing Upgrade: websocket")
        }
        guard headers.listContainsToken("Connection", "upgrade") else {
            throw HandshakeRejection(status: 400, reason: "missing Connection: upgrade")
        }
        let versions = headers.values(forHeader: "Sec-WebSocket-Version")
        guard versions.count == 1, versions[0].trimmingSpaces() == version else {
            throw HandshakeRejection(status: 426, reason: "unsupported WebSocket version",
                                     headers: [HandshakeHeader("Sec-WebSocket-Version", version)])
        }
        let keys = headers.values(forHeader: "Sec-WebSocket-Key")
        guard keys.count == 1, case let key = keys[0].trimmingSpaces(), isValidKey(key) else {
            throw HandshakeRejection(status: 400, reason: "missing or invalid Sec-WebSocket-Key")
        }
        let accept = acceptValue(forKey: key)
        var response = [HandshakeHeader("Upgrade", "websocket"),
                        HandshakeHeader("Connection", "Upgrade"),
                        HandshakeHeader("Sec-WebSocket-Accept", accept)]
        let subprotocol = selectSubprotocol(offered: headers.listElements(forHeader: "Sec-WebSocket-Protocol"),
                                            supported: configuration.subprotocols)
        if let subprotocol { response.append(HandshakeHeader("Sec-WebSocket-Protocol", subprotocol)) }
        var deflate: PerMessageDeflateAgreement?
        if let config = configuration.deflate {
            deflate = PerMessageDeflate.negotiate(
                offerHeaderValues: headers.values(forHeader: "Sec-WebSocket-Extensions"), configuration: config)
            if let deflate {
                response.append(HandshakeHeader("Sec-WebSocket-Extensions", deflate.responseHeaderValue))
            }
        }
        return ServerHandshakeAccept(acceptValue: accept, subprotocol: subprotocol, deflate: deflate,
                                     responseHeaders: response)
    }

    static func isHTTP11OrLater(_ v: String) -> Bool {
        guard v.hasPrefix("HTTP/") else { return false }
        let parts = v.dropFirst(5).split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 2, let major = Int(parts[0]), let minor = Int(parts[1]) else { return false }
        return major == 1 && minor >= 1
    }
}

extension String {
    func trimmingSpaces() -> String {
        String(self[...].trimmingCharacters(where: { $0 == " " || $0 == "\t" }))
    }
}

/// The client side of the opening handshake: makes the request header
/// fields and checks the server's answer. Holds the generated key; a plain
/// value, `Sendable`. The `Host` field and request line are the HTTP layer's.
public struct ClientHandshake: Hashable, Sendable {
    /// The `Sec-WebSocket-Key` sent (16 random bytes, base64).
    public let key: String
    public let subprotocols: [String]
    public let deflate: PerMessageDeflateConfiguration?

    public init(subprotocols: [String] = [], deflate: PerMessageDeflateConfiguration? = nil) {
        self.init(key: WebSocketHandshake.makeClientKey(), subprotocols: subprotocols, deflate: deflate)
    }

    /// With a given key (tests, or a key from elsewhere); must be valid.
    public init(key: String, subprotocols: [String] = [], deflate: PerMessageDeflateConfiguration? = nil) {
        // Not from input: the application's own key; a peer's key is checked with isValidKey.
        precondition(WebSocketHandshake.isValidKey(key), "invalid Sec-WebSocket-Key")
        self.key = key
        self.subprotocols = subprotocols
        self.deflate = deflate
    }

    /// Header fields for the `GET` request.
    public var requestHeaders: [HandshakeHeader] {
        var h = [HandshakeHeader("Upgrade", "websocket"),
                 HandshakeHeader("Connection", "Upgrade"),
                 HandshakeHeader("Sec-WebSocket-Key", key),
                 HandshakeHeader("Sec-WebSocket-Version", WebSocketHandshake.version)]
        if !subprotocols.isEmpty {
            h.append(HandshakeHeader("Sec-WebSocket-Protocol", subprotocols.joined(separator: ", ")))
        }
        if let deflate {
            h.append(HandshakeHeader("Sec-WebSocket-Extensions",
                                     PerMessageDeflate.offerHeaderValue(configuration: deflate)))
        }
        return h
    }

    /// The outcome of a successful handshake.
    public struct Result: Hashable, Sendable {
        public var subprotocol: String?
        public var deflate: PerMessageDeflateAgreement?
    }

    /// Why the client must fail the connection (RFC 6455 section 4.1).
    public struct Failure: Error, Hashable, Sendable {
        public var reason: String
    }

    /// Checks the server's response (RFC 6455 section 4.1, client steps 1-6).
    public func validateResponse(status: Int, headers: some WebSocketHandshakeHeaders) throws(Failure) -> Result {
        guard status == 101 else { throw Failure(reason: "status \(status), expected 101") }
        guard headers.listContainsToken("Upgrade", "websocket") else { throw Failure(reason: "missing Upgrade: websocket") }
        guard headers.listContainsToken("Connection", "upgrade") else { throw Failure(reason: "missing Connection: upgrade") }
        let accepts = headers.values(forHeader: "Sec-WebSocket-Accept")
        guard accepts.count == 1, accepts[0].trimmingSpaces() == WebSocketHandshake.acceptValue(forKey: key) else {
            throw Failure(reason: "missing or wrong Sec-WebSocket-Accept")
        }
        var subprotocol: String?
        let protocols = headers.listElements(forHeader: "Sec-WebSocket-Protocol")
        if !protocols.isEmpty {
            guard protocols.count == 1, subprotocols.contains(protocols[0]) else {
                throw Failure(reason: "server chose a subprotocol that was not offered")
            }
            subprotocol = protocols[0]
        }
        let extensions = headers.values(forHeader: "Sec-WebSocket-Extensions")
        var agreement: PerMessageDeflateAgreement?
        if let deflate {
            do throws(PerMessageDeflate.ResponseError) {
                agreement = try PerMessageDeflate.validateResponse(headerValues: extensions, configuration: deflate)
            } catch {
                throw Failure(reason: error.reason)
            }
        } else if !extensions.allSatisfy({ $0.trimmingSpaces().isEmpty }) {
            throw Failure(reason: "server chose an extension that was not offered")
        }
        return Result(subprotocol: subprotocol, deflate: agreement)
    }
}
