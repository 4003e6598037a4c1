import CLiburing
import Glibc

/// A connected stream socket (TCP or Unix) driven by one loop.
///
/// Inbound: one multishot `recv` (single-shot, re-armed after each CQE, where the
/// loop's ``KernelFeatures/receive`` says so) selecting buffers from the loop's
/// provided buffer rings, armed while the connection is open and reading is not paused
/// (`ReceivePhase`); each CQE's bytes go to the handler and the buffer goes back to
/// the ring right after (unless the write queue kept it to send it back).
///
/// Outbound: `send` appends to the `WriteQueue` (a copy into pooled chunks, a
/// `SharedBytes` reference, a received buffer); the loop flushes each queue that
/// changed once per iteration as a single `sendmsg` over up to 64 iovecs (a plain
/// `send` when one entry is queued), so many small writes become one syscall-free
/// submission. One send is in flight at a time (`SendPhase`), which keeps bytes in
/// order. `closeAfterWriting` and `shutdownWriting` drain the queue first
/// (`Phase.draining`).
///
/// Direct descriptor: where the loop has a registered file table, the socket is
/// installed in a slot of it at `start`, and once installed every receive, send and
/// shutdown names the slot (`IOSQE_FIXED_FILE`), so the kernel takes no file
/// reference per SQE. The descriptor `fd` stays open for `getpeername`,
/// `setsockopt` and the like (`DirectDescriptor`).
///
/// Closing: `close()` releases the queue, cancels the fd's operations
/// (`ASYNC_CANCEL_FD | ALL`: the kernel matches them by file, so those that name the
/// slot too), parks their slots, and, only when the last of them (and the install)
/// has completed (`Phase.closing`), clears the table slot and closes the fd
/// (`EventLoop.closeSocket`); then `closed` runs (`Phase.closed`). Every path (peer
/// reset, EOF, error, timeouts, loop shutdown) ends there.
///
/// Threading: loop thread only, except where a method says otherwise.
public final class Connection: @unchecked Sendable, CompletionTarget, IndexedLoopResource, LoopDriven, DeadlineOwner, ReceiveBufferWaiter {
    // Stored properties, in layout order: Swift lays a class out in declaration
    // order, so the 8-byte fields come first, then the inline write queue, then the
    // small ones packed into its tail (an idle connection is this object, ~200 bytes).
    public let loop: EventLoop
    private let sharedOptions: SharedSocketOptions
    /// The handler that receives events (EventMachine face). Set by whoever made the
    /// connection (a listener's `makeHandler`, a connector, a protocol layer taking a
    /// connection over); an application cannot swap a transport's handler. Read on every
    /// receive and send completion: unchecked, like the hot state below.
    @exclusivity(unchecked) public package(set) var handler: (any ConnectionHandler)?
    /// Application state attached to the connection (the library never touches it).
    public var context: AnyObject?
    private var recvUserData: UInt64 = 0
    private var sendUserData: UInt64 = 0
    /// When bytes last arrived (the loop's clock, `MonotonicClock` nanoseconds).
    @exclusivity(unchecked) package internal(set) var lastReceive: UInt64
    @exclusivity(unchecked) var lastSendProgress: UInt64
    private var closeError: (any Error)?
    /// The error the connection is closing (or closed) with: what its handler's
    /// `closed` gets. nil while open, or when it closes cleanly. Loop thread only.
    public var closingError: (any Error)? { closeError }
    /// Where the connection is in the loop's deadline wheel.
    @exclusivity(unchecked) var deadlinePosition = DeadlinePosition.none
    /// A byte transform (TLS) between the socket and the handler, installed by a
    /// protocol layer before `start`; nil for plaintext (one branch on each path).
    private var transform: (any ConnectionTransform)?
    @exclusivity(unchecked) private var queue: WriteQueue<EventLoop>
    // Hot-path state is marked `@exclusivity(unchecked)`: it is touched only on the
    // loop thread and never through overlapping accesses (the debug test suite runs
    // with the checks of every other property on), and the dynamic checks cost ~9% of
    // a small-message echo in profiles.
    @exclusivity(unchecked) private(set) var phase = Phase.open
    @exclusivity(unchecked) private var receive = ReceivePhase.idle
    @exclusivity(unchecked) private var sending = SendPhase.idle
    @exclusivity(unchecked) private var holds: ReadHolds = []
    /// In the loop's flush list for this iteration.
    @exclusivity(unchecked) private var flushScheduled = false
    /// The handler's own deadlines are checked with the connection's (`watchLiveness`).
    private var handlerLiveness = false
    /// The buffer group the current receive selects from.
    @exclusivity(unchecked) private var recvGroup: UInt16 = 0
    /// The socket's slot in the loop's registered file table, if any.
    @exclusivity(unchecked) private var direct = DirectDescriptor.none
    /// Where the connection is in its loop's resource table.
    var resourceIndex: Int32 = -1
    /// The socket. For the protocol layers of this package; an application reads the
    /// addresses instead.
    package var fd: Int32 { queue.fd }
    /// While true the idle timeout does not apply (a protocol layer is busy answering,
    /// so silence from the peer is expected). The send timeout still applies.
    /// Loop thread only.
    public var idleTimeoutSuspended = false {
        didSet {
            loop.assertInLoop()
            guard !idleTimeoutSuspended else { return }
            lastReceive = loop.now
            if isOpen, let idle = options.idleTimeout { loop.scheduleDeadline(self, at: lastReceive &+ idle.nanoseconds) }
        }
    }

    /// The socket and liveness settings (shared with the other connections of its
    /// listener: see `SharedSocketOptions`).
    public var options: SocketOptions { sharedOptions.value }

    /// Where the connection is in its life.
    enum Phase: Equatable {
        /// Reading and writing.
        case open
        /// No more writes accepted; the queue is flushing, then the connection closes
        /// or sends FIN. Reading continues.
        case draining(AfterDrain)
        /// FIN sent (or on its way); reading continues.
        case writeShut
        /// `close()` ran: waiting for the last completion of its operations.
        case closing
        /// The fd is released and `closed` delivered.
        case closed

        /// Open for the application: until `close()`.
        var isOpen: Bool {
            switch self {
            case .open, .draining, .writeShut: true
            case .closing, .closed: false
            }
        }
    }

    /// What follows a drained write queue.
    enum AfterDrain: Equatable { case close, shutdown }

    /// The receive (multishot, or single-shot re-armed after each CQE).
    enum ReceivePhase: Equatable {
        /// Not armed, and wanted: before `start`, or between a final CQE and its re-arm.
        case idle
        /// In flight and wanted.
        case armed
        /// In flight, cancel asked (`pauseReading`): not re-armed when it ends.
        case pausing
        /// Not armed until `resumeReading`.
        case paused
        /// Not armed: it met a dry receive ring at its bound and waits in the loop's
        /// list (`EventLoop.waitForReceiveBuffers`) to be armed again.
        case waitingForBuffers
        /// The peer sent FIN: never armed again.
        case ended

        var inFlight: Bool { self == .armed || self == .pausing }
    }

    /// The one outbound operation at a time.
    enum SendPhase: Equatable {
        case idle
        /// A send (or sendmsg) of the queue's front entries.
        case sending
        /// The SHUT_WR after a drained queue.
        case shuttingDown
    }

    /// Who holds reading paused. Reading runs only while nobody does.
    struct ReadHolds: OptionSet {
        let rawValue: UInt8
        /// The application (`pauseReading`).
        static let application = ReadHolds(rawValue: 1)
        /// The core: the write queue went above its high water mark (a peer that does
        /// not read its replies must not make the server hold what it keeps sending);
        /// released when the queue drains below the low mark.
        static let writeQueue = ReadHolds(rawValue: 2)
    }

    /// The provided receive buffer being delivered to a handler right now. One at a
    /// time per loop, so the loop holds it (`EventLoop.delivery`), not each connection.
    enum Delivery {
        case none
        /// Lent to `owner`'s handler for the duration of `received`.
        case lending(owner: ObjectIdentifier, base: UnsafeRawPointer, count: Int, key: Int32)
        /// The write queue took it (`send(_: ReceivedBytes)`): not recycled on return.
        case keptByWriteQueue
    }

    enum Tag: UInt32 { case recv, send, shutdown, install }

    convenience init(loop: EventLoop, fd: Int32, options: SocketOptions) {
        self.init(loop: loop, fd: fd, options: SharedSocketOptions(options))
    }

    init(loop: EventLoop, fd: Int32, options shared: SharedSocketOptions) {
        self.loop = loop
        sharedOptions = shared
        let options = shared.value
        queue = WriteQueue(memory: loop, fd: fd, highWater: options.writeHighWater, lowWater: options.writeLowWater)
        lastReceive = loop.now
        lastSendProgress = lastReceive
    }

    /// Registers with the loop, installs the socket in the loop's file table (when it
    /// has one, with a free slot), tells the handler, and starts receiving.
    func start() {
        loop.register(self, as: .connection)
        if let slot = loop.installDirectDescriptor(fd, owner: self, tag: Tag.install.rawValue) {
            direct = .installing(slot: slot)
        }
        if let idle = options.idleTimeout { loop.scheduleDeadline(self, at: lastReceive &+ idle.nanoseconds) }
        if let transform { transform.start(self) } else { handler?.connected(self) }
        if isOpen && receive == .idle { armRecv() }
    }

    /// The slot of the loop's registered file table that the socket's operations name,
    /// once installed (nil: they name the descriptor). Loop thread only.
    var directSlot: UInt32? {
        if case .installed(let slot) = direct { return slot }
        return nil
    }

    /// The peer's address, if the socket still knows it.
    public var remoteAddress: SocketAddress? { SocketAddress.peer(of: fd) }
    public var localAddress: SocketAddress? { SocketAddress.local(of: fd) }
    /// True until `close()` (also while draining before a close or after a FIN).
    /// A getter, not a stored copy: another module reading a stored `var` of a class
    /// makes its own runtime exclusivity check (`@exclusivity(unchecked)` does not
    /// cross the module boundary), which costs more than this call.
    public var isOpen: Bool { phase.isOpen }
    /// True from `close()` until the fd is released (and after).
    public var isClosing: Bool { !isOpen }
    /// False while the write queue is above its high water mark.
    public var isWritable: Bool { !queue.isAboveHighWater }
    /// Bytes queued and not yet acknowledged by a send completion.
    public var queuedBytes: Int { queue.queuedBytes }
    /// True while `send` accepts bytes (open, not draining, FIN not sent).
    @inline(__always)
    private var acceptsWrites: Bool { phase == .open }

    // MARK: Receiving

    private func armRecv() {
        receive = .armed
        let group = loop.receiveGroup
        recvGroup = group
        loop.receiveRing(group).armedReceives += 1
        let mode = loop.kernelFeatures.receive
        let fd = fd, direct = direct  // captured as values: a closure capturing `self` retained it
        recvUserData = loop.submit(.recv, target: self, tag: Tag.recv.rawValue) { sqe in
            // Length 0: the selected buffer's size. A single-shot receive (the
            // fallback) ends with its one CQE and is re-armed by the loop's rule.
            switch mode {
            case .multishot: io_uring_prep_recv_multishot(sqe, fd, nil, 0, 0)
            case .singleShot: io_uring_prep_recv(sqe, fd, nil, 0, 0)
            }
            direct.aim(sqe)
            sqe.pointee.flags |= TORUS_IOSQE_BUFFER_SELECT
            sqe.pointee.buf_group = group
        }
    }

    /// Stops receiving (backpressure): the multishot receive is cancelled and not
    /// re-armed; bytes stay in the kernel's socket buffer and TCP flow control slows
    /// the peer. Bytes already completed are still delivered. Loop thread only.
    ///
    /// The connection also pauses reading by itself while its write queue is above
    /// `SocketOptions.writeHighWater` (until it drains below the low mark); the two
    /// are independent: reading resumes when neither holds it.
    public func pauseReading() {
        loop.assertInLoop()
        holds.insert(.application)
        stopReceiving()
    }

    /// Starts receiving again after `pauseReading` (unless the write queue still
    /// holds reading paused). Loop thread only.
    public func resumeReading() {
        loop.assertInLoop()
        holds.remove(.application)
        if holds.isEmpty { startReceiving() }
    }

    /// True while reading is paused by the application or by the write queue.
    public var isReadingPaused: Bool { !holds.isEmpty }

    private func stopReceiving() {
        switch receive {
        case .armed:
            receive = .pausing
            loop.cancel(recvUserData)
        case .idle, .waitingForBuffers:
            receive = .paused  // a waiting receive is then skipped by the loop's retry
        case .pausing, .paused, .ended:
            break
        }
    }

    private func startReceiving() {
        switch receive {
        case .pausing:
            receive = .armed  // still in flight: re-armed when its final CQE arrives
        case .paused:
            if isOpen { armRecv() } else { receive = .idle }
        case .idle, .armed, .waitingForBuffers, .ended:
            break
        }
    }

    /// The loop's retry after a dry ring at its bound (see `waitForReceiveBuffers`).
    func receiveBuffersMayBeBack() {
        guard receive == .waitingForBuffers else { return }  // paused or closed since
        if isOpen { armRecv() } else { receive = .idle }
    }

    private func completeRecv(_ c: Completion, final: Bool) -> Rearm {
        if final {
            loop.receiveRing(recvGroup).armedReceives -= 1
            // Not in flight any more; still wanted unless paused.
            if receive == .armed { receive = .idle } else if receive == .pausing { receive = .paused }
        }
        // The group this receive was armed on (a handler may re-arm on a newer one).
        if c.hasBuffer {
            let key = EventLoop.receiveKey(group: recvGroup, bid: c.bufferID)
            if isOpen && c.result > 0 {
                lastReceive = loop.now
                let bytes = loop.takeReceivedBuffer(key, length: Int(c.result), fd: fd)
                if let transform {
                    // Ciphertext: the transform copies it in and delivers plaintext.
                    transform.inbound(ReceivedBytes(owned: bytes), on: self)
                    loop.returnReceivedBuffer(key)
                } else {
                    // Not from input: c.result > 0, so the received buffer is a non-empty slice of its ring.
                    loop.delivery = .lending(owner: ObjectIdentifier(self), base: UnsafeRawPointer(bytes.baseAddress.unsafelyUnwrapped),
                                             count: bytes.count, key: key)
                    handler?.received(ReceivedBytes(owned: bytes), from: self)
                    if case .keptByWriteQueue = loop.delivery {} else { loop.returnReceivedBuffer(key) }
                    loop.delivery = .none
                }
            } else {
                loop.recycleUnusedReceivedBuffer(key)
            }
        }
        guard isOpen else {
            if final { finishCloseIfIdle() }
            return .done
        }
        if c.result == 0 {
            receive = .ended
            if let transform { transform.inputClosed(self) } else { deliverInputClosed() }
            return .done
        }
        if c.result < 0 {
            switch -c.result {
            case ENOBUFS:
                // The ring ran dry; nothing was lost (the bytes wait in the socket).
                // At the rings' bound the receive waits rather than spin.
                if !loop.receiveBuffersRanDry(group: recvGroup), final, receive == .idle {
                    receive = .waitingForBuffers
                    loop.waitForReceiveBuffers(self)
                    return .done
                }
            case ECANCELED, EINTR, EAGAIN:
                break  // nothing was received: re-armed below
            default:
                failed(IOError(result: c.result, "recv"))
                return .done
            }
        }
        // Re-armed when the final CQE came while reading is still wanted.
        return final && isOpen && receive == .idle ? .rearm : .done
    }

    // MARK: Sending

    /// Queues a copy of `bytes`. Returns false when the connection is closing or the
    /// outbound pool is exhausted (the connection is then closed with `ENOBUFS`).
    /// Loop thread only.
    @discardableResult
    public func send(_ bytes: UnsafeRawBufferPointer) -> Bool {
        if let transform {
            loop.assertInLoop()
            guard acceptsWrites else { return false }
            return bytes.count == 0 || transform.outbound(bytes, on: self)
        }
        return sendRaw(bytes)
    }

    /// Queues a copy of `bytes` as they are, past any transform (its output).
    @inline(__always)
    @discardableResult
    package func sendRaw(_ bytes: UnsafeRawBufferPointer) -> Bool {
        loop.assertInLoop()
        guard acceptsWrites else { return false }
        guard bytes.count > 0 else { return true }
        let before = queue.queuedBytes
        guard queue.append(copying: bytes) else {
            outboundExhausted()
            return false
        }
        return enqueued(wasEmpty: before == 0)
    }

    /// The largest `send(reserving:)` that writes in place (the outbound chunk size).
    @inlinable public var reservableBytes: Int { loop.writeChunkSize }

    /// Queues bytes that `body` writes straight into the write queue's memory (an
    /// encoder's output, no intermediate copy). `body` gets at least `maxCount`
    /// contiguous bytes, valid only during the call, and returns how many it wrote
    /// (at most `maxCount`). Up to the outbound pool's chunk size this writes into the
    /// queue's tail chunk (or a fresh one); beyond it, through a temporary copy.
    /// Returns false, without calling `body`, when the connection is closing, and
    /// false when the outbound pool is exhausted (the connection is then closed with
    /// `ENOBUFS`). `body` should only write: if it closes the connection, what it
    /// wrote is dropped (its chunk back in the pool) and the call returns false.
    /// Loop thread only.
    ///
    /// Inlined into the caller with its `body` for the common case, room in the tail
    /// chunk of a plaintext connection (an encoder's small frames): the call then
    /// costs two plain calls here instead of a closure call through the write path.
    @inlinable
    @discardableResult
    public func send(reserving maxCount: Int, _ body: (UnsafeMutableRawBufferPointer) -> Int) -> Bool {
        if let space = tailReservation(maxCount) {
            return commitReservation(body(space), of: maxCount)
        }
        return sendReservingOutOfLine(maxCount, body)
    }

    /// The first half of `send(reserving:)`'s inlined case: `maxCount` bytes of the
    /// tail chunk's free space, when the connection accepts writes, has no transform,
    /// and the tail chunk has that much room; nil otherwise (nothing changed).
    @usableFromInline
    func tailReservation(_ maxCount: Int) -> UnsafeMutableRawBufferPointer? {
        loop.assertInLoop()
        guard transform == nil, acceptsWrites, maxCount >= 0, let tail = queue.tailSpace(), tail.count >= maxCount else {
            return nil
        }
        return UnsafeMutableRawBufferPointer(start: tail.baseAddress, count: maxCount)
    }

    /// The second half: queues the `n` bytes `body` wrote into the tail reservation.
    @usableFromInline
    func commitReservation(_ n: Int, of maxCount: Int) -> Bool {
        // Not from input: `body` is the application's or an encoder's; writing past what it
        // reserved is API misuse, whatever a peer sent.
        precondition(n >= 0 && n <= maxCount, "send(reserving:) wrote more than it reserved")
        // A body that closed the connection has already had the queue released.
        guard isOpen else { return false }
        guard n > 0 else { return true }
        let before = queue.queuedBytes
        queue.extendTail(by: n)
        return enqueued(wasEmpty: before == 0)
    }

    /// `send(reserving:)` when the tail chunk has no room or a transform is installed.
    @usableFromInline
    func sendReservingOutOfLine(_ maxCount: Int, _ body: (UnsafeMutableRawBufferPointer) -> Int) -> Bool {
        if transform != nil {
            loop.assertInLoop()
            guard acceptsWrites else { return false }
            return withUnsafeTemporaryAllocation(byteCount: maxCount, alignment: 8) { tmp in
                let n = body(tmp)
                // Not from input: `body` is the application's or an encoder's; writing past what it
                // reserved is API misuse, whatever a peer sent.
                precondition(n >= 0 && n <= maxCount, "send(reserving:) wrote more than it reserved")
                return send(UnsafeRawBufferPointer(rebasing: tmp[..<n]))
            }
        }
        return sendRaw(reserving: maxCount, body)
    }

    /// `send(reserving:_:)` past any transform (its output).
    @discardableResult
    package func sendRaw(reserving maxCount: Int, _ body: (UnsafeMutableRawBufferPointer) -> Int) -> Bool {
        loop.assertInLoop()
        guard acceptsWrites else { return false }
        guard maxCount <= loop.writeChunkSize else {
            return withUnsafeTemporaryAllocation(byteCount: maxCount, alignment: 8) { tmp in
                let n = body(tmp)
                // Not from input: as in send(reserving:), API misuse by `body`.
                precondition(n >= 0 && n <= maxCount, "send(reserving:) wrote more than it reserved")
                return sendRaw(UnsafeRawBufferPointer(rebasing: tmp[..<n]))
            }
        }
        if let tail = queue.tailSpace(), tail.count >= maxCount {
            return commitReservation(body(UnsafeMutableRawBufferPointer(start: tail.baseAddress, count: maxCount)),
                                     of: maxCount)
        }
        let before = queue.queuedBytes
        guard let chunk = loop.takeWriteChunk(for: fd) else {
            outboundExhausted()
            return false
        }
        let base = loop.writeChunkBase(chunk)
        let n = body(UnsafeMutableRawBufferPointer(start: base, count: maxCount))
        // Not from input: as in send(reserving:), API misuse by `body`.
        precondition(n >= 0 && n <= maxCount, "send(reserving:) wrote more than it reserved")
        guard n > 0, isOpen else {
            loop.giveWriteChunk(chunk)
            return isOpen
        }
        queue.append(chunk: chunk, base: base, count: n)
        return enqueued(wasEmpty: before == 0)
    }

    /// Sends received bytes back out. When `bytes` is the buffer being delivered
    /// right now (an echo, a proxy), the write queue takes the provided buffer itself
    /// instead of copying it, and returns it to the ring once the kernel has sent it —
    /// unless more than half the ring is already held that way, then it copies.
    /// Loop thread only.
    @discardableResult
    public func send(_ bytes: ReceivedBytes) -> Bool {
        loop.assertInLoop()
        let raw = bytes.unsafeBytes
        guard case .lending(let owner, let current, let count, let key) = loop.delivery, owner == ObjectIdentifier(self),
              let base = raw.baseAddress, base == current, raw.count > 0, raw.count <= count,
              acceptsWrites, loop.keepReceivedBuffer(key) else {
            return send(raw)
        }
        loop.delivery = .keptByWriteQueue
        let before = queue.queuedBytes
        queue.append(received: key, base: base, count: raw.count)
        return enqueued(wasEmpty: before == 0)
    }

    /// Loop thread only.
    @discardableResult
    public func send(_ bytes: [UInt8]) -> Bool {
        bytes.withUnsafeBytes { send($0) }
    }

    /// Loop thread only.
    @discardableResult
    public func send(_ string: String) -> Bool {
        var s = string
        return s.withUTF8 { send(UnsafeRawBufferPointer($0)) }
    }

    /// Queues shared bytes without copying them (broadcast): the queue holds a
    /// reference until the kernel has sent them. On a connection with a transform
    /// (TLS) the bytes are encrypted for this connection instead (a copy per
    /// connection: records cannot be shared). Loop thread only.
    @discardableResult
    public func send(_ shared: SharedBytes) -> Bool {
        loop.assertInLoop()
        guard acceptsWrites else { return false }
        guard shared.count > 0 else { return true }
        if let transform { return shared.withUnsafeBytes { transform.outbound($0, on: self) } }
        let before = queue.queuedBytes
        queue.append(shared: shared)
        return enqueued(wasEmpty: before == 0)
    }

    func appendChunk(_ chunk: Int32, base: UnsafeMutableRawPointer, count: Int) -> Bool {
        loop.assertInLoop()
        guard acceptsWrites else {
            loop.giveWriteChunk(chunk)
            return false
        }
        if let transform {
            // Encrypted out of the chunk, which goes straight back to its pool.
            let ok = transform.outbound(UnsafeRawBufferPointer(start: base, count: count), on: self)
            loop.giveWriteChunk(chunk)
            return ok
        }
        let before = queue.queuedBytes
        queue.append(chunk: chunk, base: base, count: count)
        return enqueued(wasEmpty: before == 0)
    }

    /// A receive or send failed: the connection closes with the error. A peer that
    /// stopped answering (TCP keepalive or user timeout: `ETIMEDOUT`) is worth a log
    /// line; a reset is ordinary and logged only at debug level.
    private func failed(_ error: IOError) {
        if error.errno == ETIMEDOUT {
            loop.logger.info("closing a connection whose peer stopped answering",
                             metadata: ["fd": "\(fd)", "reason": "keepalive or user timeout: \(error)"])
        } else {
            loop.logger.debug("connection failed", metadata: ["fd": "\(fd)", "reason": "\(error)"])
        }
        close(error: error)
    }

    private func outboundExhausted() {
        loop.logger.warning("outbound pool exhausted: closing the connection",
                            metadata: ["fd": "\(fd)", "queued": "\(queue.queuedBytes)"])
        close(error: IOError(errno: ENOBUFS, "send: outbound pool exhausted"))
    }

    /// After every append: the send timeout's clock, the flush, the read hold above
    /// the high water mark and the hard cap. False when the cap closed the connection.
    @inline(__always)
    @discardableResult
    private func enqueued(wasEmpty: Bool) -> Bool {
        if wasEmpty { sendStarted() }
        scheduleFlush()
        if queue.isAboveHighWater {
            return queueGrewPastHighWater()
        }
        return true
    }

    /// The queue was empty: the send timeout's clock starts (and the loop checks it).
    @inline(__always)
    private func sendStarted() {
        lastSendProgress = loop.now
        if let send = sharedOptions.sendTimeoutNanoseconds {
            loop.scheduleDeadline(self, at: lastSendProgress &+ send)
        }
    }

    @inline(never)
    private func queueGrewPastHighWater() -> Bool {
        if queue.queuedBytes > options.maxQueuedBytes {
            loop.logger.warning("closing a connection whose write queue exceeded its limit",
                                metadata: ["fd": "\(fd)", "peer": "\(remoteAddress.map { "\($0)" } ?? "?")",
                                           "queued": "\(queue.queuedBytes)", "limit": "\(options.maxQueuedBytes)"])
            loop.ledger.queueLimitExceeded()
            close(error: QueueLimitError(queued: queue.queuedBytes, limit: options.maxQueuedBytes))
            return false
        }
        if !holds.contains(.writeQueue) {
            holds.insert(.writeQueue)
            stopReceiving()
        }
        return true
    }

    @inline(__always)
    private func scheduleFlush() {
        if !flushScheduled {
            flushScheduled = true
            loop.scheduleFlush(self)
        }
    }

    /// Submits one send for the front of the queue (called by the loop once per
    /// iteration for each connection that queued bytes, and after each send).
    func flushQueuedWrites() {
        flushScheduled = false
        guard isOpen, sending == .idle else { return }
        switch queue.gather() {
        case .nothing:
            finishWritingIfDrained()
        case .single(let base, let count):
            // One entry (a lone reply, an echo): a plain `send` skips the kernel's copy
            // and import of the msghdr and iovec.
            sending = .sending
            // The SQE's closure captures values, not `self`: capturing `self` cost an
            // atomic retain and release of the connection on every send.
            let fd = fd, direct = direct
            sendUserData = loop.submit(.send, target: self, tag: Tag.send.rawValue) { sqe in
                io_uring_prep_send(sqe, fd, base, count, Int32(MSG_NOSIGNAL))
                direct.aim(sqe)
            }
        case .message(let msg):
            sending = .sending
            let fd = fd, direct = direct
            sendUserData = loop.submit(.send, target: self, tag: Tag.send.rawValue) { sqe in
                io_uring_prep_sendmsg(sqe, fd, msg, UInt32(MSG_NOSIGNAL))
                direct.aim(sqe)
            }
        }
    }

    private func completeSend(_ c: Completion) -> Rearm {
        sending = .idle
        guard isOpen else {
            // Closing: the kernel is done with every entry; drop them all.
            _ = queue.sendCompleted(sent: 0)
            queue.releaseAll()
            finishCloseIfIdle()
            return .done
        }
        guard c.result >= 0 else {
            _ = queue.sendCompleted(sent: 0)
            // Interrupted or would block: nothing was sent; the same bytes go again.
            if c.result == -EINTR || c.result == -EAGAIN { return .rearm }
            failed(IOError(result: c.result, "send"))
            return .done
        }
        if c.result > 0 { lastSendProgress = loop.now }
        if queue.sendCompleted(sent: Int(c.result)) {
            if holds.contains(.writeQueue) {
                holds.remove(.writeQueue)
                if holds.isEmpty { startReceiving() }
            }
            handler?.writable(self)
            guard isOpen else { return .done }
        }
        // Still wanted: the rest of the queue (or the drain's close or FIN). Nothing is
        // when the queue drained on an open connection (a reply sent whole): bytes
        // queued later schedule their own flush.
        if case .open = phase, queue.isEmpty { return .done }
        return .rearm
    }

    private func finishWritingIfDrained() {
        guard queue.isEmpty, sending == .idle else { return }
        switch phase {
        case .draining(.close):
            close()
        case .draining(.shutdown):
            phase = .writeShut
            sending = .shuttingDown
            loop.submit(.shutdown, target: self, tag: Tag.shutdown.rawValue) { sqe in
                io_uring_prep_shutdown(sqe, fd, Int32(SHUT_WR))
                direct.aim(sqe)
            }
        case .open, .writeShut, .closing, .closed:
            break
        }
    }

    /// Closes once every queued byte has been sent (EventMachine's
    /// `close_connection_after_writing`). Loop thread only.
    public func closeAfterWriting() {
        loop.assertInLoop()
        switch phase {
        case .open, .draining(.shutdown):
            if phase == .open { transform?.closing(self) }  // close_notify, while writes are accepted
            guard isOpen else { return }
            phase = .draining(.close)
            if queue.isEmpty && sending == .idle { close() } else { scheduleFlush() }
        case .writeShut:
            // FIN is sent or on its way; close waits for the shutdown's completion.
            close()
        case .draining(.close), .closing, .closed:
            break
        }
    }

    /// Half-close: sends FIN after the queued bytes; receiving continues. Loop thread only.
    public func shutdownWriting() {
        loop.assertInLoop()
        guard phase == .open else { return }
        transform?.closing(self)
        guard phase == .open else { return }
        phase = .draining(.shutdown)
        scheduleFlush()
    }

    // MARK: Closing

    /// Closes now: queued bytes are dropped, in-flight operations cancelled, the fd
    /// closed after their last completion, then `closed` runs. Idempotent. Loop thread only.
    public func close(error: (any Error)? = nil) {
        loop.assertInLoop()
        guard isOpen else { return }
        phase = .closing
        closeError = error ?? closeError
        queue.releaseAll()
        loop.cancelDeadline(self)
        let recvInFlight = receive.inFlight
        let sendInFlight = sending == .sending
        if recvInFlight || sending != .idle {
            loop.cancelAll(fd: fd, abandoning: recvInFlight ? recvUserData : nil, sendInFlight ? sendUserData : nil)
        } else {
            finishCloseIfIdle()
        }
    }

    /// Aborts the connection: the peer gets an RST instead of a FIN (`SO_LINGER` 0).
    /// Loop thread only.
    public func reset() {
        loop.assertInLoop()
        guard isOpen else { return }
        var linger = Glibc.linger(l_onoff: 1, l_linger: 0)
        setsockopt(fd, SOL_SOCKET, SO_LINGER, &linger, socklen_t(MemoryLayout<Glibc.linger>.size))
        close(error: IOError(errno: ECONNRESET, "reset by application"))
    }

    private func finishCloseIfIdle() {
        guard phase == .closing, !receive.inFlight, sending == .idle, !direct.isInstalling else { return }
        phase = .closed
        queue.releaseAll()
        loop.closeSocket(fd, slot: direct.slot)
        direct = .none
        loop.unregister(self, as: .connection)
        let h = handler
        handler = nil
        h?.closed(self, error: closeError)
    }

    func loopIsStopping() { close(error: LoopStoppedError()) }

    // MARK: Completions

    func complete(_ completion: Completion, tag: UInt32, final: Bool, loop: EventLoop) -> Rearm {
        switch Tag(rawValue: tag) {
        case .recv: return completeRecv(completion, final: final)
        case .send: return completeSend(completion)
        case .shutdown:
            sending = .idle
            if !isOpen { finishCloseIfIdle() }
            return .done
        case .install:
            guard case .installing(let slot) = direct else { return .done }
            direct = loop.directDescriptorInstalled(slot, result: completion.result) ? .installed(slot: slot) : .none
            if !isOpen { finishCloseIfIdle() }
            return .done
        case nil: return .done
        }
    }

    func rearm(tag: UInt32, loop: EventLoop) {
        switch Tag(rawValue: tag) {
        case .recv: armRecv()
        case .send: flushQueuedWrites()
        case .shutdown, .install, nil: break
        }
    }

    /// Asks the loop to call the handler's `checkLiveness` at the deadlines it returns
    /// (the first time within `EventLoop.deadlineResolution`), until the connection
    /// closes: a protocol layer's own deadlines (a WebSocket's ping and pong) kept in
    /// the loop's deadline wheel with the connection's, so an idle connection has no
    /// timer and no kernel timeout in flight. Loop thread only.
    ///
    /// - Parameter deadline: when the handler wants its next check
    ///   (``MonotonicClock`` nanoseconds); nil: within the resolution. A deadline
    ///   later than one already scheduled changes nothing (the check that comes first
    ///   asks the handler again).
    public func watchLiveness(by deadline: UInt64? = nil) {
        loop.assertInLoop()
        guard isOpen else { return }
        handlerLiveness = true
        // Only ever moves the check earlier. A nil deadline asks for a check soon even
        // when one is already scheduled (a handler that replaced another after an
        // upgrade must not wait for the deadline its predecessor asked for).
        loop.scheduleDeadline(self, at: deadline ?? loop.now)
    }

    /// Called by the loop when the earliest deadline this connection gave is due:
    /// closes on an idle or send timeout, lets the handler act on its own deadlines,
    /// and returns the next deadline of them all (nil: none, or closed).
    func checkDeadlines(now: UInt64) -> UInt64? {
        guard isOpen else { return nil }
        var next = UInt64.max
        let options = sharedOptions.value
        if let idle = options.idleTimeout, !idleTimeoutSuspended {
            let deadline = lastReceive &+ idle.nanoseconds
            guard now < deadline else {
                loop.logger.debug("closing an idle connection",
                                  metadata: ["fd": "\(fd)", "peer": "\(remoteAddress.map { "\($0)" } ?? "?")", "reason": "idle timeout"])
                close(error: TimeoutError("idle"))
                return nil
            }
            next = deadline
        }
        if let send = sharedOptions.sendTimeoutNanoseconds, queue.queuedBytes > 0 {
            let deadline = lastSendProgress &+ send
            guard now < deadline else {
                loop.logger.info("closing a connection whose peer stopped reading",
                                 metadata: ["fd": "\(fd)", "peer": "\(remoteAddress.map { "\($0)" } ?? "?")",
                                            "reason": "send timeout", "queued": "\(queue.queuedBytes)"])
                close(error: TimeoutError("send"))
                return nil
            }
            next = min(next, deadline)
        }
        if handlerLiveness, let handler, let deadline = handler.checkLiveness(self, now: now) {
            next = min(next, deadline)
        }
        if let transform, isOpen, let deadline = transform.checkDeadline(self, now: now) {
            next = min(next, deadline)
        }
        // The handler may have closed the connection.
        return isOpen && next != .max ? next : nil
    }
}

/// The connection's write queue held more than `SocketOptions.maxQueuedBytes` (a peer
/// that does not read what it is sent): the connection was closed.
public struct QueueLimitError: Error, Sendable, CustomStringConvertible {
    /// Bytes queued when the limit was crossed, and the limit.
    public let queued: Int
    public let limit: Int
    public init(queued: Int, limit: Int) {
        self.queued = queued
        self.limit = limit
    }
    public var description: String { "write queue limit exceeded: \(queued) bytes queued, limit \(limit)" }
}

/// The loop stopped while the connection was open.
public struct LoopStoppedError: Error, Sendable, CustomStringConvertible {
    public init() {}
    public var description: String { "event loop stopped" }
}

// MARK: The transform seam (for protocol layers: TorusTLS)

extension Connection {
    /// Puts `transform` between the socket and the handler: received bytes go to it
    /// instead of the handler, every `send` variant goes through it, a graceful close
    /// and the peer's FIN go to it first, and its deadline joins the connection's.
    /// Before `start` (in a listener's `makeHandler`, a connector's), loop thread only.
    package func install(_ transform: any ConnectionTransform) {
        loop.assertInLoop()
        // Not from input: API misuse (a transform installed twice, or after close).
        precondition(self.transform == nil && phase == .open, "install(_:) twice or after close")
        self.transform = transform
    }

    /// The transform is ready for application bytes (a TLS handshake completed): the
    /// handler's `connected` runs now.
    package func transformEstablished() {
        loop.assertInLoop()
        if isOpen { handler?.connected(self) }
    }

    /// Hands the transform's output to the handler, borrowed for the call.
    package func deliver(_ bytes: UnsafeMutableRawBufferPointer) {
        handler?.received(ReceivedBytes(owned: bytes), from: self)
    }

    /// The input ended (FIN, or the transform's own end such as close_notify): the
    /// handler's `inputClosed`, or a close without a handler.
    package func deliverInputClosed() {
        if let handler { handler.inputClosed(self) } else { close() }
    }

    /// Closes after the queued bytes (an alert), reporting `error` to `closed`.
    package func closeAfterWriting(error: any Error) {
        loop.assertInLoop()
        guard isOpen else { return }
        closeError = error
        closeAfterWriting()
    }

    /// Asks the loop to run `checkDeadlines` (and the transform's) by `deadline`.
    package func scheduleTransformDeadline(at deadline: UInt64) {
        loop.assertInLoop()
        if isOpen { loop.scheduleDeadline(self, at: deadline) }
    }

    /// The installed transform, if any.
    package var installedTransform: (any ConnectionTransform)? { transform }

    /// The loop's clock (`MonotonicClock` nanoseconds) as of this iteration.
    package var loopNow: UInt64 { loop.now }

    /// Takes a buffer of the loop's transform pool (ledger pool `.tlsPlaintext`) until
    /// `giveTransformBuffer`: for a transform that gathers the handler's output while
    /// a delivery runs (given back before the delivery's caller returns).
    package func takeTransformBuffer() -> UnsafeMutableRawBufferPointer {
        loop.assertInLoop()
        return loop.transformBuffers.take(for: fd)
    }

    package func giveTransformBuffer(_ buffer: UnsafeMutableRawBufferPointer) {
        loop.assertInLoop()
        loop.transformBuffers.give(buffer)
    }

    /// Lends a buffer of the loop's transform pool (ledger pool `.tlsPlaintext`) to
    /// `body`, taken back when it returns.
    package func withTransformBuffer<R>(_ body: (UnsafeMutableRawBufferPointer) -> R) -> R {
        loop.assertInLoop()
        let pool = loop.transformBuffers
        let buffer = pool.take(for: fd)
        defer { pool.give(buffer) }
        return body(buffer)
    }
}

extension Connection {
    /// Queues a pooled chunk without copying it: the write queue takes ownership and
    /// returns the chunk to the pool once the kernel has sent it. Loop thread only.
    @discardableResult
    public func send(_ buffer: consuming PooledBuffer) -> Bool {
        let index = buffer.index
        let base = buffer.base
        let count = buffer.count
        _ = consume buffer
        guard isOpen, count > 0 else {
            loop.giveWriteChunk(index)
            return count == 0 && isOpen
        }
        return appendChunk(index, base: base, count: count)
    }
}
