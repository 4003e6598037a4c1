import Foundation
import Glibc
import Testing
@testable import Torus
import TorusTestSupport

/// Runs `body` on the loop thread and returns its result (fault switches and reads of
/// `FaultInjection` counters happen there: the ring is loop-confined).
func atLoop<T: Sendable>(_ loop: EventLoop, _ body: @escaping @Sendable () -> T) async -> T {
    await withCheckedContinuation { (c: CheckedContinuation<T, Never>) in
        loop.execute { c.resume(returning: body()) }
    }
}

/// An echo that records how each of its connections ended.
final class RecordingEcho: ConnectionHandler {
    let ends: Locked<[String]>
    init(ends: Locked<[String]>) { self.ends = ends }
    func received(_ bytes: ReceivedBytes, from connection: Connection) {
        connection.send(bytes)
        if !connection.isWritable { connection.pauseReading() }
    }
    func writable(_ connection: Connection) { connection.resumeReading() }
    func closed(_ connection: Connection, error: (any Error)?) {
        let text = error.map { "\($0)" } ?? "clean"
        ends.withLock { $0.append(text) }
    }
}

/// One client round trip of `payload` (connect, write, read it back, close).
func roundTrip(_ payload: [UInt8], to address: SocketAddress, on loop: EventLoop) async throws -> Bool {
    try await loop.run {
        let c = try await AsyncConnection.connect(to: address, on: loop, timeout: .seconds(10))
        async let sent: Void = c.write(payload)
        let back = try await c.read(exactly: payload.count)
        try await sent
        await c.close()
        return back == payload
    }
}

/// The `accept errors N` a demo's final ledger printed.
func acceptErrors(in text: String) -> Int? {
    guard let range = text.range(of: #"accept errors \d+"#, options: .regularExpression) else { return nil }
    return Int(text[range].split(separator: " ").last ?? "")
}

/// The shape most fault and resource tests share: a server on a loop of its own (made
/// with `configuration`, one `makeHandler` handler per connection, `Echo` unless
/// given) and a client loop beside it. `body` gets the server's loop, the server and
/// the client loop. Afterwards the server is closed and both loops are shut down and
/// checked quiescent; the server loop's final ledger is returned for further checks.
@discardableResult
func withServer(_ configuration: EventLoop.Configuration = EventLoop.Configuration(),
                makeHandler: @escaping @Sendable (Connection) -> any ConnectionHandler = { _ in Echo() },
                sourceLocation: SourceLocation = #_sourceLocation,
                _ body: (_ serverLoop: EventLoop, _ server: Server, _ clientLoop: EventLoop) async throws -> Void)
    async throws -> LedgerSnapshot {
    let clientLoop = try EventLoop()
    do {
        let ledger = try await withLoop(configuration, sourceLocation: sourceLocation) { serverLoop in
            let server = try Server.start(on: [serverLoop], address: try .tcp("127.0.0.1", 0),
                                          makeHandler: makeHandler)
            defer { server.close() }
            try await body(serverLoop, server, clientLoop)
        }
        expectQuiescent(await clientLoop.shutdownGracefully(), "client loop", sourceLocation: sourceLocation)
        return ledger
    } catch {
        expectQuiescent(await clientLoop.shutdownGracefully(), "client loop, after a failed test",
                        sourceLocation: sourceLocation)
        throw error
    }
}

/// Opens `count` connections to 127.0.0.1:`port` on `loop`, one after another.
func connectClients(_ count: Int, port: UInt16, on loop: EventLoop) async throws -> [AsyncConnection] {
    var connections: [AsyncConnection] = []
    for _ in 0..<count {
        connections.append(try await AsyncConnection.connect(to: try .tcp("127.0.0.1", port), on: loop))
    }
    return connections
}

/// Every connection writes "ping", reads its echo and closes, all at once (tasks on
/// `loop`); returns how many got "ping" back.
func pingEachAndClose(_ connections: [AsyncConnection], on loop: EventLoop) async throws -> Int {
    try await withThrowingTaskGroup(of: Bool.self) { tasks in
        for c in connections {
            tasks.addTask(executorPreference: loop) {
                try await c.write("ping")
                let back = try await c.read(exactly: 4)
                await c.close()
                return back == Array("ping".utf8)
            }
        }
        var n = 0
        for try await ok in tasks where ok { n += 1 }
        return n
    }
}
