/// A WebSocket close status code (RFC 6455 section 7.4).
///
/// A plain `UInt16` wrapper: owns no memory, `Sendable`. Any value can be
/// represented; ``isValidOnWire`` says whether a peer may send it.
public struct CloseCode: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
    public let rawValue: UInt16

    public init(rawValue: UInt16) { self.rawValue = rawValue }

    public static let normalClosure = CloseCode(rawValue: 1000)
    public static let goingAway = CloseCode(rawValue: 1001)
    public static let protocolError = CloseCode(rawValue: 1002)
    public static let unsupportedData = CloseCode(rawValue: 1003)
    /// Reserved: "no status code was present". Never sent on the wire.
    public static let noStatusReceived = CloseCode(rawValue: 1005)
    /// Reserved: "connection closed abnormally". Never sent on the wire.
    public static let abnormalClosure = CloseCode(rawValue: 1006)
    public static let invalidPayloadData = CloseCode(rawValue: 1007)
    public static let policyViolation = CloseCode(rawValue: 1008)
    public static let messageTooBig = CloseCode(rawValue: 1009)
    public static let mandatoryExtension = CloseCode(rawValue: 1010)
    public static let internalError = CloseCode(rawValue: 1011)
    /// Reserved: "TLS handshake failure". Never sent on the wire.
    public static let tlsHandshakeFailure = CloseCode(rawValue: 1015)

    /// Whether a peer may put this code in a close frame.
    ///
    /// Valid: 1000-1003, 1007-1011 (RFC 6455 section 7.4.1) and 3000-4999
    /// (registered and private use). Everything else, including 1004, 1005,
    /// 1006, 1015 and the IANA-registered-later 1012-1014, is rejected with a
    /// protocol error (1002): this is the strict RFC 6455 set that
    /// Autobahn|Testsuite 7.7/7.9 checks.
    public var isValidOnWire: Bool {
        switch rawValue {
        case 1000...1003, 1007...1011, 3000...4999: return true
        default: return false
        }
    }

    public var description: String { String(rawValue) }
}
