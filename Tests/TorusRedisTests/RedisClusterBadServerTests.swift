import Testing
import Torus
import TorusRedis
import TorusTestSupport

/// Seeds that give no usable slot map: `connect` throws `.clusterMap` (saying why for
/// each seed), never traps, and leaves the ledger quiescent.
@Suite("Redis Cluster client against a broken seed")
struct RedisClusterBadServerTests {
    @Test(arguments: [
        (":1\r\n", "not an array"),
        ("*1\r\n*4\r\n$5\r\nslots\r\n*2\r\n:0\r\n:20000\r\n$5\r\nnodes\r\n*1\r\n*4\r\n$4\r\nrole\r\n$6\r\nmaster\r\n$4\r\nport\r\n:7000\r\n",
         "out of 0...16383"),
        ("*1\r\n*4\r\n$5\r\nslots\r\n*2\r\n:0\r\n:9\r\n$5\r\nnodes\r\n*0\r\n", "no master"),
        ("*1\r\n*4\r\n$5\r\nslots\r\n*1\r\n:0\r\n$5\r\nnodes\r\n*0\r\n", "pairs"),
        ("*1\r\n*4\r\n$5\r\nslots\r\n*0\r\n$5\r\nnodes\r\n*0\r\n", "serves no slots"),
        ("*1\r\n*4\r\n$5\r\nslots\r\n*2\r\n:0\r\n:9\r\n$5\r\nnodes\r\n*1\r\n*4\r\n$4\r\nrole\r\n$6\r\nmaster\r\n$4\r\nport\r\n:0\r\n",
         "without a port"),
        ("*1\r\n*4\r\n$5\r\nslots\r\n*2\r\n:0\r\n:9\r\n$5\r\nnodes\r\n*1\r\n*6\r\n$4\r\nrole\r\n$6\r\nmaster\r\n$4\r\nport\r\n:1\r\n$8\r\nendpoint\r\n$9\r\nredis.lan\r\n",
         "not a numeric address"),
    ])
    func malformedSlotMapIsATypedError(reply: String, expected: String) async throws {
        try await withGroup(loops: 1) { group in
            let loop = group.loops[0]
            let server = try Server.start(on: [loop], address: .ipv4(host: "127.0.0.1", port: 0)) { _ in
                CannedServer(reply: reply, closeAfter: false)
            }
            var configuration = RedisClusterClient.Configuration()
            configuration.connection.protocolVersion = .resp2  // the handshake is a PING: any reply will do
            do throws(RedisError) {
                let client = try await RedisClusterClient.connect(seeds: [server.address], on: loop, configuration: configuration)
                Issue.record("a slot map was accepted")
                await client.close()
            } catch .clusterMap(let why) {
                #expect(why.contains(expected), "\(why)")
            } catch {
                Issue.record("\(error)")
            }
            server.close()
        }
    }

    /// No seed listening: `.clusterMap`, naming each seed's connect failure.
    @Test func unreachableSeeds() async throws {
        try await withGroup(loops: 1) { group in
            let seeds = try [RedisServer.freePort(), RedisServer.freePort()].map { SocketAddress.ipv4(host: "127.0.0.1", port: $0) }
            do throws(RedisError) {
                let client = try await RedisClusterClient.connect(seeds: seeds, on: group.loops[0])
                Issue.record("connected to nothing")
                await client.close()
            } catch .clusterMap(let why) {
                #expect(seeds.allSatisfy { why.contains("\($0)") }, "\(why)")
            } catch {
                Issue.record("\(error)")
            }
        }
    }
}
