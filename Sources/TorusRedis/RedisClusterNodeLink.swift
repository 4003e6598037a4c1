import Torus

/// One connection of a `RedisClusterClient` to one node, made when first needed and
/// again after it closed: what a command for that node waits on while it connects.
/// Callers that ask while it connects get the connection in the order they asked,
/// in one turn of the loop (so what they send leaves in one send).
///
/// Threading: loop-confined (`loop`), except `close()`.
final class RedisClusterNodeLink: @unchecked Sendable {
    let address: SocketAddress
    let loop: EventLoop
    let configuration: RedisConfiguration
    /// Push values of the connection (Pub/Sub). Loop thread.
    var onPush: ((RESPValue) -> Void)?
    /// Replies that answer no command (see `RedisConnection.onUnmatchedReply`). Loop thread.
    var onUnmatchedReply: ((RESPValue) -> Void)?
    /// The connection closed or could not be made. Loop thread.
    var onDown: ((RedisError) -> Void)?

    private enum State {
        case idle
        case connecting
        case open(RedisConnection)
        case closed
    }

    private var state = State.idle
    private var waiters: [(Result<RedisConnection, RedisError>) -> Void] = []
    private var connectTask: Task<Void, Never>?

    init(address: SocketAddress, loop: EventLoop, configuration: RedisConfiguration) {
        self.address = address
        self.loop = loop
        self.configuration = configuration
    }

    /// The open connection, if there is one. Loop thread.
    var connection: RedisConnection? {
        loop.assertInLoop()
        if case .open(let connection) = state, connection.isOpen { return connection }
        return nil
    }

    /// Runs `body` with the open connection: at once when there is one, else once it
    /// is made (connecting now if nothing is under way), or with why it could not be.
    /// Loop thread.
    func withConnection(_ body: @escaping (Result<RedisConnection, RedisError>) -> Void) {
        loop.assertInLoop()
        switch state {
        case .open(let connection) where connection.isOpen:
            body(.success(connection))
        case .closed:
            body(.failure(.connectionClosed("cluster client closed")))
        case .connecting:
            waiters.append(body)
        case .idle, .open:
            waiters.append(body)
            connect()
        }
    }

    private func connect() {
        state = .connecting
        let (address, loop, configuration) = (self.address, self.loop, self.configuration)
        connectTask = Task { [self] in
            let result: Result<RedisConnection, RedisError>
            do throws(RedisError) {
                result = .success(try await RedisConnection.connect(to: address, on: loop, configuration: configuration))
            } catch {
                result = .failure(error)
            }
            let unwanted: RedisConnection? = await withCheckedContinuation { continuation in
                loop.execute { continuation.resume(returning: self.connected(result)) }
            }
            taskResumedByLoop()  // the connection was handed over by the loop (see TaskHandoff)
            await unwanted?.close()
        }
    }

    /// The outcome of `connect`, on the loop; returns a connection to close when the
    /// link was closed meanwhile.
    private func connected(_ result: Result<RedisConnection, RedisError>) -> RedisConnection? {
        loop.assertInLoop()
        if case .closed = state {
            let waiting = waiters
            waiters = []
            for waiter in waiting { waiter(.failure(.connectionClosed("cluster client closed"))) }
            return try? result.get()
        }
        let waiting = waiters
        waiters = []
        switch result {
        case .success(let connection) where connection.isOpen:
            state = .open(connection)
            // Only where the owner asked for them: elsewhere a reply without a
            // command stays the protocol error it is.
            if onPush != nil { connection.onPush = { [weak self] value in self?.onPush?(value) } }
            if onUnmatchedReply != nil {
                connection.onUnmatchedReply = { [weak self] value in self?.onUnmatchedReply?(value) }
            }
            connection.onClose = { [weak self, weak connection] error in
                guard let self, case .open(let current) = self.state, current === connection else { return }
                self.state = .idle
                self.onDown?(error)
            }
            for waiter in waiting { waiter(.success(connection)) }
        case .success:
            state = .idle
            let error = RedisError.connectionClosed("closed right after connecting")
            for waiter in waiting { waiter(.failure(error)) }
            onDown?(error)
        case .failure(let error):
            state = .idle
            for waiter in waiting { waiter(.failure(error)) }
            onDown?(error)
        }
        return nil
    }

    /// Closes the connection for good (commands waiting on it fail with
    /// `.connectionClosed`); returns once it is closed. Any task.
    func close() async {
        let (connection, task): (RedisConnection?, Task<Void, Never>?) = await withCheckedContinuation { continuation in
            loop.runOnLoop { [self] in
                var open: RedisConnection?
                if case .open(let connection) = state { open = connection }
                state = .closed
                onPush = nil
                onUnmatchedReply = nil
                onDown = nil
                let waiting = waiters
                waiters = []
                for waiter in waiting { waiter(.failure(.connectionClosed("cluster client closed"))) }
                continuation.resume(returning: (open, connectTask))
            }
        }
        taskResumedByLoop()
        await connection?.close()
        await task?.value
    }
}
