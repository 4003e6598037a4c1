import CLiburing
/// The async/await face of a connection.
///
/// Inbound bytes are copied out of the provided buffers into owned `[UInt8]` chunks
/// (so no ring buffer is held while a task is slow) and handed out by `read()` or by
/// iterating `inbound`. When more than `options.readHighWater` bytes wait unread,
/// receiving pauses until the reader has caught up to half of it. `write` queues
/// bytes and suspends while the write queue is above its high water mark.
///
/// Every method is safe from any task; state lives on the loop thread and
/// continuations resume from there. A task that prefers the loop as its executor
/// (`Task(executorPreference: loop)`, or `EventLoop.run`) resumes without a hop.
public final class AsyncConnection: @unchecked Sendable {
    public let connection: Connection
    public var loop: EventLoop { connection.loop }
    private let state: AsyncConnectionState

    /// Takes over `connection` (loop thread only): the async face becomes its handler.
    public init(_ connection: Connection) {
        connection.loop.assertInLoop()
        self.connection = connection
        state = AsyncConnectionState(connection)
        connection.handler = state
    }

    /// Connects to `address` on `loop`.
    public static func connect(to address: SocketAddress, on loop: EventLoop,
                               options: SocketOptions = SocketOptions(),
                               timeout: Duration = .seconds(10)) async throws -> AsyncConnection {
        try await withCheckedThrowingContinuation { (c: CheckedContinuation<AsyncConnection, any Error>) in
            loop.runOnLoop {
                var made: AsyncConnection?
                Connection.connect(to: address, on: loop, options: options, timeout: timeout,
                                   makeHandler: { connection in
                                       let a = AsyncConnection(connection)
                                       made = a
                                       return a.state
                                   },
                                   done: { result in
                                       switch result {
                                       case .success:
                                           if let made { c.resume(returning: made) } else {
                                               c.resume(throwing: IOError(errno: EINVAL, "connect"))
                                           }
                                       case .failure(let error): c.resume(throwing: error)
                                       }
                                   })
            }
        }
    }

    /// The next chunk of bytes, or nil once the peer has finished sending.
    /// Throws the connection's error (reset, timeout) or `CancellationError`.
    public func read() async throws -> [UInt8]? {
        let state = self.state
        let loop = self.loop
        let waiter = ReadWaiter()
        return try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (c: CheckedContinuation<[UInt8]?, any Error>) in
                loop.runOnLoop { state.read(c, waiter: waiter) }
            }
        } onCancel: {
            loop.runOnLoop { state.cancelRead(waiter) }
        }
    }

    /// Reads until `count` bytes have arrived (or EOF: then fewer).
    public func read(exactly count: Int) async throws -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(count)
        while out.count < count {
            guard let chunk = try await read() else { break }
            out += chunk
        }
        if out.count > count {
            let extra = Array(out[count...])
            out.removeLast(out.count - count)
            loop.runOnLoop { [state] in state.unread(extra) }
        }
        return out
    }

    /// Queues `bytes`; suspends while the write queue is above its high water mark.
    public func write(_ bytes: [UInt8]) async throws {
        let state = self.state
        try await withCheckedThrowingContinuation { (c: CheckedContinuation<Void, any Error>) in
            loop.runOnLoop { state.write(bytes, c) }
        }
    }

    public func write(_ string: String) async throws {
        try await write(Array(string.utf8))
    }

    /// Sends FIN after queued bytes; reading continues.
    public func shutdownWriting() {
        let connection = self.connection
        loop.runOnLoop { connection.shutdownWriting() }
    }

    /// Closes (after queued bytes when `flush`) and waits until the fd is released.
    public func close(flush: Bool = true) async {
        let state = self.state
        await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
            loop.runOnLoop { state.close(flush: flush, c) }
        }
    }

    /// Inbound chunks as an async sequence (ends at EOF, throws on error).
    public var inbound: Inbound { Inbound(connection: self) }

    public struct Inbound: AsyncSequence, Sendable {
        public typealias Element = [UInt8]
        let connection: AsyncConnection
        public struct AsyncIterator: AsyncIteratorProtocol {
            let connection: AsyncConnection
            public mutating func next() async throws -> [UInt8]? { try await connection.read() }
        }
        public func makeAsyncIterator() -> AsyncIterator { AsyncIterator(connection: connection) }
    }
}

/// Identifies one pending read so a late cancellation cannot hit a later read, and
/// remembers a cancellation that reached the loop before the read did (a task
/// already cancelled when it calls `read()`). Loop-confined.
final class ReadWaiter: @unchecked Sendable {
    var cancelled = false
}

/// Loop-confined state behind an `AsyncConnection`: it is the connection's handler.
final class AsyncConnectionState: ConnectionHandler, @unchecked Sendable {
    unowned let connection: Connection
    private var chunks = RingBuffer<[UInt8]>(capacity: 8)
    private var buffered = 0
    private var ended = false
    private var failure: (any Error)?
    private var closedFlag = false
    private var reader: (CheckedContinuation<[UInt8]?, any Error>, ReadWaiter)?
    private var writers: [CheckedContinuation<Void, any Error>] = []
    private var closers: [CheckedContinuation<Void, Never>] = []
    private var pausedForBackpressure = false

    init(_ connection: Connection) { self.connection = connection }

    func received(_ bytes: ReceivedBytes, from connection: Connection) {
        if let (c, _) = reader, chunks.isEmpty {
            reader = nil
            c.resume(returning: bytes.copy())
            return
        }
        chunks.append(bytes.copy())
        buffered += bytes.count
        if buffered > connection.options.readHighWater && !pausedForBackpressure {
            pausedForBackpressure = true
            connection.pauseReading()
        }
    }

    func inputClosed(_ connection: Connection) {
        ended = true
        if let (c, _) = reader, chunks.isEmpty {
            reader = nil
            c.resume(returning: nil)
        }
    }

    func writable(_ connection: Connection) {
        let w = writers
        writers.removeAll()
        for c in w { c.resume() }
    }

    func closed(_ connection: Connection, error: (any Error)?) {
        closedFlag = true
        failure = failure ?? error
        if let (c, _) = reader {
            reader = nil
            if chunks.isEmpty {
                if let error { c.resume(throwing: error) } else { c.resume(returning: nil) }
            } else if let chunk = chunks.popFirst() {
                c.resume(returning: chunk)
            }
        }
        let w = writers
        writers.removeAll()
        for c in w { c.resume(throwing: error ?? IOError(errno: EPIPE, "write")) }
        let cl = closers
        closers.removeAll()
        for c in cl { c.resume() }
        // Keep the connection reachable until here; the state is dropped with it.
        _ = connection
    }

    func read(_ c: CheckedContinuation<[UInt8]?, any Error>, waiter: ReadWaiter) {
        if waiter.cancelled {
            c.resume(throwing: CancellationError())
        } else if let chunk = chunks.popFirst() {
            buffered -= chunk.count
            if pausedForBackpressure && buffered <= connection.options.readHighWater / 2 {
                pausedForBackpressure = false
                connection.resumeReading()
            }
            c.resume(returning: chunk)
        } else if ended {
            c.resume(returning: nil)
        } else if closedFlag {
            if let failure { c.resume(throwing: failure) } else { c.resume(returning: nil) }
        } else if reader != nil {
            c.resume(throwing: IOError(errno: EBUSY, "read: another read is pending"))
        } else {
            reader = (c, waiter)
        }
    }

    func unread(_ bytes: [UInt8]) {
        var rest = RingBuffer<[UInt8]>(capacity: chunks.count + 1)
        rest.append(bytes)
        while let c = chunks.popFirst() { rest.append(c) }
        chunks = rest
        buffered += bytes.count
    }

    func cancelRead(_ waiter: ReadWaiter) {
        waiter.cancelled = true
        guard let (c, w) = reader, w === waiter else { return }
        reader = nil
        c.resume(throwing: CancellationError())
    }

    func write(_ bytes: [UInt8], _ c: CheckedContinuation<Void, any Error>) {
        guard !closedFlag, connection.send(bytes) else {
            c.resume(throwing: failure ?? IOError(errno: EPIPE, "write"))
            return
        }
        if connection.isWritable { c.resume() } else { writers.append(c) }
    }

    func close(flush: Bool, _ c: CheckedContinuation<Void, Never>) {
        if closedFlag {
            c.resume()
            return
        }
        closers.append(c)
        if flush { connection.closeAfterWriting() } else { connection.close() }
    }
}
