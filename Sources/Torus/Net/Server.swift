import CLiburing
/// A listening service on every loop of a group: one `SO_REUSEPORT` listener per loop.
///
/// Ownership: the server owns its listeners; each listener's loop owns the
/// connections it accepts. `close()` stops accepting on every loop (open connections
/// stay open until they close or their loop stops).
public final class Server: Sendable {
    public let listeners: [Listener]
    /// The bound address (the real port when 0 was asked for).
    public let address: SocketAddress

    /// Binds `address` on every loop of `group` with the EventMachine face:
    /// `makeHandler` runs on the accepting loop's thread for each new connection.
    /// Call from outside the group's loops (it waits for each loop to bind).
    public static func start(on group: EventLoopGroup, address: SocketAddress,
                             options: SocketOptions = SocketOptions(),
                             makeHandler: @escaping @Sendable (Connection) -> any ConnectionHandler) throws -> Server {
        try start(on: group.loops, address: address, options: options, makeHandler: makeHandler)
    }

    /// The same on an explicit list of loops (one listener each).
    public static func start(on loops: [EventLoop], address: SocketAddress,
                             options: SocketOptions = SocketOptions(),
                             makeHandler: @escaping @Sendable (Connection) -> any ConnectionHandler) throws -> Server {
        var listeners: [Listener] = []
        var bound = address
        for loop in loops {
            let target = bound
            let result: Result<Listener, any Error> = loop.runAndWait {
                do {
                    return .success(try Listener(on: loop, address: target, options: options,
                                                 reusePort: true, makeHandler: makeHandler))
                } catch {
                    return .failure(error)
                }
            }
            switch result {
            case .success(let listener):
                listeners.append(listener)
                bound = listener.address
            case .failure(let error):
                for l in listeners { l.close() }
                throw error
            }
        }
        return Server(listeners: listeners, address: bound)
    }

    /// Binds `address` on every loop with the async face: each connection gets its own
    /// task, which prefers the accepting loop as its executor.
    public static func start(on group: EventLoopGroup, address: SocketAddress,
                             options: SocketOptions = SocketOptions(),
                             serve: @escaping @Sendable (AsyncConnection) async -> Void) throws -> Server {
        try start(on: group.loops, address: address, options: options) { connection in
            let async = AsyncConnection(connection)
            Task(executorPreference: connection.loop) { await serve(async) }
            return connection.handler ?? ClosingHandler()
        }
    }

    private init(listeners: [Listener], address: SocketAddress) {
        self.listeners = listeners
        self.address = address
    }

    /// Stops accepting on every loop. Safe from any thread.
    public func close() {
        for listener in listeners { listener.close() }
    }
}

/// A handler that closes at once (used when no handler could be made).
package final class ClosingHandler: ConnectionHandler {
    package init() {}
    package func connected(_ connection: Connection) { connection.close() }
    package func received(_ bytes: ReceivedBytes, from connection: Connection) {}
}

extension EventLoop {
    /// Runs `body` on the loop thread and waits for its result. Never call it from
    /// the loop thread of a *different* loop that this one may wait on.
    public func runAndWait<T>(_ body: @escaping () -> T) -> T {
        if inLoop { return body() }
        let box = UncheckedBox<T>()
        let done = Semaphore()
        let work = UncheckedBox<() -> T>()
        work.value = body
        execute {
            box.value = work.value?()
            done.signal()
        }
        done.wait()
        // Not from input: the job always ran, either on the loop or inline after it stopped.
        guard let value = box.value else { preconditionFailure("runAndWait: job did not run") }
        return value
    }
}

final class UncheckedBox<T>: @unchecked Sendable {
    var value: T?
}
