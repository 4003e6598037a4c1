import Logging
import Torus
import TorusHTTP

/// One WebSocket connection (server or client side), driven by the core's
/// `ConnectionHandler` face: it is the handler of its `Connection`.
///
/// Receiving: a whole unfragmented data frame in a receive buffer is unmasked in
/// place there (the buffer is ours until the core's `received` call returns) and
/// delivered from it; everything else goes into the incremental ``MessageDecoder``,
/// which copies what it keeps. Either way the provided buffer returns to the kernel
/// when the call ends. Pings are answered with pongs, control frames between
/// fragments are handled as they come, and complete messages go to
/// ``onMessageBytes`` (borrowed bytes), else ``onText``/``onBinary``, else the async
/// ``messages`` sequence.
///
/// Closing: a peer's close frame is answered with the same code; a server then
/// closes the socket once the answer is sent, a client waits (bounded by
/// ``WebSocketConfiguration/closeTimeout``) for the server to close it. A protocol
/// violation sends close 1002, 1007 or 1009, half-closes the socket after it and
/// discards input until the peer closes (bounded too), so the close frame is never
/// lost to a reset. Every path ends in the core's one close path and then in
/// ``onClose`` with a ``WebSocketCloseInfo``.
///
/// Liveness: the HTTP idle timeout is suspended after the upgrade; instead, when
/// nothing arrived for ``WebSocketConfiguration/pingInterval`` a ping goes out, and
/// if still nothing arrives within ``WebSocketConfiguration/pingTimeout`` the
/// connection fails with 1011 and closes as soon as that frame is written (no close
/// handshake is awaited from a peer presumed gone). Both deadlines are checked by the
/// loop's deadline wheel (`checkLiveness`): no timer per connection.
///
/// Backpressure: ``isWritable`` is the write queue's water mark; ``onWritable`` runs
/// when it drained below the low mark; async senders wait for it.
///
/// Threading: the callback face (properties, `send…`, `close`, `ping`) is for the
/// connection's loop thread only; the async face (``messages``, `send(_:) async`,
/// `close(code:reason:) async`) is safe from any task and costs no hop for a task
/// that prefers the loop as its executor.
///
/// Memory: an idle open connection is one object (its callbacks, decoder state and a
/// few flags) plus its `Connection`. What only some connections or moments need is
/// made when needed: the async face's inbox at the first message that goes to it or
/// the first async call, the closing record when closing starts, the permessage-deflate
/// compressor at the first message compressed. The upgrade request is dropped after
/// the route's `upgraded` callback unless the route keeps it.
///
/// Ownership: owned by its `Connection` until `closed` (the connection then drops
/// it); the callbacks are dropped after ``onClose`` runs, which breaks the usual
/// cycle of a callback capturing the connection.
public final class WebSocketConnection: UpgradedConnectionHandler, @unchecked Sendable {
    public let connection: Connection
    public var loop: EventLoop { connection.loop }
    /// The negotiated subprotocol, if any.
    public var subprotocol: String? { negotiated?.subprotocol }
    /// The negotiated permessage-deflate parameters, if any.
    public var deflate: PerMessageDeflateAgreement? { negotiated?.deflate }
    /// The settings (shared with the other connections of its route).
    public var configuration: WebSocketConfiguration { sharedConfiguration.value }
    let sharedConfiguration: SharedWebSocketConfiguration
    /// Server side: the upgrade request (path, query, headers). Available while the
    /// route's `upgraded` callback runs; afterwards only when the route keeps it
    /// (`WebSocketServerConfiguration.keepsUpgradeRequest`, and always for the async
    /// `serve` form), so an idle connection does not carry its request head.
    public var request: RequestHead? { upgrade?.head }
    /// Application state (the library never touches it).
    public var context: AnyObject?

    // MARK: Callbacks (loop thread)

    /// A complete data message arrived, borrowed: `bytes` are valid only during the
    /// call (copy what you keep); text has already been validated as UTF-8. When set,
    /// it receives every data message instead of ``onText``/``onBinary`` and the async
    /// ``messages``, and the hot path allocates nothing per message: a whole frame is
    /// unmasked in place in the receive buffer and handed over from there.
    @exclusivity(unchecked) public var onMessageBytes: ((WebSocketConnection, WebSocketMessageKind,
                                                         UnsafeRawBufferPointer) -> Void)?
    /// A complete text message arrived (a `String` is made for each).
    @exclusivity(unchecked) public var onText: ((WebSocketConnection, String) -> Void)?
    /// A complete binary message arrived (an array is made for each).
    @exclusivity(unchecked) public var onBinary: ((WebSocketConnection, [UInt8]) -> Void)?
    /// A ping arrived (it has already been answered when `autoPong` is on).
    public var onPing: ((WebSocketConnection, [UInt8]) -> Void)?
    /// A pong arrived.
    public var onPong: ((WebSocketConnection, [UInt8]) -> Void)?
    /// The write queue drained below its low water mark after being above the high one.
    public var onWritable: ((WebSocketConnection) -> Void)?
    /// The connection is closed and its socket released. Runs once.
    public var onClose: ((WebSocketConnection, WebSocketCloseInfo) -> Void)?

    // MARK: State

    // Hot-path state is `@exclusivity(unchecked)`, like the core `Connection`'s: it is
    // touched on the loop thread only and never through overlapping accesses (the
    // debug test suite checks every other property dynamically).
    // The byte-sized state follows the decoder, which ends on an odd offset (less
    // padding in an object every idle connection carries).
    @exclusivity(unchecked) var decoder: MessageDecoder
    /// Server or client.
    public let role: WebSocketRole
    /// The opcode of a fragmented message we are sending, between its first and last frame.
    @exclusivity(unchecked) var sendingFragmented: Opcode?
    @exclusivity(unchecked) var closeSent = false
    @exclusivity(unchecked) var closeReceived = false
    var closedByApplication = false
    private var started = false
    private var pausedByApplication = false
    var encoder: FrameEncoder { FrameEncoder(role: role) }
    /// Subprotocol and permessage-deflate, when the handshake agreed either.
    let negotiated: WebSocketNegotiated?
    /// Where the ping liveness is (see `checkLiveness`).
    @exclusivity(unchecked) private var liveness = Liveness.listening(since: 0)
    /// The closing handshake's record, made when closing starts.
    private var closing: WebSocketClosing?
    /// Server side: the upgrade request and callback, while held.
    private var upgrade: WebSocketUpgradeState?
    /// The sets (registry, channels) this connection is in.
    var memberships = WebSocketMemberships.none
    /// The async face, made at its first use (see ``WebSocketAsyncFace``).
    var asyncFace: WebSocketAsyncFace?

    init(connection: Connection, role: WebSocketRole, subprotocol: String?, deflate: PerMessageDeflateAgreement?,
         configuration shared: SharedWebSocketConfiguration, request: RequestHead?,
         onUpgrade: ((WebSocketConnection) -> Void)? = nil) {
        let configuration = shared.value
        self.connection = connection
        self.role = role
        negotiated = subprotocol == nil && deflate == nil
            ? nil : WebSocketNegotiated(subprotocol: subprotocol, deflate: deflate, role: role)
        sharedConfiguration = shared
        upgrade = request == nil && onUpgrade == nil ? nil : WebSocketUpgradeState(head: request, onUpgrade: onUpgrade)
        let decompressor = deflate?.makeDecompressor(role: role)
        decoder = MessageDecoder(role: role, configuration: configuration.decoderConfiguration(deflate: deflate != nil),
                                 decompressor: decompressor)
        decoder.compressionUnavailable = deflate != nil && decompressor == nil
    }

    /// Drops the upgrade request (server side, after the `upgraded` callback, unless
    /// the route keeps it). Loop thread only.
    func dropUpgradeRequest() {
        upgrade = nil
    }

    // MARK: Closing record

    /// Set once the socket is released.
    public internal(set) var closeInfo: WebSocketCloseInfo? {
        get { closing?.info }
        set { closingRecord.info = newValue }
    }

    /// Why we failed the connection, if we did.
    var failure: (any Error)? {
        get { closing?.failure }
        set { closingRecord.failure = newValue }
    }

    var sentCode: CloseCode? { closing?.sentCode }

    /// The closing record, made on first use.
    private var closingRecord: WebSocketClosing {
        if let closing { return closing }
        let made = WebSocketClosing()
        closing = made
        return made
    }

    /// True until a close frame was sent or the socket started closing.
    public var isOpen: Bool { connection.isOpen && !closeSent }
    /// False while the write queue is above its high water mark. Inlinable: an
    /// application that checks it after each send calls the connection's getter directly.
    @inlinable public var isWritable: Bool { connection.isWritable }
    /// Bytes queued for the socket and not yet sent.
    public var queuedBytes: Int { connection.queuedBytes }

    /// Stops reading from the socket (backpressure). Meanwhile pings go unanswered
    /// and the ping liveness check is suspended (silence is then expected).
    public func pauseReading() {
        pausedByApplication = true
        connection.pauseReading()
    }

    public func resumeReading() {
        pausedByApplication = false
        if !(asyncFace?.pausedForInbox ?? false) { connection.resumeReading() }
    }

    /// Whether reading is paused by the application or by the async inbox.
    var readingPaused: Bool { pausedByApplication || (asyncFace?.pausedForInbox ?? false) }

    // MARK: Start

    public func upgraded(_ connection: Connection, leftover: UnsafeRawBufferPointer) {
        start(leftover: leftover)
    }

    /// Begins the WebSocket phase: liveness, the application's upgrade callback, then
    /// the bytes that followed the handshake.
    func start(leftover: UnsafeRawBufferPointer) {
        guard !started else { return }
        started = true
        // Ping-based liveness replaces the HTTP keep-alive idle timeout.
        connection.idleTimeoutSuspended = true
        if configuration.pingInterval != nil {
            // The loop's deadline wheel checks them (`checkLiveness`): no timer, no
            // kernel timeout in flight for an idle connection.
            liveness = .listening(since: connection.lastReceive)
            connection.watchLiveness()
        }
        let onUpgrade = upgrade?.onUpgrade
        upgrade?.onUpgrade = nil
        onUpgrade?(self)
        if !leftover.isEmpty && connection.isOpen { process(leftover, inPlace: false) }
    }

    // MARK: Receiving

    public func received(_ bytes: ReceivedBytes, from connection: Connection) {
        process(bytes.unsafeBytes, inPlace: bytes.unsafeMutableBytes != nil)
    }

    /// Decodes `bytes`. With `inPlace` (the bytes are a receive buffer that is ours to
    /// modify), whole small messages are unmasked and delivered where they lie;
    /// everything else goes through the decoder's copying path.
    func process(_ bytes: UnsafeRawBufferPointer, inPlace: Bool) {
        if case .awaitingPong = liveness { liveness = .listening(since: 0) }
        // After the peer's close frame or our failure, input is discarded.
        guard !closeReceived, closing?.failure == nil, connection.isOpen else { return }
        var input = bytes
        while true {
            if inPlace, !input.isEmpty {
                var rest = UnsafeMutableRawBufferPointer(mutating: input)
                while let (kind, payload) = decoder.takeWholeMessage(&rest) {
                    deliver(kind, payload)
                    if closeReceived || failure != nil || !connection.isOpen { return }
                }
                input = UnsafeRawBufferPointer(rest)
            }
            let event: WebSocketEvent?
            do {
                event = try decoder.next(&input)
            } catch {
                fail(error)
                return
            }
            guard let event else { return }
            handle(event)
            if closeReceived || failure != nil || !connection.isOpen { return }
        }
    }

    private func handle(_ event: WebSocketEvent) {
        switch event {
        case .text(let bytes):
            if let onMessageBytes {
                bytes.withUnsafeBytes { onMessageBytes(self, .text, $0) }
            } else {
                deliverText(String(decoding: bytes, as: UTF8.self), size: bytes.count)
            }
        case .binary(let bytes):
            if let onMessageBytes {
                bytes.withUnsafeBytes { onMessageBytes(self, .binary, $0) }
            } else {
                deliverBinary(bytes)
            }
        case .ping(let payload):
            if configuration.autoPong && !closeSent {
                payload.withUnsafeBytes { _ = sendFrame(opcode: .pong, fin: true, rsv1: false, payload: $0) }
            }
            onPing?(self, payload)
        case .pong(let payload):
            onPong?(self, payload)
        case .close(let code, let reason):
            peerClosed(code: code, reason: reason)
        }
    }

    /// A whole message decoded in place (borrowed from the receive buffer).
    @inline(__always)
    private func deliver(_ kind: WebSocketMessageKind, _ payload: UnsafeRawBufferPointer) {
        if let onMessageBytes {
            onMessageBytes(self, kind, payload)
        } else if kind == .text {
            deliverText(String(decoding: payload, as: UTF8.self), size: payload.count)
        } else {
            deliverBinary(Array(payload))
        }
    }

    private func deliverText(_ text: String, size: Int) {
        if let onText { onText(self, text) } else { enqueue(.text(text), size: size) }
    }

    private func deliverBinary(_ bytes: [UInt8]) {
        if let onBinary { onBinary(self, bytes) } else { enqueue(.binary(bytes), size: bytes.count) }
    }

    public func inputClosed(_ connection: Connection) {
        // The peer finished sending: after a close frame (or our failure) this is the
        // expected end; without one the peer vanished. Either way, flush and close.
        connection.closeAfterWriting()
    }

    public func writable(_ connection: Connection) {
        resumeWriters()
        onWritable?(self)
    }

    // MARK: Closing handshake

    /// Starts the closing handshake with `code` (loop thread). The socket closes once
    /// the peer answers (bounded by the close timeout). No-op once a close was sent.
    /// A code that may not be sent (1005, 1006, 1015, outside 1000-4999's valid
    /// ranges) is replaced by an empty close body.
    public func close(code: CloseCode = .normalClosure, reason: String = "") {
        guard connection.isOpen, !closeSent else { return }
        closedByApplication = true
        sendClose(code: code, reason: reason)
        armCloseTimer()
    }

    /// Fails the connection: sends a close frame with `code`, half-closes the socket
    /// after it and discards input until the peer closes (bounded by the close timeout).
    func fail(code: CloseCode, reason: String, error: any Error) {
        guard connection.isOpen else { return }
        if failure == nil { failure = error }
        if !closeSent { sendClose(code: code, reason: reason) }
        connection.shutdownWriting()
        armCloseTimer()
    }

    private func fail(_ error: WebSocketProtocolError) {
        configuration.logger.info("protocol error; closing", metadata: logMetadata([
            "code": "\(error.closeCode.rawValue)", "reason": "\(error.reason)",
        ]))
        fail(code: error.closeCode, reason: error.reason, error: WebSocketError.protocolViolation(error))
    }

    private func peerClosed(code: CloseCode?, reason: String) {
        closeReceived = true
        let record = closingRecord
        record.receivedCode = code ?? .noStatusReceived
        record.receivedReason = reason
        if !closeSent {
            // Echo the peer's code (an empty close is answered with an empty close).
            sendClose(code: code, reason: "")
        }
        wakeReaderAtClose()
        switch role {
        case .server:
            // The server closes the TCP connection first (RFC 6455 7.1.1).
            connection.closeAfterWriting()
            armCloseTimer()
        case .client:
            // Wait for the server to close; `inputClosed` then closes our side.
            armCloseTimer()
        }
    }

    func sendClose(code requested: CloseCode?, reason: String) {
        // Codes that must not appear on the wire (1005, 1006, 1015, ...) become an
        // empty close body.
        let code = requested.flatMap { $0.isValidOnWire ? $0 : nil }
        closeSent = true
        closingRecord.sentCode = code
        sendingFragmented = nil
        var body: [UInt8] = []
        if let code {
            body.reserveCapacity(2 + min(reason.utf8.count, FrameEncoder.maxCloseReasonBytes))
            body.append(UInt8(code.rawValue >> 8))
            body.append(UInt8(truncatingIfNeeded: code.rawValue))
            body.append(contentsOf: FrameEncoder.truncatedUTF8(reason, maxBytes: FrameEncoder.maxCloseReasonBytes))
        }
        body.withUnsafeBytes { _ = sendFrame(opcode: .close, fin: true, rsv1: false, payload: $0) }
    }

    private func armCloseTimer() {
        let record = closingRecord
        guard record.closeTimer == nil else { return }
        record.closeTimer = loop.schedule(after: configuration.closeTimeout) { [self] in
            self.closing?.closeTimer = nil
            if !self.closeReceived {
                self.configuration.logger.info("closing handshake timed out; closing the socket",
                                               metadata: self.logMetadata(["timeout": "\(self.configuration.closeTimeout)"]))
            }
            if self.failure == nil && !self.closeReceived { self.failure = WebSocketError.closeTimeout }
            self.connection.close(error: self.closeReceived ? nil : WebSocketError.closeTimeout)
        }
    }

    // MARK: Liveness

    /// The ping liveness: quiet for `pingInterval` since the last bytes (or since
    /// reading resumed) sends a ping; no bytes within `pingTimeout` of it fail the
    /// connection with 1011.
    enum Liveness {
        /// Waiting for silence; `since`: the later of the last receive and the last
        /// moment reading was paused.
        case listening(since: UInt64)
        /// A ping went out at `sentAt`; any bytes from the peer end the wait.
        case awaitingPong(sentAt: UInt64)
    }

    /// The ping liveness, checked by the loop's deadline wheel while `pingInterval` is
    /// set: returns when to look again (the ping is due `pingInterval` after the last
    /// bytes, the pong `pingTimeout` after the ping). Bytes arriving move nothing:
    /// the check at the old deadline finds them and returns the later one.
    public func checkLiveness(_ connection: Connection, now: UInt64) -> UInt64? {
        guard let interval = configuration.pingInterval, connection.isOpen, !closeSent else { return nil }
        if readingPaused {
            // We are not reading, so the peer's answers cannot arrive: the quiet time
            // counts from when reading resumes (looked at every resolution step).
            liveness = .listening(since: now)
            return now &+ EventLoop.deadlineResolution.nanoseconds
        }
        switch liveness {
        case .listening(let since):
            let quietSince = max(since, connection.lastReceive)
            let pingDue = quietSince &+ interval.nanoseconds
            guard now >= pingDue else { return pingDue }
            liveness = .awaitingPong(sentAt: now)
            _ = sendFrame(opcode: .ping, fin: true, rsv1: false, payload: UnsafeRawBufferPointer(start: nil, count: 0))
            return now &+ configuration.pingTimeout.nanoseconds
        case .awaitingPong(let sentAt):
            let pongDue = sentAt &+ configuration.pingTimeout.nanoseconds
            guard now >= pongDue else { return pongDue }
            // The peer is presumed gone: say 1011 and release the socket as soon as that
            // is written, rather than wait the close timeout for an answer that will not
            // come (the close timer still bounds a write that cannot drain).
            configuration.logger.info("ping timeout; closing", metadata: logMetadata([
                "code": "\(CloseCode.internalError.rawValue)", "timeout": "\(configuration.pingTimeout)",
            ]))
            fail(code: .internalError, reason: "ping timeout", error: WebSocketError.pingTimeout)
            connection.closeAfterWriting()
            return nil
        }
    }

    // MARK: Closed

    public func closed(_ connection: Connection, error: (any Error)?) {
        closing?.closeTimer?.cancel()
        closing?.closeTimer = nil
        let code: CloseCode
        let reason: String
        if closeReceived {
            code = closing?.receivedCode ?? .noStatusReceived
            reason = closing?.receivedReason ?? ""
        } else if failure != nil, let sent = sentCode {
            code = sent
            reason = ""
        } else if error is QueueLimitError {
            // The core closed a peer that would not read what it was sent: a policy
            // violation (no close frame could be queued behind what it did not read).
            code = .policyViolation
            reason = "write queue limit exceeded"
        } else {
            code = .abnormalClosure
            reason = ""
        }
        let info = WebSocketCloseInfo(code: code, reason: reason, wasClean: closeSent && closeReceived,
                                      sentCode: sentCode, error: error ?? (closeReceived ? nil : failure))
        closeInfo = info
        closeSent = true
        for m in memberships.removeAll() { m.remove(self) }
        finishAsync(info)
        let callback = onClose
        onMessageBytes = nil
        onText = nil
        onBinary = nil
        onPing = nil
        onPong = nil
        onWritable = nil
        onClose = nil
        callback?(self, info)
    }
}

extension WebSocketConnection {
    /// Log metadata naming this connection (the peer and the socket), plus `extra`.
    /// Built only when a line is written (swift-log's metadata is an autoclosure).
    func logMetadata(_ extra: Logger.Metadata = [:]) -> Logger.Metadata {
        var metadata = extra
        metadata["peer"] = "\(connection.remoteAddress?.description ?? "?")"
        metadata["fd"] = "\(connection.fd)"
        return metadata
    }
}

/// Something a connection belongs to (a channel's or registry's per-loop set),
/// told when the connection closes. Loop thread only.
protocol WebSocketMembership: AnyObject {
    func remove(_ ws: WebSocketConnection)
}

extension WebSocketConnection {
    /// Records that `set` holds this connection (once).
    func joined(_ set: any WebSocketMembership) {
        memberships.insert(set)
    }

    /// Records that `set` no longer holds this connection.
    func left(_ set: any WebSocketMembership) {
        memberships.remove(set)
    }
}
