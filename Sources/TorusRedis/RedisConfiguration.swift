import Torus

/// How a `RedisConnection` talks to its server. A plain value.
public struct RedisConfiguration: Sendable {
    /// Which RESP the connection asks for.
    public enum ProtocolVersion: Sendable {
        /// RESP2: no `HELLO`; `AUTH` when there is a password.
        case resp2
        /// RESP3 (Redis 6+): `HELLO 3` (with `AUTH` and `SETNAME`) opens the connection.
        /// Pub/Sub messages then arrive as push values on any connection.
        case resp3
    }

    public var protocolVersion = ProtocolVersion.resp3
    /// `AUTH` user (nil: `default`); used only with a password.
    public var username: String?
    public var password: String?
    /// `SELECT`ed after the handshake when not 0.
    public var database = 0
    /// `CLIENT SETNAME` (RESP3: in `HELLO`), shown by `CLIENT LIST`.
    public var clientName: String?
    /// A command without its reply after this long fails every command waiting on
    /// the connection with `RedisError.timeout` and closes it: replies are matched
    /// in order, so once one is missing none that follows can be trusted.
    public var commandTimeout: Duration = .seconds(5)
    public var connectTimeout: Duration = .seconds(5)
    /// Keep-alive: when nothing has arrived for this long and no command waits, a
    /// `PING` goes out, its reply due within `commandTimeout` like any command's. A
    /// server that stopped answering (hung, or gone without a FIN) then fails the
    /// connection with `RedisError.timeout` even while the application sends nothing
    /// (a Pub/Sub connection), and `RedisClient` reconnects. nil: no pings (the TCP
    /// keepalive of `socket` still applies).
    public var pingInterval: Duration? = .seconds(30)
    /// Largest reply accepted (larger: `RedisError.protocolError(.tooLarge)`, and the
    /// connection closes).
    public var maxReplyBytes = 64 << 20
    public var socket = SocketOptions()

    public init() {}
}

/// Why a command (or a connection) failed. Typed; `Sendable`.
public enum RedisError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The server answered with an error (`-ERR …`); the connection stays usable.
    case server(String)
    /// The server's bytes were not RESP or broke a limit; the connection closed.
    case protocolError(RESPError)
    /// No reply within `commandTimeout`; the connection closed.
    case timeout
    /// The connection closed (by the server, the network or `close`) before the reply.
    case connectionClosed(String)
    /// `HELLO`, `AUTH` or `SELECT` was refused while connecting.
    case handshake(String)
    /// The connection could not be made.
    case connectFailed(String)
    /// Cluster: a command met more `-MOVED`/`-ASK` redirects than allowed (the last one
    /// given); the slot map keeps changing, or two nodes disagree about a slot.
    case tooManyRedirects(String)
    /// Cluster: no node serves the command's slot, or a node answered `-CLUSTERDOWN`.
    case clusterDown(String)
    /// Cluster: no node gave a usable slot map (`CLUSTER SHARDS`/`CLUSTER SLOTS`
    /// unreadable, or no node answered).
    case clusterMap(String)

    public var description: String {
        switch self {
        case .server(let message): "Redis error reply: \(message)"
        case .protocolError(let error): "\(error)"
        case .timeout: "Redis command timed out"
        case .connectionClosed(let why): "Redis connection closed: \(why)"
        case .handshake(let why): "Redis handshake failed: \(why)"
        case .connectFailed(let why): "Redis connect failed: \(why)"
        case .tooManyRedirects(let last): "Redis Cluster: too many redirects (last: \(last))"
        case .clusterDown(let why): "Redis Cluster down: \(why)"
        case .clusterMap(let why): "Redis Cluster slot map unusable: \(why)"
        }
    }
}
