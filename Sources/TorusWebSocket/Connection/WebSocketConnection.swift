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
/// handshake is awaited from a peer presumed gone).
///
/// Backpressure: ``isWritable`` is the write queue's water mark; ``onWritable`` runs
/// when it drained below the low mark; async senders wait for it.
///
/// Threading: the callback face (properties, `send…`, `close`, `ping`) is for the
/// connection's loop thread only; the async face (``messages``, `send(_:) async`,
/// `close(code:reason:) async`) is safe from any task and costs no hop for a task
/// that prefers the loop as its executor.
///
/// Ownership: owned by its `Connection` until `closed` (the connection then drops
/// it); the callbacks are dropped after ``onClose`` runs, which breaks the usual
/// cycle of a callback capturing the connection.
public final class WebSocketConnection: UpgradedConnectionHandler, @unchecked Sendable {
    public let connection: Connection
    public var loop: EventLoop { connection.loop }
    public let role: WebSocketRole
    /// The negotiated subprotocol, if any.
    public let subprotocol: String?
    /// The negotiated permessage-deflate parameters, if any.
    public let deflate: PerMessageDeflateAgreement?
    public let configuration: WebSocketConfiguration
    /// Server side: the upgrade request (path, query, headers).
    public let request: RequestHead?
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
    @exclusivity(unchecked) var decoder: MessageDecoder
    let encoder: FrameEncoder
    let compressor: PerMessageDeflateCompressor?
    var scratch: [UInt8] = []
    /// The opcode of a fragmented message we are sending, between its first and last frame.
    @exclusivity(unchecked) var sendingFragmented: Opcode?

    @exclusivity(unchecked) var closeSent = false
    @exclusivity(unchecked) var closeReceived = false
    var closedByApplication = false
    var sentCode: CloseCode?
    var receivedCode: CloseCode?
    var receivedReason = ""
    @exclusivity(unchecked) var failure: (any Error)?
    /// Set once the socket is released.
    public internal(set) var closeInfo: WebSocketCloseInfo?

    private var closeTimer: Timer?
    private var pingTimer: Timer?
    private var pongTimer: Timer?
    @exclusivity(unchecked) private var receivedSinceTick = false
    @exclusivity(unchecked) private var awaitingPong = false
    private var started = false
    private var pausedByApplication = false
    private var onUpgrade: ((WebSocketConnection) -> Void)?
    var memberships: [ObjectIdentifier: any WebSocketMembership] = [:]

    // Async face.
    var inbox: [WebSocketMessage] = []
    var inboxHead = 0
    var inboxBytes = 0
    var pausedForInbox = false
    var reader: (CheckedContinuation<WebSocketMessage?, any Error>, MessageWaiter)?
    var writers: [CheckedContinuation<Void, any Error>] = []
    var closers: [CheckedContinuation<Void, Never>] = []

    init(connection: Connection, role: WebSocketRole, subprotocol: String?, deflate: PerMessageDeflateAgreement?,
         configuration: WebSocketConfiguration, request: RequestHead?,
         onUpgrade: ((WebSocketConnection) -> Void)? = nil) {
        self.connection = connection
        self.role = role
        self.subprotocol = subprotocol
        self.deflate = deflate
        self.configuration = configuration
        self.request = request
        self.onUpgrade = onUpgrade
        encoder = FrameEncoder(role: role)
        compressor = deflate?.makeCompressor(role: role)
        decoder = MessageDecoder(role: role, configuration: configuration.decoderConfiguration(deflate: deflate != nil),
                                 decompressor: deflate?.makeDecompressor(role: role))
    }

    /// True until a close frame was sent or the socket started closing.
    public var isOpen: Bool { connection.isOpen && !closeSent }
    /// False while the write queue is above its high water mark.
    public var isWritable: Bool { connection.isWritable }
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
        if !pausedForInbox { connection.resumeReading() }
    }

    /// Whether reading is paused by the application or by the async inbox.
    var readingPaused: Bool { pausedByApplication || pausedForInbox }

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
        if let interval = configuration.pingInterval {
            // The timers hold the connection strongly (a weak reference would give it a
            // side table and make every retain on the message path slower); `closed`
            // cancels them, which drops their closures and breaks the cycle, and every
            // path ends in `closed`.
            pingTimer = loop.scheduleRepeating(every: interval) { [self] _ in pingTick() }
        }
        let upgrade = onUpgrade
        onUpgrade = nil
        upgrade?(self)
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
        receivedSinceTick = true
        awaitingPong = false
        // After the peer's close frame or our failure, input is discarded.
        guard !closeReceived, failure == nil, connection.isOpen else { return }
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
        fail(code: error.closeCode, reason: error.reason, error: WebSocketError.protocolViolation(error))
    }

    private func peerClosed(code: CloseCode?, reason: String) {
        closeReceived = true
        receivedCode = code ?? .noStatusReceived
        receivedReason = reason
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
        sentCode = code
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
        guard closeTimer == nil else { return }
        closeTimer = loop.schedule(after: configuration.closeTimeout) { [self] in
            self.closeTimer = nil
            if self.failure == nil && !self.closeReceived { self.failure = WebSocketError.closeTimeout }
            self.connection.close(error: self.closeReceived ? nil : WebSocketError.closeTimeout)
        }
    }

    // MARK: Liveness

    private func pingTick() {
        guard connection.isOpen, !closeSent else { return }
        if readingPaused {
            // We are not reading, so the peer's answers cannot arrive.
            awaitingPong = false
            receivedSinceTick = false
            return
        }
        if receivedSinceTick || awaitingPong {
            receivedSinceTick = false
            return
        }
        awaitingPong = true
        _ = sendFrame(opcode: .ping, fin: true, rsv1: false, payload: UnsafeRawBufferPointer(start: nil, count: 0))
        pongTimer?.cancel()
        pongTimer = loop.schedule(after: configuration.pingTimeout) { [self] in
            self.pongTimer = nil
            guard self.awaitingPong, !self.readingPaused, self.connection.isOpen else { return }
            // The peer is presumed gone: say 1011 and release the socket as soon as that
            // is written, rather than wait the close timeout for an answer that will not
            // come (the close timer still bounds a write that cannot drain).
            self.fail(code: .internalError, reason: "ping timeout", error: WebSocketError.pingTimeout)
            self.connection.closeAfterWriting()
        }
    }

    // MARK: Closed

    public func closed(_ connection: Connection, error: (any Error)?) {
        closeTimer?.cancel()
        pingTimer?.cancel()
        pongTimer?.cancel()
        closeTimer = nil
        pingTimer = nil
        pongTimer = nil
        let code: CloseCode
        let reason: String
        if closeReceived {
            code = receivedCode ?? .noStatusReceived
            reason = receivedReason
        } else if failure != nil, let sent = sentCode {
            code = sent
            reason = ""
        } else {
            code = .abnormalClosure
            reason = ""
        }
        let info = WebSocketCloseInfo(code: code, reason: reason, wasClean: closeSent && closeReceived,
                                      sentCode: sentCode, error: error ?? (closeReceived ? nil : failure))
        closeInfo = info
        closeSent = true
        let groups = memberships
        memberships.removeAll()
        for (_, m) in groups { m.remove(self) }
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

/// Something a connection belongs to (a channel's or registry's per-loop set),
/// told when the connection closes. Loop thread only.
protocol WebSocketMembership: AnyObject {
    func remove(_ ws: WebSocketConnection)
}
