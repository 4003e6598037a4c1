import Logging
import Torus
import TorusTLS

/// Settings of an ``HTTPClient``. Plain value.
public struct HTTPClientConfiguration: Sendable {
    /// Time allowed to establish a TCP connection.
    public var connectTimeout: Duration = .seconds(10)
    /// A connection on which nothing is received for this long is closed: while
    /// waiting for (or streaming) a response, and while idle in the pool. Not applied
    /// while the request body is being sent.
    public var idleTimeout: Duration = .seconds(60)
    /// Upper bound for a whole request: waiting for a connection, connecting, sending,
    /// and receiving the response body. nil: no bound (idle timeouts still apply).
    public var requestTimeout: Duration? = .seconds(300)
    /// Open connections per host:port, busy plus idle. Requests beyond it wait.
    public var maxConnectionsPerHost = 8
    /// Redirects are not followed unless asked for.
    public var redirects = RedirectPolicy.none
    /// Response parser limits.
    public var limits = HTTPLimits.response
    /// Socket options for new connections (`idleTimeout` is taken from above).
    public var socket = SocketOptions()
    /// The client `TLSContext` for `https://` (its trust roots, client
    /// certificate, versions; the host name is verified unless the context turns it
    /// off). nil (the default): on the first https request the client makes one that
    /// trusts the system's roots, verifies the host name and offers ALPN `http/1.1`.
    public var tls: TLSContext? = nil
    /// Where the client logs; failed requests and retries on a closed pooled
    /// connection at `debug` (the errors themselves are thrown to the caller).
    public var logger = Logger(label: "torus.http.client")

    public enum RedirectPolicy: Sendable, Equatable {
        case none
        /// Follows up to `max` redirects (301, 302, 303, 307, 308) to http and https
        /// URLs.
        case follow(max: Int)
    }

    public init() {}
}

/// Why a client request failed.
public enum HTTPClientError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The URL could not be parsed, or names a scheme other than `http` and `https`, or a host
    /// that is not a numeric address or `localhost`.
    case invalidURL(String)
    /// The TCP connection could not be established in `connectTimeout`.
    case connectTimeout
    /// The TCP connection could not be established (`errno` from the kernel).
    case connectFailed(errno: Int32)
    /// Nothing was received for `idleTimeout`.
    case idleTimeout
    /// The whole request took longer than `requestTimeout`.
    case requestTimeout
    /// The server closed (or reset) the connection before the response was complete.
    case connectionClosed
    /// The response violated HTTP/1.1.
    case protocolError(HTTPParseError)
    /// A collected body exceeded the given limit.
    case bodyTooLarge(limit: Int)
    /// More redirects than the policy allows.
    case tooManyRedirects
    /// A streamed request body failed (the producer threw).
    case requestBodyFailed(String)
    /// The TLS handshake (https) failed, or the TLS stream broke: the certificate
    /// did not verify (`TLSError.certificateVerifyFailed(_:)` names why: expired,
    /// wrong host, unknown issuer), a protocol mismatch, an alert from the server.
    case tls(TLSError)
    /// The client was shut down.
    case shutdown
    /// The body was already consumed (a response body can be read once).
    case bodyAlreadyConsumed

    public var description: String {
        switch self {
        case .invalidURL(let u): "invalid URL: \(u)"
        case .connectTimeout: "connect timed out"
        case .connectFailed(let e): "connect failed (errno \(e))"
        case .idleTimeout: "idle timeout"
        case .requestTimeout: "request timed out"
        case .connectionClosed: "connection closed before the response was complete"
        case .protocolError(let e): "protocol error: \(e)"
        case .bodyTooLarge(let limit): "response body larger than \(limit) bytes"
        case .tooManyRedirects: "too many redirects"
        case .requestBodyFailed(let why): "request body failed: \(why)"
        case .tls(let e): "TLS: \(e)"
        case .shutdown: "client shut down"
        case .bodyAlreadyConsumed: "response body already consumed"
        }
    }

    /// Maps a transport error to a client error.
    static func from(_ error: any Error, connecting: Bool = false) -> HTTPClientError {
        switch error {
        case let e as HTTPClientError: return e
        case let e as HTTPParseError: return e == .prematureEnd ? .connectionClosed : .protocolError(e)
        case let e as TLSError: return .tls(e)
        case let t as TimeoutError:
            if t.what == "connect" { return .connectTimeout }
            return .idleTimeout
        case let io as IOError where connecting: return .connectFailed(errno: io.errno)
        default: return .connectionClosed
        }
    }
}
