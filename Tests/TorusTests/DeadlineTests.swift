import Glibc
import Testing
import Torus
import TorusTestSupport

/// Records when bytes last arrived and when and why a server-side connection closed
/// (`MonotonicClock`, the loop's clock).
private final class CloseClock: ConnectionHandler, @unchecked Sendable {
    let closedAt = Locked<(at: UInt64, error: String)?>(nil)
    let receivedAt = Locked<[UInt64]>([])
    func received(_ bytes: ReceivedBytes, from connection: Connection) {
        receivedAt.withLock { $0.append(MonotonicClock.now()) }
    }
    func closed(_ connection: Connection, error: (any Error)?) {
        closedAt.withLock { $0 = (MonotonicClock.now(), error.map { "\($0)" } ?? "none") }
    }
}

/// Watches its connection's liveness and asks to be checked every `period`.
private final class PeriodicLiveness: ConnectionHandler, @unchecked Sendable {
    let period: UInt64
    let calls = Locked<[UInt64]>([])
    init(period: Duration) { self.period = period.nanoseconds }
    func connected(_ connection: Connection) { connection.watchLiveness() }
    func received(_ bytes: ReceivedBytes, from connection: Connection) {}
    func checkLiveness(_ connection: Connection, now: UInt64) -> UInt64? {
        calls.withLock { $0.append(now) }
        return now + period
    }
}

/// On connect: queues `bytes` for a peer that never reads.
private final class Flooder: ConnectionHandler, @unchecked Sendable {
    let bytes: Int
    let closed = Locked<String?>(nil)
    init(bytes: Int) { self.bytes = bytes }
    func connected(_ connection: Connection) {
        let chunk = [UInt8](repeating: 0x55, count: 1 << 20)
        for _ in 0..<bytes >> 20 { connection.send(chunk) }
    }
    func received(_ bytes: ReceivedBytes, from connection: Connection) {}
    func closed(_ connection: Connection, error: (any Error)?) { closed.withLock { $0 = error.map { "\($0)" } ?? "none" } }
}

/// Blocking loopback client sockets (real peers that stay silent).
private func connectSilently(to address: SocketAddress, count: Int) throws -> [Int32] {
    guard let port = address.port else { throw IOError(errno: EINVAL, "address") }
    var fds: [Int32] = []
    for _ in 0..<count {
        do {
            fds.append(try blockingLoopbackSocket(port: port))
        } catch {
            fds.forEach { Glibc.close($0) }
            throw error
        }
    }
    return fds
}

@Suite("Deadlines through real connections")
struct DeadlineTests {
    @Test("activity postpones the idle timeout; silence then closes it, never early")
    func activityPostponesIdleTimeout() async throws {
        let handler = CloseClock()
        try await withLoop { loop in
            var options = SocketOptions()
            options.idleTimeout = .milliseconds(300)
            let server = try Server.start(on: [loop], address: try .tcp("127.0.0.1", 0), options: options) { _ in handler }
            let client = try await AsyncConnection.connect(to: server.address, on: loop)
            // Eight bytes 100 ms apart: 800 ms, well past one idle timeout.
            var attempts: [UInt64] = []
            var written = 0
            for _ in 0..<8 {
                // A stalled machine may leave a gap past the timeout: the server then
                // closes (legitimately) and the write fails.
                attempts.append(MonotonicClock.now())
                guard (try? await client.write("x")) != nil else { break }
                written += 1
                try await Task.sleep(for: .milliseconds(100))
            }
            #expect(try await client.read() == nil)   // then silence: the server closes
            let closed = try #require(handler.closedAt.current)
            #expect(closed.error.contains("idle"))
            let received = handler.receivedAt.current
            // Never before a full timeout of silence (less the handler's own lateness).
            #expect(closed.at >= (received.last ?? 0) + 290_000_000, "closed before the idle timeout")
            // Activity postponed it: every byte sent under the timeout apart arrived.
            let gaps = zip(attempts, attempts.dropFirst()).map { $1 - $0 }
            if gaps.allSatisfy({ $0 < 250_000_000 }) {
                #expect(written == 8 && received.count == 8, "\(received.count) of \(written) bytes")
            }
            await client.close()
            server.close()
        }
    }

    @Test("a send timeout with no idle timeout: a peer that stops reading is closed")
    func sendTimeoutAlone() async throws {
        let flooder = Flooder(bytes: 32 << 20)
        try await withLoop { loop in
            var options = SocketOptions()
            options.idleTimeout = nil
            options.sendTimeout = .milliseconds(300)
            let server = try Server.start(on: [loop], address: try .tcp("127.0.0.1", 0), options: options) { _ in flooder }
            let fds = try connectSilently(to: server.address, count: 1)
            defer { fds.forEach { Glibc.close($0) } }
            #expect(await eventually { flooder.closed.current != nil })
            #expect(flooder.closed.current?.contains("send") == true)
            server.close()
        }
    }

    @Test("a handler's own deadline is met at the times it returns, not every sweep")
    func handlerDeadlines() async throws {
        let handler = PeriodicLiveness(period: .milliseconds(500))
        try await withLoop { loop in
            let server = try Server.start(on: [loop], address: try .tcp("127.0.0.1", 0)) { _ in handler }
            let fds = try connectSilently(to: server.address, count: 1)
            defer { fds.forEach { Glibc.close($0) } }
            let start = MonotonicClock.now()
            try await Task.sleep(for: .milliseconds(1_700))
            let calls = handler.calls.current
            let elapsed = MonotonicClock.now() - start
            // First within one resolution step, then every 500 ms: never more often.
            #expect(calls.count >= 1 && UInt64(calls.count) <= 1 + elapsed / 500_000_000,
                    "\(calls.count) checks in \(elapsed / 1_000_000) ms")
            for (a, b) in zip(calls, calls.dropFirst()) { #expect(b - a >= 500_000_000) }
            server.close()
        }
    }

    @Test("1,000 idle connections with a 60 s idle timeout: no deadline checks, one timer")
    func idleConnectionsCostNoChecks() async throws {
        try await withLoop { loop in
            var options = SocketOptions()
            options.idleTimeout = .seconds(60)
            let server = try Server.start(on: [loop], address: try .tcp("127.0.0.1", 0), options: options) { _ in CloseClock() }
            let fds = try connectSilently(to: server.address, count: 1_000)
            defer { fds.forEach { Glibc.close($0) } }
            #expect(await eventually(timeout: .seconds(60)) { await loop.ledgerSnapshot().connections == 1_000 })
            let before = await loop.ledgerSnapshot()
            try await Task.sleep(for: .milliseconds(1_500))
            let after = await loop.ledgerSnapshot()
            // The old sweep visited each of them 4 times a second (6,000 here).
            #expect(after.deadlineChecks - before.deadlineChecks == 0)
            // One timer for the earliest deadline (plus housekeeping's, at most).
            #expect(after[.timeout].inFlight <= 2, "\(after[.timeout].inFlight) timeouts in flight")
            #expect(after[.timeout].submitted - before[.timeout].submitted <= 2)
            server.close()
        }
    }

    @Test("idle connections past their timeout are each checked once, then closed")
    func eachCheckedOnce() async throws {
        let ledger = try await withLoop { loop in
            var options = SocketOptions()
            options.idleTimeout = .milliseconds(500)
            let handlers = Locked<[CloseClock]>([])
            let server = try Server.start(on: [loop], address: try .tcp("127.0.0.1", 0), options: options) { _ in
                let h = CloseClock()
                handlers.withLock { $0.append(h) }
                return h
            }
            let fds = try connectSilently(to: server.address, count: 200)
            defer { fds.forEach { Glibc.close($0) } }
            // Counted by their handlers, not by the open count at one moment: on a
            // loaded machine the first may time out before the last is accepted.
            #expect(await eventually(timeout: .seconds(60)) {
                let all = handlers.current
                return all.count == 200 && all.allSatisfy { $0.closedAt.current != nil }
            })
            #expect(handlers.current.allSatisfy { $0.closedAt.current?.error.contains("idle") == true })
            #expect(await loop.ledgerSnapshot().connections == 0)
            server.close()
        }
        // Each connection is checked when its deadline is due and closed right there.
        #expect(ledger.deadlineChecks == 200)
    }
}
