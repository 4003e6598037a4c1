import Torus

/// Limits and timeouts of an HTTP server, with safe defaults for a public-facing one.
public struct HTTPServerConfiguration: Sendable {
    /// Parser limits: head size and field count (431), target length (414), body (413).
    public var limits = HTTPLimits.default
    /// A request whose head or body is not complete this long after it started gets
    /// 408 and the connection closes (slowloris defence).
    public var requestTimeout: Duration = .seconds(30)
    /// An idle keep-alive connection closes after this long.
    public var keepAliveTimeout: Duration = .seconds(60)
    /// Unread request-body bytes buffered per connection before reading pauses.
    public var bodyBufferLimit = 1 << 20
    /// Socket options (keepalive, user timeout, write water marks).
    public var socket = SocketOptions()

    public init() {}
}
