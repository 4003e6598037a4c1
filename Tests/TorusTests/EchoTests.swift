import Testing
import Torus
import TorusTestSupport

/// Sends back what it receives, with backpressure.
final class Echo: ConnectionHandler {
    func received(_ bytes: ReceivedBytes, from connection: Connection) {
        connection.send(bytes.unsafeBytes)
        if !connection.isWritable { connection.pauseReading() }
    }
    func writable(_ connection: Connection) { connection.resumeReading() }
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
            try await withThrowingTaskGroup(of: Bool.self) { tasks in
                for i in 0..<200 {
                    let loop = group.loops[i % 2]
                    tasks.addTask(executorPreference: loop) {
                        let payload = testBytes(payloadSize, seed: UInt64(i + 1))
                        let client = try await AsyncConnection.connect(to: server.address, on: loop)
                        async let sent: Void = client.write(payload)
                        let back = try await client.read(exactly: payloadSize)
                        try await sent
                        await client.close()
                        return back == payload
                    }
                }
                var ok = 0
                for try await matched in tasks where matched { ok += 1 }
                #expect(ok == 200)
            }
            server.close()
        }
    }
}
