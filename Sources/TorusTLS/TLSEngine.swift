import COpenSSL
#if canImport(Glibc)
import Glibc
#endif

/// One TLS connection's record layer and handshake, for a proactor: it does no I/O.
///
/// The connection gives it the peer's ciphertext as it arrives in the loop's
/// receive buffers (``feed(_:)``), takes the ciphertext it produces into its
/// outbound chunks (``takeCiphertext(into:)``), and moves plaintext in and out with
/// ``readPlaintext(into:)`` and ``writePlaintext(_:)``. In between, OpenSSL works
/// over two memory BIOs: no syscall, no thread, no timer of its own.
///
/// Copies: ``feed(_:)`` copies ciphertext once into the read BIO; OpenSSL copies it
/// again from the BIO into its record buffer and decrypts in place; `SSL_read`
/// copies the plaintext into the caller's buffer. Outbound, `SSL_write` copies the
/// plaintext into its record buffer and encrypts in place, then into the write BIO,
/// and ``takeCiphertext(into:)`` copies it out. The DocC article counts them.
///
/// This is one of Torus's small unsafe-pointer types: it owns an `SSL*` (and through
/// it the two BIOs), frees it in `deinit`, and is used only on the thread that made
/// it (the connection's loop thread; asserted in debug builds).
public final class TLSEngine {
    /// The context generation this engine started from (kept alive with it).
    let generation: TLSContextGeneration
    private let ssl: OpaquePointer
    // One thread, never accessed overlapping: the state read on every record skips
    // Swift's dynamic exclusivity checks.
    /// Peer → OpenSSL: ``feed(_:)`` writes, OpenSSL reads. Owned by `ssl`.
    @exclusivity(unchecked) private var readBIO: OpaquePointer
    /// OpenSSL → peer: OpenSSL writes, ``takeCiphertext(into:)`` reads. Owned by `ssl`.
    @exclusivity(unchecked) private var writeBIO: OpaquePointer
    private let owner: pthread_t
    private let handshakeDeadline: ContinuousClock.Instant
    private let clientServerName: String?
    /// Where the inbound byte stream stands (for the plaintext-HTTP check and EOF).
    @exclusivity(unchecked) private var inbound: Inbound = .nothingYet

    private enum Inbound {
        case nothingYet
        case flowing
        /// The transport ended (``feedEOF()``): the read BIO reports EOF once empty.
        case ended
    }

    /// Where the connection stands; see ``TLSEngineState``.
    @exclusivity(unchecked) public private(set) var state: TLSEngineState = .handshaking
    /// The SNI name the client sent (set by the SNI callback, server side).
    var requestedServerName: String?
    /// Set by the info callback when OpenSSL refused a renegotiation.
    @exclusivity(unchecked) var renegotiationAttempted = false
    /// Whether the key-log callback keeps this connection's TLS 1.3 application
    /// traffic secrets (for a kernel TLS hand-off, ``KernelTLS/keys(of:)``). Off
    /// unless the kernel offers kTLS: secrets are not kept without a use, and the
    /// contexts install the callback only then. Turning it on (tests, before the
    /// handshake) installs the callback on this engine's `SSL_CTX`.
    var capturesTrafficSecrets = KernelTLS.isAvailable {
        didSet {
            if capturesTrafficSecrets, let ctx = SSL_get_SSL_CTX(ssl) {
                SSL_CTX_set_keylog_callback(ctx, tlsKeyLogCallback)
            }
        }
    }
    /// The application traffic secrets, when captured.
    var clientTrafficSecret: [UInt8]?
    var serverTrafficSecret: [UInt8]?

    /// Starts a connection on `context` (server or client, as configured).
    ///
    /// - Parameters:
    ///   - context: the shared context; its current generation is used (and kept).
    ///   - serverName: client only: the name sent as SNI and verified, overriding the
    ///     configuration's.
    ///   - session: client only: a session saved from an earlier connection to offer
    ///     for resumption.
    ///   - now: when the handshake starts (its timeout counts from here).
    public init(context: TLSContext, serverName: String? = nil, resuming session: TLSSession? = nil,
                now: ContinuousClock.Instant = .now) throws(TLSError) {
        let generation = context.generation
        OpenSSLErrors.clear()
        guard let ssl = SSL_new(generation.primary) else { throw OpenSSLErrors.configuration("SSL_new") }
        guard let rbio = BIO_new(BIO_s_mem()), let wbio = BIO_new(BIO_s_mem()) else {
            SSL_free(ssl)
            throw OpenSSLErrors.configuration("BIO_new")
        }
        // While no EOF was seen, an empty read BIO means "retry later".
        _ = torus_bio_set_mem_eof_return(rbio, -1)
        _ = torus_bio_set_mem_eof_return(wbio, -1)
        SSL_set_bio(ssl, rbio, wbio)
        TLSResources.engines.add(1, ordering: .relaxed)
        self.generation = generation
        self.ssl = ssl
        self.readBIO = rbio
        self.writeBIO = wbio
        self.owner = pthread_self()
        self.handshakeDeadline = now + generation.handshakeTimeout
        self.clientServerName = generation.isServer ? nil : (serverName ?? generation.defaultServerName)
        _ = torus_ssl_set_app_data(ssl, Unmanaged.passUnretained(self).toOpaque())
        if generation.isServer {
            SSL_set_accept_state(ssl)
        } else {
            try configureClient(session: session)
            SSL_set_connect_state(ssl)
        }
    }

    deinit {
        SSL_free(ssl)
        TLSResources.engines.subtract(1, ordering: .relaxed)
    }

    /// The engine behind an `SSL*` (for OpenSSL callbacks, on the engine's thread).
    static func from(_ ssl: OpaquePointer) -> TLSEngine? {
        guard let raw = torus_ssl_get_app_data(ssl) else { return nil }
        return Unmanaged<TLSEngine>.fromOpaque(raw).takeUnretainedValue()
    }

    private func configureClient(session: TLSSession?) throws(TLSError) {
        if let name = clientServerName {
            let isIP = Self.isIPAddress(name)
            if !isIP { _ = torus_ssl_set_host_name(ssl, name) }
            if generation.verifyHostname {
                let ok = isIP ? X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), name) : SSL_set1_host(ssl, name)
                guard ok == 1 else { throw OpenSSLErrors.configuration("server name \(name)") }
            }
        } else if generation.verifyHostname {
            throw .configuration("hostname verification is on but no server name was given")
        }
        if let session { _ = SSL_set_session(ssl, session.pointer) }
    }

    private static func isIPAddress(_ name: String) -> Bool {
        var v4 = in_addr()
        var v6 = in6_addr()
        return inet_pton(AF_INET, name, &v4) == 1 || inet_pton(AF_INET6, name, &v6) == 1
    }

    private func assertOwner() {
        assert(pthread_equal(owner, pthread_self()) != 0, "TLSEngine used off the thread that made it")
    }

    @discardableResult
    private func fail(_ error: TLSError) -> TLSError {
        state = .failed(error)
        return error
    }

    // MARK: Ciphertext in and out

    /// Hands the engine ciphertext received from the peer. The bytes are copied
    /// (once) into the read BIO, so the caller's buffer can go back to its pool as
    /// soon as this returns. On a server, the first bytes are checked for a
    /// plaintext HTTP request (the engine then fails with ``TLSError/plaintextHTTP``).
    /// Ignored once the engine is closed or failed.
    public func feed(_ ciphertext: UnsafeRawBufferPointer) {
        assertOwner()
        guard !ciphertext.isEmpty, let base = ciphertext.baseAddress else { return }
        switch state {
        case .closed, .failed: return
        case .handshaking, .established, .closing: break
        }
        if case .nothingYet = inbound {
            inbound = .flowing
            if generation.isServer, let error = Self.checkFirstBytes(ciphertext) {
                fail(error)
                return
            }
        }
        var offset = 0
        while offset < ciphertext.count {
            let chunk = Int32(min(ciphertext.count - offset, Int(Int32.max)))
            let n = BIO_write(readBIO, base + offset, chunk)
            guard n > 0 else {
                fail(.handshakeFailure(reason: "out of memory buffering ciphertext"))
                return
            }
            offset += Int(n)
        }
    }

    /// Tells the engine the transport ended (the peer closed or reset): once the
    /// buffered ciphertext is consumed, a missing close_notify becomes
    /// ``TLSError/unexpectedEOF`` (or ends a close this side started).
    public func feedEOF() {
        assertOwner()
        inbound = .ended
        _ = torus_bio_set_mem_eof_return(readBIO, 0)
    }

    /// Ciphertext bytes waiting to be sent to the peer.
    public var pendingCiphertext: Int { Int(torus_bio_pending(writeBIO)) }

    /// Ciphertext bytes fed but not yet consumed by OpenSSL.
    public var bufferedCiphertext: Int { Int(torus_bio_pending(readBIO)) }

    /// Moves up to `buffer.count` bytes of ciphertext for the peer into `buffer`
    /// (an outbound chunk); returns how many. Call until it returns 0 or
    /// ``pendingCiphertext`` is 0.
    public func takeCiphertext(into buffer: UnsafeMutableRawBufferPointer) -> Int {
        assertOwner()
        guard let base = buffer.baseAddress, !buffer.isEmpty else { return 0 }
        let n = BIO_read(writeBIO, base, Int32(min(buffer.count, Int(Int32.max))))
        return n > 0 ? Int(n) : 0
    }

    // MARK: Handshake

    /// Drives the handshake with the ciphertext fed so far. Does nothing once
    /// established; throws (and fails the engine) on a handshake error. Afterwards
    /// send ``pendingCiphertext``.
    public func advanceHandshake() throws(TLSError) {
        assertOwner()
        switch state {
        case .failed(let error): throw error
        case .established, .closing, .closed: return
        case .handshaking: break
        }
        OpenSSLErrors.clear()
        let r = SSL_do_handshake(ssl)
        if r == 1 {
            state = .established(makeInfo())
            return
        }
        let code = SSL_get_error(ssl, r)
        if code == SSL_ERROR_WANT_READ || code == SSL_ERROR_WANT_WRITE { return }
        throw fail(OpenSSLErrors.classify(ssl: ssl, code: code))
    }

    /// Fails a handshake still running at `now` past the configured timeout (the
    /// connection calls this from its timer). Returns whether it failed the engine.
    @discardableResult
    public func expireHandshake(now: ContinuousClock.Instant = .now) -> Bool {
        assertOwner()
        guard case .handshaking = state, now >= handshakeDeadline else { return false }
        fail(.handshakeTimeout)
        return true
    }

    /// When a handshake still running at that instant fails with ``TLSError/handshakeTimeout``.
    public var handshakeExpiry: ContinuousClock.Instant { handshakeDeadline }

    // MARK: Plaintext

    /// Decrypts the next plaintext into `buffer` (advancing the handshake first if it
    /// is still running). The buffer is the caller's (a pool buffer the connection
    /// then lends to its handler); at most one record (16 KiB) is returned per call.
    public func readPlaintext(into buffer: UnsafeMutableRawBufferPointer) throws(TLSError) -> TLSReadResult {
        assertOwner()
        switch state {
        case .failed(let error): throw error
        case .closed: return .closed
        case .handshaking:
            try advanceHandshake()
            guard case .established = state else { return .needsCiphertext }
        case .established, .closing: break
        }
        guard let base = buffer.baseAddress, !buffer.isEmpty else { return .bytes(0) }
        OpenSSLErrors.clear()
        var count = 0
        let r = SSL_read_ex(ssl, base, buffer.count, &count)
        if renegotiationAttempted { throw fail(.renegotiationRefused) }
        if r == 1 { return .bytes(count) }
        let code = SSL_get_error(ssl, 0)
        switch code {
        case SSL_ERROR_WANT_READ, SSL_ERROR_WANT_WRITE:
            return .needsCiphertext
        case SSL_ERROR_ZERO_RETURN:
            // The peer's close_notify: answer it (if this side has not already) and end.
            OpenSSLErrors.clear()
            _ = SSL_shutdown(ssl)
            _ = OpenSSLErrors.drain()
            state = .closed
            return .closed
        default:
            let error = OpenSSLErrors.classify(ssl: ssl, code: code)
            if case .closing = state, error == .unexpectedEOF {
                // This side started the close; a peer that closes the transport
                // without answering has still closed.
                state = .closed
                return .closed
            }
            throw fail(error)
        }
    }

    /// Encrypts `plaintext` into records (at most 16 KiB each), ready as ciphertext
    /// (``pendingCiphertext``). All of it is taken: the write BIO grows, so callers
    /// bound what they write by what their outbound chunks can hold.
    public func writePlaintext(_ plaintext: UnsafeRawBufferPointer) throws(TLSError) {
        assertOwner()
        switch state {
        case .failed(let error): throw error
        case .established: break
        case .handshaking, .closing, .closed: throw .notEstablished
        }
        guard let base = plaintext.baseAddress, !plaintext.isEmpty else { return }
        var offset = 0
        while offset < plaintext.count {
            OpenSSLErrors.clear()
            var written = 0
            let r = SSL_write_ex(ssl, base + offset, plaintext.count - offset, &written)
            if r == 1 {
                offset += written
                continue
            }
            throw fail(OpenSSLErrors.classify(ssl: ssl, code: SSL_get_error(ssl, 0)))
        }
    }

    // MARK: Closing and idling

    /// Starts an orderly close: queues close_notify (send ``pendingCiphertext``).
    /// The state becomes ``TLSEngineState/closing`` until the peer's close_notify
    /// arrives. Closing during the handshake sends nothing and ends at once.
    public func close() {
        assertOwner()
        switch state {
        case .established:
            OpenSSLErrors.clear()
            let r = SSL_shutdown(ssl)
            _ = OpenSSLErrors.drain()
            state = r == 1 ? .closed : .closing
        case .handshaking:
            state = .closed
        case .closing, .closed, .failed:
            return
        }
    }

    /// Gives back memory an idle connection does not need: OpenSSL's record buffers
    /// (about 17 KiB read, 17 KiB write) when they hold no partial record — OpenSSL
    /// releases them by itself after most reads and writes
    /// (`SSL_MODE_RELEASE_BUFFERS`) but keeps the read buffer after the handshake —
    /// and a memory BIO that is empty but still holds the capacity a burst grew it
    /// to. Call when the connection goes idle (nothing fed, nothing to send).
    public func releaseBuffers() {
        assertOwner()
        // The record buffers: freed unless they hold a partial record (returns 0 then).
        _ = SSL_free_buffers(ssl)
        if torus_bio_pending(readBIO) == 0, torus_bio_mem_capacity(readBIO) > 0, let fresh = BIO_new(BIO_s_mem()) {
            _ = torus_bio_set_mem_eof_return(fresh, inbound == .ended ? 0 : -1)
            SSL_set0_rbio(ssl, fresh)
            readBIO = fresh
        }
        if torus_bio_pending(writeBIO) == 0, torus_bio_mem_capacity(writeBIO) > 0, let fresh = BIO_new(BIO_s_mem()) {
            _ = torus_bio_set_mem_eof_return(fresh, -1)
            SSL_set0_wbio(ssl, fresh)
            writeBIO = fresh
        }
    }

    /// Keeps OpenSSL's record buffers from one record to the next (`hold`: a busy
    /// connection, no `malloc`/`free` of 17 KiB buffers per record), or goes back to
    /// releasing them after each use and releases them now (``releaseBuffers()``).
    public func holdBuffers(_ hold: Bool) {
        assertOwner()
        if hold {
            _ = torus_ssl_clear_mode(ssl, TORUS_SSL_MODE_RELEASE_BUFFERS)
        } else {
            _ = torus_ssl_set_mode(ssl, TORUS_SSL_MODE_RELEASE_BUFFERS)
            releaseBuffers()
        }
    }

    /// Bytes held by the two memory BIOs (their capacity, used or not).
    public var bufferCapacity: Int {
        Int(torus_bio_mem_capacity(readBIO)) + Int(torus_bio_mem_capacity(writeBIO))
    }

    // MARK: Sessions

    /// The session to offer on a later connection to the same server (client side),
    /// if the server issued one that can be resumed. In TLS 1.3 tickets arrive after
    /// the handshake, with the first application data read.
    public func resumableSession() -> TLSSession? {
        assertOwner()
        guard let session = SSL_get1_session(ssl) else { return nil }
        guard SSL_SESSION_is_resumable(session) == 1 else {
            SSL_SESSION_free(session)
            return nil
        }
        return TLSSession(owning: session)
    }

    /// A bare answer for a plaintext HTTP request on a TLS port, to be written raw
    /// (unencrypted) before closing, so a mistaken `http://` client sees why.
    public static let plaintextHTTPResponse: [UInt8] = {
        let body = "This port speaks TLS: use https://\n"
        return Array(("HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\n"
            + "Content-Length: \(body.utf8.count)\r\nConnection: close\r\n\r\n" + body).utf8)
    }()

    // MARK: Internals

    /// The first bytes a server sees: a TLS client starts with a handshake record
    /// (0x16) or, in ancient clients, an SSLv2 header (high bit set). An uppercase
    /// ASCII token is a plaintext request line ("GET / HTTP/1.1").
    static func checkFirstBytes(_ bytes: UnsafeRawBufferPointer) -> TLSError? {
        guard let first = bytes.first, (UInt8(ascii: "A")...UInt8(ascii: "Z")).contains(first) else { return nil }
        for byte in bytes.prefix(8) {
            if byte == UInt8(ascii: " ") { return .plaintextHTTP }
            if !(UInt8(ascii: "A")...UInt8(ascii: "Z")).contains(byte) {
                return .malformedRecord(reason: "ASCII text instead of a TLS record")
            }
        }
        return bytes.count < 8 ? .plaintextHTTP : .malformedRecord(reason: "ASCII text instead of a TLS record")
    }

    /// The negotiated cipher suite's OpenSSL name.
    var cipherName: String? {
        SSL_get_current_cipher(ssl).flatMap { SSL_CIPHER_get_name($0) }.map { String(cString: $0) }
    }

    var isServer: Bool { generation.isServer }

    private func makeInfo() -> TLSSessionInfo {
        var alpnPointer: UnsafePointer<UInt8>?
        var alpnLength: UInt32 = 0
        SSL_get0_alpn_selected(ssl, &alpnPointer, &alpnLength)
        let alpn = alpnPointer.map { String(decoding: UnsafeBufferPointer(start: $0, count: Int(alpnLength)), as: UTF8.self) }
        let cipher = SSL_get_current_cipher(ssl).flatMap { SSL_CIPHER_get_name($0) }.map { String(cString: $0) } ?? "unknown"
        return TLSSessionInfo(
            version: SSL_version(ssl) == TLS1_3_VERSION ? .tls13 : .tls12,
            alpn: alpn,
            cipher: cipher,
            serverName: generation.isServer ? requestedServerName : clientServerName,
            peerSubject: verifiedPeerSubject(),
            sessionReused: SSL_session_reused(ssl) == 1)
    }

    private func verifiedPeerSubject() -> String? {
        guard let cert = SSL_get1_peer_certificate(ssl) else { return nil }
        defer { X509_free(cert) }
        guard SSL_get_verify_result(ssl) == X509_V_OK, let name = X509_get_subject_name(cert),
              let bio = BIO_new(BIO_s_mem()) else { return nil }
        defer { BIO_free(bio) }
        guard X509_NAME_print_ex(bio, name, 0, TORUS_XN_FLAG_RFC2253) >= 0 else { return nil }
        let length = Int(torus_bio_pending(bio))
        var bytes = [UInt8](repeating: 0, count: length)
        // Not from input: a verified certificate's subject, printed; a handshake message is at
        // most 16 MiB (24-bit length), so the text is far below Int32.max.
        let n = bytes.withUnsafeMutableBytes { BIO_read(bio, $0.baseAddress, Int32(length)) }
        return String(decoding: bytes.prefix(max(Int(n), 0)), as: UTF8.self)
    }

    /// Testing hook: restricts the TLS 1.3 cipher suites this engine offers.
    func setCipherSuitesForTesting(_ suites: String) -> Bool {
        SSL_set_ciphersuites(ssl, suites) == 1
    }

    /// Testing hook: a TLS 1.2 client asks for a renegotiation (which Torus servers
    /// refuse). Returns whether OpenSSL queued the new ClientHello.
    func requestRenegotiationForTesting() -> Bool {
        SSL_clear_options(ssl, TORUS_SSL_OP_NO_RENEGOTIATION)
        guard SSL_renegotiate(ssl) == 1 else { return false }
        _ = SSL_do_handshake(ssl)
        _ = OpenSSLErrors.drain()
        return true
    }
}
