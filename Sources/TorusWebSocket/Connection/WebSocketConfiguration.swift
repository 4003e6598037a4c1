import Logging
import Torus

/// Per-connection settings shared by servers and clients. A plain value; `Sendable`.
public struct WebSocketConfiguration: Sendable {
    /// Largest frame payload accepted, as announced on the wire. Larger: close 1009.
    /// With permessage-deflate, compressed frames may exceed it by 1/64 (deflate
    /// expands incompressible data a little), so a message of `maxMessageSize`
    /// bytes still fits one frame.
    public var maxFrameSize = 16 << 20
    /// Largest message accepted after reassembly and decompression. Larger: close 1009.
    public var maxMessageSize = 16 << 20
    /// Liveness: when nothing has arrived for this long, send a ping (nil: never).
    public var pingInterval: Duration? = .seconds(30)
    /// Liveness: after such a ping, close when still nothing has arrived for this long.
    public var pingTimeout: Duration = .seconds(30)
    /// How long to wait for the peer's side of the closing handshake (its close
    /// frame, or for a client the server's TCP close) before closing the socket anyway.
    public var closeTimeout: Duration = .seconds(5)
    /// Answer pings with pongs automatically (RFC 6455 5.5.2 requires an answer).
    public var autoPong = true
    /// With permessage-deflate, messages shorter than this are sent uncompressed
    /// (RSV1 clear, which RFC 7692 allows per message): deflate makes tiny ones larger.
    public var compressionThreshold = 32
    /// Async face: bytes of received messages waiting for `messages` before reading
    /// pauses (resumes at half).
    public var inboundBufferLimit = 1 << 20
    /// Where the connection's operational events go (metadata: `peer`, `fd`):
    /// closes for a protocol error (with the close code), a ping timeout or a closing
    /// handshake that timed out, at `info`. Nothing is logged per message.
    public var logger = Logger(label: "torus.websocket")

    public init() {}

    func decoderConfiguration(deflate: Bool) -> MessageDecoderConfiguration {
        let frame = max(maxFrameSize, 125)
        // Saturating: a limit near Int.max must not trap when a peer negotiates deflate.
        let slack = frame / 64 + 1024
        let limit = !deflate ? frame : (frame > .max - slack ? .max : frame + slack)
        return MessageDecoderConfiguration(maxFrameSize: limit,
                                           maxMessageSize: maxMessageSize)
    }
}

/// A complete data message. Text is valid UTF-8 (the decoder checked it).
public enum WebSocketMessage: Sendable, Hashable {
    case text(String)
    case binary([UInt8])
}

/// How a WebSocket connection ended. A plain value; `Sendable`.
public struct WebSocketCloseInfo: Sendable, CustomStringConvertible {
    /// The status of the close: the peer's code when it sent a close frame (1005 if
    /// its frame had no body), ours when we failed the connection (1002, 1007,
    /// 1009, 1011), 1006 when the connection ended without a close frame.
    public var code: CloseCode
    public var reason: String
    /// Close frames went both ways (the closing handshake completed).
    public var wasClean: Bool
    /// The code we sent in our close frame, if we sent one.
    public var sentCode: CloseCode?
    /// The socket-level reason (reset, timeout, loop stopped), nil for an orderly end.
    public var error: (any Error)?

    public var description: String {
        var s = "close \(code.rawValue)"
        if !reason.isEmpty { s += " \"\(reason)\"" }
        s += wasClean ? " (clean)" : " (not clean)"
        if let error { s += " error: \(error)" }
        return s
    }
}

/// Errors of the WebSocket connection faces.
public enum WebSocketError: Error, Sendable, CustomStringConvertible {
    /// The connection is closing or closed; nothing more can be sent.
    case closed
    /// The connection ended without a closing handshake (peer vanished, reset,
    /// timeout, loop stopped).
    case abnormalClosure(WebSocketCloseInfo)
    /// We failed the connection because the peer broke the protocol.
    case protocolViolation(WebSocketProtocolError)
    /// The opening handshake failed (client).
    case handshakeFailed(String)
    /// No sign of life within the ping timeout.
    case pingTimeout
    /// The peer did not finish the closing handshake in time.
    case closeTimeout
    /// A broadcast channel disconnected this subscriber for not keeping up.
    case slowConsumer
    /// A `ws://` URL could not be parsed (or is `wss://`, which needs TLS).
    case invalidURL(String)

    public var description: String {
        switch self {
        case .closed: "WebSocket closed"
        case .abnormalClosure(let info): "WebSocket closed abnormally: \(info)"
        case .protocolViolation(let e): "WebSocket protocol violation: \(e)"
        case .handshakeFailed(let r): "WebSocket handshake failed: \(r)"
        case .pingTimeout: "WebSocket ping timed out"
        case .closeTimeout: "WebSocket closing handshake timed out"
        case .slowConsumer: "WebSocket subscriber too slow"
        case .invalidURL(let u): "invalid WebSocket URL: \(u)"
        }
    }
}

/// One `WebSocketConfiguration` shared by every connection of a route: a connection
/// keeps a reference instead of its own copy (with its logger), which an idle
/// connection would otherwise carry for its whole life. Immutable.
final class SharedWebSocketConfiguration: Sendable {
    let value: WebSocketConfiguration

    init(_ value: WebSocketConfiguration) {
        self.value = value
    }
}
