import CLiburing
import Synchronization
import Testing
import Torus
import TorusTestSupport

/// Records what happened to a server-side connection, for assertions.
final class Recorder: @unchecked Sendable {
    private let state = Mutex<(closed: Int, errors: [String], received: Int)>((0, [], 0))
    func closed(_ error: (any Error)?) {
        state.withLock {
            $0.closed += 1
            if let error { $0.errors.append("\(error)") }
        }
    }
    func received(_ n: Int) { state.withLock { $0.received += n } }
    var closedCount: Int { state.withLock { $0.closed } }
    var errors: [String] { state.withLock { $0.errors } }
    var receivedBytes: Int { state.withLock { $0.received } }
}

/// On the first bytes: sends `count` small messages, each its own `send` call.
final class Chatty: ConnectionHandler {
    let count: Int
    init(count: Int) { self.count = count }
    func received(_ bytes: ReceivedBytes, from connection: Connection) {
        for i in 0..<count {
            var line = String(i)
            while line.utf8.count < 9 { line = "0" + line }
            connection.send(line + "\n")
        }
    }
}

/// On the first bytes: writes `sizes.count` records in place with `send(reserving:)`,
/// each `size` bytes of its index's low byte (a size above the reservable bytes takes
/// the copying path; a zero-byte write queues nothing), then one byte more than it
/// wrote and reserved is never written.
final class InPlaceWriter: ConnectionHandler {
    let sizes: [Int]
    let results: Locked<[Bool]>
    init(sizes: [Int], results: Locked<[Bool]>) {
        self.sizes = sizes
        self.results = results
    }
    func received(_ bytes: ReceivedBytes, from connection: Connection) {
        var ok: [Bool] = []
        for (i, size) in sizes.enumerated() {
            ok.append(connection.send(reserving: size + 1) { dst in
                dst.baseAddress?.initializeMemory(as: UInt8.self, repeating: UInt8(truncatingIfNeeded: i), count: size)
                return size
            })
        }
        connection.closeAfterWriting()
        // Closing: refused without calling the body.
        ok.append(!connection.send(reserving: 8) { _ in
            Issue.record("body called on a closing connection")
            return 0
        })
        results.withLock { $0 = ok }
    }
}

/// On the first bytes: a `send(reserving:)` body that closes the connection, writing
/// into a fresh chunk or (after a first record) into the tail chunk; records results.
final class CloseInsideReservation: ConnectionHandler {
    let inTail: Bool
    let results: Locked<[Bool]>
    init(inTail: Bool, results: Locked<[Bool]>) {
        self.inTail = inTail
        self.results = results
    }
    func received(_ bytes: ReceivedBytes, from connection: Connection) {
        var ok: [Bool] = []
        if inTail {
            ok.append(connection.send(reserving: 8) { dst in
                dst.storeBytes(of: 0x6F6B_6F6B_6F6B_6F6B as UInt64, as: UInt64.self)
                return 8
            })
        }
        ok.append(connection.send(reserving: 64) { _ in
            connection.close()
            return 64
        })
        results.withLock { $0 = ok }
    }
}

/// Streams `total` bytes to the peer as fast as the write queue allows.
final class Streamer: ConnectionHandler {
    let recorder: Recorder
    var remaining: Int
    let block = testBytes(64 * 1024)
    init(total: Int, recorder: Recorder) {
        remaining = total
        self.recorder = recorder
    }
    func connected(_ connection: Connection) { pump(connection) }
    func received(_ bytes: ReceivedBytes, from connection: Connection) { recorder.received(bytes.count) }
    func writable(_ connection: Connection) { pump(connection) }
    func closed(_ connection: Connection, error: (any Error)?) { recorder.closed(error) }
    func pump(_ connection: Connection) {
        while remaining > 0 && connection.isWritable && connection.isOpen {
            let n = min(remaining, block.count)
            _ = block.withUnsafeBytes { connection.send(UnsafeRawBufferPointer(rebasing: $0[0..<n])) }
            remaining -= n
        }
    }
}

/// Records receipt and close; on the first bytes, optionally starts a big send and closes.
final class CloseWhileBusy: ConnectionHandler {
    let recorder: Recorder
    init(recorder: Recorder) { self.recorder = recorder }
    func received(_ bytes: ReceivedBytes, from connection: Connection) {
        recorder.received(bytes.count)
        // Queue far more than both socket buffers hold (loopback autotuning can take
        // ~10 MiB): with a peer that does not read, a send stays in flight.
        let big = testBytes(1 << 20)
        for _ in 0..<48 { connection.send(big) }
        connection.loop.schedule(after: .milliseconds(100)) { connection.close() }
    }
    func closed(_ connection: Connection, error: (any Error)?) { recorder.closed(error) }
}

@Suite("Connections")
struct ConnectionTests {
    @Test("many small sends in one turn are gathered into few sendmsg operations")
    func gatheredWrites() async throws {
        try await withGroup(loops: 2) { group in
            let server = try Server.start(on: group, address: try .tcp("127.0.0.1", 0)) { _ in Chatty(count: 1000) }
            let client = try await AsyncConnection.connect(to: server.address, on: group.loops[1])
            let before = await server.listeners.asyncLedgerSends(group)
            try await client.write("go")
            let bytes = try await client.read(exactly: 10_000)
            let lines = String(decoding: bytes, as: UTF8.self).split(separator: "\n")
            #expect(lines.count == 1000)
            #expect(lines.enumerated().allSatisfy { Int($0.element) == $0.offset })
            let after = await server.listeners.asyncLedgerSends(group)
            // 1000 send() calls in one handler call: one sendmsg (a few if the socket
            // buffer filled up), never one per call.
            #expect(after - before <= 4, "sendmsg operations: \(after - before)")
            await client.close()
            server.close()
        }
    }

    @Test("send(reserving:) writes in place into the tail chunk, a fresh chunk, or through a copy beyond a chunk")
    func reservingWrites() async throws {
        try await withLoop { loop in
            // 16 KiB chunks: the first records share the tail chunk, 0 writes nothing,
            // 40,000 is beyond a chunk (the copying path), the last needs a fresh chunk.
            let sizes = [1, 100, 5000, 10_000, 0, 40_000, 3, 16 * 1024 - 1]
            let results = Locked<[Bool]>([])
            let server = try Server.start(on: [loop], address: try .tcp("127.0.0.1", 0)) { _ in
                InPlaceWriter(sizes: sizes, results: results)
            }
            let client = try await AsyncConnection.connect(to: server.address, on: loop)
            try await client.write("go")
            let bytes = try await client.read(exactly: sizes.reduce(0, +))
            var expected: [UInt8] = []
            for (i, size) in sizes.enumerated() {
                expected += [UInt8](repeating: UInt8(truncatingIfNeeded: i), count: size)
            }
            #expect(bytes == expected)
            #expect(try await client.read() == nil, "the server closes after writing")
            #expect(results.current == [Bool](repeating: true, count: sizes.count + 1))
            await client.close()
            server.close()
        }
    }

    @Test("a send(reserving:) body that closes the connection loses nothing: its chunk goes back to the pool",
          arguments: [false, true])
    func reservingBodyCloses(inTail: Bool) async throws {
        try await withLoop { loop in
            let results = Locked<[Bool]>([])
            let server = try Server.start(on: [loop], address: try .tcp("127.0.0.1", 0)) { _ in
                CloseInsideReservation(inTail: inTail, results: results)
            }
            let client = try await AsyncConnection.connect(to: server.address, on: loop)
            try await client.write("go")
            // The close dropped what was queued: EOF (or a reset), no bytes.
            let got = try? await client.read()
            #expect(got == nil || got == [])
            #expect(results.current == (inTail ? [true, false] : [false]))
            await client.close()
            server.close()
        }
    }

    @Test("a write on a connection closing with an error throws that error, not a bare EPIPE")
    func writeWhileClosingWithAnErrorThrowsIt() async throws {
        struct Refused: Error, Equatable {}
        try await withGroup(loops: 2) { group in
            let server = try Server.start(on: group, address: try .tcp("127.0.0.1", 0)) { _ in Echo() }
            let loop = group.loops[1]
            let thrown = try await loop.run { () -> String in
                let client = try await AsyncConnection.connect(to: server.address, on: loop)
                // More than the socket takes at once (the client reads no echo), so the
                // close waits for the queue to drain: the connection is closing, not closed.
                _ = client.connection.send(testBytes(8 << 20))
                // As a failed TLS handshake does: last bytes out, then the close, with an error.
                client.connection.closeAfterWriting(error: Refused())
                #expect(client.connection.closingError is Refused)
                do {
                    try await client.write("after")
                    return "no error"
                } catch {
                    await client.close()
                    return "\(type(of: error))"
                }
            }
            #expect(thrown == "Refused")
            server.close()
        }
    }

    @Test("peer reset while the server is reading")
    func resetMidRead() async throws {
        let recorder = Recorder()
        try await withGroup(loops: 2) { group in
            let server = try Server.start(on: group, address: try .tcp("127.0.0.1", 0)) { _ in
                CloseWhileBusyRecorderOnly(recorder: recorder)
            }
            let loop = group.loops[1]
            try await loop.run {
                let client = try await AsyncConnection.connect(to: server.address, on: loop)
                try await client.write(testBytes(1000))
                try await loop.sleep(for: .milliseconds(50))
                client.connection.reset()
            }
            #expect(await eventually { recorder.closedCount == 1 })
            server.close()
        }
    }

    @Test("peer reset while the server is writing")
    func resetMidWrite() async throws {
        let recorder = Recorder()
        try await withGroup(loops: 2) { group in
            let server = try Server.start(on: group, address: try .tcp("127.0.0.1", 0)) { _ in
                Streamer(total: 256 << 20, recorder: recorder)
            }
            let loop = group.loops[1]
            try await loop.run {
                let client = try await AsyncConnection.connect(to: server.address, on: loop)
                _ = try await client.read(exactly: 100_000)
                client.connection.reset()
            }
            #expect(await eventually { recorder.closedCount == 1 })
            #expect(recorder.errors.count == 1, "a reset mid-write closes with an error: \(recorder.errors)")
            server.close()
        }
    }

    @Test("close while a recv and a send are in flight")
    func closeWithOperationsInFlight() async throws {
        let recorder = Recorder()
        let ledger = try await withGroup(loops: 2) { group in
            let server = try Server.start(on: group, address: try .tcp("127.0.0.1", 0)) { _ in
                CloseWhileBusy(recorder: recorder)
            }
            let loop = group.loops[1]
            try await loop.run {
                let client = try await AsyncConnection.connect(to: server.address, on: loop)
                try await client.write("x")
                // Do not read, and stay until the server has closed on its own: its
                // send is in flight when it does.
                #expect(await eventually { recorder.closedCount == 1 })
                await client.close(flush: false)
            }
            server.close()
        }
        #expect(ledger[.recv].cancelled >= 1)
        #expect(ledger[.send].cancelled >= 1)
    }

    @Test("half-close: the server sees EOF, answers, and closes after writing")
    func halfClose() async throws {
        try await withGroup(loops: 2) { group in
            let server = try Server.start(on: group, address: try .tcp("127.0.0.1", 0)) { _ in Echo() }
            let loop = group.loops[1]
            try await loop.run {
                let client = try await AsyncConnection.connect(to: server.address, on: loop)
                try await client.write("last words")
                client.shutdownWriting()
                var got: [UInt8] = []
                while let chunk = try await client.read() { got += chunk }
                #expect(got == Array("last words".utf8))
                await client.close()
            }
            server.close()
        }
    }

    @Test("Unix-domain sockets")
    func unixSocket() async throws {
        let path = "/tmp/torus-test-\(getpid()).sock"
        try await withGroup(loops: 1) { group in
            let server = try Server.start(on: group, address: .unix(path: path)) { _ in Echo() }
            let loop = group.loops[0]
            try await loop.run {
                let client = try await AsyncConnection.connect(to: .unix(path: path), on: loop)
                try await client.write("over unix")
                #expect(try await client.read(exactly: 9) == Array("over unix".utf8))
                await client.close()
            }
            server.close()
        }
    }

    @Test("connect to a closed port fails cleanly; connect timeout")
    func connectFailures() async throws {
        try await withLoop { loop in
            await #expect(throws: IOError.self) {
                _ = try await AsyncConnection.connect(to: try .tcp("127.0.0.1", 1), on: loop)
            }
        }
    }

    @Test("idle timeout closes a silent connection through the normal close path")
    func idleTimeout() async throws {
        let recorder = Recorder()
        try await withGroup(loops: 2) { group in
            var options = SocketOptions()
            options.idleTimeout = .milliseconds(300)
            let server = try Server.start(on: group, address: try .tcp("127.0.0.1", 0), options: options) { _ in
                CloseWhileBusyRecorderOnly(recorder: recorder)
            }
            let loop = group.loops[1]
            try await loop.run {
                let client = try await AsyncConnection.connect(to: server.address, on: loop)
                // Stay silent; the server must close on its own.
                let eof = try await client.read()
                #expect(eof == nil)
                await client.close()
            }
            #expect(recorder.errors.first?.contains("idle") == true)
            server.close()
        }
    }
}

/// Records receipt and close only.
final class CloseWhileBusyRecorderOnly: ConnectionHandler {
    let recorder: Recorder
    init(recorder: Recorder) { self.recorder = recorder }
    func received(_ bytes: ReceivedBytes, from connection: Connection) { recorder.received(bytes.count) }
    func closed(_ connection: Connection, error: (any Error)?) { recorder.closed(error) }
}

extension Array where Element == Listener {
    /// sendmsg operations submitted so far on the server loops.
    func asyncLedgerSends(_ group: EventLoopGroup) async -> Int {
        var total = 0
        for listener in self { total += await listener.loop.ledgerSnapshot()[.send].submitted }
        return total
    }
}
