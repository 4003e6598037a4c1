/// Local preferences for permessage-deflate (RFC 7692), used by a server to
/// answer an offer and by a client to make one. Parameter names follow the
/// RFC, so "server" and "client" mean the two ends whatever our role is.
///
/// A plain value; `Sendable`.
public struct PerMessageDeflateConfiguration: Hashable, Sendable {
    /// Server: always reset our compressor per message (and say so).
    /// Client: ask the server to do that.
    public var serverNoContextTakeover: Bool
    /// Server: ask the client to reset its compressor per message.
    /// Client: reset our compressor per message (and say so).
    public var clientNoContextTakeover: Bool
    /// Server: the largest window our compressor uses (8...15).
    /// Client: if below 15, ask the server to use at most this.
    public var serverMaxWindowBits: Int
    /// Server: if below 15 and the client allows it, ask the client for at most this.
    /// Client: the largest window our compressor uses (8...15).
    public var clientMaxWindowBits: Int
    /// zlib compression level, 0...9 (or -1 for zlib's default, 6).
    public var compressionLevel: Int32
    /// zlib memLevel, 1...9.
    public var memoryLevel: Int32

    public init(serverNoContextTakeover: Bool = false, clientNoContextTakeover: Bool = false,
                serverMaxWindowBits: Int = 15, clientMaxWindowBits: Int = 15,
                compressionLevel: Int32 = -1, memoryLevel: Int32 = 8) {
        // Not from input: the application's configuration; a peer's window bits are parsed
        // into 8...15 or refused (Parameters.windowBits).
        precondition((8...15).contains(serverMaxWindowBits) && (8...15).contains(clientMaxWindowBits))
        self.serverNoContextTakeover = serverNoContextTakeover
        self.clientNoContextTakeover = clientNoContextTakeover
        self.serverMaxWindowBits = serverMaxWindowBits
        self.clientMaxWindowBits = clientMaxWindowBits
        self.compressionLevel = compressionLevel
        self.memoryLevel = memoryLevel
    }
}

/// The permessage-deflate parameters both ends agreed on, from the server's
/// response. A plain value; `Sendable`.
///
/// A window value of `nil` means the parameter is absent from the response
/// (the full 15-bit window is allowed).
public struct PerMessageDeflateAgreement: Hashable, Sendable {
    public var serverNoContextTakeover: Bool = false
    public var clientNoContextTakeover: Bool = false
    public var serverMaxWindowBits: Int?
    public var clientMaxWindowBits: Int?
    /// Compression level and memLevel for our own compressor (not negotiated).
    public var compressionLevel: Int32 = -1
    public var memoryLevel: Int32 = 8

    public init(serverNoContextTakeover: Bool = false, clientNoContextTakeover: Bool = false,
                serverMaxWindowBits: Int? = nil, clientMaxWindowBits: Int? = nil,
                compressionLevel: Int32 = -1, memoryLevel: Int32 = 8) {
        self.serverNoContextTakeover = serverNoContextTakeover
        self.clientNoContextTakeover = clientNoContextTakeover
        self.serverMaxWindowBits = serverMaxWindowBits
        self.clientMaxWindowBits = clientMaxWindowBits
        self.compressionLevel = compressionLevel
        self.memoryLevel = memoryLevel
    }

    /// The `Sec-WebSocket-Extensions` response value, e.g.
    /// `permessage-deflate; server_no_context_takeover; client_max_window_bits=10`.
    public var responseHeaderValue: String {
        var params: [WebSocketExtension.Parameter] = []
        if serverNoContextTakeover { params.append(.init(name: "server_no_context_takeover")) }
        if clientNoContextTakeover { params.append(.init(name: "client_no_context_takeover")) }
        if let b = serverMaxWindowBits { params.append(.init(name: "server_max_window_bits", value: String(b))) }
        if let b = clientMaxWindowBits { params.append(.init(name: "client_max_window_bits", value: String(b))) }
        return WebSocketExtension(name: PerMessageDeflate.extensionName, parameters: params).headerValue
    }

    /// Whether `role`'s compressor must start afresh for each message.
    public func compressorResetsPerMessage(role: WebSocketRole) -> Bool {
        role == .server ? serverNoContextTakeover : clientNoContextTakeover
    }

    /// The window `role`'s compressor may use (8...15).
    public func compressorWindowBits(role: WebSocketRole) -> Int {
        (role == .server ? serverMaxWindowBits : clientMaxWindowBits) ?? 15
    }

    /// Whether the peer of `role` starts afresh for each message, so our
    /// decompressor may (and does) reset too.
    public func decompressorResetsPerMessage(role: WebSocketRole) -> Bool {
        role == .server ? clientNoContextTakeover : serverNoContextTakeover
    }

    /// A compressor for messages `role` sends, or nil when zlib refuses its stream
    /// (out of memory, or a level it does not accept): messages then go uncompressed.
    public func makeCompressor(role: WebSocketRole) -> PerMessageDeflateCompressor? {
        PerMessageDeflateCompressor.make(windowBits: compressorWindowBits(role: role),
                                         noContextTakeover: compressorResetsPerMessage(role: role),
                                         level: compressionLevel, memoryLevel: memoryLevel)
    }

    /// A decompressor for messages `role` receives, or nil when zlib refuses its
    /// stream (out of memory): a compressed message is then failed with 1011.
    public func makeDecompressor(role: WebSocketRole) -> PerMessageDeflateDecompressor? {
        PerMessageDeflateDecompressor.make(noContextTakeover: decompressorResetsPerMessage(role: role))
    }
}

/// RFC 7692 negotiation. Stateless; all functions are pure.
public enum PerMessageDeflate {
    public static let extensionName = "permessage-deflate"

    /// The parameters of one permessage-deflate offer or response, checked
    /// for the RFC's syntax: only the four known names, each at most once,
    /// the two `no_context_takeover` without a value, `server_max_window_bits`
    /// with a value and `client_max_window_bits` with an optional value, values 8...15.
    struct Parameters {
        var serverNoContextTakeover = false
        var clientNoContextTakeover = false
        var serverMaxWindowBits: Int?
        /// `.some(nil)`: present without a value.
        var clientMaxWindowBits: Int??

        init?(_ params: [WebSocketExtension.Parameter], isResponse: Bool) {
            var seen = Set<String>()
            for p in params {
                guard seen.insert(p.name).inserted else { return nil }
                switch p.name {
                case "server_no_context_takeover":
                    guard p.value == nil else { return nil }
                    serverNoContextTakeover = true
                case "client_no_context_takeover":
                    guard p.value == nil else { return nil }
                    clientNoContextTakeover = true
                case "server_max_window_bits":
                    guard let v = p.value, let bits = Parameters.windowBits(v) else { return nil }
                    serverMaxWindowBits = bits
                case "client_max_window_bits":
                    if let v = p.value {
                        guard let bits = Parameters.windowBits(v) else { return nil }
                        clientMaxWindowBits = .some(bits)
                    } else {
                        // A response must give a value (RFC 7692 7.1.2.2).
                        guard !isResponse else { return nil }
                        clientMaxWindowBits = .some(nil)
                    }
                default:
                    return nil
                }
            }
        }

        /// "8" ... "15", decimal without leading zeros.
        static func windowBits(_ s: String) -> Int? {
            guard !s.isEmpty, s.utf8.allSatisfy({ $0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9") }),
                  s.first != "0", let v = Int(s), (8...15).contains(v) else { return nil }
            return v
        }
    }

    // MARK: Server

    /// Server side: picks the first acceptable permessage-deflate offer among
    /// the request's `Sec-WebSocket-Extensions` values.
    ///
    /// An offer with unknown, duplicate or malformed parameters is declined
    /// and the next one considered. Returns `nil` when none is acceptable (or
    /// the header is malformed): answer without the extension.
    public static func negotiate(offerHeaderValues: [String],
                                 configuration: PerMessageDeflateConfiguration) -> PerMessageDeflateAgreement? {
        guard let extensions = WebSocketExtension.parse(headerValues: offerHeaderValues) else { return nil }
        for ext in extensions where ext.name == extensionName {
            guard let offer = Parameters(ext.parameters, isResponse: false) else { continue }
            var a = PerMessageDeflateAgreement(compressionLevel: configuration.compressionLevel,
                                               memoryLevel: configuration.memoryLevel)
            // Must honour the client's request; may impose it on our own.
            a.serverNoContextTakeover = offer.serverNoContextTakeover || configuration.serverNoContextTakeover
            // May always be stated; echo the client's hint so both agree.
            a.clientNoContextTakeover = offer.clientNoContextTakeover || configuration.clientNoContextTakeover
            // server_max_window_bits: offered N -> answer M <= N; not offered -> may state a smaller one.
            if let n = offer.serverMaxWindowBits {
                a.serverMaxWindowBits = min(n, configuration.serverMaxWindowBits)
            } else if configuration.serverMaxWindowBits < 15 {
                a.serverMaxWindowBits = configuration.serverMaxWindowBits
            }
            // client_max_window_bits: only if offered; never above the offered value.
            if let offered = offer.clientMaxWindowBits {
                let limit = min(offered ?? 15, configuration.clientMaxWindowBits)
                if limit < 15 { a.clientMaxWindowBits = limit }
            }
            return a
        }
        return nil
    }

    // MARK: Client

    /// Client side: the `Sec-WebSocket-Extensions` request value for one
    /// offer. It always lists `client_max_window_bits` (with our limit, or bare
    /// to let the server pick one).
    public static func offerHeaderValue(configuration c: PerMessageDeflateConfiguration) -> String {
        var params: [WebSocketExtension.Parameter] = []
        if c.serverNoContextTakeover { params.append(.init(name: "server_no_context_takeover")) }
        if c.clientNoContextTakeover { params.append(.init(name: "client_no_context_takeover")) }
        if c.serverMaxWindowBits < 15 {
            params.append(.init(name: "server_max_window_bits", value: String(c.serverMaxWindowBits)))
        }
        params.append(.init(name: "client_max_window_bits",
                            value: c.clientMaxWindowBits < 15 ? String(c.clientMaxWindowBits) : nil))
        return WebSocketExtension(name: extensionName, parameters: params).headerValue
    }

    /// Why a client rejects a server's extension response.
    public struct ResponseError: Error, Hashable, Sendable {
        public var reason: String
    }

    /// Client side: checks the response's `Sec-WebSocket-Extensions` values
    /// against what ``offerHeaderValue(configuration:)`` offered.
    ///
    /// Returns `nil` when the server declined the extension, the agreement
    /// when it accepted, and throws when the response must fail the
    /// connection (an extension we did not offer, more than one answer, an
    /// invalid parameter, or one that contradicts the offer).
    public static func validateResponse(headerValues: [String],
                                        configuration c: PerMessageDeflateConfiguration)
        throws(ResponseError) -> PerMessageDeflateAgreement? {
        guard let extensions = WebSocketExtension.parse(headerValues: headerValues) else {
            throw ResponseError(reason: "malformed Sec-WebSocket-Extensions")
        }
        guard !extensions.isEmpty else { return nil }
        guard extensions.count == 1, let ext = extensions.first, ext.name == extensionName else {
            throw ResponseError(reason: "unexpected extensions in response")
        }
        guard let r = Parameters(ext.parameters, isResponse: true) else {
            throw ResponseError(reason: "invalid permessage-deflate parameters")
        }
        if c.serverNoContextTakeover && !r.serverNoContextTakeover {
            throw ResponseError(reason: "server_no_context_takeover was requested but not granted")
        }
        if c.serverMaxWindowBits < 15 {
            guard let m = r.serverMaxWindowBits, m <= c.serverMaxWindowBits else {
                throw ResponseError(reason: "server_max_window_bits not granted")
            }
        }
        var clientBits: Int? = c.clientMaxWindowBits < 15 ? c.clientMaxWindowBits : nil
        if let m = r.clientMaxWindowBits {
            guard let m, m <= c.clientMaxWindowBits else {
                throw ResponseError(reason: "client_max_window_bits above the offered value")
            }
            clientBits = m
        }
        return PerMessageDeflateAgreement(
            serverNoContextTakeover: r.serverNoContextTakeover,
            clientNoContextTakeover: r.clientNoContextTakeover || c.clientNoContextTakeover,
            serverMaxWindowBits: r.serverMaxWindowBits,
            clientMaxWindowBits: clientBits,
            compressionLevel: c.compressionLevel, memoryLevel: c.memoryLevel)
    }
}
