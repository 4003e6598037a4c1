import ArgumentParser
import TorusTLS

/// The TLS options a demo server adopts with `@OptionGroup var tls: TLSOptions`:
/// `--tls-cert PEM --tls-key PEM [--tls-ca PEM --tls-client-auth none|optional|required]`.
/// Without `--tls-cert` the server stays plaintext (``serverContext()`` is nil).
public struct TLSOptions: ParsableArguments, Sendable {
    /// Whether and how clients present certificates (mutual TLS).
    public enum ClientAuth: String, ExpressibleByArgument, Sendable, CaseIterable {
        case none, optional, required
    }

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
        guard (tlsCert == nil) == (tlsKey == nil) else {
            throw ValidationError("--tls-cert and --tls-key go together")
        }
        if tlsClientAuth != .none && tlsCa == nil {
            throw ValidationError("--tls-client-auth \(tlsClientAuth.rawValue) needs --tls-ca")
        }
        if tlsCert == nil && (tlsCa != nil || tlsClientAuth != .none) {
            throw ValidationError("--tls-ca and --tls-client-auth need --tls-cert and --tls-key")
        }
    }

    /// The server context these options describe, offering `alpn` (`["http/1.1"]`
    /// for HTTP servers), or nil for plaintext. Throws when a file cannot be read or
    /// the key does not match the certificate.
    public func serverContext(alpn: [String] = []) throws -> TLSContext? {
        guard let tlsCert, let tlsKey else { return nil }
        let authentication: TLSConfiguration.ClientAuthentication
        switch (tlsClientAuth, tlsCa) {
        case (.optional, let ca?): authentication = .optional(caFile: ca)
        case (.required, let ca?): authentication = .required(caFile: ca)
        default: authentication = .none
        }
        return try TLSContext(.server(chainPath: tlsCert, keyPath: tlsKey, alpn: alpn,
                                      clientAuthentication: authentication))
    }
}
