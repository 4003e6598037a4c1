import Foundation
import Testing
import Torus
import TorusHTTP
import TorusTestSupport
@testable import TorusWebSocket

/// Close handshake, protocol failures, liveness and vanishing peers, with a raw
/// client that can send anything.
@Suite struct IntegrationCloseTests {
    @Test func peerCloseCodeIsEchoedBothWays() async throws {
        try await withLoop { loop in
            let log = CloseLog()
            let server = try startServer(on: [loop]) { router in
                router.webSocket("/") { ws in
                    log.watch(ws)
                    ws.onText = { ws, text in if text == "close please" { ws.close(code: .goingAway, reason: "bye") } }
                }
            }
            // Client-initiated.
            let a = try await connectClient(server, on: loop)
            await a.close(code: CloseCode(rawValue: 4321), reason: "client done")
            let aInfo = await a.closed()
            #expect(aInfo.code.rawValue == 4321 && aInfo.wasClean && aInfo.sentCode?.rawValue == 4321)
            let first = await log.waitFor(1)
            #expect(first.first?.code.rawValue == 4321 && first.first?.reason == "client done" && first.first?.wasClean == true)

            // Server-initiated: the client's message sequence ends normally.
            let b = try await connectClient(server, on: loop)
            try await b.send(text: "close please")
            var count = 0
            for try await _ in b.messages { count += 1 }
            #expect(count == 0)
            let bInfo = await b.closed()
            #expect(bInfo.code == .goingAway && bInfo.reason == "bye" && bInfo.wasClean)

            // An empty close frame is answered with an empty one (1005 locally).
            let raw = try await RawClient.connect(port: server.port, on: loop)
            try await raw.handshake()
            try await raw.send(clientFrame(.close, []))
            let events = await raw.eventsUntilEOF()
            #expect(events == [.close(code: nil, reason: "")])
            #expect(raw.sawEOF)
            let third = await log.waitFor(3)
            #expect(third.last?.code == .noStatusReceived)
            await raw.close()
            await server.shutdown(grace: .seconds(1))
        }
    }

    /// Protocol violations get the right code, then the server closes the socket.
    @Test(arguments: [
        ("unmasked frame", 1002),
        ("reserved opcode", 1002),
        ("invalid UTF-8", 1007),
        ("invalid UTF-8 in a whole frame", 1007),
        ("too big", 1009),
        ("bad close code", 1002),
    ])
    func failures(_ name: String, _ expected: Int) async throws {
        try await withLoop { loop in
            let log = CloseLog()
            var settings = WebSocketConfiguration()
            settings.maxMessageSize = 1000
            let server = try startServer(on: [loop]) { router in
                router.webSocket("/", configuration: WebSocketServerConfiguration(connection: settings)) { ws in
                    log.watch(ws)
                    echo(ws)
                }
            }
            let raw = try await RawClient.connect(port: server.port, on: loop)
            try await raw.handshake()
            try await raw.send(clientFrame(.text, utf8("fine")))
            switch name {
            case "unmasked frame": try await raw.send(rawFrame(opcode: 1, key: nil, payload: utf8("x")))
            case "reserved opcode": try await raw.send(rawFrame(opcode: 3, payload: []))
            case "invalid UTF-8":
                // A bad byte in the first fragment fails at once, before the message ends.
                try await raw.send(clientFrame(.text, [0x68, 0xC0, 0x80], fin: false))
            case "invalid UTF-8 in a whole frame":
                // Unmasked in place on the fast path, found invalid, restored for the decoder.
                try await raw.send(clientFrame(.text, [0x68, 0xED, 0xA0, 0x80]))
            case "too big": try await raw.send(clientFrame(.binary, testBytes(2000)))
            default: try await raw.send(clientFrame(.close, [0x03, 0xE8 + 4]))  // 1004
            }
            // More input after the violation is discarded, not answered.
            try? await raw.send(clientFrame(.ping, utf8("after")))
            let events = await raw.eventsUntilEOF()
            #expect(events.first == .text(utf8("fine")))
            #expect(closeCodes(events) == [UInt16(expected)], "\(name): \(events)")
            #expect(raw.sawEOF)
            let infos = await log.waitFor()
            #expect(infos.first?.code.rawValue == UInt16(expected))
            #expect(infos.first?.wasClean == false)
            await raw.close()
            await server.shutdown(grace: .seconds(1))
        }
    }

    @Test func pingsAreAnsweredWithTheirPayload() async throws {
        try await withLoop { loop in
            let server = try startServer(on: [loop]) { router in router.webSocket("/", echo) }
            let raw = try await RawClient.connect(port: server.port, on: loop)
            // Frames in the same write as the request head reach the WebSocket too.
            try await raw.handshake(then: clientFrame(.text, utf8("early")))
            #expect(try await raw.next() == .text(utf8("early")))
            try await raw.send(clientFrame(.ping, utf8("abc")) + clientFrame(.ping, testBytes(125)))
            #expect(try await raw.next() == .pong(utf8("abc")))
            #expect(try await raw.next() == .pong(testBytes(125)))
            try await raw.send(clientFrame(.close, [0x03, 0xE8]))
            #expect(await raw.eventsUntilEOF() == [.close(code: .normalClosure, reason: "")])
            await raw.close()
            await server.shutdown(grace: .seconds(1))
        }
    }

    /// A client that never answers: pinged after the interval, closed after the timeout.
    @Test func pingTimeoutClosesASilentClient() async throws {
        try await withLoop { loop in
            let log = CloseLog()
            var settings = WebSocketConfiguration()
            settings.pingInterval = .milliseconds(150)
            settings.pingTimeout = .milliseconds(150)
            // Long on purpose: after a ping timeout the server does not wait for the
            // peer's close frame, so the socket closes long before this.
            settings.closeTimeout = .seconds(60)
            let server = try startServer(on: [loop]) { router in
                router.webSocket("/", configuration: WebSocketServerConfiguration(connection: settings)) { ws in
                    log.watch(ws)
                }
            }
            let clock = ContinuousClock()
            let start = clock.now
            let raw = try await RawClient.connect(port: server.port, on: loop)
            try await raw.handshake()
            // Read (so the kernel buffers stay empty) but never answer.
            let events = await raw.eventsUntilEOF()
            #expect(events.first == .ping([]))
            #expect(closeCodes(events) == [1011])
            #expect(raw.sawEOF)
            let infos = await log.waitFor()
            #expect(infos.first?.code == .internalError)
            #expect(infos.first?.error is WebSocketError)
            // Well before TCP keepalive and the 60 s close timeout; generous for loaded CI.
            #expect(clock.now - start < .seconds(30))
            await raw.close()

            // A client that answers stays open past several intervals.
            let alive = try await connectClient(server, on: loop)
            try await Task.sleep(for: .milliseconds(700))
            #expect(await onLoop(loop) { alive.isOpen })
            await alive.close()
            await server.shutdown(grace: .seconds(1))
        }
    }

    /// The client's socket is reset in the middle of a frame: the server sees 1006,
    /// releases everything (the ledger check of `withLoop`).
    @Test func clientVanishesMidFrame() async throws {
        try await withLoop { loop in
            let log = CloseLog()
            let received = Locked(0)
            let server = try startServer(on: [loop]) { router in
                router.webSocket("/") { ws in
                    log.watch(ws)
                    ws.onBinary = { _, _ in received.withLock { $0 += 1 } }
                }
            }
            let raw = try await RawClient.connect(port: server.port, on: loop)
            try await raw.handshake()
            let frame = clientFrame(.binary, testBytes(100_000))
            try await raw.send(Array(frame[..<40_000]))
            try await Task.sleep(for: .milliseconds(50))
            let socket = raw.connection.connection
            await onLoop(loop) { socket.reset() }
            let infos = await log.waitFor()
            #expect(infos.first?.code == .abnormalClosure)
            #expect(infos.first?.wasClean == false)
            #expect((infos.first?.error as? IOError)?.isPeerGone == true)
            #expect(received.current == 0)
            await raw.close()

            // And one that just closes its socket (FIN) after a partial frame.
            let fin = try await RawClient.connect(port: server.port, on: loop)
            try await fin.handshake()
            try await fin.send(Array(frame[..<10]))
            await fin.close()
            let two = await log.waitFor(2)
            #expect(two.count == 2 && two[1].code == .abnormalClosure)
            await server.shutdown(grace: .seconds(1))
        }
    }

    /// Graceful shutdown: every connection in the registry gets 1001.
    @Test func registryClosesEveryConnectionWithGoingAway() async throws {
        try await withGroup(loops: 2) { group in
            let registry = WebSocketRegistry()
            let server = try startServer(on: group.loops) { router in
                router.webSocket("/", registry: registry, echo)
            }
            var clients: [WebSocketConnection] = []
            for i in 0..<6 { clients.append(try await connectClient(server, on: group.loops[i % 2])) }
            #expect(await eventually { await registry.count() == 6 })
            await server.shutdown(grace: .seconds(1))
            await registry.closeAll(grace: .seconds(5))
            #expect(await registry.count() == 0)
            for ws in clients {
                let info = await ws.closed()
                #expect(info.code == .goingAway && info.wasClean)
            }
        }
    }

    /// The connection's timers (ping, pong, close) hold it strongly; closing cancels
    /// them, so both sides' connections are freed once closed.
    @Test func connectionsAreReleasedAfterClose() async throws {
        try await withLoop { loop in
            let serverSide = WeakConnection()
            let server = try startServer(on: [loop]) { router in
                router.webSocket("/") { ws in
                    serverSide.set(ws)
                    borrowedEcho(ws)
                }
            }
            let clientSide = WeakConnection()
            do {
                let ws = try await connectClient(server, on: loop)
                clientSide.set(ws)
                try await ws.send(text: "x")
                #expect(try await ws.nextMessage() == .text("x"))
                #expect(serverSide.isAlive)
                await ws.close()
                #expect(await ws.closed().wasClean)
            }
            #expect(await eventually { !serverSide.isAlive && !clientSide.isAlive },
                    "server side alive: \(serverSide.isAlive), client side alive: \(clientSide.isAlive)")
            await server.shutdown(grace: .seconds(1))
        }
    }
}

/// A weak reference to a connection, readable from the test task.
final class WeakConnection: @unchecked Sendable {
    private let lock = NSLock()
    private weak var value: WebSocketConnection?
    func set(_ ws: WebSocketConnection) { lock.withLock { value = ws } }
    var isAlive: Bool { lock.withLock { value != nil } }
}

/// Liveness without timers: idle WebSocket connections with a ping interval have no
/// kernel timeout in flight of their own; the loop's one deadline sweep checks them.
@Suite struct LivenessSweepTests {
    @Test func idleConnectionsHoldNoTimer() async throws {
        try await withLoop { loop in
            var settings = WebSocketConfiguration()
            settings.pingInterval = .seconds(30)
            let server = try startServer(on: [loop]) { router in
                router.webSocket("/", configuration: WebSocketServerConfiguration(connection: settings)) { _ in }
            }
            var clients = [try await connectClient(server, on: loop)]
            // A handshake's own timers (connect, request) end with a cancel whose CQE
            // may still be on its way on a loaded machine: wait for them to settle.
            var one = Int.max
            _ = await eventually {
                one = await loop.ledgerSnapshot()[.timeout].inFlight
                return one <= 3
            }
            for _ in 0..<19 { clients.append(try await connectClient(server, on: loop)) }
            // 40 connections (both ends), each pinging every 30 s: the loop's timers
            // (its one deadline sweep among them) and not one more.
            // The loop's own timers (the deadline sweep, the once-a-second housekeeping)
            // may be armed at one count and not the other: at most those two apart.
            var twenty = Int.max
            _ = await eventually {
                twenty = await loop.ledgerSnapshot()[.timeout].inFlight
                return twenty <= one
            }
            #expect(twenty <= one + 2 && twenty <= 3, "timeouts in flight: \(one) with 1 client, \(twenty) with 20")
            for c in clients { await c.close() }
            await server.shutdown(grace: .seconds(1))
        }
    }
}
