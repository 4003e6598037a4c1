import Testing
import Torus
import TorusRedis
import TorusTestSupport

/// A "Redis server" made with Torus that answers every command with `reply` and
/// then, with `closeAfter`, closes.
final class CannedServer: ConnectionHandler, @unchecked Sendable {
    let reply: [UInt8]
    let closeAfter: Bool
    init(reply: String, closeAfter: Bool) {
        self.reply = Array(reply.utf8)
        self.closeAfter = closeAfter
    }
    func received(_ bytes: ReceivedBytes, from connection: Connection) {
        _ = connection.send(reply)
        if closeAfter { connection.closeAfterWriting() }
    }
}

/// Replies that are not RESP, too large, or cut short by a close: each fails the
/// command with a typed error, closes the client's connection, and leaves the
/// ledger quiescent (the group's check). The handshake is skipped (RESP2, no
/// password) so the first reply is the PING's.
@Suite("Redis client against a broken server")
struct BadServerTests {
    @Test(arguments: [
        ("+PONG\r\n?what\r\n", false, RedisError.protocolError(.unknownType(UInt8(ascii: "?")))),
        ("+PONG\r\n$99999999\r\n", false, .protocolError(.tooLarge(limit: 1 << 20))),
        ("+PONG\r\n$10\r\nabc", true, .connectionClosed("the server closed in the middle of a reply")),
        ("+PONG\r\n", true, .connectionClosed("closed by the server")),
        ("+PONG\r\n:1\r\n:2\r\n", false, .protocolError(.malformed("a reply without a command"))),
    ])
    func badRepliesAreTypedErrors(reply: String, closeAfter: Bool, expected: RedisError) async throws {
        try await withGroup(loops: 1) { group in
            let loop = group.loops[0]
            let server = try Server.start(on: [loop], address: .ipv4(host: "127.0.0.1", port: 0)) { _ in
                CannedServer(reply: reply, closeAfter: closeAfter)
            }
            var configuration = RedisConfiguration()
            configuration.protocolVersion = .resp2
            configuration.maxReplyBytes = 1 << 20
            let redis = try await RedisConnection.connect(to: server.address, on: loop, configuration: configuration)
            do throws(RedisError) {
                _ = try await redis.command(["GET", "x"])
                Issue.record("a reply was accepted")
            } catch {
                switch (error, expected) {
                case (.connectionClosed, .connectionClosed(let why)):
                    // The GET may reach the closed socket before the client saw the
                    // close, and then it ends in a reset: the reason may say either.
                    let text = "\(error)"
                    #expect(text.contains(why) || text.contains("reset"), "\(error)")
                default:
                    #expect(error == expected)
                }
            }
            await #expect(throws: RedisError.self) { try await redis.command(["PING"]) }
            await redis.close()
            server.close()
        }
    }
}
