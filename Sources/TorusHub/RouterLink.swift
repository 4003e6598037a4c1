import Synchronization
import Torus

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
        let now = HubClock.nowNanos()
        return now > last ? Int((now - last) / 1_000_000) : 0
    }
}

/// The hub's side of one router's TCP link: decodes frames, registers the router
/// in the directory on HELLO, publishes its events, and matches REPLYs to commands.
///
/// Threading: every method runs on the link's loop thread (it is the connection's
/// handler); other threads reach it only through `loop.execute`, which is why it is
/// `@unchecked Sendable`. `id`, `loop`, `stats` and `remote` are immutable after
/// HELLO and readable anywhere.
///
/// Liveness: the router port's sockets carry the heartbeat timeout as the core's
/// idle timeout, so a router that stops sending (power cut, vanished peer) is closed
/// by the loop's sweep through the connection's one close path, like any other
/// connection. Any frame counts as a heartbeat.
public final class RouterLink: ConnectionHandler, @unchecked Sendable {
    let hub: HubCore
    public let connection: Connection
    public var loop: EventLoop { connection.loop }
    /// Set by HELLO, then constant.
    public private(set) var id: String?
    public private(set) var stats: RouterStats?
    public private(set) var remote: String = "?"

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
        hub.counters.linksOpened.add(1, ordering: .relaxed)
    }

    public func received(_ bytes: ReceivedBytes, from connection: Connection) {
        stats?.lastSeen.store(HubClock.nowNanos(), ordering: .relaxed)
        do {
            try decoder.feed(bytes.unsafeBytes) { frame in
                handle(frame)
                return connection.isOpen && goodbye == nil
            }
        } catch {
            hub.counters.protocolErrors.add(1, ordering: .relaxed)
            sayGoodbye(.protocolError, reason: "protocol error: \(error)")
        }
    }

    public func inputClosed(_ connection: Connection) {
        if goodbye == nil { goodbye = .closedByRouter }
        connection.closeAfterWriting()
    }

    public func closed(_ connection: Connection, error: (any Error)?) {
        let reason: DisconnectReason
        if let goodbye {
            reason = goodbye
        } else if error is TimeoutError {
            reason = .heartbeatTimeout
        } else {
            reason = .error
        }
        hub.counters.disconnected(reason)
        if let id { hub.directory.remove(id, self) }
        failPending(.disconnected)
    }

    // MARK: Frames

    private func handle(_ frame: HubFrame) {
        guard let id else {
            guard case .hello(let newID) = frame else {
                hub.counters.protocolErrors.add(1, ordering: .relaxed)
                return sayGoodbye(.protocolError, reason: "protocol error: \(HubProtocolError.helloExpected)")
            }
            return hello(newID)
        }
        switch frame {
        case .heartbeat:
            break
        case .event(let payload):
            stats?.events.add(1, ordering: .relaxed)
            hub.publish(router: id, payload: payload)
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
        case .hello, .welcome, .command:
            hub.counters.protocolErrors.add(1, ordering: .relaxed)
            sayGoodbye(.protocolError, reason: "protocol error: \(HubProtocolError.unexpected(frame.kind))")
        }
    }

    private func hello(_ newID: String) {
        id = newID
        stats = RouterStats(connectedAt: HubClock.wallSeconds(), now: HubClock.nowNanos())
        if let old = hub.directory.register(newID, self) {
            // A router that reconnects replaces its old link; the old one closes on
            // its own loop through the ordinary close path.
            old.loop.execute { old.sayGoodbye(.replaced, reason: "replaced by a newer connection") }
        }
        send(.welcome(heartbeatTimeoutMs: UInt32(clamping: hub.configuration.heartbeatTimeout.milliseconds)))
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
            pending.removeValue(forKey: requestID)?.done(.timedOut)
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

/// Why a router link ended (counted in /metrics).
public enum DisconnectReason: Int, Sendable, CaseIterable, CustomStringConvertible {
    case closedByRouter, heartbeatTimeout, replaced, protocolError, hubStopping, error

    public var description: String {
        switch self {
        case .closedByRouter: "closed_by_router"
        case .heartbeatTimeout: "heartbeat_timeout"
        case .replaced: "replaced"
        case .protocolError: "protocol_error"
        case .hubStopping: "hub_stopping"
        case .error: "error"
        }
    }
}
