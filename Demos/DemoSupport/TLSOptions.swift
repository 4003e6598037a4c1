import ArgumentParser
import TorusTLS

/// Whether and how clients present certificates (mutual TLS), as a flag value.
public enum TLSClientAuthOption: String, ExpressibleByArgument, Sendable, CaseIterable {
    case none, optional, required
}

/// The TLS options a demo server adopts with `@OptionGroup var tls: TLSOptions`:
/// `--tls-cert PEM --tls-key PEM [--tls-ca PEM --tls-client-auth none|optional|required]`.
/// Without `--tls-cert` the server stays plaintext (``serverContext(alpn:)`` is nil).
public struct TLSOptions: ParsableArguments, Sendable {
    public typealias ClientAuth = TLSClientAuthOption

    @Option(help: "PEM certificate chain: serve TLS (with --tls-key).")
    public var tlsCert: String?

    @Option(help: "PEM private key of --tls-cert.")
    public var tlsKey: String?

    @Option(help: "PEM CA certificates that client certificates must verify against.")
    public var tlsCa: String?

    @Option(help: "Client certificates: none, optional or required (needs --tls-ca).")
    public var tlsClientAuth: ClientAuth = .none

    public init() {}

    public func validate() throws {
        try Self.validate(cert: tlsCert, key: tlsKey, ca: tlsCa, clientAuth: tlsClientAuth, prefix: "--tls")
    }

    /// The server context these options describe, offering `alpn` (`["http/1.1"]`
    /// for HTTP servers), or nil for plaintext. Throws when a file cannot be read or
    /// the key does not match the certificate.
    public func serverContext(alpn: [String] = []) throws -> TLSContext? {
        try Self.serverContext(cert: tlsCert, key: tlsKey, ca: tlsCa, clientAuth: tlsClientAuth, alpn: alpn)
    }

    /// The checks of one face's TLS flags (`prefix`: `--tls`, `--router-tls`, ...).
    public static func validate(cert: String?, key: String?, ca: String?, clientAuth: ClientAuth,
                                prefix: String) throws {
        guard (cert == nil) == (key == nil) else {
            throw ValidationError("\(prefix)-cert and \(prefix)-key go together")
        }
        if clientAuth != .none && ca == nil {
            throw ValidationError("\(prefix)-client-auth \(clientAuth.rawValue) needs \(prefix)-ca")
        }
        if cert == nil && (ca != nil || clientAuth != .none) {
            throw ValidationError("\(prefix)-ca and \(prefix)-client-auth need \(prefix)-cert and \(prefix)-key")
        }
    }

    /// One face's server context, or nil when it has no certificate.
    public static func serverContext(cert: String?, key: String?, ca: String?, clientAuth: ClientAuth,
                                     alpn: [String]) throws -> TLSContext? {
        guard let cert, let key else { return nil }
        let authentication: TLSConfiguration.ClientAuthentication
        switch (clientAuth, ca) {
        case (.optional, let ca?): authentication = .optional(caFile: ca)
        case (.required, let ca?): authentication = .required(caFile: ca)
        default: authentication = .none
        }
        return try TLSContext(.server(chainPath: cert, keyPath: key, alpn: alpn, clientAuthentication: authentication))
    }
}

/// The router face's TLS options on torus-hub: `--router-tls-cert PEM
/// --router-tls-key PEM [--router-tls-ca PEM --router-tls-client-auth
/// none|optional|required]` (routers may present certificates).
public struct RouterTLSOptions: ParsableArguments, Sendable {
    @Option(help: "PEM certificate chain: router links over TLS (with --router-tls-key).")
    public var routerTlsCert: String?

    @Option(help: "PEM private key of --router-tls-cert.")
    public var routerTlsKey: String?

    @Option(help: "PEM CA certificates that routers' certificates must verify against.")
    public var routerTlsCa: String?

    @Option(help: "Router certificates: none, optional or required (needs --router-tls-ca).")
    public var routerTlsClientAuth: TLSClientAuthOption = .none

    public init() {}

    public func validate() throws {
        try TLSOptions.validate(cert: routerTlsCert, key: routerTlsKey, ca: routerTlsCa,
                                clientAuth: routerTlsClientAuth, prefix: "--router-tls")
    }

    /// The router face's context, or nil for plaintext links.
    public func serverContext() throws -> TLSContext? {
        try TLSOptions.serverContext(cert: routerTlsCert, key: routerTlsKey, ca: routerTlsCa,
                                     clientAuth: routerTlsClientAuth, alpn: [])
    }
}
