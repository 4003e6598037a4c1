import CLiburing
import Glibc
import Testing
@testable import Torus
import TorusTestSupport

/// A blocking loopback peer (a real socket outside any loop), so what the kernel
/// does with the server's socket is seen from the other side: a server socket left in
/// its loop's file table after its descriptor is closed sends no FIN, and `end()`
/// times out instead of seeing it.
private struct Peer: ~Copyable {
    let fd: Int32

    /// How a read from the peer ended.
    enum End: Equatable { case eof, reset, timeout, bytes(Int) }

    init(port: UInt16) throws {
        fd = try blockingLoopbackSocket(port: port, receiveTimeout: 5)
    }

    deinit { Glibc.close(fd) }

    func write(_ text: String) {
        let n = Array(text.utf8).withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
        #expect(n == text.utf8.count)
    }

    /// Reads exactly `count` bytes (or fewer at EOF, an error or the 5 s timeout).
    func read(_ count: Int) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: count)
        var got = 0
        while got < count {
            let n = out.withUnsafeMutableBytes { buffer -> Int in
                guard let base = buffer.baseAddress else { return -1 }
                return recv(fd, base + got, count - got, 0)
            }
            if n <= 0 { break }
            got += n
        }
        return Array(out[..<got])
    }

    /// What the next read sees: end of file, a reset, nothing within 5 s, or bytes.
    func end() -> End {
        var byte: UInt8 = 0
        let n = recv(fd, &byte, 1, 0)
        if n == 0 { return .eof }
        if n > 0 { return .bytes(n) }
        return errno == ECONNRESET ? .reset : .timeout
    }

    /// Makes the next close an abortive one (RST).
    func lingerZero() {
        var linger = Glibc.linger(l_onoff: 1, l_linger: 0)
        setsockopt(fd, SOL_SOCKET, SO_LINGER, &linger, socklen_t(MemoryLayout<Glibc.linger>.size))
    }
}

/// How the server ends a connection, told by the first bytes it receives.
private final class Ender: ConnectionHandler {
    let slots: Locked<[UInt32?]>
    let ends: Locked<[String]>
    init(slots: Locked<[UInt32?]>, ends: Locked<[String]>) {
        self.slots = slots
        self.ends = ends
    }
    func received(_ bytes: ReceivedBytes, from connection: Connection) {
        let slot = connection.directSlot
        slots.withLock { $0.append(slot) }
        switch String(decoding: bytes.unsafeBytes, as: UTF8.self) {
        case "graceful":
            connection.send("bye")
            connection.closeAfterWriting()
        case "close":
            connection.close()
        case "abort":
            connection.reset()
        case "half":
            connection.send("half")
            connection.shutdownWriting()
        default:
            connection.send(bytes)
        }
    }
    func closed(_ connection: Connection, error: (any Error)?) {
        ends.withLock { $0.append(error.map { "\($0)" } ?? "clean") }
    }
}

/// Echoes, noting for every message whether the connection named a slot.
private final class SlotEcho: ConnectionHandler {
    let direct: Locked<(slot: Int, plain: Int)>
    init(direct: Locked<(slot: Int, plain: Int)>) { self.direct = direct }
    func received(_ bytes: ReceivedBytes, from connection: Connection) {
        let named = connection.directSlot != nil
        direct.withLock { if named { $0.slot += 1 } else { $0.plain += 1 } }
        connection.send(bytes)
        if !connection.isWritable { connection.pauseReading() }
    }
    func writable(_ connection: Connection) { connection.resumeReading() }
}

/// Each client writes `messages` messages of 64 bytes, one at a time, and reads each
/// echo before the next; returns how many clients got every echo byte for byte.
private func pingPong(clients: Int, messages: Int, to address: SocketAddress, on loop: EventLoop) async throws -> Int {
    try await withThrowingTaskGroup(of: Bool.self) { tasks in
        for i in 0..<clients {
            tasks.addTask(executorPreference: loop) {
                let client = try await AsyncConnection.connect(to: address, on: loop)
                var ok = true
                for m in 0..<messages {
                    let payload = testBytes(64, seed: UInt64(i * 1_000_003 + m + 1))
                    try await client.write(payload)
                    ok = try await client.read(exactly: 64) == payload && ok
                }
                await client.close()
                return ok
            }
        }
        var ok = 0
        for try await matched in tasks where matched { ok += 1 }
        return ok
    }
}

@Suite("Direct (fixed) descriptors for sockets")
struct DirectDescriptorTests {
    @Test("by default a loop registers a table and connections name their slots: 200 clients × 50 echoes byte-exact")
    func connectionsNameTheirSlots() async throws {
        let direct = Locked((slot: 0, plain: 0))
        let ledger = try await withServer(makeHandler: { _ in SlotEcho(direct: direct) }) { serverLoop, server, clientLoop in
            #expect(serverLoop.kernelFeatures.socketDescriptors == .direct)
            #expect(serverLoop.directDescriptors != nil)
            let echoed = try await pingPong(clients: 200, messages: 50, to: server.address, on: clientLoop)
            #expect(echoed == 200)
            // The client side installs too (Connector goes through Connection.start).
            let client = await clientLoop.ledgerSnapshot()
            #expect(client[.filesUpdate].completed == 200 && client.plainDescriptorFallbacks == 0, "\(client)")
        }
        // Only a connection's very first message can arrive before its install's
        // completion; every later one came through a slot.
        let counts = direct.current
        #expect(counts.slot + counts.plain == 200 * 50)
        #expect(counts.slot >= 200 * 49, "\(counts)")
        #expect(ledger[.filesUpdate].completed == 200)
        #expect(ledger[.closeDirect].completed == 200)
        #expect(ledger.plainDescriptorFallbacks == 0)
    }

    @Test("the slot is cleared on every close path: the peer sees the end, the ledger's slots return to 0",
          arguments: ["graceful", "close", "abort", "half", "peer reset", "loop shutdown"])
    func everyClosePathClearsTheSlot(_ path: String) async throws {
        let slots = Locked<[UInt32?]>([])
        let ends = Locked<[String]>([])
        let loop = try EventLoop()
        let server = try Server.start(on: [loop], address: try .tcp("127.0.0.1", 0)) { _ in
            Ender(slots: slots, ends: ends)
        }
        let port = try #require(server.address.port)
        let peer = try Peer(port: port)
        // The install completes in the accept's turn (the first message may come in
        // that turn too, through the descriptor); the second comes through the slot.
        for _ in 0..<2 {
            peer.write("ping")
            #expect(peer.read(4) == Array("ping".utf8))
        }
        #expect(slots.current.count == 2 && slots.current.last == 0, "\(slots.current)")
        #expect(await loop.ledgerSnapshot().directDescriptors == 1)
        switch path {
        case "graceful":
            peer.write("graceful")
            #expect(peer.read(3) == Array("bye".utf8))
            #expect(peer.end() == .eof)
        case "close":
            peer.write("close")
            #expect(peer.end() == .eof)
        case "abort":
            peer.write("abort")
            #expect(peer.end() == .reset)
        case "half":
            peer.write("half")
            #expect(peer.read(4) == Array("half".utf8))
            #expect(peer.end() == .eof)
            #expect(await loop.ledgerSnapshot().directDescriptors == 1, "half-closed: still open, still installed")
            // The peer's FIN: the server closes (no handler for inputClosed).
            shutdown(peer.fd, Int32(SHUT_WR))
        case "peer reset":
            peer.lingerZero()
        default:
            break
        }
        if path == "loop shutdown" {
            server.close()
            let ledger = await loop.shutdownGracefully()
            expectQuiescent(ledger)
            #expect(peer.end() == .eof)
            #expect(ledger[.closeDirect].completed == 1)
        } else {
            if path == "peer reset" { _ = consume peer }
            #expect(await eventually { ends.current.count == 1 }, "the server closed its side")
            #expect(await eventually { await loop.ledgerSnapshot().directDescriptors == 0 })
            server.close()
            let ledger = await loop.shutdownGracefully()
            expectQuiescent(ledger)
            #expect(ledger[.closeDirect].completed == 1)
        }
    }

    @Test("a 4-slot table and 24 connections at once: the rest name their descriptors, all echo, slots reused")
    func fullTableFallsBack() async throws {
        let config = loopConfiguration { $0.directDescriptorSlots = 4 }
        let direct = Locked((slot: 0, plain: 0))
        let ledger = try await withServer(config, makeHandler: { _ in SlotEcho(direct: direct) }) { serverLoop, server, clientLoop in
            #expect(serverLoop.directDescriptors?.capacity == 4)
            let port = try #require(server.address.port)
            let clients = try await connectClients(24, port: port, on: clientLoop)
            let pinged = try await pingEachAndClose(clients, on: clientLoop)
            #expect(pinged == 24)
            let mid = await serverLoop.ledgerSnapshot()
            #expect(mid.plainDescriptorFallbacks >= 20, "\(mid)")
            // Freed slots are taken again: the next connections install.
            #expect(await eventually { await serverLoop.ledgerSnapshot().directDescriptors == 0 })
            let echoed = try await pingPong(clients: 4, messages: 5, to: server.address, on: clientLoop)
            #expect(echoed == 4)
        }
        #expect(ledger[.filesUpdate].completed == 8, "4 installs, then 4 more in the freed slots")
        #expect(ledger[.closeDirect].completed == 8)
        #expect(ledger.plainDescriptorFallbacks == 20)
        #expect(direct.current.plain >= 20)
    }

    @Test("100 connections one after another through a 1-slot table: the slot is cleared and reused each time")
    func oneSlotReusedInTurn() async throws {
        let config = loopConfiguration { $0.directDescriptorSlots = 1 }
        let ledger = try await withServer(config) { serverLoop, server, clientLoop in
            for i in 0..<100 {
                let echoed = try await roundTrip(testBytes(100, seed: UInt64(i + 1)), to: server.address, on: clientLoop)
                #expect(echoed)
                // The clear completes after the client's close reached the server.
                #expect(await eventually { await serverLoop.ledgerSnapshot().directDescriptors == 0 })
            }
        }
        #expect(ledger[.filesUpdate].completed == 100)
        #expect(ledger[.closeDirect].completed == 100)
        #expect(ledger.plainDescriptorFallbacks == 0)
    }

    #if DEBUG
    @Test("an install the kernel refuses leaves that connection on its descriptor; it still echoes")
    func refusedInstallFallsBack() async throws {
        let direct = Locked((slot: 0, plain: 0))
        let ledger = try await withServer(makeHandler: { _ in SlotEcho(direct: direct) }) { serverLoop, server, clientLoop in
            await atLoop(serverLoop) { serverLoop.ring.faults.fail(.filesUpdate, with: ENOMEM, count: 3) }
            let echoed = try await pingPong(clients: 6, messages: 10, to: server.address, on: clientLoop)
            #expect(echoed == 6)
            #expect(await atLoop(serverLoop) { serverLoop.ring.faults.injectedErrors } == 3)
        }
        #expect(ledger.plainDescriptorFallbacks == 3)
        #expect(ledger[.filesUpdate].completed == 6)
        #expect(ledger[.closeDirect].completed == 3)
        #expect(direct.current.plain >= 30, "the three refused connections named their descriptors throughout")
    }
    #endif

    @Test("the fallback switch and a 0-slot table: no table, no install, every socket op names the descriptor")
    func plainSocketDescriptors() async throws {
        for config in [loopConfiguration { $0.fallbacks = .plainSocketDescriptors },
                       loopConfiguration { $0.directDescriptorSlots = 0 }] {
            let direct = Locked((slot: 0, plain: 0))
            let ledger = try await withServer(config, makeHandler: { _ in SlotEcho(direct: direct) }) { serverLoop, server, clientLoop in
                #expect(serverLoop.directDescriptors == nil)
                let echoed = try await pingPong(clients: 20, messages: 10, to: server.address, on: clientLoop)
                #expect(echoed == 20)
            }
            #expect(ledger[.filesUpdate].submitted == 0 && ledger[.closeDirect].submitted == 0)
            #expect(ledger.plainDescriptorFallbacks == 0)
            #expect(direct.current.slot == 0 && direct.current.plain == 200)
        }
        let forced = try EventLoop(configuration: loopConfiguration { $0.fallbacks = .plainSocketDescriptors })
        #expect(forced.kernelFeatures.socketDescriptors == .plain)
        #expect(forced.kernelFeatures.fallbackReasons.contains("plain socket descriptors: configured"))
        expectQuiescent(await forced.shutdownGracefully())
    }
}
