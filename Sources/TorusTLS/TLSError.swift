/// Why a TLS connection, or the building of a context, failed. Every case names its
/// reason; OpenSSL's own reason string is carried where it adds detail. Network
/// input never traps: each malformed or hostile byte sequence ends in one of these.
public enum TLSError: Error, Sendable, Hashable, CustomStringConvertible {
    /// A PEM file could not be read or does not fit (key does not match the
    /// certificate, unreadable CA file, ...).
    case configuration(String)
    /// The first bytes on a TLS port are a plaintext HTTP request. The connection may
    /// answer with ``TLSEngine/plaintextHTTPResponse`` (raw, unencrypted) and close.
    case plaintextHTTP
    /// Bytes that are not TLS records (garbage instead of a ClientHello, a bad
    /// record header).
    case malformedRecord(reason: String)
    /// A record longer than TLS allows (16 KiB of plaintext plus overhead).
    case recordOverflow
    /// A record whose authentication tag (MAC) does not verify: corrupted or forged.
    case badRecordMAC
    /// No protocol version both ends accept.
    case protocolVersion(reason: String)
    /// The peer's certificate chain did not verify; `problem` names why.
    case certificateVerifyFailed(CertificateProblem)
    /// The server requires a client certificate and the client sent none.
    case peerCertificateRequired
    /// The client offered only application protocols (ALPN) the server does not speak.
    case noApplicationProtocol
    /// The peer sent a fatal alert (its description and code, e.g. "unknown ca", 48).
    case alertReceived(description: String, code: Int)
    /// A renegotiation was attempted; Torus never renegotiates.
    case renegotiationRefused
    /// The transport ended without close_notify in the middle of the stream or handshake.
    case unexpectedEOF
    /// The handshake did not finish within the configured timeout.
    case handshakeTimeout
    /// Plaintext was written before the handshake finished or after closing.
    case notEstablished
    /// Any other handshake failure, with OpenSSL's reason string.
    case handshakeFailure(reason: String)

    public var description: String {
        switch self {
        case .configuration(let s): return "TLS configuration: \(s)"
        case .plaintextHTTP: return "plaintext HTTP request on a TLS port"
        case .malformedRecord(let r): return "not a TLS record: \(r)"
        case .recordOverflow: return "TLS record too long"
        case .badRecordMAC: return "bad record MAC"
        case .protocolVersion(let r): return "no common TLS version: \(r)"
        case .certificateVerifyFailed(let p): return "certificate verify failed: \(p)"
        case .peerCertificateRequired: return "peer did not send a required certificate"
        case .noApplicationProtocol: return "no common application protocol (ALPN)"
        case .alertReceived(let d, let c): return "peer sent alert \(c) (\(d))"
        case .renegotiationRefused: return "renegotiation refused"
        case .unexpectedEOF: return "unexpected EOF (no close_notify)"
        case .handshakeTimeout: return "TLS handshake timed out"
        case .notEstablished: return "TLS connection not established"
        case .handshakeFailure(let r): return "TLS handshake failure: \(r)"
        }
    }
}

/// Why a certificate chain did not verify (from OpenSSL's X509 verify result).
public enum CertificateProblem: Sendable, Hashable, CustomStringConvertible {
    case expired
    case notYetValid
    /// The certificate does not name the host the client asked for.
    case hostnameMismatch
    /// The chain does not end at a trusted root.
    case unknownCA
    /// A self-signed certificate not in the trust store.
    case selfSigned
    case revoked
    /// Any other X509 verify error: OpenSSL's code and string.
    case other(code: Int, reason: String)

    public var description: String {
        switch self {
        case .expired: return "certificate has expired"
        case .notYetValid: return "certificate is not yet valid"
        case .hostnameMismatch: return "hostname mismatch"
        case .unknownCA: return "unknown certificate authority"
        case .selfSigned: return "self-signed certificate"
        case .revoked: return "certificate revoked"
        case .other(let code, let reason): return "\(reason) (X509 error \(code))"
        }
    }
}
