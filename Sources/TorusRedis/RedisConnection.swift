import Torus

/// One connection to a Redis server on the ring: commands are encoded into the
/// connection's write queue as they are sent (many in one send when they are sent
/// together: pipelining) and their replies matched to them in order.
///
/// Two faces, like the rest of Torus: on the loop thread, `send(_:_:)` with a
/// completion callback; from any task, `command(_:)` and `pipeline(_:)`.
///
/// Pub/Sub: `onPush` receives every push value (`message`, `subscribe`
/// confirmations, …); `subscribe` sends its command without waiting for a reply
/// (the confirmations are pushes). Over RESP2 the server sends those as ordinary
/// arrays once subscribed; the connection hands them to `onPush` as push values all
/// the same (and RESP2 then allows only the Pub/Sub commands and `PING`). Keep a
/// connection for Pub/Sub on its own: a busy channel delays the replies of other
/// commands.
///
/// Failure: an error reply fails its command only (`RedisError.server`). Bytes that
/// are not RESP, a reply over the limit, a missing reply after `commandTimeout`, or
/// the connection closing fail every waiting command with a typed error and close
/// the connection; nothing is retried. `RedisClient` reconnects.
///
/// Threading: loop-confined (`loop`), except the async methods and `close()`.
/// Ownership: the connection's buffers and operations are the core's (in the ledger).
public final class RedisConnection: ConnectionHandler, @unchecked Sendable {
    public let loop: EventLoop
    public let configuration: RedisConfiguration
    private(set) var connection: Connection?
    // Loop-confined and touched for every command and reply: no runtime exclusivity
    // checks (they were a tenth of the client's CPU; the loop thread is the only one
    // that touches them, asserted on every entry point, and no callback runs inside
    // an access to them).
    @exclusivity(unchecked) private var decoder: RESPDecoder
    @exclusivity(unchecked) private var pending = RingBuffer<Pending>(capacity: 16)
    /// `configuration.commandTimeout` in nanoseconds (computed once, not per command).
    private let commandTimeoutNanoseconds: UInt64
    /// `configuration.pingInterval` in nanoseconds; nil: no keep-alive pings.
    private let pingIntervalNanoseconds: UInt64?
    /// Set once the connection failed or closed: every later command fails with it.
    private var failure: RedisError?
    /// RESP2 only: a subscribe command was sent, so Pub/Sub messages arrive as
    /// ordinary arrays (`message`, `subscribe`, …) that are not replies.
    private var resp2Subscribed = false
    /// True until the connection failed or closed. Loop thread.
    public var isOpen: Bool { failure == nil && connection?.isOpen == true }
    /// Push values (RESP3 out-of-band: Pub/Sub). Loop thread.
    public var onPush: ((RESPValue) -> Void)?
    /// Called once when the connection closes, with why. Loop thread.
    public var onClose: ((RedisError) -> Void)?
    /// A reply that answers no command sent with a callback: on a connection used
    /// only with `sendExpectingPushes`, the error a server sends instead of
    /// subscribing (a cluster node's `-MOVED` to an `SSUBSCRIBE`). Without a handler
    /// such a reply is a protocol error that closes the connection. Loop thread.
    public var onUnmatchedReply: ((RESPValue) -> Void)?

    /// A command waiting for its reply.
    struct Pending {
        /// When the reply is overdue (`MonotonicClock` nanoseconds).
        let deadline: UInt64
        let complete: (Result<RESPValue, RedisError>) -> Void
    }

    init(loop: EventLoop, configuration: RedisConfiguration) {
        self.loop = loop
        self.configuration = configuration
        decoder = RESPDecoder(maxBytes: configuration.maxReplyBytes)
        commandTimeoutNanoseconds = UInt64(max(0, configuration.commandTimeout.nanoseconds))
        pingIntervalNanoseconds = configuration.pingInterval.map { UInt64(max(1, $0.nanoseconds)) }
    }

    /// Connects, then opens the session (`HELLO 3` or `AUTH`, `SELECT`). Any task.
    public static func connect(to address: SocketAddress, on loop: EventLoop,
                               configuration: RedisConfiguration = RedisConfiguration()) async throws(RedisError) -> RedisConnection {
        let redis = RedisConnection(loop: loop, configuration: configuration)
        let connected: Result<Void, RedisError> = await withCheckedContinuation { continuation in
            loop.execute {
                Connection.connect(to: address, on: loop, options: configuration.socket,
                                   timeout: configuration.connectTimeout,
                                   makeHandler: { connection in
                                       redis.connection = connection
                                       return redis
                                   },
                                   done: { result in
                                       switch result {
                                       case .success: continuation.resume(returning: .success(()))
                                       case .failure(let error):
                                           continuation.resume(returning: .failure(.connectFailed("\(error)")))
                                       }
                                   })
            }
        }
        taskResumedByLoop()
        try connected.get()
        let failure: RedisError?
        do throws(RedisError) {
            let replies = try await redis.pipeline(redis.handshakeCommands())
            failure = replies.lazy.compactMap { reply -> RedisError? in
                guard case .failure(let error) = reply else { return nil }
                if case .server(let message) = error { return .handshake(message) }
                return error
            }.first
        } catch {
            failure = error
        }
        if let failure {
            await redis.close()
            throw failure
        }
        return redis
    }

    /// What opens the session.
    func handshakeCommands() -> [[String]] {
        var commands: [[String]] = []
        switch configuration.protocolVersion {
        case .resp3:
            var hello = ["HELLO", "3"]
            if let password = configuration.password {
                hello += ["AUTH", configuration.username ?? "default", password]
            }
            if let name = configuration.clientName { hello += ["SETNAME", name] }
            commands.append(hello)
        case .resp2:
            if let password = configuration.password {
                commands.append(["AUTH"] + (configuration.username.map { [$0] } ?? []) + [password])
            }
            if let name = configuration.clientName { commands.append(["CLIENT", "SETNAME", name]) }
        }
        if configuration.database != 0 { commands.append(["SELECT", String(configuration.database)]) }
        if commands.isEmpty { commands.append(["PING"]) }
        return commands
    }

    // MARK: Loop-thread face

    /// Sends one command; `complete` runs on the loop with its reply (an error reply
    /// as `.failure(.server)`). Commands sent in one turn of the loop go out in one
    /// send. Loop thread only.
    public func send(_ arguments: [String], _ complete: @escaping (Result<RESPValue, RedisError>) -> Void) {
        enqueue(complete, size: RESPEncoder.size(of: arguments)) { RESPEncoder.write(arguments, to: $0) }
    }

    /// The same for binary arguments (a payload that is not text: a `PUBLISH` of
    /// bytes, a `SET` of a blob). Loop thread only.
    public func send(binary arguments: [[UInt8]], _ complete: @escaping (Result<RESPValue, RedisError>) -> Void) {
        enqueue(complete, size: RESPEncoder.size(of: arguments)) { RESPEncoder.write(arguments, to: $0) }
    }

    /// Encodes one command into the write queue and waits for its reply.
    /// Queues the command `write` writes (exactly `size` bytes) straight into the
    /// connection's write queue, and its completion behind the others.
    private func enqueue(_ complete: @escaping (Result<RESPValue, RedisError>) -> Void, size: Int,
                         write: (UnsafeMutableRawBufferPointer) -> Int) {
        loop.assertInLoop()
        guard let connection, failure == nil, connection.isOpen else {
            return complete(.failure(failure ?? .connectionClosed("not connected")))
        }
        let deadline = loop.now &+ commandTimeoutNanoseconds
        if pending.isEmpty { connection.watchLiveness(by: deadline) }
        pending.append(Pending(deadline: deadline, complete: complete))
        connection.send(reserving: size, write)
    }

    /// Sends a command whose answers arrive as push values (RESP3 `SUBSCRIBE`,
    /// `PSUBSCRIBE`, `SSUBSCRIBE` and their `UNSUBSCRIBE`s): no reply is waited for.
    /// Loop thread only.
    public func sendExpectingPushes(_ arguments: [String]) {
        loop.assertInLoop()
        guard let connection, failure == nil, connection.isOpen else { return }
        if configuration.protocolVersion == .resp2 { resp2Subscribed = true }
        connection.send(reserving: RESPEncoder.size(of: arguments)) { RESPEncoder.write(arguments, to: $0) }
    }

    /// The Pub/Sub kinds a RESP2 server sends as arrays once subscribed.
    private static let resp2PushKinds: Set<String> = [
        "message", "pmessage", "smessage", "subscribe", "unsubscribe", "psubscribe", "punsubscribe",
        "ssubscribe", "sunsubscribe",
    ]

    /// A RESP2 array that is a Pub/Sub message rather than a reply, as a push value.
    private func resp2Push(_ value: RESPValue) -> RESPValue? {
        guard resp2Subscribed, case .array(let items) = value, items.count >= 3, case .bulkString(let kind) = items[0],
              Self.resp2PushKinds.contains(String(decoding: kind, as: UTF8.self)) else { return nil }
        return .push(items)
    }

    // MARK: Async face

    /// One command's reply. An error reply throws `RedisError.server`. Any task.
    public func command(_ arguments: [String]) async throws(RedisError) -> RESPValue {
        let result: Result<RESPValue, RedisError> = await withCheckedContinuation { continuation in
            loop.runOnLoop { self.send(arguments) { continuation.resume(returning: $0) } }
        }
        taskResumedByLoop()  // the reply was made on the loop (see TaskHandoff)
        return try result.get()
    }

    /// Many commands in one send; their replies (or errors) in order. Throws only when
    /// the connection fails before every reply arrived. Any task.
    public func pipeline(_ commands: [[String]]) async throws(RedisError) -> [Result<RESPValue, RedisError>] {
        let results = await gatherReplies(on: loop, count: commands.count) { i, complete in
            self.send(commands[i], complete)
        }
        for case .failure(let error) in results {
            if case .server = error { continue }
            throw error
        }
        return results
    }

    /// `SUBSCRIBE` (or `PSUBSCRIBE` with `pattern`, `SSUBSCRIBE` with `sharded`): the
    /// confirmations and then the messages arrive through `onPush`. Any thread.
    public func subscribe(_ channels: [String], pattern: Bool = false, sharded: Bool = false) {
        let verb = sharded ? "SSUBSCRIBE" : (pattern ? "PSUBSCRIBE" : "SUBSCRIBE")
        loop.runOnLoop { self.sendExpectingPushes([verb] + channels) }
    }

    /// Closes the connection; commands still waiting fail with `.connectionClosed`.
    /// Any task; returns once it is closed.
    public func close() async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            loop.runOnLoop {
                guard let connection = self.connection, connection.isOpen else { return continuation.resume() }
                self.closeWaiters.append(continuation)
                connection.close()
            }
        }
    }

    private var closeWaiters: [CheckedContinuation<Void, Never>] = []

    // MARK: ConnectionHandler

    public func received(_ bytes: ReceivedBytes, from connection: Connection) {
        decoder.feed(bytes.unsafeBytes)
        do {
            while let value = try decoder.next() {
                if case .push = value {
                    onPush?(value)
                    continue
                }
                if let push = resp2Push(value) {
                    onPush?(push)
                    continue
                }
                guard let next = pending.popFirst() else {
                    if let unmatched = onUnmatchedReply {
                        unmatched(value)
                        if failure != nil { return }
                        continue
                    }
                    return fail(.protocolError(.malformed("a reply without a command")))
                }
                if case .error(let message) = value {
                    next.complete(.failure(.server(message)))
                } else {
                    next.complete(.success(value))
                }
                if failure != nil { return }
            }
        } catch {
            fail(.protocolError(error))
        }
        if !pending.isEmpty { connection.watchLiveness(by: pending[0].deadline) }
    }

    public func inputClosed(_ connection: Connection) {
        fail(.connectionClosed(decoder.buffered > 0 ? "the server closed in the middle of a reply" : "closed by the server"))
    }

    public func closed(_ connection: Connection, error: (any Error)?) {
        let why = failure ?? .connectionClosed(error.map { "\($0)" } ?? "closed")
        failure = why
        failPending(why)
        let close = onClose
        onClose = nil
        onPush = nil
        onUnmatchedReply = nil
        close?(why)
        let waiters = closeWaiters
        closeWaiters = []
        for waiter in waiters { waiter.resume() }
    }

    /// The oldest command's reply deadline while commands wait; else, with
    /// `pingInterval`, the keep-alive: a `PING` once nothing has arrived for that long
    /// (the chain starts with the session's first command, and goes on while the
    /// connection lives).
    public func checkLiveness(_ connection: Connection, now: UInt64) -> UInt64? {
        if !pending.isEmpty {
            let deadline = pending[0].deadline
            guard now < deadline else {
                fail(.timeout)
                return nil
            }
            return deadline
        }
        guard let interval = pingIntervalNanoseconds else { return nil }
        let due = connection.lastReceive &+ interval
        guard now >= due else { return due }
        // Its reply (`PONG`; over RESP2 once subscribed, the array `pong`, "") matters
        // only by arriving in time; a failure has closed the connection already.
        send(Self.ping) { _ in }
        return pending.isEmpty ? nil : pending[0].deadline
    }

    private static let ping = ["PING"]

    /// Fails every waiting command with `error` and closes the connection.
    private func fail(_ error: RedisError) {
        if failure == nil { failure = error }
        failPending(failure ?? error)
        connection?.close(error: error)
    }

    private func failPending(_ error: RedisError) {
        while let next = pending.popFirst() { next.complete(.failure(error)) }
    }
}
