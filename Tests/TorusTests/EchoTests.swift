import Testing
import Torus
import TorusTestSupport

/// Sends back what it receives, with backpressure.
final class Echo: ConnectionHandler {
    func received(_ bytes: ReceivedBytes, from connection: Connection) {
        connection.send(bytes)
        if !connection.isWritable { connection.pauseReading() }
    }
    func writable(_ connection: Connection) { connection.resumeReading() }
}

/// Runs `count` clients concurrently, spread over `loops`; each writes a distinct
/// payload while reading its echo, and compares. Returns how many matched byte for byte.
func echoClients(_ count: Int, payloadSize: Int, to address: SocketAddress, on loops: [EventLoop],
                 seed: UInt64 = 1) async throws -> Int {
    try await withThrowingTaskGroup(of: Bool.self) { tasks in
        for i in 0..<count {
            let loop = loops[i % loops.count]
            tasks.addTask(executorPreference: loop) {
                let payload = testBytes(payloadSize, seed: seed &+ UInt64(i))
                let client = try await AsyncConnection.connect(to: address, on: loop)
                async let sent: Void = client.write(payload)
                let back = try await client.read(exactly: payloadSize)
                try await sent
                await client.close()
                return back == payload
            }
        }
        var ok = 0
        for try await matched in tasks where matched { ok += 1 }
        return ok
    }
}

/// A client that writes `payload` in `chunk`-sized writes from one task while another
/// reads the echo to end of file; true when the echo matched byte for byte.
func asyncEcho(_ payload: [UInt8], chunk: Int, to address: SocketAddress, on loop: EventLoop) async throws -> Bool {
    let conn = try await AsyncConnection.connect(to: address, on: loop)
    let back = try await withThrowingTaskGroup(of: [UInt8]?.self) { sides in
        sides.addTask {                       // the writer
            var k = 0
            while k < payload.count {
                try await conn.write(Array(payload[k..<min(k + chunk, payload.count)]))
                k += chunk
            }
            conn.shutdownWriting()
            return nil
        }
        sides.addTask {                       // the reader, to EOF
            var all: [UInt8] = []
            for try await part in conn.inbound { all += part }
            return all
        }
        var back: [UInt8] = []
        for try await side in sides { if let side { back = side } }
        return back
    }
    await conn.close()
    return back == payload
}

@Suite("Echo round trips")
struct EchoTests {
    @Test("one client, small message")
    func smallEcho() async throws {
        try await withGroup(loops: 2) { group in
            let server = try Server.start(on: group, address: try .tcp("127.0.0.1", 0)) { _ in Echo() }
            let client = try await AsyncConnection.connect(to: server.address, on: group.loops[1])
            try await client.write("hello torus")
            let back = try await client.read(exactly: 11)
            #expect(back == Array("hello torus".utf8))
            await client.close()
            server.close()
        }
    }

    @Test("200 concurrent clients, 1 MiB each, byte-exact")
    func manyClientsLargePayloads() async throws {
        try await withGroup(loops: 2) { group in
            let server = try Server.start(on: group, address: try .tcp("127.0.0.1", 0)) { _ in Echo() }
            let payloadSize = 1 << 20
            let ok = try await echoClients(200, payloadSize: payloadSize, to: server.address, on: group.loops)
            #expect(ok == 200)
            server.close()
        }
    }
}
