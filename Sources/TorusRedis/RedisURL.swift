import Torus

/// A Redis server named the way Redis tools name it:
/// `redis://[[USER]:PASSWORD@]HOST[:PORT][/DATABASE]` (port 6379 when absent).
/// A plain value.
public struct RedisURL: Sendable, Equatable {
    public var host: String
    public var port: UInt16
    public var username: String?
    public var password: String?
    public var database: Int

    public init(host: String, port: UInt16 = 6379, username: String? = nil, password: String? = nil, database: Int = 0) {
        self.host = host
        self.port = port
        self.username = username
        self.password = password
        self.database = database
    }

    /// Parses `text`; nil when it is not such a URL (another scheme, a bad port or
    /// database, an empty host). `rediss://` (TLS) is not accepted: say so rather
    /// than connect in plaintext.
    public init?(_ text: String) {
        guard text.hasPrefix("redis://") else { return nil }
        var rest = Substring(text.dropFirst("redis://".count))
        database = 0
        if let slash = rest.firstIndex(of: "/") {
            let path = rest[rest.index(after: slash)...]
            if !path.isEmpty {
                guard let db = Int(path), db >= 0 else { return nil }
                database = db
            }
            rest = rest[..<slash]
        }
        username = nil
        password = nil
        if let at = rest.lastIndex(of: "@") {
            let userInfo = rest[..<at]
            rest = rest[rest.index(after: at)...]
            if let colon = userInfo.firstIndex(of: ":") {
                let user = userInfo[..<colon]
                username = user.isEmpty ? nil : String(user)
                password = String(userInfo[userInfo.index(after: colon)...])
            } else {
                password = String(userInfo)
            }
        }
        port = 6379
        var portText: Substring?
        if rest.hasPrefix("[") {  // [IPv6]:PORT
            guard let close = rest.firstIndex(of: "]") else { return nil }
            let after = rest[rest.index(after: close)...]
            guard after.isEmpty || after.hasPrefix(":") else { return nil }
            portText = after.isEmpty ? nil : after.dropFirst()
            rest = rest[rest.index(after: rest.startIndex)..<close]
        } else if let colon = rest.lastIndex(of: ":") {
            portText = rest[rest.index(after: colon)...]
            rest = rest[..<colon]
        }
        if let portText {
            guard let p = UInt16(portText), p > 0 else { return nil }
            port = p
        }
        guard !rest.isEmpty else { return nil }
        host = String(rest)
    }

    /// The server's address: a numeric IPv4 or IPv6 host, or `localhost`.
    public func address() throws -> SocketAddress { try .tcp(host, port) }

    /// `configuration` with this URL's user, password and database.
    public func applied(to configuration: RedisConfiguration) -> RedisConfiguration {
        var configuration = configuration
        if let username { configuration.username = username }
        if let password { configuration.password = password }
        configuration.database = database
        return configuration
    }
}
