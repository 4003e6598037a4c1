import Glibc
import Synchronization
import Testing
import Torus
import TorusTestSupport

/// What the server side saw, written on the loop thread, read by the test.
private final class Observed: Sendable {
    struct State {
        var maxQueued = 0
        var pausedWhileAboveHighWater = false
        var received = 0
        var closedWith: (any Error)?
        var closed = false
    }
    let state = Mutex(State())
}

/// Echoes by copying, with no backpressure logic of its own: the core must pause.
private final class NaiveEcho: ConnectionHandler {
    let observed: Observed
    init(_ observed: Observed) { self.observed = observed }
    func received(_ bytes: ReceivedBytes, from connection: Connection) {
        bytes.withUnsafeBytes { _ = connection.send($0) }
        let queued = connection.queuedBytes
        let paused = connection.isReadingPaused
        observed.state.withLock {
            $0.received += bytes.count
            $0.maxQueued = max($0.maxQueued, queued)
            if !connection.isWritable && paused { $0.pausedWhileAboveHighWater = true }
        }
    }
    func closed(_ connection: Connection, error: (any Error)?) {
        observed.state.withLock {
            $0.closed = true
            $0.closedWith = error
        }
    }
}

/// On the first bytes, queues `burst` bytes at once (a fan-out to a peer that does not read).
private final class Amplifier: ConnectionHandler {
    let observed: Observed
    let burst: Int
    init(_ observed: Observed, burst: Int) {
        self.observed = observed
        self.burst = burst
    }
    func received(_ bytes: ReceivedBytes, from connection: Connection) {
        let block = [UInt8](repeating: 0x5A, count: 64 << 10)
        var sent = 0
        while sent < burst && connection.send(block) { sent += block.count }
    }
    func closed(_ connection: Connection, error: (any Error)?) {
        observed.state.withLock {
            $0.closed = true
            $0.closedWith = error
        }
    }
}

/// A blocking client socket with a small receive buffer that never reads.
private func connectNonReader(to port: UInt16) throws -> Int32 {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    #expect(fd >= 0)
    var small: Int32 = 4096
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &small, socklen_t(MemoryLayout<Int32>.size))
    var addr = sockaddr_in()
    addr.sin_family = sa_family_t(AF_INET)
    addr.sin_port = port.bigEndian
    addr.sin_addr.s_addr = inet_addr("127.0.0.1")
    let rc = withUnsafePointer(to: &addr) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
    }
    #expect(rc == 0)
    return fd
}

/// The most a TCP socket's send buffer grows to (`net.ipv4.tcp_wmem`'s third field;
/// 4 MiB, the kernel's default, when it cannot be read).
private func tcpSendBufferMax() -> Int {
    let fd = open("/proc/sys/net/ipv4/tcp_wmem", O_RDONLY)
    guard fd >= 0 else { return 4 << 20 }
    defer { close(fd) }
    var bytes = [UInt8](repeating: 0, count: 128)
    let n = bytes.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
    guard n > 0 else { return 4 << 20 }
    let fields = String(decoding: bytes[..<n], as: UTF8.self).split(whereSeparator: { $0 == " " || $0 == "\t" || $0 == "\n" })
    return fields.last.flatMap { Int($0) } ?? (4 << 20)
}

/// Writes up to `total` bytes without blocking for more than `seconds`; returns what went out.
private func writeWithoutReading(_ fd: Int32, total: Int, seconds: Double) async throws -> Int {
    let chunk = [UInt8](repeating: 0x41, count: 64 << 10)
    var sent = 0
    let deadline = ContinuousClock.now + .milliseconds(Int(seconds * 1000))
    while sent < total && ContinuousClock.now < deadline {
        let n = chunk.withUnsafeBytes { send(fd, $0.baseAddress, min($0.count, total - sent), Int32(MSG_DONTWAIT | MSG_NOSIGNAL)) }
        if n > 0 { sent += n } else { try await Task.sleep(for: .milliseconds(5)) }
    }
    return sent
}

@Suite("Slow readers")
struct SlowReaderTests {
    @Test("a peer that never reads its replies makes the core stop reading from it")
    func coreStopsReadingFromNonReader() async throws {
        let observed = Observed()
        var options = SocketOptions()
        options.writeHighWater = 64 << 10
        options.writeLowWater = 16 << 10
        try await withGroup(loops: 1) { group in
            let server = try Server.start(on: group, address: try .tcp("127.0.0.1", 0), options: options) { _ in
                NaiveEcho(observed)
            }
            let fd = try connectNonReader(to: server.address.port ?? 0)
            defer { Glibc.close(fd) }
            // 32 MiB offered: without the pause the server would queue nearly all of it.
            let sent = try await writeWithoutReading(fd, total: 32 << 20, seconds: 3)
            let seen = observed.state.withLock { ($0.maxQueued, $0.pausedWhileAboveHighWater, $0.received) }
            #expect(sent < 32 << 20, "the client should have been stopped by TCP flow control")
            #expect(seen.1, "reading was not paused above the high water mark")
            // The queue stops near the high water mark: what one turn of receives
            // delivered after the pause was asked (at most a few ring buffers).
            #expect(seen.0 < 2 << 20, "queued \(seen.0) bytes for a peer that does not read")
            // What the server read is what its queue held plus what the kernel took of
            // its replies: the socket's send buffer, which loopback autotunes up to
            // tcp_wmem's maximum (4 MiB by default). Without the pause it would read
            // nearly all 32 MiB.
            let bound = tcpSendBufferMax() + (2 << 20)
            #expect(seen.2 < bound, "the server kept reading: \(seen.2) bytes (bound \(bound))")
            server.close()
        }
    }

    @Test("a write queue past maxQueuedBytes closes the connection with QueueLimitError")
    func queueLimitCloses() async throws {
        let observed = Observed()
        var options = SocketOptions()
        options.writeHighWater = 64 << 10
        options.writeLowWater = 16 << 10
        options.maxQueuedBytes = 1 << 20
        var ledgerBefore = LedgerSnapshot()
        try await withGroup(loops: 1) { group in
            let server = try Server.start(on: group, address: try .tcp("127.0.0.1", 0), options: options) { _ in
                Amplifier(observed, burst: 4 << 20)
            }
            let fd = try connectNonReader(to: server.address.port ?? 0)
            defer { Glibc.close(fd) }
            _ = try await writeWithoutReading(fd, total: 1, seconds: 1)
            for _ in 0..<300 where !observed.state.withLock({ $0.closed }) {
                try await Task.sleep(for: .milliseconds(10))
            }
            let error = observed.state.withLock { $0.closedWith }
            let limit = try #require(error as? QueueLimitError, "closed with \(String(describing: error))")
            #expect(limit.limit == 1 << 20 && limit.queued > 1 << 20)
            ledgerBefore = await group.loops[0].ledgerSnapshot()
            server.close()
        }
        #expect(ledgerBefore.queueLimitCloses == 1)
    }
}
