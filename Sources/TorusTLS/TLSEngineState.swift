/// Where a ``TLSEngine`` stands. Every engine starts in ``handshaking`` and ends in
/// ``closed`` or ``failed(_:)``; ciphertext still pending after either (a
/// close_notify, a fatal alert) should be sent before the socket is closed.
public enum TLSEngineState: Sendable, Equatable {
    /// The handshake is in progress: feed the peer's ciphertext, send what the
    /// engine produces.
    case handshaking
    /// The handshake finished; plaintext flows both ways.
    case established(TLSSessionInfo)
    /// This side sent close_notify and waits for the peer's.
    case closing
    /// Both close_notify alerts were exchanged, or the peer's was answered.
    case closed
    /// The connection failed; the error names why. Any alert OpenSSL queued for the
    /// peer is still available through ``TLSEngine/takeCiphertext(into:)``.
    case failed(TLSError)
}

/// What the handshake negotiated.
public struct TLSSessionInfo: Sendable, Equatable {
    public var version: TLSConfiguration.Version
    /// The application protocol chosen by ALPN, if any.
    public var alpn: String?
    /// The cipher suite's OpenSSL name, e.g. "TLS_AES_256_GCM_SHA384".
    public var cipher: String
    /// The SNI name the client sent (server side) or asked for (client side).
    public var serverName: String?
    /// The subject (RFC 2253) of the peer's verified certificate: the server's on a
    /// client, the client's (mutual TLS) on a server; nil when the peer sent none.
    public var peerSubject: String?
    /// Whether an earlier session was resumed (abbreviated handshake).
    public var sessionReused: Bool
}

/// What ``TLSEngine/readPlaintext(into:)`` produced.
public enum TLSReadResult: Sendable, Equatable {
    /// This many plaintext bytes were written into the buffer.
    case bytes(Int)
    /// Nothing to return until more ciphertext is fed (the handshake may have
    /// advanced and produced ciphertext to send).
    case needsCiphertext
    /// The peer sent close_notify (the engine answered with its own, to be sent).
    case closed
}
