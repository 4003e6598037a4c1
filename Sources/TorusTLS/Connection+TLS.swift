import Torus

extension Connection {
    /// Puts TLS on this connection (see ``TLSTransform``): before it starts, loop
    /// thread only. A client passes `serverName` to override the context's. An
    /// engine that cannot be made closes the connection with the error at start.
    package func installTLS(_ context: TLSContext, serverName: String? = nil) {
        do throws(TLSError) {
            let engine = try TLSEngine(context: context, serverName: serverName)
            install(TLSTransform(engine: engine, handshakeTimeout: context.configuration.handshakeTimeout))
        } catch {
            install(FailedTLSTransform(error))
        }
    }

    /// What the TLS handshake negotiated (version, cipher, ALPN, SNI, the verified
    /// peer's subject); nil without TLS or before the handshake completed.
    /// Loop thread only.
    public var tlsSession: TLSSessionInfo? {
        guard let tls = installedTransform as? TLSTransform, case .established(let info) = tls.engine.state else { return nil }
        return info
    }

    /// Connects to `address` and runs TLS over the connection, verifying the server
    /// as `tls` (a client context) says; `serverName` overrides its SNI and verified
    /// name. `done` reports the TCP connect; the handler's `connected` runs once the
    /// handshake completes, and a failed handshake reaches it as `closed(error:)`
    /// with a ``TLSError``. Loop thread only.
    public static func connect(to address: SocketAddress, on loop: EventLoop, tls: TLSContext,
                               serverName: String? = nil,
                               options: SocketOptions = SocketOptions(),
                               timeout: Duration = .seconds(10),
                               makeHandler: @escaping (Connection) -> any ConnectionHandler,
                               done: @escaping (Result<Connection, any Error>) -> Void = { _ in }) {
        connect(to: address, on: loop, options: options, timeout: timeout,
                makeHandler: { connection in
                    connection.installTLS(tls, serverName: serverName)
                    return makeHandler(connection)
                },
                done: done)
    }
}

extension AsyncConnection {
    /// Connects to `address` on `loop` with TLS, verifying the server as `tls` (a
    /// client context) says; `serverName` overrides its SNI and verified name; nil
    /// is plaintext (as `Server.start(tls:)` takes it). Returns once TCP is
    /// connected: writes wait for the handshake, and a failed handshake ends reads
    /// and writes with its ``TLSError``.
    public static func connect(to address: SocketAddress, on loop: EventLoop, tls: TLSContext?,
                               serverName: String? = nil,
                               options: SocketOptions = SocketOptions(),
                               timeout: Duration = .seconds(10)) async throws -> AsyncConnection {
        try await connect(to: address, on: loop, options: options, timeout: timeout,
                          prepare: { connection in
                              if let tls { connection.installTLS(tls, serverName: serverName) }
                          })
    }
}

extension Server {
    /// Binds `address` on every loop of `group` (see
    /// `Server.start(on:address:options:makeHandler:)`)
    /// with TLS on each connection when `tls` (a server context) is given; nil is
    /// plaintext. The handler's `connected` runs once the handshake completes; it
    /// receives and sends plaintext.
    public static func start(on group: EventLoopGroup, address: SocketAddress, tls: TLSContext?,
                             options: SocketOptions = SocketOptions(),
                             makeHandler: @escaping @Sendable (Connection) -> any ConnectionHandler) throws -> Server {
        guard let tls else { return try start(on: group, address: address, options: options, makeHandler: makeHandler) }
        return try start(on: group, address: address, options: options) { connection in
            connection.installTLS(tls)
            return makeHandler(connection)
        }
    }

    /// The async face with TLS on each connection when `tls` is given: `serve` gets
    /// the plaintext side (its writes wait for the handshake).
    public static func start(on group: EventLoopGroup, address: SocketAddress, tls: TLSContext?,
                             options: SocketOptions = SocketOptions(),
                             serve: @escaping @Sendable (AsyncConnection) async -> Void) throws -> Server {
        guard let tls else { return try start(on: group, address: address, options: options, serve: serve) }
        return try start(on: group, address: address, options: options) { (connection: Connection) -> any ConnectionHandler in
            connection.installTLS(tls)
            let async = AsyncConnection(connection)
            Task(executorPreference: connection.loop) { await serve(async) }
            return connection.handler ?? ClosingHandler()
        }
    }
}
