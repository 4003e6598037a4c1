import Foundation
import Glibc
import Synchronization
import Testing
import Torus
import TorusRedis
import TorusTestSupport

@Suite("Redis client reconnecting",
       .enabled(if: RedisServer.suitesRun, RedisServer.skipped),
       .timeLimit(.minutes(2)))
struct RedisClientTests {
    /// The server is killed: commands fail at once (no waiting on a dead server), the
    /// client backs off and reconnects when a server is back on the port, and its
    /// subscriptions are made again (a message published after the restart arrives).
    @Test func reconnectsAndResubscribesAfterAServerRestart() async throws {
        var server = try await RedisServer()
        let port = server.port
        try await withGroup(loops: 1) { group in
            let loop = group.loops[0]
            let messages = Mutex<[String]>([])
            let statuses = Mutex<[RedisClient.Status]>([])
            var backoff = RedisClient.Backoff()
            backoff.initial = .milliseconds(50)
            backoff.maximum = .milliseconds(400)
            let client = RedisClient(address: server.address, on: loop, backoff: backoff, onPush: { value in
                guard let parts = value.elements, parts.first?.string == "message", let text = parts.last?.string else { return }
                messages.withLock { $0.append(text) }
            }, onStatus: { status in statuses.withLock { $0.append(status) } })
            #expect(await eventually { client.status == .connected })
            client.subscribe(["alerts"])
            #expect(try await client.command(["SET", "before", "1"]) == .simpleString("OK"))
            let publisher = try await RedisConnection.connect(to: server.address, on: loop)
            #expect(await eventually { (try? await publisher.command(["PUBLISH", "alerts", "one"])) == .integer(1) })
            #expect(await eventually { messages.withLock { $0 } == ["one"] })
            await publisher.close()

            kill(server.process.pid, SIGKILL)
            _ = await server.process.wait(timeout: .seconds(10))
            #expect(await eventually { client.status != .connected })
            let started = ContinuousClock.now
            do throws(RedisError) {
                _ = try await client.command(["PING"])
                Issue.record("a command succeeded with the server down")
            } catch .connectionClosed {
                #expect(ContinuousClock.now - started < .milliseconds(500), "failed at once")
            } catch {
                Issue.record("\(error)")
            }
            try await Task.sleep(for: .milliseconds(300))  // a few failed attempts
            server = try await RedisServer(port: port)
            #expect(await eventually(timeout: .seconds(10)) { client.status == .connected })
            #expect(try await client.command(["PING"]) == .simpleString("PONG"))
            let again = try await RedisConnection.connect(to: server.address, on: loop)
            #expect(await eventually { (try? await again.command(["PUBLISH", "alerts", "two"])) == .integer(1) })
            #expect(await eventually { messages.withLock { $0 } == ["one", "two"] })
            await again.close()
            await client.close()
            #expect(client.status == .closed)
            let seen = statuses.withLock { $0 }
            #expect(seen.contains { if case .backingOff = $0 { true } else { false } }, "\(seen)")
        }
        await server.stop()
    }

    /// Retry by declaration: a command in flight when its connection is killed
    /// (`CLIENT KILL`) fails when it is not declared idempotent, and is sent again on the
    /// next connection when it is (a blocking `BLPOP` answered by a push made after the
    /// reconnect); an idempotent command that finds the client disconnected waits for
    /// the reconnect; with the server gone for good it fails once the next attempt
    /// fails, and an error reply is never retried.
    @Test func idempotentCommandsAreSentAgainOnTheNextConnection() async throws {
        let server = try await RedisServer()
        try await withGroup(loops: 1) { group in
            let loop = group.loops[0]
            var backoff = RedisClient.Backoff()
            backoff.initial = .milliseconds(50)
            backoff.maximum = .milliseconds(200)
            var configuration = RedisConfiguration()
            configuration.commandTimeout = .seconds(10)  // longer than the BLPOPs' 4 s
            let client = RedisClient(address: server.address, on: loop, configuration: configuration, backoff: backoff)
            let admin = try await RedisConnection.connect(to: server.address, on: loop)
            #expect(await eventually { client.status == .connected })

            func killClientConnection() async throws {
                let id = try #require(try await client.command(["CLIENT", "ID"]).integer)
                let blocked = Task { try await client.command(["BLPOP", "jobs", "4"], idempotent: false) }
                try await Task.sleep(for: .milliseconds(100))
                #expect(try await admin.command(["CLIENT", "KILL", "ID", String(id)]) == .integer(1))
                await #expect(throws: RedisError.self) { try await blocked.value }
            }
            // Not declared: the in-flight BLPOP fails with its connection.
            try await killClientConnection()
            #expect(await eventually { client.isConnected })

            // Declared: the in-flight BLPOP is sent again and gets the job pushed later.
            let id = try #require(try await client.command(["CLIENT", "ID"]).integer)
            let retried = Task { try await client.command(["BLPOP", "jobs", "4"], idempotent: true) }
            try await Task.sleep(for: .milliseconds(100))
            #expect(try await admin.command(["CLIENT", "KILL", "ID", String(id)]) == .integer(1))
            // The retried BLPOP blocks the new connection: the server shows it blocked.
            func blockedClients() async -> Int {
                let info = (try? await admin.command(["INFO", "clients"]).string) ?? ""
                let line = info.split(whereSeparator: \.isNewline).first { $0.hasPrefix("blocked_clients:") }
                return line.flatMap { Int($0.split(separator: ":").last ?? "") } ?? -1
            }
            #expect(await eventually { client.isConnected })
            #expect(await eventually { await blockedClients() == 1 })
            #expect(try await admin.command(["RPUSH", "jobs", "j1"]) == .integer(1))
            let job = try await retried.value
            #expect(job == .array([.bulkString(Array("jobs".utf8)), .bulkString(Array("j1".utf8))]), "\(job)")

            // An error reply is not a lost connection: never retried.
            await #expect(throws: RedisError.server("ERR unknown command 'NOSUCH', with args beginning with: ")) {
                try await client.command(["NOSUCH"], idempotent: true)
            }

            // The server gone: a disconnected idempotent command waits for the next
            // attempt, which fails, and then fails itself.
            await server.stop()
            #expect(await eventually { !client.isConnected })
            await #expect(throws: RedisError.self) { try await client.command(["GET", "x"], idempotent: true) }
            await admin.close()
            await client.close()
        }
    }

    /// The loop-thread face: binary arguments (every byte value, CRLF and NUL in the
    /// middle) go out and come back unchanged; commands sent in one turn keep their
    /// order; while disconnected the completion fails at once on the loop.
    @Test func loopFaceSendsBinaryArgumentsInOrder() async throws {
        let server = try await RedisServer()
        try await withGroup(loops: 1) { group in
            let loop = group.loops[0]
            let client = RedisClient(address: server.address, on: loop)
            #expect(await eventually { client.status == .connected })
            let blob = (0...255).map { UInt8($0) } + [0x0D, 0x0A, 0]
            let replies: [Result<RESPValue, RedisError>] = await withCheckedContinuation { continuation in
                loop.execute {
                    var replies: [Result<RESPValue, RedisError>] = []
                    client.send(binary: [Array("SET".utf8), Array("blob".utf8), blob]) { replies.append($0) }
                    client.send(binary: [Array("GET".utf8), Array("blob".utf8)]) { replies.append($0) }
                    client.send(["STRLEN", "blob"]) { reply in
                        replies.append(reply)
                        continuation.resume(returning: replies)
                    }
                }
            }
            #expect(replies.map { try? $0.get() } == [.simpleString("OK"), .bulkString(blob), .integer(Int64(blob.count))])
            await server.stop()
            #expect(await eventually { !client.isConnected })
            let down: Result<RESPValue, RedisError> = await withCheckedContinuation { continuation in
                loop.execute { client.send(["PING"]) { continuation.resume(returning: $0) } }
            }
            if case .failure(.connectionClosed) = down {} else { Issue.record("\(down)") }
            await client.close()
        }
    }
}
