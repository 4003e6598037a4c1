/// A violation of RFC 6455 / RFC 7692 found while decoding, with the close
/// code the endpoint should send before failing the connection.
///
/// A value type that owns its (short, human-readable) reason string; `Sendable`.
/// ``closeCode`` is one of 1002 (protocol error), 1007 (invalid payload data)
/// or 1009 (message too big).
public struct WebSocketProtocolError: Error, Hashable, Sendable, CustomStringConvertible {
    /// The status code to put in the close frame sent to the peer.
    public var closeCode: CloseCode
    /// A short reason, at most 123 bytes of UTF-8 so it fits a close frame.
    public var reason: String

    public init(closeCode: CloseCode, reason: String) {
        self.closeCode = closeCode
        self.reason = reason
    }

    static func protocolError(_ reason: String) -> Self { .init(closeCode: .protocolError, reason: reason) }
    static func invalidPayload(_ reason: String) -> Self { .init(closeCode: .invalidPayloadData, reason: reason) }
    static func tooBig(_ reason: String) -> Self { .init(closeCode: .messageTooBig, reason: reason) }

    public var description: String { "WebSocketProtocolError(\(closeCode.rawValue): \(reason))" }
}

/// Which end of the connection this codec speaks for. Servers receive masked
/// frames and send unmasked ones; clients do the opposite (RFC 6455 5.1, 5.3).
public enum WebSocketRole: Hashable, Sendable {
    case server
    case client
}
