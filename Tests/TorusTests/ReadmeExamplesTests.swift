import Testing
import Torus
import TorusTestSupport

// The README's three usage examples, compiled and run here so they cannot rot.

// Face 2: an EventMachine-style handler.
final class Shout: ConnectionHandler {
    func connected(_ connection: Connection) { connection.send("hello\n") }
    func received(_ bytes: ReceivedBytes, from connection: Connection) {
        // `bytes` is borrowed from the kernel's buffer ring for this call only.
        connection.send(bytes.map { $0 >= 97 && $0 <= 122 ? $0 - 32 : $0 })
    }
    func closed(_ connection: Connection, error: (any Error)?) {}
}

@Suite("README examples")
struct ReadmeExamplesTests {
    @Test("face 1: completion callbacks")
    func callbacks() async throws {
        try await withLoop { loop in
            let fired: Bool = await withCheckedContinuation { done in
                loop.execute {
                    // Callbacks run on the loop thread; the timer lives on the ring.
                    loop.schedule(after: .milliseconds(10)) { done.resume(returning: true) }
                }
            }
            #expect(fired)
            let count: Int = await withCheckedContinuation { done in
                loop.execute {
                    loop.openFile("/etc/hostname") { result in
                        guard case .success(let file) = result, let buffer = loop.takeBuffer() else {
                            return done.resume(returning: -1)
                        }
                        loop.read(file, into: buffer, at: 0) { result, buffer in
                            let n = buffer.count        // the buffer came back with the completion
                            loop.release(buffer)
                            loop.close(file)
                            done.resume(returning: (try? result.get()) == n ? n : -1)
                        }
                    }
                }
            }
            #expect(count > 0)
        }
    }

    @Test("face 2: handler, face 3: async/await")
    func handlerAndAsync() async throws {
        try await withGroup(loops: 2) { group in
            let server = try Server.start(on: group, address: try .tcp("127.0.0.1", 0)) { _ in Shout() }
            let loop = group.next()
            let reply = try await loop.run {
                let conn = try await AsyncConnection.connect(to: server.address, on: loop)
                let greeting = try await conn.read(exactly: 6)
                try await conn.write("torus")
                let shouted = try await conn.read(exactly: 5)
                await conn.close()
                return String(decoding: greeting + shouted, as: UTF8.self)
            }
            #expect(reply == "hello\nTORUS")
            server.close()
        }
    }
}
