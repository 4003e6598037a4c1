import CLiburing

/// Per-connection socket and liveness settings.
///
/// Kernel-side liveness: TCP keepalive notices an idle link whose peer vanished
/// (powered off, cable cut: no FIN, no RST ever arrives) and `TCP_USER_TIMEOUT`
/// fails a link whose sent data stays unacknowledged. Either surfaces as an ordinary
/// completion with `-ETIMEDOUT` and closes the connection through the normal path.
/// Application-side liveness: `idleTimeout` (no bytes received) and `sendTimeout`
/// (queued bytes make no progress) are enforced by the loop's deadline wheel.
///
/// A listener applies the kernel options to its listening socket; Linux copies them
/// into every accepted socket, so accepting costs no extra `setsockopt` calls.
public struct SocketOptions: Sendable, Equatable {
    public var noDelay = true
    /// `SO_KEEPALIVE` with `TCP_KEEPIDLE`, `TCP_KEEPINTVL`, `TCP_KEEPCNT` (seconds, count).
    public var keepAlive: KeepAlive? = KeepAlive()
    /// `TCP_USER_TIMEOUT`: how long sent data may stay unacknowledged.
    public var userTimeout: Duration? = .seconds(60)
    /// Close when nothing was received for this long.
    public var idleTimeout: Duration? = nil
    /// Close when queued outbound bytes make no progress for this long.
    public var sendTimeout: Duration? = .seconds(60)
    /// Write queue water marks: above `high` the connection reports not writable and
    /// async writers wait; below `low` it reports writable again.
    ///
    /// Above `high` the connection also stops reading from its peer until the queue
    /// is below `low` (a peer that does not read its replies cannot make the server
    /// hold more than about this much for it).
    public var writeHighWater = 256 << 10
    public var writeLowWater = 64 << 10
    /// The most bytes one connection's write queue may hold. Above the high water mark
    /// the connection stops reading from its peer by itself; what a handler still
    /// queues beyond this limit (a fan-out to a peer that does not read) closes the
    /// connection with `QueueLimitError`, logged and counted in the ledger.
    public var maxQueuedBytes = 64 << 20
    /// Inbound water mark for the async face: above it, receiving pauses until the
    /// application has consumed below half of it.
    public var readHighWater = 1 << 20

    public struct KeepAlive: Sendable, Equatable {
        public var idle: Int32 = 60
        public var interval: Int32 = 10
        public var count: Int32 = 5
        public init(idle: Int32 = 60, interval: Int32 = 10, count: Int32 = 5) {
            self.idle = idle
            self.interval = interval
            self.count = count
        }
    }

    public init() {}

    /// Applies the kernel-side options to `fd` (TCP sockets only; Unix sockets skip them).
    func apply(to fd: Int32, family: Int32) {
        guard family == AF_INET || family == AF_INET6 else { return }
        setOption(fd, Int32(IPPROTO_TCP), Int32(TCP_NODELAY), noDelay ? 1 : 0)
        if let ka = keepAlive {
            setOption(fd, SOL_SOCKET, SO_KEEPALIVE, 1)
            setOption(fd, Int32(IPPROTO_TCP), Int32(TCP_KEEPIDLE), ka.idle)
            setOption(fd, Int32(IPPROTO_TCP), Int32(TCP_KEEPINTVL), ka.interval)
            setOption(fd, Int32(IPPROTO_TCP), Int32(TCP_KEEPCNT), ka.count)
        } else {
            setOption(fd, SOL_SOCKET, SO_KEEPALIVE, 0)
        }
        let ms = userTimeout.map { Int32(clamping: $0.nanoseconds / 1_000_000) } ?? 0
        setOption(fd, Int32(IPPROTO_TCP), Int32(TCP_USER_TIMEOUT), ms)
    }
}

@discardableResult
func setOption(_ fd: Int32, _ level: Int32, _ name: Int32, _ value: Int32) -> Bool {
    var v = value
    return setsockopt(fd, level, name, &v, socklen_t(MemoryLayout<Int32>.size)) == 0
}

func getOption(_ fd: Int32, _ level: Int32, _ name: Int32) -> Int32? {
    var v: Int32 = 0
    var len = socklen_t(MemoryLayout<Int32>.size)
    return getsockopt(fd, level, name, &v, &len) == 0 ? v : nil
}

/// Makes a socket for `address` (non-blocking is not needed: io_uring never blocks
/// the loop on it), optionally bound and listening.
func makeSocket(for address: SocketAddress, listen backlog: Int32?, reusePort: Bool) throws(IOError) -> Int32 {
    let fd = socket(address.family, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
    guard fd >= 0 else { throw IOError(errno: torus_errno(), "socket") }
    guard let backlog else { return fd }
    if case .unix(let path) = address { unlink(path) }
    if address.family != AF_UNIX {
        setOption(fd, SOL_SOCKET, SO_REUSEADDR, 1)
        if reusePort { setOption(fd, SOL_SOCKET, SO_REUSEPORT, 1) }
    }
    var storage = sockaddr_storage()
    let len = address.write(to: &storage)
    let rc = withUnsafePointer(to: &storage) { p in
        p.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, len) }
    }
    guard rc == 0 else {
        let e = torus_errno()
        close(fd)
        throw IOError(errno: e, "bind \(address)")
    }
    guard listen(fd, backlog) == 0 else {
        let e = torus_errno()
        close(fd)
        throw IOError(errno: e, "listen \(address)")
    }
    return fd
}
