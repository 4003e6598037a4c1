import CLiburing

/// One outgoing connect: `IORING_OP_CONNECT` linked to a `LINK_TIMEOUT`.
///
/// Ownership: owns the `sockaddr_storage` and `__kernel_timespec` the kernel reads,
/// and the socket until it is handed to a `Connection` (or closed on failure). The
/// operation table keeps it alive until both CQEs (connect and link timeout) arrive.
final class Connector: CompletionTarget {
    let loop: EventLoop
    let fd: Int32
    let options: SocketOptions
    private let address = UnsafeMutablePointer<sockaddr_storage>.allocate(capacity: 1)
    private let timeout = UnsafeMutablePointer<__kernel_timespec>.allocate(capacity: 1)
    private var pending = 0
    private var result: Int32 = 0
    private let done: (Result<Connection, any Error>) -> Void
    private let makeHandler: ((Connection) -> any ConnectionHandler)?

    enum Tag: UInt32 { case connect, timeout }

    init(loop: EventLoop, fd: Int32, options: SocketOptions,
         makeHandler: ((Connection) -> any ConnectionHandler)?,
         done: @escaping (Result<Connection, any Error>) -> Void) {
        self.loop = loop
        self.fd = fd
        self.options = options
        self.makeHandler = makeHandler
        self.done = done
        timeout.initialize(to: __kernel_timespec())
    }

    deinit {
        address.deallocate()
        timeout.deallocate()
    }

    func start(to target: SocketAddress, within limit: Duration) {
        let len = target.write(to: address)
        let ns = limit.nanoseconds
        timeout.pointee.tv_sec = Int64(ns / 1_000_000_000)
        timeout.pointee.tv_nsec = Int64(ns % 1_000_000_000)
        pending = 2
        loop.reserveSubmissions(2)
        loop.submit(.connect, target: self, tag: Tag.connect.rawValue) { sqe in
            address.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                io_uring_prep_connect(sqe, fd, $0, len)
            }
            sqe.pointee.flags |= TORUS_IOSQE_IO_LINK
        }
        loop.submit(.linkTimeout, target: self, tag: Tag.timeout.rawValue) { sqe in
            io_uring_prep_link_timeout(sqe, timeout, 0)
        }
    }

    func complete(_ completion: Completion, tag: UInt32, final: Bool, loop: EventLoop) -> Rearm {
        if tag == Tag.connect.rawValue { result = completion.result }
        pending -= 1
        guard pending == 0 else { return .done }
        if result == 0 {
            let connection = Connection(loop: loop, fd: fd, options: options)
            connection.handler = makeHandler?(connection)
            connection.start()
            done(.success(connection))
        } else {
            loop.closeDescriptor(fd)
            // A connect cut short by its linked timeout completes with -ECANCELED.
            done(.failure(result == -ECANCELED ? TimeoutError("connect") : IOError(result: result, "connect")))
        }
        return .done
    }
}

extension Connection {
    /// Connects to `address` with a timeout; `makeHandler` gives the new connection its
    /// handler before it starts receiving; `done` reports the outcome. Loop thread only.
    public static func connect(to address: SocketAddress, on loop: EventLoop,
                               options: SocketOptions = SocketOptions(),
                               timeout: Duration = .seconds(10),
                               makeHandler: @escaping (Connection) -> any ConnectionHandler,
                               done: @escaping (Result<Connection, any Error>) -> Void = { _ in }) {
        loop.assertInLoop()
        let fd: Int32
        do {
            fd = try makeSocket(for: address, listen: nil, reusePort: false)
        } catch {
            done(.failure(error))
            return
        }
        options.apply(to: fd, family: address.family)
        Connector(loop: loop, fd: fd, options: options, makeHandler: makeHandler, done: done)
            .start(to: address, within: timeout)
    }
}
