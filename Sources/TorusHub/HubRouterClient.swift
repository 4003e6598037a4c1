import Torus
import TorusTLS

/// The router's side of the protocol over Torus's async client API: connect, HELLO,
/// prove the router's identity (AUTH over WELCOME's nonce), then send frames and
/// read them. Used by the tests and by torus-soak's simulated
/// routers; a reference for router firmware.
///
/// Threading: `send` is safe from any task; `nextFrame` must be called by one task
/// at a time (it owns the decoder).
public final class HubRouterClient: @unchecked Sendable {
    public let id: String
    public let connection: AsyncConnection
    /// The hub's heartbeat timeout from WELCOME.
    public private(set) var heartbeatTimeout: Duration = .seconds(30)
    private var decoder: HubFrameDecoder
    private var ready: [HubFrame] = []

    init(id: String, connection: AsyncConnection, maxFrame: Int) {
        self.id = id
        self.connection = connection
        decoder = HubFrameDecoder(maxFrame: maxFrame)
    }

    /// Connects to the hub's router port and authenticates: HELLO (version 2),
    /// WELCOME with the nonce, AUTH with HMAC-SHA256(secret, nonce ‖ id), AUTHOK.
    /// With `secret` nil it speaks version 1 (HELLO, WELCOME; accepted only by a hub
    /// with insecure routers). Throws `HubRouterClient.Refused` when the hub refuses.
    /// With `tls` (a client context: the hub's CA, and the router's certificate when
    /// the hub asks for one) the link runs over TLS, verifying the hub as
    /// `serverName` (default: the context's); a failed handshake throws its
    /// `TLSError`.
    ///
    /// With `confirm` false the client reads the WELCOME the hub sends at accept,
    /// answers with HELLO and AUTH in one write and returns without waiting for AUTHOK
    /// (the hub sends none): one round trip and one hub send fewer, for routers that
    /// reconnect often. A refused proof then shows as REFUSED from `nextFrame()` and
    /// the hub's close. (A hub with insecure routers sends its WELCOME only after
    /// HELLO, so it would not answer this order: use the default there.)
    public static func connect(to address: SocketAddress, on loop: EventLoop, id: String, secret: [UInt8]?,
                               confirm: Bool = true,
                               maxFrame: Int = HubFrame.defaultMaxFrame,
                               options: SocketOptions = SocketOptions(),
                               timeout: Duration = .seconds(10),
                               tls: TLSContext? = nil, serverName: String? = nil) async throws -> HubRouterClient {
        let connection = try await AsyncConnection.connect(to: address, on: loop, tls: tls, serverName: serverName,
                                                           options: options, timeout: timeout)
        let client = HubRouterClient(id: id, connection: connection, maxFrame: maxFrame)
        do {
            if let secret, !confirm {
                let nonce = try await client.welcome()
                try await client.connection.write(HubFrame.hello(id: id).encoded
                    + HubFrame.auth(proof: HubCredentials.proof(secret: secret, nonce: nonce, id: id), confirm: false).encoded)
                return client
            }
            try await client.send(.hello(id: id, version: secret == nil ? 1 : HubFrame.protocolVersion))
            let nonce = try await client.welcome()
            if let secret {
                try await client.send(.auth(proof: HubCredentials.proof(secret: secret, nonce: nonce, id: id)))
                let answer = try await client.nextFrame()
                if case .refused(let reason)? = answer { throw Refused(reason: reason) }
                guard case .authOK? = answer else { throw HubProtocolError.unexpected(answer?.kind ?? .bye) }
            }
        } catch {
            await connection.close(flush: false)
            throw error
        }
        return client
    }

    /// Reads WELCOME (or REFUSED, thrown), keeps its heartbeat timeout, returns its nonce.
    private func welcome() async throws -> [UInt8] {
        let welcome = try await nextFrame()
        if case .refused(let reason)? = welcome { throw Refused(reason: reason) }
        guard case .welcome(let ms, let nonce)? = welcome else {
            throw HubProtocolError.unexpected(welcome?.kind ?? .bye)
        }
        heartbeatTimeout = .milliseconds(Int(ms))
        return nonce
    }

    /// The hub refused the link (REFUSED frame, with its reason).
    public struct Refused: Error, Sendable, Equatable {
        public let reason: String
    }

    public func send(_ frame: HubFrame) async throws {
        try await connection.write(frame.encoded)
    }

    /// The next frame from the hub, or nil when the hub closed the link.
    public func nextFrame() async throws -> HubFrame? {
        while ready.isEmpty {
            guard let chunk = try await connection.read() else { return nil }
            let failure = chunk.withUnsafeBytes { bytes -> HubProtocolError? in
                do {
                    try decoder.feed(bytes) { frame in
                        ready.append(frame)
                        return true
                    }
                    return nil
                } catch {
                    return error as? HubProtocolError ?? .emptyFrame
                }
            }
            if let failure { throw failure }
        }
        return ready.removeFirst()
    }

    /// Closes the link (after queued bytes when `flush`).
    public func close(flush: Bool = true) async {
        await connection.close(flush: flush)
    }
}
