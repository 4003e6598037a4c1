import Foundation
import Glibc
import Synchronization
import Testing
import Torus
import TorusRedis
import TorusTestSupport

/// Runs `body` with a fresh `redis-server` (extra `arguments`) and a one-loop group;
/// the group's ledger must be quiescent at the end (every connection closed).
func withRedis(_ arguments: [String] = [], sourceLocation: SourceLocation = #_sourceLocation,
               _ body: (RedisServer, EventLoop) async throws -> Void) async throws {
    let server = try await RedisServer(arguments)
    do {
        try await withGroup(loops: 1, sourceLocation: sourceLocation) { group in
            try await body(server, group.loops[0])
        }
    } catch {
        await server.stop()
        throw error
    }
    await server.stop()
}

func connect(_ server: RedisServer, _ loop: EventLoop,
             _ configure: (inout RedisConfiguration) -> Void = { _ in }) async throws -> RedisConnection {
    var configuration = RedisConfiguration()
    configure(&configuration)
    return try await RedisConnection.connect(to: server.address, on: loop, configuration: configuration)
}

@Suite("Redis client against redis-server",
       .enabled(if: RedisServer.suitesRun, RedisServer.skipped),
       .timeLimit(.minutes(2)))
struct RedisConnectionTests {
    /// Every reply type a real server sends, over RESP3 (DEBUG PROTOCOL makes each)
    /// and RESP2; an error reply fails its command only.
    @Test func everyReplyTypeFromARealServer() async throws {
        try await withRedis { server, loop in
            let redis = try await connect(server, loop)
            #expect(try await redis.command(["PING"]) == .simpleString("PONG"))
            #expect(try await redis.command(["SET", "k", "v\r\n\u{0}"]) == .simpleString("OK"))
            #expect(try await redis.command(["GET", "k"]) == .bulkString(Array("v\r\n\u{0}".utf8)))
            #expect(try await redis.command(["GET", "missing"]) == .null)
            #expect(try await redis.command(["INCRBY", "n", "-7"]) == .integer(-7))
            #expect(try await redis.command(["RPUSH", "l", "a", "b"]) == .integer(2))
            #expect(try await redis.command(["LRANGE", "l", "0", "-1"]) == .array([.bulkString([97]), .bulkString([98])]))
            #expect(try await redis.command(["HSET", "h", "f", "1"]) == .integer(1))
            #expect(try await redis.command(["HGETALL", "h"]) == .map([RESPPair(.bulkString([102]), .bulkString([49]))]))
            #expect(try await redis.command(["SADD", "s", "x"]) == .integer(1))
            #expect(try await redis.command(["SMEMBERS", "s"]) == .set([.bulkString([120])]))
            #expect(try await redis.command(["ZADD", "z", "1.5", "m"]) == .integer(1))
            #expect(try await redis.command(["ZSCORE", "z", "m"]) == .double(1.5))
            await #expect(throws: RedisError.server("ERR value is not an integer or out of range")) {
                try await redis.command(["INCR", "k"])
            }
            #expect(try await redis.command(["DEBUG", "PROTOCOL", "true"]) == .boolean(true))
            #expect(try await redis.command(["DEBUG", "PROTOCOL", "null"]) == .null)
            #expect(try await redis.command(["DEBUG", "PROTOCOL", "bignum"]).string?.count ?? 0 > 20)
            if case .verbatim(let format, _) = try await redis.command(["DEBUG", "PROTOCOL", "verbatim"]) {
                #expect(format == "txt")
            } else {
                Issue.record("no verbatim string")
            }
            #expect(try await redis.command(["DEBUG", "PROTOCOL", "attrib"]).string != nil, "the attribute is dropped")
            await redis.close()

            let old = try await connect(server, loop) { $0.protocolVersion = .resp2 }
            #expect(try await old.command(["HGETALL", "h"]) == .array([.bulkString([102]), .bulkString([49])]))
            #expect(try await old.command(["ZSCORE", "z", "m"]) == .bulkString(Array("1.5".utf8)))
            #expect(try await old.command(["GET", "missing"]) == .null)
            await old.close()
        }
    }

    /// 10,000 commands in one send; every reply in order.
    @Test func tenThousandPipelinedCommands() async throws {
        try await withRedis { server, loop in
            let redis = try await connect(server, loop)
            let replies = try await redis.pipeline(Array(repeating: ["INCR", "counter"], count: 10_000))
            #expect(replies.count == 10_000)
            #expect(replies.enumerated().allSatisfy { i, r in (try? r.get()) == .integer(Int64(i + 1)) })
            #expect(try await redis.command(["GET", "counter"]) == .bulkString(Array("10000".utf8)))
            await redis.close()
        }
    }

    /// AUTH (in HELLO, and RESP2's AUTH), SELECT, and refusals as typed errors.
    @Test func authenticationAndDatabaseSelection() async throws {
        try await withRedis(["--requirepass", "s3cret"]) { server, loop in
            await #expect(throws: RedisError.self) { _ = try await connect(server, loop) }
            do throws(RedisError) {
                var configuration = RedisConfiguration()
                configuration.password = "wrong"
                _ = try await RedisConnection.connect(to: server.address, on: loop, configuration: configuration)
                Issue.record("a wrong password was accepted")
            } catch .handshake(let message) {
                #expect(message.contains("WRONGPASS"), "\(message)")
            } catch {
                Issue.record("\(error)")
            }
            let two = try await connect(server, loop) {
                $0.password = "s3cret"
                $0.database = 2
                $0.clientName = "torus-test"
            }
            #expect(try await two.command(["SET", "where", "two"]) == .simpleString("OK"))
            let zero = try await connect(server, loop) {
                $0.password = "s3cret"
                $0.protocolVersion = .resp2
            }
            #expect(try await zero.command(["GET", "where"]) == .null)
            #expect(try await zero.command(["CLIENT", "LIST"]).string?.contains("name=torus-test") == true)
            await two.close()
            await zero.close()
        }
    }

    /// Pub/Sub over RESP3 pushes (and RESP2's arrays, handed over as pushes):
    /// SUBSCRIBE and PSUBSCRIBE confirmations, then the messages another connection
    /// publishes; the subscriber's PING still gets its reply.
    @Test(arguments: [RedisConfiguration.ProtocolVersion.resp3, .resp2])
    func publishAndSubscribe(version: RedisConfiguration.ProtocolVersion) async throws {
        try await withRedis { server, loop in
            let subscriber = try await connect(server, loop) { $0.protocolVersion = version }
            let publisher = try await connect(server, loop)
            let pushes = Mutex<[RESPValue]>([])
            await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
                loop.execute {
                    subscriber.onPush = { value in pushes.withLock { $0.append(value) } }
                    c.resume()
                }
            }
            subscriber.subscribe(["rooms"])
            subscriber.subscribe(["home.*"], pattern: true)
            // RESP2 answers PING in subscribed mode with an array.
            let pong = try await subscriber.command(["PING"])
            #expect(pong == .simpleString("PONG") || pong.elements?.first == .bulkString(Array("pong".utf8)), "\(pong)")
            #expect(await eventually { pushes.withLock { $0.count } == 2 })
            #expect(try await publisher.command(["PUBLISH", "rooms", "kitchen"]) == .integer(1))
            #expect(try await publisher.command(["PUBLISH", "home.r1", "on"]) == .integer(1))
            #expect(await eventually { pushes.withLock { $0.count } == 4 })
            let got = pushes.withLock { $0 }
            #expect(got[0] == .push([.bulkString(Array("subscribe".utf8)), .bulkString(Array("rooms".utf8)), .integer(1)]))
            #expect(got[2] == .push([.bulkString(Array("message".utf8)), .bulkString(Array("rooms".utf8)),
                                     .bulkString(Array("kitchen".utf8))]))
            #expect(got[3].elements?.first == .bulkString(Array("pmessage".utf8)))
            await subscriber.close()
            await publisher.close()
        }
    }

    /// A command without its reply in time: every waiting command fails with
    /// `.timeout` and the connection closes (later replies could not be matched).
    @Test func commandTimeoutClosesTheConnection() async throws {
        try await withRedis { server, loop in
            let redis = try await connect(server, loop) { $0.commandTimeout = .milliseconds(300) }
            let closed = Mutex<RedisError?>(nil)
            await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
                loop.execute {
                    redis.onClose = { error in closed.withLock { $0 = error } }
                    c.resume()
                }
            }
            let replies = try? await redis.pipeline([["BLPOP", "nothing", "5"], ["PING"]])
            #expect(replies == nil)
            await #expect(throws: RedisError.timeout) { try await redis.command(["PING"]) }
            #expect(await eventually { closed.withLock { $0 } == .timeout })
            await redis.close()
        }
    }

    /// Keep-alive: an idle connection PINGs its server every `pingInterval` (counted by
    /// the server), over RESP3 and over a RESP2 connection in subscribed mode (whose
    /// PONG is an array); when the server stops answering (SIGSTOP: a hung server, or
    /// one gone without a FIN) the idle connections fail with `.timeout` on their own.
    @Test func idleConnectionsPingAndNoticeAServerThatStoppedAnswering() async throws {
        try await withRedis { server, loop in
            let idle = try await connect(server, loop) {
                $0.pingInterval = .milliseconds(200)
                $0.commandTimeout = .milliseconds(500)
            }
            let subscriber = try await connect(server, loop) {
                $0.protocolVersion = .resp2
                $0.pingInterval = .milliseconds(200)
                $0.commandTimeout = .milliseconds(500)
            }
            let observer = try await connect(server, loop) { $0.pingInterval = nil }
            let closed = Mutex<[RedisError]>([])
            await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
                loop.execute {
                    idle.onClose = { error in closed.withLock { $0.append(error) } }
                    subscriber.onClose = { error in closed.withLock { $0.append(error) } }
                    subscriber.onPush = { _ in }
                    c.resume()
                }
            }
            subscriber.subscribe(["quiet"])
            func pings() async throws -> Int {
                let info = try await observer.command(["INFO", "commandstats"]).string ?? ""
                guard let line = info.split(whereSeparator: \.isNewline).first(where: { $0.hasPrefix("cmdstat_ping:") }),
                      let calls = line.split(separator: ",").first?.split(separator: "=").last else { return 0 }
                return Int(calls) ?? 0
            }
            let before = try await pings()
            try await Task.sleep(for: .milliseconds(1500))
            let after = try await pings()
            // Two connections, ~7 intervals each (deadlines are met within the loop's
            // resolution): well over 4 PINGs, none sent by the test.
            #expect(after - before >= 4, "PINGs in 1.5 s: \(after - before)")
            #expect(closed.withLock { $0.isEmpty }, "\(closed.withLock { $0 })")

            kill(server.process.pid, SIGSTOP)
            #expect(await eventually(timeout: .seconds(10)) { closed.withLock { $0.count } == 2 })
            #expect(closed.withLock { $0 } == [.timeout, .timeout])
            kill(server.process.pid, SIGCONT)
            #expect(try await observer.command(["PING"]) == .simpleString("PONG"))
            await idle.close()
            await subscriber.close()
            await observer.close()
        }
    }

    /// CLIENT KILL from another connection, and the server killed while commands
    /// wait: typed errors, the connection closed, nothing left in the ledger.
    @Test func killedConnectionAndKilledServer() async throws {
        try await withRedis { server, loop in
            let victim = try await connect(server, loop)
            let admin = try await connect(server, loop)
            let id = try #require(try await victim.command(["CLIENT", "ID"]).integer)
            #expect(try await admin.command(["CLIENT", "KILL", "ID", String(id)]) == .integer(1))
            do throws(RedisError) {
                _ = try await victim.command(["PING"])
                Issue.record("a killed connection answered")
            } catch .connectionClosed {
            } catch {
                Issue.record("\(error)")
            }
            await victim.close()

            let waiting = try await connect(server, loop)
            async let blocked = waiting.pipeline([["BLPOP", "never", "30"], ["PING"]])
            try await Task.sleep(for: .milliseconds(200))
            kill(server.process.pid, SIGKILL)
            do {
                _ = try await blocked
                Issue.record("commands survived the server")
            } catch {
                if case .connectionClosed? = error as? RedisError {} else { Issue.record("\(error)") }
            }
            await waiting.close()
            await admin.close()
        }
    }
}
