/// What a ``TLSContext`` is built from: a server's certificates and policies, or a
/// client's trust and identity. A plain value; building the OpenSSL context from it
/// (and reading the PEM files) happens in ``TLSContext/init(_:)`` and
/// ``TLSContext/reload()``.
public struct TLSConfiguration: Sendable {
    /// A TLS protocol version Torus speaks. Older versions are never enabled.
    public enum Version: Sendable, Hashable, Comparable {
        case tls12
        case tls13
    }

    /// A certificate chain (leaf first, then intermediates) and its private key, as
    /// PEM files. Read again on every ``TLSContext/reload()``.
    public struct CertificateFiles: Sendable, Hashable {
        /// PEM file with the leaf certificate first, then its intermediates.
        public var chainPath: String
        /// PEM file with the private key of the leaf certificate.
        public var keyPath: String
        public init(chainPath: String, keyPath: String) {
            self.chainPath = chainPath
            self.keyPath = keyPath
        }
    }

    /// Whether a server asks for a client certificate (mutual TLS).
    public enum ClientAuthentication: Sendable, Hashable {
        /// No certificate is requested.
        case none
        /// A certificate is requested; a client without one is accepted, a client
        /// with one that does not verify against the CA file is refused.
        case optional(caFile: String)
        /// A client without a certificate verified against the CA file is refused.
        case required(caFile: String)
    }

    /// Where a client finds the roots it verifies the server against.
    public enum TrustRoots: Sendable, Hashable {
        /// The system trust store (OpenSSL's default verify paths).
        case system
        /// The certificates of one PEM file, and nothing else.
        case caFile(String)
    }

    /// A server's side of the configuration.
    public struct Server: Sendable {
        /// The default certificate, used when the client sends no SNI name or one
        /// not found in ``sniCertificates``.
        public var certificate: CertificateFiles
        /// More certificates, chosen by the SNI host name (matched lowercased, exactly).
        public var sniCertificates: [String: CertificateFiles]
        /// Whether client certificates are asked for (mutual TLS).
        public var clientAuthentication: ClientAuthentication
        /// Whether the server issues session tickets (stateless resumption: the server
        /// stores nothing per session). Ticket keys live in the OpenSSL context: a
        /// ``TLSContext/reload()`` starts new keys, so tickets issued before it no
        /// longer resume (a full handshake follows). Without tickets, TLS 1.2 clients
        /// resume by session id from OpenSSL's server cache (at most 20480 sessions,
        /// 300 s each); TLS 1.3 clients do not resume.
        public var sessionTickets: Bool

        public init(certificate: CertificateFiles, sniCertificates: [String: CertificateFiles] = [:],
                    clientAuthentication: ClientAuthentication = .none, sessionTickets: Bool = true) {
            self.certificate = certificate
            self.sniCertificates = sniCertificates
            self.clientAuthentication = clientAuthentication
            self.sessionTickets = sessionTickets
        }
    }

    /// A client's side of the configuration.
    public struct Client: Sendable {
        /// The roots the server's chain must end at.
        public var trustRoots: TrustRoots
        /// The name sent as SNI and verified against the server's certificate; an
        /// engine may override it per connection.
        public var serverName: String?
        /// Whether the server's certificate must match ``serverName`` (on by default;
        /// the chain is verified either way).
        public var verifyHostname: Bool
        /// A certificate the client presents when the server asks for one.
        public var certificate: CertificateFiles?

        public init(trustRoots: TrustRoots = .system, serverName: String? = nil,
                    verifyHostname: Bool = true, certificate: CertificateFiles? = nil) {
            self.trustRoots = trustRoots
            self.serverName = serverName
            self.verifyHostname = verifyHostname
            self.certificate = certificate
        }
    }

    /// Which end of the connection this configuration is for.
    public enum Role: Sendable {
        case server(Server)
        case client(Client)
    }

    /// Server or client, with that side's settings.
    public var role: Role
    /// Application protocols offered (client) or accepted (server), in order of
    /// preference, e.g. `["http/1.1"]`. Empty: no ALPN.
    public var alpn: [String]
    /// The oldest version accepted (TLS 1.2 by default).
    public var minimumVersion: Version
    /// The newest version offered (TLS 1.3 by default).
    public var maximumVersion: Version
    /// How long a handshake may take before the engine fails with
    /// ``TLSError/handshakeTimeout`` (see ``TLSEngine/expireHandshake(now:)``).
    public var handshakeTimeout: Duration

    public init(role: Role, alpn: [String] = [], minimumVersion: Version = .tls12,
                maximumVersion: Version = .tls13, handshakeTimeout: Duration = .seconds(10)) {
        self.role = role
        self.alpn = alpn
        self.minimumVersion = minimumVersion
        self.maximumVersion = maximumVersion
        self.handshakeTimeout = handshakeTimeout
    }

    /// A server configuration with one certificate.
    public static func server(chainPath: String, keyPath: String, alpn: [String] = [],
                              clientAuthentication: ClientAuthentication = .none) -> TLSConfiguration {
        TLSConfiguration(role: .server(Server(certificate: CertificateFiles(chainPath: chainPath, keyPath: keyPath),
                                              clientAuthentication: clientAuthentication)),
                         alpn: alpn)
    }

    /// A client configuration verifying against `trustRoots` and `serverName`.
    public static func client(trustRoots: TrustRoots = .system, serverName: String? = nil,
                              alpn: [String] = []) -> TLSConfiguration {
        TLSConfiguration(role: .client(Client(trustRoots: trustRoots, serverName: serverName)), alpn: alpn)
    }

    var isServer: Bool {
        if case .server = role { return true }
        return false
    }
}
