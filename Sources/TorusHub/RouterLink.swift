import Logging
import Synchronization
import Torus
import TorusTLS

/// What became of a command sent to a router.
public enum CommandOutcome: Sendable, Equatable {
    /// The router answered with this body.
    case reply([UInt8])
    /// No router with that id is connected (HTTP 404).
    case offline
    /// The router did not answer in time (HTTP 504).
    case timedOut
    /// The link closed before the answer came (HTTP 502).
    case disconnected
    /// Too many commands already wait for this router (HTTP 503).
    case overloaded
    /// The router is attached to another hub node that cannot be reached now: Redis
    /// is down, or the node did not answer (HTTP 503).
    case unreachable
}

/// Counters of one router link, readable from any thread (the HTTP API reads them
/// from its own loop while the link's loop writes them).
public final class RouterStats: Sendable {
    public let connectedAt: Double
    let lastSeen = Atomic<UInt64>(0)
    let events = Atomic<Int>(0)
    let commands = Atomic<Int>(0)
    let replies = Atomic<Int>(0)

    init(connectedAt: Double, now: UInt64) {
        self.connectedAt = connectedAt
        lastSeen.store(now, ordering: .relaxed)
    }

    public var eventCount: Int { events.load(ordering: .relaxed) }
    public var commandCount: Int { commands.load(ordering: .relaxed) }
    public var replyCount: Int { replies.load(ordering: .relaxed) }
    /// Milliseconds since the router last sent anything.
    public var silentForMs: Int {
        let last = lastSeen.load(ordering: .relaxed)
        let now = MonotonicClock.now()
        return now > last ? Int((now - last) / 1_000_000) : 0
    }
}

/// The hub's side of one router's TCP link: challenges the router to prove who it
/// is, registers it in the directory once it has, publishes its events, and matches
/// REPLYs to commands.
///
/// Authentication (protocol version 2): HELLO(version, id) → WELCOME(heartbeat,
/// nonce) → AUTH(HMAC-SHA256(secret, nonce ‖ id)) → AUTHOK. The nonce is fresh per
/// link and consumed by the first AUTH, so a recorded proof is worth nothing on
/// another link. Only a valid proof enters the directory (and so may replace the
/// router's older link); anything else gets REFUSED and the link closes, leaving the
/// router's existing link alone. Version 1's HELLO (no proof) is accepted only with
/// `RouterAuthConfiguration.insecureRouters`.
///
/// Threading: every method runs on the link's loop thread (it is the connection's
/// handler); other threads reach it only through `loop.execute`, which is why it is
/// `@unchecked Sendable`. `id`, `loop`, `stats` and `remote` are immutable once the
/// router is online and readable anywhere.
///
/// Liveness: the router port's sockets carry the heartbeat timeout as the core's
/// idle timeout, so a router that stops sending (power cut, vanished peer) is closed
/// by the loop's deadline wheel through the connection's one close path, like any other
/// connection. Any frame counts as a heartbeat. Until it is online, the link's own
/// `checkLiveness` enforces the (shorter) authentication timeout.
public final class RouterLink: ConnectionHandler, @unchecked Sendable {
    let hub: HubCore
    public let connection: Connection
    public var loop: EventLoop { connection.loop }
    /// Set once the router is online (authenticated), then constant.
    public private(set) var id: String?
    public private(set) var stats: RouterStats?
    public private(set) var remote: String = "?"

    /// Where a link stands in the handshake.
    enum AuthState {
        /// Connected; HELLO not yet received (and no WELCOME sent: the hub accepts
        /// version 1 too, so it waits to learn the version).
        case awaitingHello
        /// WELCOME with `nonce` sent at accept (version 2 only); HELLO not yet received.
        case welcomed(nonce: [UInt8])
        /// WELCOME sent with `nonce`; waiting for the AUTH over it.
        case challenged(id: String, nonce: [UInt8])
        /// In the directory. `secret` is what the router proved it holds (nil for an
        /// insecure version 1 link), checked again when the credentials are reloaded.
        case online(secret: [UInt8]?)
        /// REFUSED sent (or refused at accept); closing.
        case refused
    }

    private var auth: AuthState = .awaitingHello
    /// The source address without the port: what the abuse limits count by.
    private var source = "?"
    /// Admitted by the per-source limits and not yet settled.
    private var countedUnauthenticated = false
    private var acceptedAt: UInt64 = 0
    private var decoder: HubFrameDecoder
    private var pending: [UInt32: PendingCommand] = [:]
    private var nextRequestID: UInt32 = 1
    private var goodbye: DisconnectReason?

    struct PendingCommand {
        let timer: Timer
        let done: (CommandOutcome) -> Void
    }

    init(hub: HubCore, connection: Connection) {
        self.hub = hub
        self.connection = connection
        decoder = HubFrameDecoder(maxFrame: hub.configuration.maxFrame)
    }

    public func connected(_ connection: Connection) {
        remote = connection.remoteAddress?.description ?? "?"
        source = connection.remoteAddress?.host ?? "?"
        acceptedAt = MonotonicClock.now()
        hub.counters.linksOpened.add(1, ordering: .relaxed)
        logger.debug("router connection accepted", metadata: logMetadata())
        let admission = hub.authLimits.admit(source)
        guard admission == .accepted else {
            return refuse(admission, reason: admission == .rateLimited
                ? "too many failed authentications from this address" : "too many unauthenticated links from this address")
        }
        countedUnauthenticated = true
        connection.watchLiveness()
        // Version 2 only: the challenge goes out at once, so a router may wait for it
        // and send HELLO and AUTH in one write (one round trip fewer; a router that
        // sends HELLO first reads the same WELCOME after it).
        if !hub.configuration.auth.insecureRouters {
            let nonce = HubCredentials.randomBytes(HubFrame.nonceSize)
            auth = .welcomed(nonce: nonce)
            send(.welcome(heartbeatTimeoutMs: heartbeatMs, nonce: nonce))
        }
    }

    public func checkLiveness(_ connection: Connection, now: UInt64) -> UInt64? {
        switch auth {
        case .awaitingHello, .welcomed, .challenged:
            let deadline = acceptedAt &+ UInt64(hub.configuration.auth.authTimeout.nanoseconds)
            guard now < deadline else {
                refuse(.timeout, reason: "authentication timeout")
                return nil
            }
            return deadline
        case .online, .refused:
            return nil
        }
    }

    public func received(_ bytes: ReceivedBytes, from connection: Connection) {
        stats?.lastSeen.store(MonotonicClock.now(), ordering: .relaxed)
        do {
            try decoder.feed(bytes.unsafeBytes) { frame in
                handle(frame)
                return connection.isOpen && goodbye == nil
            }
        } catch {
            protocolError("\(error)")
        }
    }

    public func inputClosed(_ connection: Connection) {
        if goodbye == nil { goodbye = .closedByRouter }
        connection.closeAfterWriting()
    }

    public func closed(_ connection: Connection, error: (any Error)?) {
        settleUnauthenticated()
        let reason: DisconnectReason
        if let goodbye {
            reason = goodbye
        } else if error is TimeoutError {
            reason = .heartbeatTimeout
        } else {
            reason = .error
        }
        hub.counters.disconnected(reason)
        logger.info("router link closed", metadata: logMetadata([
            "reason": "\(reason)", "error": "\(error.map { "\($0)" } ?? "none")",
            "pending_commands": "\(pending.count)",
        ]))
        if let id, hub.directory.remove(id, self) {
            hub.cluster?.detached(id)
            hub.dashboard.detached(id, node: hub.cluster?.nodeID)
        }
        failPending(.disconnected)
    }

    // MARK: Frames

    private func handle(_ frame: HubFrame) {
        switch auth {
        case .awaitingHello:
            guard case .hello(let newID, let version) = frame else {
                return protocolError("\(HubProtocolError.helloExpected)")
            }
            return hello(newID, version: version)
        case .welcomed(let nonce):
            guard case .hello(let newID, let version) = frame else {
                return protocolError("\(HubProtocolError.helloExpected)")
            }
            guard version >= 2 else {
                return refuse(.insecureRefused, reason: "protocol version 1 (HELLO without proof) is not accepted")
            }
            auth = .challenged(id: newID, nonce: nonce)
            return
        case .challenged(let claimed, let nonce):
            guard case .auth(let proof, let confirm) = frame else {
                return protocolError("\(HubProtocolError.authExpected)")
            }
            return authenticate(claimed, nonce: nonce, proof: proof, confirm: confirm)
        case .refused:
            return
        case .online:
            break
        }
        guard let id else { return }
        switch frame {
        case .heartbeat:
            break
        case .event(let payload):
            stats?.events.add(1, ordering: .relaxed)
            hub.publish(router: id, payload: payload, from: self)
        case .reply(let requestID, let body):
            stats?.replies.add(1, ordering: .relaxed)
            // A late reply (after its timeout) finds nothing and is dropped.
            if let p = pending.removeValue(forKey: requestID) {
                p.timer.cancel()
                p.done(.reply(body))
            }
        case .bye:
            goodbye = .closedByRouter
            connection.closeAfterWriting()
        case .hello, .welcome, .command, .auth, .authOK, .refused:
            protocolError("\(HubProtocolError.unexpected(frame.kind))")
        }
    }

    /// Counts and logs a protocol violation, then says BYE (REFUSED before the
    /// router is online) and closes.
    private func protocolError(_ detail: String) {
        hub.counters.protocolErrors.add(1, ordering: .relaxed)
        logger.notice("router protocol error; closing the link", metadata: logMetadata(["error": "\(detail)"]))
        if case .online = auth {
            sayGoodbye(.protocolError, reason: "protocol error: \(detail)")
        } else {
            closeRefused(.protocolError, reason: "protocol error: \(detail)")
        }
    }

    private var heartbeatMs: UInt32 {
        UInt32(clamping: hub.configuration.heartbeatTimeout.nanoseconds / 1_000_000)
    }

    private func hello(_ claimed: String, version: UInt8) {
        guard version >= 2 else {
            guard hub.configuration.auth.insecureRouters else {
                return refuse(.insecureRefused, reason: "protocol version 1 (HELLO without proof) is not accepted")
            }
            send(.welcome(heartbeatTimeoutMs: heartbeatMs))
            return goOnline(claimed, secret: nil)
        }
        let nonce = HubCredentials.randomBytes(HubFrame.nonceSize)
        auth = .challenged(id: claimed, nonce: nonce)
        send(.welcome(heartbeatTimeoutMs: heartbeatMs, nonce: nonce))
    }

    private func authenticate(_ claimed: String, nonce: [UInt8], proof: [UInt8], confirm: Bool) {
        guard let secret = hub.credentials.secret(for: claimed) else {
            hub.authLimits.failed(source)
            return refuse(.unknownRouter, reason: "authentication failed", claimed: claimed)
        }
        guard ConstantTime.equals(HubCredentials.proof(secret: secret, nonce: nonce, id: claimed), proof) else {
            hub.authLimits.failed(source)
            return refuse(.badProof, reason: "authentication failed", claimed: claimed)
        }
        if confirm { send(.authOK) }
        goOnline(claimed, secret: secret)
    }

    private func goOnline(_ newID: String, secret: [UInt8]?) {
        settleUnauthenticated()
        hub.counters.authenticated(.accepted)
        auth = .online(secret: secret)
        id = newID
        stats = RouterStats(connectedAt: HubClock.wallSeconds(), now: MonotonicClock.now())
        var opened: Logger.Metadata = ["authenticated": "\(secret != nil)"]
        if let tls = connection.tlsSession {
            opened["tls"] = "\(tls.version)"
            opened["certificate"] = "\(tls.peerSubject ?? "none")"
        }
        logger.info("router link opened", metadata: logMetadata(opened))
        if let old = hub.directory.register(newID, self) {
            // A router that reconnects (and has proven it is that router) replaces
            // its old link; the old one closes on its own loop through the ordinary
            // close path.
            logger.info("router reconnected; replacing its old link", metadata: logMetadata([
                "old_peer": "\(old.remote)", "old_loop": "\(old.loop.index)",
            ]))
            old.loop.execute { old.sayGoodbye(.replaced, reason: "replaced by a newer connection") }
        }
        hub.cluster?.attached(self)
        hub.dashboard.attached(self, node: hub.cluster?.nodeID)
    }

    /// Refuses the link before it is online: counts `outcome`, sends REFUSED and closes.
    private func refuse(_ outcome: RouterAuthOutcome, reason: String, claimed: String? = nil) {
        hub.counters.authenticated(outcome)
        logger.notice("router link refused", metadata: logMetadata([
            "outcome": "\(outcome)", "claimed_id": "\(claimed ?? "?")",
        ]))
        closeRefused(.refused, reason: reason)
    }

    private func closeRefused(_ why: DisconnectReason, reason: String) {
        auth = .refused
        settleUnauthenticated()
        guard connection.isOpen, goodbye == nil else { return }
        goodbye = why
        send(.refused(reason: reason))
        connection.closeAfterWriting()
    }

    private func settleUnauthenticated() {
        guard countedUnauthenticated else { return }
        countedUnauthenticated = false
        hub.authLimits.settled(source)
    }

    /// After a credential reload: closes the link if its router's secret was removed
    /// or changed. Loop thread only.
    func recheckCredentials() {
        guard case .online(let proven?) = auth, let id else { return }
        let current = hub.credentials.secret(for: id)
        if let current, ConstantTime.equals(current, proven) { return }
        logger.notice("router credentials revoked; closing its link", metadata: logMetadata())
        sayGoodbye(.credentialsRevoked, reason: "credentials revoked")
    }

    private func send(_ frame: HubFrame) {
        var out: [UInt8] = []
        frame.encode(into: &out)
        connection.send(out)
    }

    // MARK: Commands

    /// Sends `body` as a COMMAND and calls `done` once, on this loop, with the reply,
    /// a timeout, or the link's end. Loop thread only.
    func command(_ body: [UInt8], timeout: Duration, done: @escaping (CommandOutcome) -> Void) {
        guard connection.isOpen, goodbye == nil, id != nil else { return done(.offline) }
        guard pending.count < hub.configuration.maxPendingCommands else { return done(.overloaded) }
        var requestID = nextRequestID
        while pending[requestID] != nil || requestID == 0 { requestID &+= 1 }
        nextRequestID = requestID &+ 1
        stats?.commands.add(1, ordering: .relaxed)
        let timer = loop.schedule(after: timeout) { [self] in
            guard let command = pending.removeValue(forKey: requestID) else { return }
            logger.notice("command timed out", metadata: logMetadata([
                "request_id": "\(requestID)", "timeout": "\(timeout)",
            ]))
            command.done(.timedOut)
        }
        pending[requestID] = PendingCommand(timer: timer, done: done)
        send(.command(requestID: requestID, body: body))
    }

    private func failPending(_ outcome: CommandOutcome) {
        let all = pending
        pending.removeAll()
        for (_, p) in all {
            p.timer.cancel()
            p.done(outcome)
        }
    }

    /// Sends BYE with `reason` and closes after it (replaced, protocol error, hub
    /// stopping). Loop thread only.
    func sayGoodbye(_ why: DisconnectReason, reason: String) {
        guard connection.isOpen, goodbye == nil else { return }
        goodbye = why
        send(.bye(reason: reason))
        connection.closeAfterWriting()
        failPending(.disconnected)
    }
}

extension RouterLink {
    var logger: Logger { hub.configuration.logger }

    /// Log metadata naming this link (router id once known, peer, loop), plus `extra`.
    func logMetadata(_ extra: Logger.Metadata = [:]) -> Logger.Metadata {
        var metadata = extra
        metadata["router"] = "\(id ?? "?")"
        metadata["peer"] = "\(remote)"
        metadata["loop"] = "\(loop.index)"
        return metadata
    }
}

/// Why a router link ended (counted in /metrics).
public enum DisconnectReason: Int, Sendable, CaseIterable, CustomStringConvertible {
    case closedByRouter, heartbeatTimeout, replaced, protocolError, hubStopping, error
    /// Refused before it was online (bad or missing proof, limits, auth timeout).
    case refused
    /// The router's secret was removed or changed by a credential reload.
    case credentialsRevoked

    public var description: String {
        switch self {
        case .closedByRouter: "closed_by_router"
        case .heartbeatTimeout: "heartbeat_timeout"
        case .replaced: "replaced"
        case .protocolError: "protocol_error"
        case .hubStopping: "hub_stopping"
        case .error: "error"
        case .refused: "refused"
        case .credentialsRevoked: "credentials_revoked"
        }
    }
}
