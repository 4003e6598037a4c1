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
