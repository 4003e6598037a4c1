/// An HTTP protocol version (`HTTP/major.minor`). Plain value, owns no memory.
public struct HTTPVersion: Sendable, Hashable, CustomStringConvertible {
    /// Major version digit.
    public var major: UInt8
    /// Minor version digit.
    public var minor: UInt8

    /// Creates a version.
    public init(major: UInt8, minor: UInt8) {
        self.major = major
        self.minor = minor
    }

    /// `HTTP/1.1`.
    public static let http11 = HTTPVersion(major: 1, minor: 1)
    /// `HTTP/1.0`.
    public static let http10 = HTTPVersion(major: 1, minor: 0)

    /// `HTTP/x.y`.
    public var description: String { "HTTP/\(major).\(minor)" }
}

/// Well-known request methods, recognised without allocating so handlers can switch on
/// them. Plain value, owns no memory; ``other`` means "see ``RequestHead/methodString``".
public enum HTTPMethodKind: Sendable, Hashable {
    case get, head, post, put, delete, connect, options, trace, patch
    /// A valid token method not in the list above.
    case other
}

/// The form of a request-target (RFC 9112 §3.2). Plain value.
public enum RequestTargetForm: Sendable, Hashable {
    /// `/path?query`
    case origin
    /// `http://host/path?query`
    case absolute
    /// `host:port`, only with CONNECT.
    case authority
    /// `*`, only with OPTIONS.
    case asterisk
}
