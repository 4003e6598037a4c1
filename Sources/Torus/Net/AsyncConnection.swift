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
        try await connect(to: address, on: loop, options: options, timeout: timeout, prepare: { _ in })
    }

    /// The same, with `prepare` run on the new connection before it starts (a
    /// protocol layer installs its transform there).
    package static func connect(to address: SocketAddress, on loop: EventLoop,
                                options: SocketOptions, timeout: Duration,
                                prepare: @escaping @Sendable (Connection) -> Void) async throws -> AsyncConnection {
        defer { taskResumedByLoop() }
        return try await withCheckedThrowingContinuation { (c: CheckedContinuation<AsyncConnection, any Error>) in
            loop.runOnLoop {
                var made: AsyncConnection?
                Connection.connect(to: address, on: loop, options: options, timeout: timeout,
                                   makeHandler: { connection in
                                       prepare(connection)
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
        try await state.inbox.next()
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
            loop.runOnLoop { [state] in state.inbox.pushFront(extra, weight: extra.count) }
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

/// Loop-confined state behind an `AsyncConnection`: it is the connection's handler.
final class AsyncConnectionState: ConnectionHandler, @unchecked Sendable {
    unowned let connection: Connection
    /// Received bytes, copied out of the provided buffers, until `read()` takes them;
    /// above `options.readHighWater` bytes reading pauses until the reader is down to half.
    let inbox: Inbox<[UInt8]>
    private var closedFlag = false
    private var failure: (any Error)?
    private var writers: [CheckedContinuation<Void, any Error>] = []
    private var closers: [CheckedContinuation<Void, Never>] = []

    init(_ connection: Connection) {
        self.connection = connection
        inbox = Inbox(loop: connection.loop, highWater: connection.options.readHighWater)
        inbox.onPressure = { [unowned connection] pressure in
            switch pressure {
            case .pause: connection.pauseReading()
            case .resume: connection.resumeReading()
            }
        }
    }

    func received(_ bytes: ReceivedBytes, from connection: Connection) {
        inbox.push(bytes.copy(), weight: bytes.count)
    }

    func inputClosed(_ connection: Connection) {
        inbox.finish()
    }

    func writable(_ connection: Connection) {
        let w = writers
        writers.removeAll()
        for c in w { c.resume() }
    }

    func closed(_ connection: Connection, error: (any Error)?) {
        closedFlag = true
        failure = failure ?? error
        // The reader gets what was received, then the end (after EOF) or the error.
        inbox.finish(error: error)
        let w = writers
        writers.removeAll()
        for c in w { c.resume(throwing: error ?? IOError(errno: EPIPE, "write")) }
        let cl = closers
        closers.removeAll()
        for c in cl { c.resume() }
        // Keep the connection reachable until here; the state is dropped with it.
        _ = connection
    }

    func write(_ bytes: [UInt8], _ c: CheckedContinuation<Void, any Error>) {
        guard !closedFlag, connection.send(bytes) else {
            // A connection that is closing because of an error (a failed TLS
            // handshake sending its alert) reports that error, not a bare EPIPE.
            c.resume(throwing: failure ?? connection.closingError ?? IOError(errno: EPIPE, "write"))
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
