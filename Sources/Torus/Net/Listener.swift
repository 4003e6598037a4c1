import CLiburing
import Glibc

/// A listening socket on one loop, accepting with one multishot `accept` (or, where
/// the loop's ``KernelFeatures/accept`` is single-shot, one `accept` re-armed after
/// each connection).
///
/// Each accepted fd becomes a `Connection` whose handler `makeHandler` provides (on
/// the loop thread). When accepting fails for lack of resources (`EMFILE`, `ENFILE`,
/// `ENOBUFS`, `ENOMEM`) the pending connections stay in the kernel's backlog, the
/// listener waits `retryDelay` and re-arms; each failure in a row doubles the wait up
/// to `maxRetryDelay`, and the first accepted connection ends the episode (the wait
/// is `retryDelay` again). So it recovers by itself once fds free up, makes a bounded
/// number of attempts while they do not, and logs one warning per episode (every
/// failure is counted in the ledger's `acceptErrors`). Closing cancels the accept and
/// closes the fd after its final CQE.
///
/// Threading: created and used on its loop's thread; `close()` is safe anywhere.
public final class Listener: @unchecked Sendable, CompletionTarget, LoopResource {
    public let loop: EventLoop
    public let fd: Int32
    /// The bound address (with the real port when 0 was asked for).
    public let address: SocketAddress
    public var options: SocketOptions { sharedOptions.value }
    /// The one copy every accepted connection refers to.
    private let sharedOptions: SharedSocketOptions
    /// Delay before re-arming after a resource error (doubled after each failure in a
    /// row, up to `maxRetryDelay`). Set it on the loop thread.
    public var retryDelay = Duration.milliseconds(50)
    /// The longest wait between attempts while resources stay exhausted.
    public var maxRetryDelay = Duration.seconds(1)
    private let makeHandler: (Connection) -> any ConnectionHandler
    private var acceptUserData: UInt64 = 0
    private var armed = false
    private var closing = false
    private var closed = false
    private var retryTimer: Timer?
    /// Where accepting is: running, or backing off after a resource error.
    private enum AcceptState {
        case accepting
        /// The multishot ended (or is being stopped) for lack of resources: re-armed
        /// after `delay`; `failures` in a row so far in this episode.
        case backingOff(delay: Duration, failures: Int)
    }
    private var acceptState = AcceptState.accepting
    /// Resource errors since the listener started, and back-off episodes (for tests).
    package private(set) var exhaustionFailures = 0
    package private(set) var backoffEpisodes = 0

    /// Binds and listens on `address` from the loop thread.
    public init(on loop: EventLoop, address: SocketAddress, options: SocketOptions = SocketOptions(),
                reusePort: Bool = true, backlog: Int32 = 4096,
                makeHandler: @escaping (Connection) -> any ConnectionHandler) throws(IOError) {
        loop.assertInLoop()
        self.loop = loop
        sharedOptions = SharedSocketOptions(options)
        self.makeHandler = makeHandler
        fd = try makeSocket(for: address, listen: backlog, reusePort: reusePort)
        // Accepted sockets inherit these from the listener: no setsockopt per accept.
        options.apply(to: fd, family: address.family)
        self.address = SocketAddress.local(of: fd) ?? address
        loop.register(self, as: .listener)
        arm()
    }

    private func arm() {
        armed = true
        let mode = loop.kernelFeatures.accept
        acceptUserData = loop.submit(.accept, target: self) { sqe in
            switch mode {
            case .multishot: io_uring_prep_multishot_accept(sqe, fd, nil, nil, Int32(SOCK_CLOEXEC.rawValue))
            case .singleShot: io_uring_prep_accept(sqe, fd, nil, nil, Int32(SOCK_CLOEXEC.rawValue))
            }
        }
    }

    func complete(_ completion: Completion, tag: UInt32, final: Bool, loop: EventLoop) -> Rearm {
        if final { armed = false }
        let result = completion.result
        if result >= 0 {
            if case .backingOff = acceptState {
                loop.logger.notice("accepting again after running out of resources",
                                   metadata: ["fd": "\(fd)", "address": "\(address)"])
            }
            acceptState = .accepting
            if closing {
                Glibc.close(result)
            } else {
                let connection = Connection(loop: loop, fd: result, options: sharedOptions)
                connection.handler = makeHandler(connection)
                connection.start()
            }
        } else if Self.isExhaustion(result) {
            // Out of fds or memory: the pending connections wait in the backlog. Stop
            // the multishot (if the kernel kept it going) and retry after a pause.
            loop.ledger.acceptFailed()
            exhaustionFailures += 1
            switch acceptState {
            case .accepting:
                backoffEpisodes += 1
                loop.logger.warning("accept failed for lack of resources: backing off",
                                    metadata: ["fd": "\(fd)", "address": "\(address)",
                                               "reason": "\(IOError(result: result, "accept"))",
                                               "retry": "\(retryDelay)", "max": "\(maxRetryDelay)"])
                acceptState = .backingOff(delay: retryDelay, failures: 1)
            case .backingOff(let delay, let failures):
                acceptState = .backingOff(delay: Swift.min(delay * 2, maxRetryDelay), failures: failures + 1)
            }
            if !final { loop.cancel(acceptUserData) }
        } else if result != -ECANCELED {
            // A connection that failed between the handshake and the accept (reset):
            // nothing to accept, and the listener goes on.
            loop.logger.debug("accept failed", metadata: ["fd": "\(fd)", "reason": "\(IOError(result: result, "accept"))"])
        }
        if closing {
            if !armed { finishClose() }
            return .done
        }
        guard final else { return .done }
        if case .backingOff(let delay, _) = acceptState {
            retryTimer = loop.schedule(after: delay) { [self] in
                retryTimer = nil
                if !closing { arm() }
            }
            return .done
        }
        return .rearm
    }

    func rearm(tag: UInt32, loop: EventLoop) { arm() }

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
            loop.cancel(acceptUserData, parking: true)
        } else {
            finishClose()
        }
    }

    private func finishClose() {
        guard !closed else { return }
        closed = true
        loop.closeDescriptor(fd)
        if case .unix(let path) = address { unlink(path) }
        loop.unregister(self, as: .listener)
    }

    func loopIsStopping() { closeOnLoop() }
}
