import Logging
import Torus
import TorusTLS

/// Limits and timeouts of an HTTP server, with safe defaults for a public-facing one.
public struct HTTPServerConfiguration: Sendable {
    /// Parser limits: head size and field count (431), target length (414), body (413).
    public var limits = HTTPLimits.default
    /// A request head not complete this long after its first byte gets 408 and the
    /// connection closes (slowloris defence). Default 30 s (nginx's
    /// `client_header_timeout` is 60 s).
    public var headTimeout: Duration = .seconds(30)
    /// A request whose head or body is not complete this long after it started gets
    /// 408 and the connection closes (a stalled upload). Default 30 s.
    public var requestTimeout: Duration = .seconds(30)
    /// An idle keep-alive connection closes after this long.
    public var keepAliveTimeout: Duration = .seconds(60)
    /// A new connection whose first request head is not complete this long after it
    /// was accepted (after the TLS handshake, on HTTPS) closes without an answer: a
    /// server that wants every client to show its credentials at once (torus-hub sets
    /// its authentication timeout here). nil (the default): only the head and
    /// keep-alive timeouts apply.
    public var firstRequestTimeout: Duration? = nil
    /// Unread request-body bytes buffered per connection before reading pauses.
    public var bodyBufferLimit = 1 << 20
    /// Socket options (keepalive, user timeout, write water marks).
    public var socket = SocketOptions()
    /// HTTP connections one source address may hold open at once (nil, the default:
    /// no limit). A connection beyond it gets `503` and is closed before anything is
    /// read, so one address cannot take every file descriptor. A connection that
    /// upgrades (WebSocket) leaves the count: its route admitted it. Behind a NAT many
    /// clients share an address; set it with that in mind (nginx's `limit_conn`).
    public var maxConnectionsPerSource: Int? = nil
    /// HTTPS: a server `TLSContext` puts TLS on every connection of the listener
    /// (its ALPN list should offer `http/1.1`), and WebSocket routes on it are then
    /// WSS. The handshake must complete within the context's handshake timeout; the
    /// head timeout starts after it. nil (the default): plaintext HTTP.
    public var tls: TLSContext? = nil
    /// Where the server logs: refused bad requests (status, reason, peer) and timeouts
    /// at `info`, handler errors answered with 500 at `error`, each request at `debug`
    /// (nothing per request at the default level).
    public var logger = Logger(label: "torus.http")

    public init() {}
}
