import CLiburing
import Glibc

/// A listening socket on one loop, accepting with one multishot `accept`.
///
/// Each accepted fd becomes a `Connection` whose handler `makeHandler` provides (on
/// the loop thread). When accepting fails for lack of resources (`EMFILE`, `ENFILE`,
/// `ENOBUFS`, `ENOMEM`) the pending connections stay in the kernel's backlog, the
/// listener waits `retryDelay` and re-arms, so it recovers by itself once fds free
/// up. Closing cancels the accept and closes the fd after its final CQE.
///
/// Threading: created and used on its loop's thread; `close()` is safe anywhere.
public final class Listener: @unchecked Sendable, CompletionTarget, LoopResource {
    public let loop: EventLoop
    public let fd: Int32
    /// The bound address (with the real port when 0 was asked for).
    public let address: SocketAddress
    public let options: SocketOptions
    /// Delay before re-arming after a resource error.
    public var retryDelay = Duration.milliseconds(50)
    /// Accept errors seen (resource exhaustion, for tests and metrics).
    public private(set) var acceptErrors = 0
    private let makeHandler: (Connection) -> any ConnectionHandler
    private var acceptUserData: UInt64 = 0
    private var armed = false
    private var closing = false
    private var closed = false
    private var retryTimer: Timer?
    private var backingOff = false

    /// Binds and listens on `address` from the loop thread.
    public init(on loop: EventLoop, address: SocketAddress, options: SocketOptions = SocketOptions(),
                reusePort: Bool = true, backlog: Int32 = 4096,
                makeHandler: @escaping (Connection) -> any ConnectionHandler) throws(IOError) {
        loop.assertInLoop()
        self.loop = loop
        self.options = options
        self.makeHandler = makeHandler
        fd = try makeSocket(for: address, listen: backlog, reusePort: reusePort)
        // Accepted sockets inherit these from the listener: no setsockopt per accept.
        options.apply(to: fd, family: address.family)
        self.address = SocketAddress.local(of: fd) ?? address
        loop.ledger.listenerOpened()
        loop.resources[ObjectIdentifier(self)] = self
        arm()
    }

    private func arm() {
        armed = true
        acceptUserData = loop.submit(.accept, target: self) { sqe in
            io_uring_prep_multishot_accept(sqe, fd, nil, nil, Int32(SOCK_CLOEXEC.rawValue))
        }
    }

    func complete(_ completion: Completion, tag: UInt32, final: Bool, loop: EventLoop) {
        if final { armed = false }
        let result = completion.result
        if result >= 0 {
            if closing {
                Glibc.close(result)
            } else {
                let connection = Connection(loop: loop, fd: result, options: options)
                connection.handler = makeHandler(connection)
                connection.start()
            }
        } else if Self.isExhaustion(result) {
            // Out of fds or memory: the pending connections wait in the backlog. Stop
            // the multishot (if the kernel kept it going) and retry after a pause.
            acceptErrors += 1
            loop.ledger.acceptFailed()
            backingOff = true
            if !final { loop.cancel(acceptUserData) }
        }
        if closing {
            if !armed { finishClose() }
            return
        }
        guard final else { return }
        if backingOff {
            backingOff = false
            retryTimer = loop.schedule(after: retryDelay) { [self] in
                retryTimer = nil
                if !closing { arm() }
            }
        } else {
            arm()
        }
    }

    private static func isExhaustion(_ result: Int32) -> Bool {
        result == -EMFILE || result == -ENFILE || result == -ENOBUFS || result == -ENOMEM
    }

    /// Stops accepting and closes the socket. Safe from any thread.
    public func close() {
        loop.runOnLoop { [self] in closeOnLoop() }
    }

    func closeOnLoop() {
        guard !closing else { return }
        closing = true
        retryTimer?.cancelOnLoop()
        retryTimer = nil
        if armed {
            loop.park(acceptUserData)
            loop.cancel(acceptUserData)
        } else {
            finishClose()
        }
    }

    private func finishClose() {
        guard !closed else { return }
        closed = true
        loop.closeDescriptor(fd)
        if case .unix(let path) = address { unlink(path) }
        loop.ledger.listenerClosed()
        loop.resources[ObjectIdentifier(self)] = nil
    }

    func loopIsStopping() { closeOnLoop() }
}
