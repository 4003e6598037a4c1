import COpenSSL
import Synchronization

/// An OpenSSL context (`SSL_CTX*`) built from a ``TLSConfiguration``, shared by every
/// connection of a server or client. Sendable: it is read by any loop and swapped
/// atomically by ``reload()``.
///
/// A server context holds one `SSL_CTX` per certificate (the default one and one
/// per SNI host name); the SNI callback moves a handshake onto the one its host name
/// selects, and the ALPN callback picks the first of the server's protocols that the
/// client offers (refusing the handshake when there is none in common).
public final class TLSContext: Sendable {
    /// The configuration this context was built from (and is rebuilt from on reload).
    public let configuration: TLSConfiguration
    private let current: Mutex<TLSContextGeneration>

    /// Builds the OpenSSL contexts, reading every PEM file named by `configuration`.
    public init(_ configuration: TLSConfiguration) throws(TLSError) {
        self.configuration = configuration
        current = Mutex(try TLSContextGeneration(configuration))
    }

    /// Builds new OpenSSL contexts from the same files (a renewed certificate, a new
    /// CA file) and makes them the ones new handshakes use. Connections already made
    /// keep the contexts they started with until they end (each engine holds its
    /// generation; OpenSSL refcounts the `SSL_CTX`). When a file is unreadable the
    /// error is thrown and the current contexts stay in use.
    public func reload() throws(TLSError) {
        let next = try TLSContextGeneration(configuration)
        current.withLock { $0 = next }
    }

    /// Sessions held in OpenSSL's session caches of the current generation.
    var cachedSessions: Int {
        let generation = self.generation
        return ([generation.primary] + Array(generation.byServerName.values))
            .reduce(0) { $0 + Int(torus_ssl_ctx_sess_number($1)) }
    }

    /// The generation new engines start from.
    var generation: TLSContextGeneration { current.withLock { $0 } }
}

/// One build of a context's `SSL_CTX`s. Immutable after init; freed when the
/// ``TLSContext`` and every engine started from it have let go.
final class TLSContextGeneration: Sendable {
    let isServer: Bool
    /// The `SSL_CTX*` handshakes start on.
    nonisolated(unsafe) let primary: OpaquePointer
    /// SNI host name (lowercased) → its `SSL_CTX*`.
    nonisolated(unsafe) let byServerName: [String: OpaquePointer]
    /// The server's ALPN list in wire format (length-prefixed names); read by the
    /// ALPN callback, which hands OpenSSL a pointer into it.
    nonisolated(unsafe) let alpnWire: UnsafeMutableRawBufferPointer
    let defaultServerName: String?
    let verifyHostname: Bool
    let handshakeTimeout: Duration

    init(_ configuration: TLSConfiguration) throws(TLSError) {
        var wire: [UInt8] = []
        for name in configuration.alpn {
            let bytes = Array(name.utf8)
            guard !bytes.isEmpty, bytes.count < 256 else {
                throw .configuration("ALPN protocol name must be 1...255 bytes: \"\(name)\"")
            }
            wire.append(UInt8(bytes.count))
            wire.append(contentsOf: bytes)
        }
        guard configuration.minimumVersion <= configuration.maximumVersion else {
            throw .configuration("minimum TLS version above the maximum")
        }
        let alpn = UnsafeMutableRawBufferPointer.allocate(byteCount: max(wire.count, 1), alignment: 1)
        alpn.copyBytes(from: wire)
        let alpnCount = wire.count
        handshakeTimeout = configuration.handshakeTimeout

        var made: [OpaquePointer] = []
        func fail(_ error: TLSError) -> TLSError {
            for ctx in made { Self.free(ctx) }
            alpn.deallocate()
            return error
        }
        switch configuration.role {
        case .server(let server):
            isServer = true
            defaultServerName = nil
            verifyHostname = false
            do throws(TLSError) {
                let first = try Self.makeContext(configuration, server: true)
                made.append(first)
                try Self.configureServer(first, server, certificate: server.certificate)
                var sni: [String: OpaquePointer] = [:]
                for (name, files) in server.sniCertificates {
                    let ctx = try Self.makeContext(configuration, server: true)
                    made.append(ctx)
                    try Self.configureServer(ctx, server, certificate: files)
                    sni[name.lowercased()] = ctx
                }
                primary = first
                byServerName = sni
            } catch {
                throw fail(error)
            }
            alpnWire = UnsafeMutableRawBufferPointer(rebasing: alpn[0..<alpnCount])
            for ctx in made {
                torus_ssl_ctx_set_servername_cb(ctx, tlsServerNameCallback, nil)
                if alpnCount > 0 { SSL_CTX_set_alpn_select_cb(ctx, tlsALPNSelectCallback, nil) }
            }
        case .client(let client):
            isServer = false
            defaultServerName = client.serverName
            verifyHostname = client.verifyHostname
            byServerName = [:]
            do throws(TLSError) {
                let ctx = try Self.makeContext(configuration, server: false)
                made.append(ctx)
                try Self.configureClient(ctx, client)
                if alpnCount > 0 {
                    // SSL_CTX_set_alpn_protos returns 0 on success.
                    guard SSL_CTX_set_alpn_protos(ctx, alpn.baseAddress?.assumingMemoryBound(to: UInt8.self),
                                                  UInt32(alpnCount)) == 0 else {
                        throw OpenSSLErrors.configuration("ALPN list")
                    }
                }
                primary = ctx
            } catch {
                throw fail(error)
            }
            alpnWire = UnsafeMutableRawBufferPointer(rebasing: alpn[0..<alpnCount])
        }
    }

    deinit {
        Self.free(primary)
        for ctx in byServerName.values { Self.free(ctx) }
        // alpnWire starts at the allocation's base (its count may be 0).
        if let base = alpnWire.baseAddress { base.deallocate() }
    }

    /// The `SSL_CTX` for an SNI host name, if one was configured for it.
    func context(forServerName name: String) -> OpaquePointer? {
        byServerName[name.lowercased()]
    }

    private static func free(_ ctx: OpaquePointer) {
        SSL_CTX_free(ctx)
        TLSResources.contexts.subtract(1, ordering: .relaxed)
    }

    /// A new `SSL_CTX` with the settings every Torus context shares.
    private static func makeContext(_ configuration: TLSConfiguration, server: Bool) throws(TLSError) -> OpaquePointer {
        OpenSSLErrors.clear()
        guard let ctx = SSL_CTX_new(server ? TLS_server_method() : TLS_client_method()) else {
            throw OpenSSLErrors.configuration("SSL_CTX_new")
        }
        TLSResources.contexts.add(1, ordering: .relaxed)
        func version(_ v: TLSConfiguration.Version) -> Int32 { v == .tls12 ? TLS1_2_VERSION : TLS1_3_VERSION }
        guard torus_ssl_ctx_set_min_proto(ctx, version(configuration.minimumVersion)) == 1,
              torus_ssl_ctx_set_max_proto(ctx, version(configuration.maximumVersion)) == 1 else {
            free(ctx)
            throw OpenSSLErrors.configuration("TLS version range")
        }
        // Per-connection read/write buffers are freed whenever they are empty (idle
        // connections hold none); renegotiation is never allowed; no compression.
        _ = torus_ssl_ctx_set_mode(ctx, TORUS_SSL_MODE_RELEASE_BUFFERS)
        SSL_CTX_set_options(ctx, TORUS_SSL_OP_NO_RENEGOTIATION | TORUS_SSL_OP_NO_COMPRESSION)
        SSL_CTX_set_info_callback(ctx, tlsInfoCallback)
        // The key-log callback only where a kernel TLS hand-off could use the secrets:
        // with it set, OpenSSL formats every handshake secret as hex text (a `sprintf`
        // per byte, ~3.5% of a full handshake's CPU) whether or not they are kept.
        if KernelTLS.isAvailable { SSL_CTX_set_keylog_callback(ctx, tlsKeyLogCallback) }
        return ctx
    }

    private static func configureServer(_ ctx: OpaquePointer, _ server: TLSConfiguration.Server,
                                        certificate: TLSConfiguration.CertificateFiles) throws(TLSError) {
        guard SSL_CTX_use_certificate_chain_file(ctx, certificate.chainPath) == 1 else {
            throw OpenSSLErrors.configuration("certificate chain \(certificate.chainPath)")
        }
        guard SSL_CTX_use_PrivateKey_file(ctx, certificate.keyPath, SSL_FILETYPE_PEM) == 1 else {
            throw OpenSSLErrors.configuration("private key \(certificate.keyPath)")
        }
        guard SSL_CTX_check_private_key(ctx) == 1 else {
            throw OpenSSLErrors.configuration("private key \(certificate.keyPath) does not match \(certificate.chainPath)")
        }
        SSL_CTX_set_options(ctx, TORUS_SSL_OP_CIPHER_SERVER_PREFERENCE)
        // Resumption (tickets, and the session cache for TLS 1.2 without them) needs
        // a session id context whenever client certificates are verified.
        let sid = Array("torus".utf8)
        _ = SSL_CTX_set_session_id_context(ctx, sid, UInt32(sid.count))
        if server.sessionTickets {
            // Tickets carry the session: nothing is stored per connection here.
            _ = SSL_CTX_set_num_tickets(ctx, 1)
            _ = torus_ssl_ctx_set_session_cache_mode(
                ctx, Int(SSL_SESS_CACHE_SERVER | SSL_SESS_CACHE_NO_INTERNAL_STORE))
        } else {
            // Resumption by session id: OpenSSL's cache (at most 20480 sessions, 300 s).
            SSL_CTX_set_options(ctx, TORUS_SSL_OP_NO_TICKET)
            _ = SSL_CTX_set_num_tickets(ctx, 0)
        }
        switch server.clientAuthentication {
        case .none:
            SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, nil)
        case .optional(let caFile), .required(let caFile):
            guard SSL_CTX_load_verify_locations(ctx, caFile, nil) == 1 else {
                throw OpenSSLErrors.configuration("client CA file \(caFile)")
            }
            guard let names = SSL_load_client_CA_file(caFile) else {
                throw OpenSSLErrors.configuration("client CA names \(caFile)")
            }
            SSL_CTX_set_client_CA_list(ctx, names)
            var mode = SSL_VERIFY_PEER
            if case .required = server.clientAuthentication { mode |= SSL_VERIFY_FAIL_IF_NO_PEER_CERT }
            SSL_CTX_set_verify(ctx, mode, nil)
        }
    }

    private static func configureClient(_ ctx: OpaquePointer, _ client: TLSConfiguration.Client) throws(TLSError) {
        switch client.trustRoots {
        case .system:
            guard SSL_CTX_set_default_verify_paths(ctx) == 1 else {
                throw OpenSSLErrors.configuration("system trust store")
            }
        case .caFile(let path):
            guard SSL_CTX_load_verify_locations(ctx, path, nil) == 1 else {
                throw OpenSSLErrors.configuration("CA file \(path)")
            }
        }
        SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, nil)
        // Sessions are kept by the caller (TLSEngine.resumableSession()), not in a cache.
        _ = torus_ssl_ctx_set_session_cache_mode(ctx, Int(SSL_SESS_CACHE_OFF))
        if let files = client.certificate {
            guard SSL_CTX_use_certificate_chain_file(ctx, files.chainPath) == 1 else {
                throw OpenSSLErrors.configuration("client certificate \(files.chainPath)")
            }
            guard SSL_CTX_use_PrivateKey_file(ctx, files.keyPath, SSL_FILETYPE_PEM) == 1,
                  SSL_CTX_check_private_key(ctx) == 1 else {
                throw OpenSSLErrors.configuration("client key \(files.keyPath)")
            }
        }
    }
}

// MARK: - OpenSSL callbacks (called on the thread driving the engine)

/// SNI: moves the handshake onto the `SSL_CTX` configured for the requested name.
private func tlsServerNameCallback(_ ssl: OpaquePointer?, _ alert: UnsafeMutablePointer<Int32>?,
                                   _ arg: UnsafeMutableRawPointer?) -> Int32 {
    guard let ssl, let engine = TLSEngine.from(ssl) else { return SSL_TLSEXT_ERR_NOACK }
    guard let cName = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name) else { return SSL_TLSEXT_ERR_NOACK }
    let name = String(cString: cName)
    engine.requestedServerName = name
    if let ctx = engine.generation.context(forServerName: name) {
        _ = SSL_set_SSL_CTX(ssl, ctx)
    }
    return SSL_TLSEXT_ERR_OK
}

/// ALPN: the first of the server's protocols the client offers; none in common
/// refuses the handshake (no_application_protocol).
private func tlsALPNSelectCallback(_ ssl: OpaquePointer?, _ out: UnsafeMutablePointer<UnsafePointer<UInt8>?>?,
                                   _ outLength: UnsafeMutablePointer<UInt8>?, _ offered: UnsafePointer<UInt8>?,
                                   _ offeredLength: UInt32, _ arg: UnsafeMutableRawPointer?) -> Int32 {
    guard let ssl, let engine = TLSEngine.from(ssl), let out, let outLength, let offered else {
        return SSL_TLSEXT_ERR_NOACK
    }
    let ours = engine.generation.alpnWire
    guard let base = ours.baseAddress?.assumingMemoryBound(to: UInt8.self), ours.count > 0 else {
        return SSL_TLSEXT_ERR_NOACK
    }
    var chosen: UnsafeMutablePointer<UInt8>?
    var chosenLength: UInt8 = 0
    let r = SSL_select_next_proto(&chosen, &chosenLength, base, UInt32(ours.count), offered, offeredLength)
    guard r == OPENSSL_NPN_NEGOTIATED, let chosen else { return SSL_TLSEXT_ERR_ALERT_FATAL }
    out.pointee = UnsafePointer(chosen)
    outLength.pointee = chosenLength
    return SSL_TLSEXT_ERR_OK
}

/// Notes a refused renegotiation (OpenSSL answers a ClientHello on an established
/// TLS 1.2 connection with a no_renegotiation warning alert, code 100).
private func tlsInfoCallback(_ ssl: OpaquePointer?, _ whereValue: Int32, _ value: Int32) {
    guard let ssl, whereValue & TORUS_SSL_CB_WRITE_ALERT == TORUS_SSL_CB_WRITE_ALERT else { return }
    if value & 0xff == 100, let engine = TLSEngine.from(ssl) {
        engine.renegotiationAttempted = true
    }
}

/// Keeps the TLS 1.3 application traffic secrets of an engine that asked for them
/// (NSS key-log lines: "LABEL <client random> <secret>", hex).
func tlsKeyLogCallback(_ ssl: OpaquePointer?, _ line: UnsafePointer<CChar>?) {
    guard let ssl, let line, let engine = TLSEngine.from(ssl), engine.capturesTrafficSecrets else { return }
    let fields = String(cString: line).split(separator: " ")
    guard fields.count == 3, let secret = KernelTLS.bytes(hex: fields[2]) else { return }
    switch fields[0] {
    case "CLIENT_TRAFFIC_SECRET_0": engine.clientTrafficSecret = secret
    case "SERVER_TRAFFIC_SECRET_0": engine.serverTrafficSecret = secret
    default: break
    }
}
