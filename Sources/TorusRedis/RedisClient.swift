import Synchronization
import Torus

/// A Redis client that keeps one `RedisConnection` open to a server: when the
/// connection drops it reconnects with exponential backoff (and jitter), and
/// subscribes again to every channel and pattern it was subscribed to.
///
/// While it is not connected, commands fail at once with
/// `RedisError.connectionClosed` instead of waiting: a caller (the hub answering an
/// HTTP request) answers "unavailable" at once and the client does not queue work
/// without bound during an outage. Commands in flight when the connection drops fail
/// the same way; none is retried, unless the caller declares it idempotent
/// (``command(_:idempotent:)``): such a command is sent once more on the next
/// connection, when the client's next attempt to connect succeeds.
///
/// Threading: any thread; the connection's callbacks run on `loop`.
public final class RedisClient: Sendable {
    /// How a client reconnects. A plain value.
    public struct Backoff: Sendable {
        /// The first wait after a drop or a failed attempt.
        public var initial: Duration = .milliseconds(100)
        /// The longest wait between attempts.
        public var maximum: Duration = .seconds(5)
        public init() {}
    }

    /// Where the client stands.
    public enum Status: Sendable, Equatable {
        case connecting
        case connected
        /// Waiting before the next attempt; the last error.
        case backingOff(RedisError)
        case closed
    }

    public let loop: EventLoop
    public let address: SocketAddress
    public let configuration: RedisConfiguration
    public let backoff: Backoff
    private let state = Mutex<State>(State())
    private let pushHandler: (@Sendable (RESPValue) -> Void)?
    private let statusHandler: (@Sendable (Status) -> Void)?

    struct State {
        var status = Status.connecting
        var connection: RedisConnection?
        /// Channels, patterns and shard channels to subscribe to again after a reconnect.
        var channels: Set<String> = []
        var patterns: Set<String> = []
        var shardChannels: Set<String> = []
        var task: Task<Void, Never>?
        /// Resumed when the current connection closes (the maintaining task waits on it).
        var closedWaiter: CheckedContinuation<Void, Never>?
        /// Idempotent commands waiting for the next connection (resumed with it, or
        /// with nil when the next attempt fails or the client closes).
        var nextConnectionWaiters: [CheckedContinuation<RedisConnection?, Never>] = []
        var stopping = false
    }

    /// Starts connecting at once (in the background). `onPush` receives Pub/Sub
    /// messages (RESP3 pushes) on the loop; `onStatus` every change of status.
    public init(address: SocketAddress, on loop: EventLoop, configuration: RedisConfiguration = RedisConfiguration(),
                backoff: Backoff = Backoff(), onPush: (@Sendable (RESPValue) -> Void)? = nil,
                onStatus: (@Sendable (Status) -> Void)? = nil) {
        self.address = address
        self.loop = loop
        self.configuration = configuration
        self.backoff = backoff
        pushHandler = onPush
        statusHandler = onStatus
        let task = Task(executorPreference: loop) { [self] in await maintain() }
        state.withLock { $0.task = task }
    }

    public var status: Status { state.withLock { $0.status } }

    /// One command on the current connection; fails at once while disconnected.
    public func command(_ arguments: [String]) async throws(RedisError) -> RESPValue {
        try await command(arguments, idempotent: false)
    }

    /// One command; with `idempotent`, the caller declares that sending it twice does no
    /// harm (a `GET`, a `SET` of a fixed value), and a command whose connection is lost
    /// (`.connectionClosed`, `.timeout`) or that finds the client disconnected is sent
    /// once more on the next connection, if the client's next attempt to connect
    /// succeeds (within its backoff and `connectTimeout`); otherwise it fails as a
    /// command that is not idempotent does. Other errors (`.server`, `.protocolError`)
    /// are never retried.
    public func command(_ arguments: [String], idempotent: Bool) async throws(RedisError) -> RESPValue {
        let first = state.withLock { $0.connection }
        // Why the command could not be sent (made only then: the status is a String).
        let lost: RedisError
        if let first {
            do throws(RedisError) {
                return try await first.command(arguments)
            } catch {
                guard idempotent, Self.isConnectionLoss(error) else { throw error }
                lost = error
            }
        } else {
            lost = .connectionClosed(statusDescription)
            guard idempotent else { throw lost }
        }
        guard let next = await connection(after: first) else { throw lost }
        return try await next.command(arguments)
    }

    /// The failures that say nothing about the command, only about its connection.
    private static func isConnectionLoss(_ error: RedisError) -> Bool {
        switch error {
        case .connectionClosed, .timeout: true
        default: false
        }
    }

    /// A connection other than `old`: the current one, or the next one made; nil when
    /// the next attempt to connect fails or the client closes.
    private func connection(after old: RedisConnection?) async -> RedisConnection? {
        await withCheckedContinuation { (waiter: CheckedContinuation<RedisConnection?, Never>) in
            let now: RedisConnection?? = state.withLock { s in
                if s.stopping { return .some(nil) }
                if let current = s.connection, current !== old { return .some(current) }
                s.nextConnectionWaiters.append(waiter)
                return .none
            }
            if case .some(let connection) = now { waiter.resume(returning: connection) }
        }
    }

    /// Resumes the commands waiting for the next connection with `connection` (nil:
    /// the attempt failed, or the client closes).
    private func resumeNextConnectionWaiters(with connection: RedisConnection?) {
        let waiters = state.withLock { s in
            defer { s.nextConnectionWaiters = [] }
            return s.nextConnectionWaiters
        }
        for waiter in waiters { waiter.resume(returning: connection) }
    }

    /// A pipeline on the current connection; fails at once while disconnected.
    public func pipeline(_ commands: [[String]]) async throws(RedisError) -> [Result<RESPValue, RedisError>] {
        guard let connection = state.withLock({ $0.connection }) else {
            throw .connectionClosed(statusDescription)
        }
        return try await connection.pipeline(commands)
    }

    /// The loop-thread face: sends one command on the current connection, `complete`
    /// runs on `loop` with its reply; fails at once (through `complete`) while
    /// disconnected. Commands sent in one turn of the loop leave in one send and keep
    /// their order. Loop thread (`loop`) only.
    public func send(_ arguments: [String], _ complete: @escaping (Result<RESPValue, RedisError>) -> Void) {
        guard let connection = currentConnection() else { return complete(.failure(.connectionClosed(statusDescription))) }
        connection.send(arguments, complete)
    }

    /// The same for binary arguments. Loop thread (`loop`) only.
    public func send(binary arguments: [[UInt8]], _ complete: @escaping (Result<RESPValue, RedisError>) -> Void) {
        guard let connection = currentConnection() else { return complete(.failure(.connectionClosed(statusDescription))) }
        connection.send(binary: arguments, complete)
    }

    /// True while a connection is open (momentary; any thread).
    public var isConnected: Bool { state.withLock { $0.connection != nil } }

    private func currentConnection() -> RedisConnection? {
        loop.assertInLoop()
        return state.withLock { $0.connection }
    }

    /// Subscribes now (when connected) and after every reconnect.
    public func subscribe(_ channels: [String], pattern: Bool = false, sharded: Bool = false) {
        let connection = state.withLock { s in
            for channel in channels {
                if sharded { s.shardChannels.insert(channel) } else if pattern { s.patterns.insert(channel) } else { s.channels.insert(channel) }
            }
            return s.connection
        }
        connection?.subscribe(channels, pattern: pattern, sharded: sharded)
    }

    /// Stops reconnecting and closes the connection. Returns once it is closed.
    public func close() async {
        let (task, connection, waiter) = state.withLock { s in
            s.stopping = true
            s.status = .closed
            let waiter = s.closedWaiter
            s.closedWaiter = nil
            return (s.task, s.connection, waiter)
        }
        await connection?.close()
        waiter?.resume()
        resumeNextConnectionWaiters(with: nil)
        task?.cancel()
        await task?.value
        statusHandler?(.closed)
    }

    private var statusDescription: String {
        switch status {
        case .connecting: "connecting"
        case .connected: "reconnecting"
        case .backingOff(let error): "reconnecting after: \(error)"
        case .closed: "client closed"
        }
    }

    private func setStatus(_ status: Status) {
        let changed = state.withLock { s -> Bool in
            guard !s.stopping, s.status != status else { return false }
            s.status = status
            return true
        }
        if changed { statusHandler?(status) }
    }

    /// Connects, waits for the connection to close, backs off, again; until `close`.
    private func maintain() async {
        var delay = backoff.initial
        while !state.withLock({ $0.stopping }) {
            setStatus(.connecting)
            let failure: RedisError
            do throws(RedisError) {
                let connection = try await RedisConnection.connect(to: address, on: loop, configuration: configuration)
                failure = await serve(connection)
                delay = backoff.initial
            } catch {
                failure = error
                resumeNextConnectionWaiters(with: nil)
            }
            guard !state.withLock({ $0.stopping }) else { break }
            setStatus(.backingOff(failure))
            // Full jitter: a fleet of clients does not come back in step.
            try? await Task.sleep(for: delay * Double.random(in: 0.5...1.0))
            delay = min(delay * 2, backoff.maximum)
        }
    }

    /// Uses `connection` until it closes; returns why it closed.
    private func serve(_ connection: RedisConnection) async -> RedisError {
        let closedWith = Mutex<RedisError?>(nil)
        await withCheckedContinuation { (waiter: CheckedContinuation<Void, Never>) in
            loop.runOnLoop { [self] in
                connection.onPush = pushHandler
                connection.onClose = { [self] error in
                    closedWith.withLock { $0 = error }
                    let waiter = state.withLock { s in
                        s.connection = nil
                        defer { s.closedWaiter = nil }
                        return s.closedWaiter
                    }
                    waiter?.resume()
                }
                let (subscriptions, stopping) = state.withLock { s in
                    s.closedWaiter = waiter
                    s.connection = connection
                    return ((s.channels, s.patterns, s.shardChannels), s.stopping)
                }
                // Closed (or stopping) before the callbacks were in place: done.
                if stopping || !connection.isOpen {
                    connection.onClose = nil
                    state.withLock { s in
                        s.connection = nil
                        s.closedWaiter = nil
                    }
                    closedWith.withLock { $0 = $0 ?? .connectionClosed("closed right after connecting") }
                    resumeNextConnectionWaiters(with: nil)
                    return waiter.resume()
                }
                if !subscriptions.0.isEmpty { connection.sendExpectingPushes(["SUBSCRIBE"] + subscriptions.0.sorted()) }
                if !subscriptions.1.isEmpty { connection.sendExpectingPushes(["PSUBSCRIBE"] + subscriptions.1.sorted()) }
                if !subscriptions.2.isEmpty { connection.sendExpectingPushes(["SSUBSCRIBE"] + subscriptions.2.sorted()) }
                setStatus(.connected)
                resumeNextConnectionWaiters(with: connection)
            }
        }
        if state.withLock({ $0.stopping }) { await connection.close() }
        return closedWith.withLock { $0 } ?? .connectionClosed("client closed")
    }
}
