import Torus

/// TLS between a `Connection` and its handler: a ``TLSEngine`` over the
/// connection's own receive buffers and outbound chunks (the connection's transform).
///
/// - Inbound: each received buffer is fed to the engine (copied into its read BIO, the
///   ring buffer goes back right after); plaintext is decrypted into a buffer of the
///   loop's `tlsPlaintext` pool and lent to the handler for one `received` call.
/// - Outbound: every `send` variant of the connection comes here; plaintext is
///   encrypted in slices of at most one record and the ciphertext moved into pooled
///   outbound chunks (`sendRaw(reserving:)`), flushed by the loop as usual. What the
///   handler sends while the records of one receive are delivered to it (an echo, the
///   responses to pipelined requests) is gathered in a second buffer of the same pool
///   and encrypted once they all have been: one record for the batch instead of one
///   per send (each record costs a header, a tag and OpenSSL's per-record work). The
///   buffer goes back to the pool before the receive that delivered returns, so an
///   idle connection holds none.
/// - Handshake: the handler's `connected` runs once the handshake completes.
///   Plaintext sent before then (an `AsyncConnection` writing at once, a client
///   writing as soon as TCP connected) waits here, bounded by the connection's
///   `maxQueuedBytes`, and is encrypted when the handshake completes. The handshake
///   timeout is a deadline of the connection's (no timer of its own). A handshake
///   that fails reaches the handler only as `closed(error:)`, without `connected`.
/// - Closing: a graceful close (`closeAfterWriting`, `shutdownWriting`) sends
///   close_notify first, then the socket closes after the queue drains (this side
///   does not wait for the peer's close_notify). The peer's close_notify is the
///   handler's `inputClosed`; a FIN without it closes with
///   ``TLSError/unexpectedEOF``. Any error sends the engine's alert, then closes
///   with the error; a plaintext HTTP request gets ``TLSEngine/plaintextHTTPResponse``.
/// - Buffers: OpenSSL's record buffers (about 17 KiB each way) are kept while the
///   peer keeps sending (``TLSEngine/holdBuffers(_:)``: no `malloc`/`free` of them per
///   record) and released once it has sent nothing for ``bufferHold`` (a deadline of
///   the connection's, checked by the loop's deadline wheel: at most one check per
///   `bufferHold` however busy the connection is). A connection idle that long holds
///   none of them, nor the capacity a burst grew its memory BIOs to.
///
/// Loop thread only. The engine (and its `SSL*`) is freed with the connection.
final class TLSTransform: ConnectionTransform {
    let engine: TLSEngine
    // Loop-confined and never accessed overlapping: the state below skips Swift's
    // dynamic exclusivity checks, which ran on every record.
    @exclusivity(unchecked) private var phase: Phase
    /// Plaintext sent by the handler during a delivery (see Outbound), and how much of
    /// it there is; nil outside `drain`'s delivery.
    @exclusivity(unchecked) private var gathered: UnsafeMutableRawBufferPointer?
    @exclusivity(unchecked) private var gatheredCount = 0
    /// True while a delivery to the handler runs: sends are gathered.
    @exclusivity(unchecked) private var delivering = false
    /// When the handshake times out (the loop's clock); set at `start`.
    private var handshakeDeadline: UInt64 = .max
    /// Whether the engine keeps its record buffers (see Buffers above).
    @exclusivity(unchecked) private var buffers = Buffers.released
    /// When the peer's last bytes arrived while established (the loop's clock).
    @exclusivity(unchecked) private var lastInbound: UInt64 = 0

    /// Whether the engine keeps its record buffers now (tests).
    var bufferState: Buffers { buffers }

    /// How long a connection keeps its record buffers after the peer's last bytes.
    static let bufferHold: UInt64 = 1_000_000_000

    enum Buffers {
        /// OpenSSL releases them after each use (`SSL_MODE_RELEASE_BUFFERS`), and
        /// the engine holds none now.
        case released
        /// Kept from record to record until the peer has been quiet for `bufferHold`.
        case held
    }
    private let handshakeTimeout: UInt64

    enum Phase {
        /// Handshaking, with the plaintext the application already sent.
        case handshaking(pending: [UInt8])
        case established
        /// Closing, closed or failed: no more plaintext either way.
        case finished
    }

    /// What one read step produced.
    private enum Step {
        case more, stop, peerClosed
        case failed(TLSError)
    }

    init(engine: TLSEngine, handshakeTimeout: Duration) {
        self.engine = engine
        phase = .handshaking(pending: [])
        let (seconds, attoseconds) = handshakeTimeout.components
        self.handshakeTimeout = UInt64(max(0, seconds)) &* 1_000_000_000 &+ UInt64(max(0, attoseconds) / 1_000_000_000)
    }

    func start(_ connection: Connection) {
        handshakeDeadline = connection.loopNow &+ handshakeTimeout
        connection.scheduleTransformDeadline(at: handshakeDeadline)
        do throws(TLSError) {
            try engine.advanceHandshake()  // a client's ClientHello; nothing on a server
        } catch {
            fail(error, on: connection)
            return
        }
        flush(connection)
    }

    func inbound(_ bytes: ReceivedBytes, on connection: Connection) {
        engine.feed(bytes.unsafeBytes)
        drain(connection)
        guard case .established = phase, connection.isOpen else { return }
        lastInbound = connection.loopNow
        if case .released = buffers {
            buffers = .held
            engine.holdBuffers(true)
            connection.scheduleTransformDeadline(at: lastInbound &+ Self.bufferHold)
        }
    }

    func inputClosed(_ connection: Connection) {
        engine.feedEOF()
        if case .finished = phase {
            connection.deliverInputClosed()
            return
        }
        drain(connection)
        // A FIN right after a complete close_notify exchange (or a close this side
        // started) still has to end the connection.
        if connection.isOpen, case .finished = phase { connection.deliverInputClosed() }
    }

    func outbound(_ bytes: UnsafeRawBufferPointer, on connection: Connection) -> Bool {
        switch phase {
        case .handshaking(var pending):
            phase = .finished  // no copy-on-write of `pending` while it grows
            pending.append(contentsOf: bytes)
            let count = pending.count
            phase = .handshaking(pending: pending)
            guard count <= connection.options.maxQueuedBytes else {
                fail(.handshakeFailure(reason: "\(count) bytes written before the handshake completed"), on: connection)
                return false
            }
            return true
        case .established:
            return delivering ? gather(bytes, on: connection) : encrypt(bytes, on: connection)
        case .finished:
            return false
        }
    }

    /// Adds `bytes` to what the handler sent during this delivery; full records are
    /// encrypted as they fill. Sends of a record or more with nothing gathered go
    /// straight through (no copy).
    private func gather(_ bytes: UnsafeRawBufferPointer, on connection: Connection) -> Bool {
        if gatheredCount == 0, bytes.count >= Self.recordSize { return encrypt(bytes, on: connection) }
        let buffer = gathered ?? connection.takeTransformBuffer()
        gathered = buffer
        var offset = 0
        while offset < bytes.count {
            let n = min(bytes.count - offset, buffer.count - gatheredCount)
            UnsafeMutableRawBufferPointer(rebasing: buffer[gatheredCount..<(gatheredCount + n)])
                .copyMemory(from: UnsafeRawBufferPointer(rebasing: bytes[offset..<(offset + n)]))
            gatheredCount += n
            offset += n
            if gatheredCount == buffer.count {
                gatheredCount = 0
                guard encrypt(UnsafeRawBufferPointer(buffer), on: connection) else { return false }
            }
        }
        return true
    }

    /// Encrypts what was gathered (if the connection still takes it) and gives the
    /// buffer back.
    @discardableResult
    private func sealGathered(_ connection: Connection, encrypting: Bool = true) -> Bool {
        guard let buffer = gathered else { return true }
        let count = gatheredCount
        gathered = nil
        gatheredCount = 0
        defer { connection.giveTransformBuffer(buffer) }
        guard encrypting, count > 0 else { return true }
        return encrypt(UnsafeRawBufferPointer(rebasing: buffer[..<count]), on: connection)
    }

    func closing(_ connection: Connection) {
        switch phase {
        case .handshaking, .established:
            sealGathered(connection)  // what the handler sent before closing goes first
            phase = .finished
            engine.close()
            flush(connection)
        case .finished:
            break
        }
    }

    func checkDeadline(_ connection: Connection, now: UInt64) -> UInt64? {
        switch phase {
        case .handshaking: return checkHandshake(connection, now: now)
        case .established: return checkBuffers(now: now)
        case .finished: return nil
        }
    }

    /// Releases the record buffers of a connection whose peer has been quiet for
    /// `bufferHold` (unless they hold part of a record); returns when to look again.
    private func checkBuffers(now: UInt64) -> UInt64? {
        guard case .held = buffers else { return nil }
        let due = lastInbound &+ Self.bufferHold
        guard now >= due else { return due }
        guard engine.bufferedCiphertext == 0, engine.pendingCiphertext == 0 else { return now &+ Self.bufferHold }
        buffers = .released
        engine.holdBuffers(false)
        return nil
    }

    private func checkHandshake(_ connection: Connection, now: UInt64) -> UInt64? {
        guard now >= handshakeDeadline else { return handshakeDeadline }
        engine.expireHandshake(now: engine.handshakeExpiry)
        connection.loop.logger.debug("closing a connection whose TLS handshake timed out",
                                     metadata: ["peer": "\(connection.remoteAddress.map { "\($0)" } ?? "?")"])
        fail(.handshakeTimeout, on: connection)
        return nil
    }

    // MARK: Steps

    /// Reads every plaintext record the fed ciphertext holds, handing each to the
    /// handler, and sends what the engine produced (handshake flights, alerts). What
    /// the handler sends meanwhile is gathered and encrypted at the end (or before a
    /// close_notify): the answers to every record of one receive share records.
    private func drain(_ connection: Connection) {
        delivering = true
        readRecords(connection)
        delivering = false
        sealGathered(connection, encrypting: connection.isOpen)
    }

    private func readRecords(_ connection: Connection) {
        while connection.isOpen {
            let step = connection.withTransformBuffer { buffer -> Step in
                do throws(TLSError) {
                    switch try engine.readPlaintext(into: buffer) {
                    case .bytes(let count):
                        established(connection)
                        guard count > 0, connection.isOpen else { return .more }
                        connection.deliver(UnsafeMutableRawBufferPointer(rebasing: buffer[..<count]))
                        return .more
                    case .needsCiphertext:
                        return .stop
                    case .closed:
                        return .peerClosed
                    }
                } catch {
                    return .failed(error)
                }
            }
            switch step {
            case .more:
                flush(connection)
            case .stop:
                flush(connection)
                established(connection)
                return
            case .peerClosed:
                sealGathered(connection)  // the handler's last answers before close_notify
                phase = .finished
                flush(connection)  // the answering close_notify
                if connection.isOpen { connection.deliverInputClosed() }
                return
            case .failed(let error):
                fail(error, on: connection)
                return
            }
        }
    }

    /// The handshake completed: the handler is told, then the waiting plaintext goes.
    private func established(_ connection: Connection) {
        guard case .handshaking(let pending) = phase, case .established = engine.state else { return }
        phase = .established
        flush(connection)
        if !pending.isEmpty {
            guard pending.withUnsafeBytes({ encrypt($0, on: connection) }) else { return }
        }
        connection.transformEstablished()
    }

    /// Encrypts `bytes` one record's worth at a time, moving each into outbound chunks.
    private func encrypt(_ bytes: UnsafeRawBufferPointer, on connection: Connection) -> Bool {
        var offset = 0
        while offset < bytes.count {
            let end = min(bytes.count, offset + Self.recordSize)
            do throws(TLSError) {
                try engine.writePlaintext(UnsafeRawBufferPointer(rebasing: bytes[offset..<end]))
            } catch {
                fail(error, on: connection)
                return false
            }
            guard flush(connection) else { return false }
            offset = end
        }
        return connection.isOpen
    }

    /// The largest plaintext slice encrypted at once (one TLS record).
    static let recordSize = 16 * 1024

    /// Moves the engine's pending ciphertext into the connection's write queue.
    @discardableResult
    private func flush(_ connection: Connection) -> Bool {
        while engine.pendingCiphertext > 0 {
            let count = min(engine.pendingCiphertext, connection.reservableBytes)
            let taken = connection.sendRaw(reserving: count) { engine.takeCiphertext(into: $0) }
            guard taken else { return false }
        }
        return true
    }

    /// Sends the alert (or, for plaintext HTTP, a 400), then closes with `error`.
    private func fail(_ error: TLSError, on connection: Connection) {
        sealGathered(connection, encrypting: false)
        phase = .finished
        if error == .plaintextHTTP {
            TLSEngine.plaintextHTTPResponse.withUnsafeBytes { _ = connection.sendRaw($0) }
        } else {
            flush(connection)
        }
        connection.loop.logger.debug("TLS connection failed", metadata: ["reason": "\(error)"])
        connection.closeAfterWriting(error: error)
    }
}

/// Stands in for a TLS transform whose engine could not be made: closes the
/// connection with the error as soon as it starts.
final class FailedTLSTransform: ConnectionTransform {
    let error: TLSError
    init(_ error: TLSError) { self.error = error }
    func start(_ connection: Connection) { connection.close(error: error) }
    func inbound(_ bytes: ReceivedBytes, on connection: Connection) {}
    func outbound(_ bytes: UnsafeRawBufferPointer, on connection: Connection) -> Bool { false }
    func inputClosed(_ connection: Connection) { connection.close(error: error) }
    func closing(_ connection: Connection) {}
    func checkDeadline(_ connection: Connection, now: UInt64) -> UInt64? { nil }
}
