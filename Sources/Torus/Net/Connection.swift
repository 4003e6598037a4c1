import CLiburing
import Glibc

/// A connected stream socket (TCP or Unix) driven by one loop.
///
/// Inbound: one multishot `recv` selecting buffers from the loop's provided buffer
/// ring, armed while the connection is open and reading is not paused; each CQE's
/// bytes go to the handler and the buffer goes back to the ring right after.
///
/// Outbound: `send` copies bytes into pooled chunks at the tail of the write queue
/// (or appends a `SharedBytes` reference without copying); the loop flushes each
/// dirty queue once per iteration as a single `sendmsg` over up to 64 iovecs (a plain
/// `send` when one entry is queued), so many small writes become one syscall-free
/// submission. One send is in flight at a time, which keeps bytes in order.
///
/// Closing: `close()` releases the queue, cancels the fd's operations
/// (`ASYNC_CANCEL_FD | ALL`), parks their slots, and closes the fd only when the last
/// of them has completed; then `closed` runs. Every path (peer reset, EOF, error,
/// timeouts, loop shutdown) ends there.
///
/// Threading: loop thread only, except where a method says otherwise.
public final class Connection: @unchecked Sendable, CompletionTarget, LoopResource {
    public let loop: EventLoop
    public let fd: Int32
    public let options: SocketOptions
    /// The handler that receives events (EventMachine face).
    public var handler: (any ConnectionHandler)?
    /// Application state attached to the connection (the library never touches it).
    public var context: AnyObject?

    enum State { case open, closing, closed }
    @exclusivity(unchecked) private(set) var state = State.open

    // Receiving.
    private var recvUserData: UInt64 = 0
    @exclusivity(unchecked) private var recvArmed = false
    /// The buffer group the current receive selects from.
    @exclusivity(unchecked) private var recvGroup: UInt16 = 0
    @exclusivity(unchecked) private var readPaused = false
    @exclusivity(unchecked) private var inputEnded = false

    // Sending.
    struct Entry {
        var base: UnsafeRawPointer
        var start: Int
        var end: Int
        var chunk: Int32
        var shared: SharedBytes?
        var lent = false
        /// A provided receive buffer sent as is (group << 16 | bid), or -1.
        var received: Int32 = -1
    }
    /// The provided buffer being delivered to the handler right now.
    @exclusivity(unchecked) private var delivering: (base: UnsafeRawPointer, count: Int, key: Int32)?
    @exclusivity(unchecked) private var deliveryRetained = false
    @exclusivity(unchecked) private var queue = RingBuffer<Entry>(capacity: 8)
    /// Bytes queued and not yet acknowledged by a send completion.
    @exclusivity(unchecked) public private(set) var queuedBytes = 0
    private var sendUserData: UInt64 = 0
    @exclusivity(unchecked) private var sendInFlight = false
    @exclusivity(unchecked) private var entriesInFlight = 0
    private static let maxIOV = 64
    private let iov: UnsafeMutablePointer<iovec>
    private let msg: UnsafeMutablePointer<msghdr>
    @exclusivity(unchecked) var dirty = false
    @exclusivity(unchecked) private var closeWhenFlushed = false
    @exclusivity(unchecked) private var shutdownWhenFlushed = false
    @exclusivity(unchecked) private var shutdownInFlight = false
    @exclusivity(unchecked) private var aboveHighWater = false

    // Hot-path state is marked `@exclusivity(unchecked)`: it is touched only on the
    // loop thread and never through overlapping accesses (the debug test suite runs
    // with the checks of every other property on), and the dynamic checks cost ~9% of
    // a small-message echo in profiles.

    // Liveness.
    /// While true the idle timeout does not apply (a protocol layer is busy answering,
    /// so silence from the peer is expected). The send timeout still applies.
    public var idleTimeoutSuspended = false {
        didSet { if !idleTimeoutSuspended { lastReceive = loop.now } }
    }
    @exclusivity(unchecked) var lastReceive: UInt64
    @exclusivity(unchecked) var lastSendProgress: UInt64
    private var closeError: (any Error)?

    enum Tag: UInt32 { case recv, send, shutdown }

    init(loop: EventLoop, fd: Int32, options: SocketOptions) {
        self.loop = loop
        self.fd = fd
        self.options = options
        iov = .allocate(capacity: Self.maxIOV)
        msg = .allocate(capacity: 1)
        msg.initialize(to: msghdr())
        msg.pointee.msg_iov = iov
        lastReceive = loop.now
        lastSendProgress = lastReceive
    }

    deinit {
        iov.deallocate()
        msg.deallocate()
    }

    /// Registers with the loop, tells the handler, and starts receiving.
    func start() {
        loop.ledger.connectionOpened()
        loop.resources[ObjectIdentifier(self)] = self
        if options.idleTimeout != nil || options.sendTimeout != nil { loop.watch(self) }
        handler?.connected(self)
        if state == .open && !readPaused { armRecv() }
    }

    /// The peer's address, if the socket still knows it.
    public var remoteAddress: SocketAddress? { SocketAddress.peer(of: fd) }
    public var localAddress: SocketAddress? { SocketAddress.local(of: fd) }
    public var isOpen: Bool { state == .open }
    /// True from `close()` until the fd is released.
    public var isClosing: Bool { state != .open }
    /// False while the write queue is above its high water mark.
    public var isWritable: Bool { !aboveHighWater }

    // MARK: Receiving

    private func armRecv() {
        recvArmed = true
        let group = loop.receiveBuffers.groupID
        recvGroup = group
        recvUserData = loop.submit(.recv, target: self, tag: Tag.recv.rawValue) { sqe in
            io_uring_prep_recv_multishot(sqe, fd, nil, 0, 0)
            sqe.pointee.flags |= TORUS_IOSQE_BUFFER_SELECT
            sqe.pointee.buf_group = group
        }
    }

    /// Stops receiving (backpressure): the multishot receive is cancelled and not
    /// re-armed; bytes stay in the kernel's socket buffer and TCP flow control slows
    /// the peer. Bytes already completed are still delivered.
    public func pauseReading() {
        guard !readPaused else { return }
        readPaused = true
        if recvArmed { loop.cancel(recvUserData) }
    }

    /// Starts receiving again after `pauseReading`.
    public func resumeReading() {
        guard readPaused else { return }
        readPaused = false
        if state == .open && !recvArmed && !inputEnded { armRecv() }
    }

    private func completeRecv(_ c: Completion, final: Bool) {
        if final { recvArmed = false }
        // The group this receive was armed on (a handler may re-arm on a newer one).
        let group = recvGroup
        if c.hasBuffer {
            let bid = c.bufferID
            let key = Int32(group) << 16 | Int32(bid)
            let ring = loop.receiveRing(group)
            var retained = false
            if state == .open && c.result > 0 {
                lastReceive = loop.now
                let ledger = loop.ledger
                ledger.move(.received, from: .pool, to: .application, key: Int(key), holder: BufferHolder("recv on fd", Int(fd)))
                let bytes = ring.bytes(bid, length: Int(c.result))
                delivering = (UnsafeRawPointer(bytes.baseAddress.unsafelyUnwrapped), bytes.count, key)
                deliveryRetained = false
                handler?.received(ReceivedBytes(owned: bytes), from: self)
                delivering = nil
                retained = deliveryRetained
                if !retained {
                    ledger.move(.received, from: .application, to: .pool, key: Int(key), holder: .none)
                }
            }
            if !retained { ring.recycle(bid) }
        }
        if state != .open {
            if final { finishCloseIfIdle() }
            return
        }
        if c.result == 0 {
            inputEnded = true
            if let handler { handler.inputClosed(self) } else { close() }
            return
        }
        if c.result < 0 {
            switch -c.result {
            case ENOBUFS:
                // The ring ran dry; nothing was lost (the bytes wait in the socket).
                loop.ledger.noBuffers()
                loop.growReceiveBuffers()
            case ECANCELED:
                break
            default:
                close(error: IOError(result: c.result, "recv"))
                return
            }
        }
        if final && state == .open && !readPaused && !inputEnded { armRecv() }
    }

    // MARK: Sending

    /// Queues a copy of `bytes`. Returns false when the connection is closing or the
    /// outbound pool is exhausted (the connection is then closed with `ENOBUFS`).
    @discardableResult
    public func send(_ bytes: UnsafeRawBufferPointer) -> Bool {
        guard state == .open, !closeWhenFlushed, !shutdownWhenFlushed else { return false }
        guard bytes.count > 0, var src = bytes.baseAddress else { return true }
        var remaining = bytes.count
        let pool = loop.outbound
        let chunkSize = pool.chunkSize
        if queue.count > 0 {
            let last = queue.count - 1
            let end = queue[last].end
            if queue[last].chunk >= 0 && end < chunkSize {
                let n = Swift.min(remaining, chunkSize - end)
                UnsafeMutableRawPointer(mutating: queue[last].base + end).copyMemory(from: src, byteCount: n)
                queue[last].end = end + n
                src += n
                remaining -= n
            }
        }
        while remaining > 0 {
            guard let chunk = pool.take(holder: BufferHolder("write queue of fd", Int(fd))) else {
                close(error: IOError(errno: ENOBUFS, "send: outbound pool exhausted"))
                return false
            }
            let base = pool.base(chunk)
            let n = Swift.min(remaining, chunkSize)
            base.copyMemory(from: src, byteCount: n)
            queue.append(Entry(base: UnsafeRawPointer(base), start: 0, end: n, chunk: chunk, shared: nil))
            src += n
            remaining -= n
        }
        enqueued(bytes.count)
        return true
    }

    /// The largest `send(reserving:)` that writes in place (the outbound chunk size).
    public var reservableBytes: Int { loop.outbound.chunkSize }

    /// Queues bytes that `body` writes straight into the write queue's memory (an
    /// encoder's output, no intermediate copy). `body` gets at least `maxCount`
    /// contiguous bytes, valid only during the call, and returns how many it wrote
    /// (at most `maxCount`). Up to the outbound pool's chunk size this writes into the
    /// queue's tail chunk (or a fresh one); beyond it, through a temporary copy.
    /// Returns false, without calling `body`, when the connection is closing, and
    /// false when the outbound pool is exhausted (the connection is then closed with
    /// `ENOBUFS`). `body` should only write: if it closes the connection, what it
    /// wrote is dropped (its chunk back in the pool) and the call returns false.
    @discardableResult
    public func send(reserving maxCount: Int, _ body: (UnsafeMutableRawBufferPointer) -> Int) -> Bool {
        guard state == .open, !closeWhenFlushed, !shutdownWhenFlushed else { return false }
        let pool = loop.outbound
        let chunkSize = pool.chunkSize
        guard maxCount <= chunkSize else {
            return withUnsafeTemporaryAllocation(byteCount: maxCount, alignment: 8) { tmp in
                let n = body(tmp)
                precondition(n >= 0 && n <= maxCount, "send(reserving:) wrote more than it reserved")
                return send(UnsafeRawBufferPointer(rebasing: tmp[..<n]))
            }
        }
        if queue.count > 0 {
            let last = queue.count - 1
            let end = queue[last].end
            if queue[last].chunk >= 0 && chunkSize - end >= maxCount {
                let dst = UnsafeMutableRawPointer(mutating: queue[last].base + end)
                let n = body(UnsafeMutableRawBufferPointer(start: dst, count: maxCount))
                precondition(n >= 0 && n <= maxCount, "send(reserving:) wrote more than it reserved")
                // A body that closed the connection has already had the queue released.
                guard state == .open, queue.count > last else { return false }
                queue[last].end = end + n
                if n > 0 { enqueued(n) }
                return true
            }
        }
        guard let chunk = pool.take(holder: BufferHolder("write queue of fd", Int(fd))) else {
            close(error: IOError(errno: ENOBUFS, "send: outbound pool exhausted"))
            return false
        }
        let base = pool.base(chunk)
        let n = body(UnsafeMutableRawBufferPointer(start: base, count: maxCount))
        precondition(n >= 0 && n <= maxCount, "send(reserving:) wrote more than it reserved")
        guard n > 0, state == .open else {
            pool.give(chunk)
            return state == .open
        }
        queue.append(Entry(base: UnsafeRawPointer(base), start: 0, end: n, chunk: chunk, shared: nil))
        enqueued(n)
        return true
    }

    /// Sends received bytes back out. When `bytes` is the buffer being delivered
    /// right now (an echo, a proxy), the write queue takes the provided buffer itself
    /// instead of copying it, and returns it to the ring once the kernel has sent it —
    /// unless more than half the ring is already held that way, then it copies.
    @discardableResult
    public func send(_ bytes: ReceivedBytes) -> Bool {
        let raw = bytes.unsafeBytes
        guard let base = raw.baseAddress, let current = delivering, !deliveryRetained,
              base == current.base, raw.count <= current.count,
              state == .open, !closeWhenFlushed, !shutdownWhenFlushed else {
            return send(raw)
        }
        let ring = loop.receiveRing(UInt16(truncatingIfNeeded: current.key >> 16))
        guard ring.retained * 2 < ring.count else { return send(raw) }
        guard raw.count > 0 else { return true }
        ring.retained += 1
        deliveryRetained = true
        queue.append(Entry(base: base, start: 0, end: raw.count, chunk: -1, shared: nil, received: current.key))
        enqueued(raw.count)
        return true
    }

    /// Returns a provided buffer the write queue held (sent, or dropped on close).
    private func recycleRetained(_ key: Int32) {
        let ring = loop.receiveRing(UInt16(truncatingIfNeeded: key >> 16))
        ring.retained -= 1
        loop.ledger.move(.received, from: .application, to: .pool, key: Int(key), holder: .none)
        ring.recycle(UInt16(truncatingIfNeeded: key & 0xFFFF))
    }

    @discardableResult
    public func send(_ bytes: [UInt8]) -> Bool {
        bytes.withUnsafeBytes { send($0) }
    }

    @discardableResult
    public func send(_ string: String) -> Bool {
        var s = string
        return s.withUTF8 { send(UnsafeRawBufferPointer($0)) }
    }

    /// Queues shared bytes without copying them (broadcast): the queue holds a
    /// reference until the kernel has sent them.
    @discardableResult
    public func send(_ shared: SharedBytes) -> Bool {
        guard state == .open, !closeWhenFlushed, !shutdownWhenFlushed else { return false }
        guard shared.count > 0 else { return true }
        queue.append(Entry(base: shared.baseAddress, start: 0, end: shared.count, chunk: -1, shared: shared))
        enqueued(shared.count)
        return true
    }

    func appendChunk(_ chunk: Int32, base: UnsafeMutableRawPointer, count: Int) -> Bool {
        guard state == .open, !closeWhenFlushed, !shutdownWhenFlushed else {
            loop.outbound.give(chunk)
            return false
        }
        queue.append(Entry(base: UnsafeRawPointer(base), start: 0, end: count, chunk: chunk, shared: nil))
        enqueued(count)
        return true
    }

    private func enqueued(_ n: Int) {
        if queuedBytes == 0 { lastSendProgress = loop.now }
        queuedBytes += n
        if queuedBytes > options.writeHighWater { aboveHighWater = true }
        markDirty()
    }

    @inline(__always)
    private func markDirty() {
        if !dirty {
            dirty = true
            loop.dirtyConnections.append(self)
        }
    }

    /// Submits one `sendmsg` for the front of the queue (called by the loop once per
    /// iteration for each connection that queued bytes, and after each send).
    func flush() {
        dirty = false
        guard state == .open, !sendInFlight else { return }
        if queue.isEmpty {
            finishWritingIfDone()
            return
        }
        let n = Swift.min(queue.count, Self.maxIOV)
        let pool = loop.outbound
        // Plain while loops on hot paths: unspecialised Range iteration allocates in
        // debug builds, and the allocation check runs in debug too.
        var i = 0
        while i < n {
            let start = queue[i].start
            iov[i] = iovec(iov_base: UnsafeMutableRawPointer(mutating: queue[i].base + start),
                           iov_len: queue[i].end - start)
            if !queue[i].lent {
                let chunk = queue[i].chunk
                let received = queue[i].received
                if chunk >= 0 {
                    pool.lend(chunk, holder: BufferHolder("sendmsg on fd", Int(fd)))
                    queue[i].lent = true
                } else if received >= 0 {
                    loop.ledger.move(.received, from: .application, to: .kernel, key: Int(received),
                                     holder: BufferHolder("sendmsg on fd", Int(fd)))
                    queue[i].lent = true
                }
            }
            i += 1
        }
        msg.pointee.msg_iovlen = n
        entriesInFlight = n
        sendInFlight = true
        // One entry (a lone reply, an echo): a plain `send` skips the kernel's copy
        // and import of the msghdr and iovec.
        let single = n == 1
        sendUserData = loop.submit(.send, target: self, tag: Tag.send.rawValue) { sqe in
            if single {
                io_uring_prep_send(sqe, fd, iov[0].iov_base, iov[0].iov_len, Int32(MSG_NOSIGNAL))
            } else {
                io_uring_prep_sendmsg(sqe, fd, msg, UInt32(MSG_NOSIGNAL))
            }
        }
    }

    private func completeSend(_ c: Completion) {
        sendInFlight = false
        // The kernel is done with every chunk of this send.
        let pool = loop.outbound
        var i = 0
        let lentCount = Swift.min(entriesInFlight, queue.count)
        while i < lentCount {
            if queue[i].lent {
                if queue[i].chunk >= 0 {
                    pool.reclaim(queue[i].chunk, holder: BufferHolder("write queue of fd", Int(fd)))
                } else {
                    loop.ledger.move(.received, from: .kernel, to: .application, key: Int(queue[i].received),
                                     holder: BufferHolder("write queue of fd", Int(fd)))
                }
                queue[i].lent = false
            }
            i += 1
        }
        entriesInFlight = 0
        if state != .open {
            releaseQueue()
            finishCloseIfIdle()
            return
        }
        guard c.result >= 0 else {
            close(error: IOError(result: c.result, "send"))
            return
        }
        consume(Int(c.result))
        if c.result > 0 { lastSendProgress = loop.now }
        if aboveHighWater && queuedBytes <= options.writeLowWater {
            aboveHighWater = false
            handler?.writable(self)
            guard state == .open else { return }
        }
        flush()
    }

    private func consume(_ count: Int) {
        var n = count
        queuedBytes -= n
        while n > 0, queue.count > 0 {
            let len = queue[0].end - queue[0].start
            if n >= len {
                n -= len
                if let e = queue.popFirst() { release(e) }
            } else {
                queue[0].start += n
                n = 0
            }
        }
    }

    /// Drops every queued entry the kernel does not hold (close path).
    private func releaseQueue() {
        let keep = sendInFlight ? entriesInFlight : 0
        while queue.count > keep {
            if let e = queue.popLast() { release(e) }
        }
        if keep == 0 { queuedBytes = 0 }
    }

    /// Gives back what a dequeued entry held (a pooled chunk or a receive buffer).
    @inline(__always)
    private func release(_ e: Entry) {
        if e.chunk >= 0 {
            loop.outbound.give(e.chunk)
        } else if e.received >= 0 {
            recycleRetained(e.received)
        }
    }

    private func finishWritingIfDone() {
        guard queue.isEmpty, !sendInFlight else { return }
        if closeWhenFlushed {
            close()
        } else if shutdownWhenFlushed && !shutdownInFlight {
            shutdownInFlight = true
            loop.submit(.shutdown, target: self, tag: Tag.shutdown.rawValue) { sqe in
                io_uring_prep_shutdown(sqe, fd, Int32(SHUT_WR))
            }
        }
    }

    /// Closes once every queued byte has been sent (EventMachine's
    /// `close_connection_after_writing`).
    public func closeAfterWriting() {
        guard state == .open else { return }
        closeWhenFlushed = true
        if queue.isEmpty && !sendInFlight { close() } else { markDirty() }
    }

    /// Half-close: sends FIN after the queued bytes; receiving continues.
    public func shutdownWriting() {
        guard state == .open, !shutdownWhenFlushed else { return }
        shutdownWhenFlushed = true
        markDirty()
    }

    // MARK: Closing

    /// Closes now: queued bytes are dropped, in-flight operations cancelled, the fd
    /// closed after their last completion, then `closed` runs. Idempotent.
    public func close(error: (any Error)? = nil) {
        guard state == .open else { return }
        state = .closing
        closeError = error
        releaseQueue()
        loop.unwatch(self)
        var inFlight = false
        if recvArmed {
            loop.ledger.cancelled(.recv)
            loop.park(recvUserData)
            inFlight = true
        }
        if sendInFlight {
            loop.ledger.cancelled(.send)
            loop.park(sendUserData)
            inFlight = true
        }
        if shutdownInFlight { inFlight = true }
        if inFlight {
            loop.cancelAll(fd: fd)
        } else {
            finishCloseIfIdle()
        }
    }

    /// Aborts the connection: the peer gets an RST instead of a FIN (`SO_LINGER` 0).
    public func reset() {
        guard state == .open else { return }
        var linger = Glibc.linger(l_onoff: 1, l_linger: 0)
        setsockopt(fd, SOL_SOCKET, SO_LINGER, &linger, socklen_t(MemoryLayout<Glibc.linger>.size))
        close(error: IOError(errno: ECONNRESET, "reset by application"))
    }

    private func finishCloseIfIdle() {
        guard state == .closing, !recvArmed, !sendInFlight, !shutdownInFlight else { return }
        state = .closed
        while let e = queue.popFirst() { release(e) }
        queuedBytes = 0
        loop.closeDescriptor(fd)
        loop.ledger.connectionClosed()
        loop.resources[ObjectIdentifier(self)] = nil
        let h = handler
        handler = nil
        h?.closed(self, error: closeError)
    }

    func loopIsStopping() { close(error: LoopStoppedError()) }

    // MARK: Completions

    func complete(_ completion: Completion, tag: UInt32, final: Bool, loop: EventLoop) {
        switch Tag(rawValue: tag) {
        case .recv: completeRecv(completion, final: final)
        case .send: completeSend(completion)
        case .shutdown:
            shutdownInFlight = false
            if state != .open { finishCloseIfIdle() }
        case nil: break
        }
    }

    /// Called by the loop's liveness sweep.
    func checkDeadlines(now: UInt64) {
        if let idle = options.idleTimeout, !idleTimeoutSuspended, now &- lastReceive > idle.nanoseconds {
            close(error: TimeoutError("idle"))
        } else if let send = options.sendTimeout, queuedBytes > 0, now &- lastSendProgress > send.nanoseconds {
            close(error: TimeoutError("send"))
        }
    }
}

/// The loop stopped while the connection was open.
public struct LoopStoppedError: Error, Sendable, CustomStringConvertible {
    public init() {}
    public var description: String { "event loop stopped" }
}

extension Connection {
    /// Queues a pooled chunk without copying it: the write queue takes ownership and
    /// returns the chunk to the pool once the kernel has sent it.
    @discardableResult
    public func send(_ buffer: consuming PooledBuffer) -> Bool {
        let index = buffer.index
        let base = buffer.base
        let count = buffer.count
        _ = consume buffer
        guard isOpen, count > 0 else {
            loop.outbound.give(index)
            return count == 0 && isOpen
        }
        return appendChunk(index, base: base, count: count)
    }
}
