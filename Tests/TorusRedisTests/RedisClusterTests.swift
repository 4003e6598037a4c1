import Foundation
import Glibc
import Synchronization
import Testing
import Torus
import TorusRedis
import TorusTestSupport

/// A cluster client on `cluster` (seeded with its first node only), closed after `body`.
private func withClient(_ cluster: RedisClusterServer, _ loop: EventLoop,
                        _ configure: (inout RedisClusterClient.Configuration) -> Void = { _ in },
                        onPush: (@Sendable (RESPValue) -> Void)? = nil,
                        _ body: (RedisClusterClient) async throws -> Void) async throws {
    var configuration = RedisClusterClient.Configuration()
    configure(&configuration)
    let client = try await RedisClusterClient.connect(seeds: [cluster.addresses[0]], on: loop,
                                                      configuration: configuration, onPush: onPush)
    do {
        try await body(client)
    } catch {
        await client.close()
        throw error
    }
    await client.close()
}

/// A key (with `prefix`) whose slot `port` serves, in `map`.
private func keyServed(by port: UInt16, _ map: RedisClusterSlotMap, prefix: String) -> String {
    var i = 0
    while map.address(forSlot: RedisClusterSlot.of("\(prefix)\(i)"))?.port != port { i += 1 }
    return "\(prefix)\(i)"
}

/// What `body` returned or threw.
private func outcome(_ body: () async throws(RedisError) -> RESPValue) async -> Result<RESPValue, RedisError> {
    do throws(RedisError) {
        return .success(try await body())
    } catch {
        return .failure(error)
    }
}

@Suite("Redis Cluster client against a three-master cluster",
       .enabled(if: RedisClusterServer.suitesRun, RedisClusterServer.skipped),
       .serialized, .timeLimit(.minutes(2)))
struct RedisClusterTests {
    /// The map read from one seed names all three masters; 300 keys set through the
    /// client land on the master of their slot (each node holds its own and answers
    /// for them without a redirect); the server agrees on the slots; a keyless
    /// command goes to some master.
    @Test func routesKeysAcrossAllMasters() async throws {
        try await withRedisCluster { cluster, loop in
            try await withClient(cluster, loop) { client in
                let map = await client.currentSlotMap()
                #expect(map.assignedSlots == 16384)
                #expect(Set(map.masters.map(\.address)) == Set(cluster.addresses))
                let keys = (0..<300).map { "key:\($0)" }
                let replies = await client.pipeline(keys.map { (["SET", $0, "v-\($0)"], $0) })
                #expect(replies.allSatisfy { (try? $0.get()) == .simpleString("OK") })
                #expect(try await client.command(["PING"], key: nil) == .simpleString("PONG"))

                var total: Int64 = 0
                for address in cluster.addresses {
                    let node = try await RedisConnection.connect(to: address, on: loop)
                    let mine = keys.filter { map.address(forSlot: RedisClusterSlot.of($0)) == address }
                    #expect(mine.count > 50, "each master has its share")
                    let values = try await node.pipeline(mine.map { ["GET", $0] })
                    #expect(values.map { try? $0.get() } == mine.map { .bulkString(Array("v-\($0)".utf8)) })
                    total += try await node.command(["DBSIZE"]).integer ?? -1
                    for sample in mine.prefix(5) {
                        #expect(try await node.command(["CLUSTER", "KEYSLOT", sample]).integer == Int64(RedisClusterSlot.of(sample)))
                    }
                    await node.close()
                }
                #expect(total == 300)

                // Pipelining: 200 commands for one node, sent in one turn of the loop,
                // reach it in a few reads (one send), not 200.
                let first = cluster.nodes[0].port
                let theirs = keys.filter { map.address(forSlot: RedisClusterSlot.of($0))?.port == first }
                let before = try await cluster.reads(port: first)
                let gets: [(arguments: [String], key: String?)] = (0..<200).map { i in
                    let key = theirs[i % theirs.count]
                    return (["GET", key], key)
                }
                let many = await client.pipeline(gets)
                let values = many.compactMap { (try? $0.get())?.string }
                #expect(values.count == 200 && values.allSatisfy { $0.hasPrefix("v-key:") })
                let reads = try await cluster.reads(port: first) - before
                #expect(reads < 20, "\(reads) reads for 200 pipelined commands")

                // The loop-thread face, binary: replies in order, on the loop.
                let blob: [UInt8] = [0, 13, 10, 255]
                let binary: [Result<RESPValue, RedisError>] = await withCheckedContinuation { continuation in
                    loop.execute {
                        var replies: [Result<RESPValue, RedisError>] = []
                        let key = Array("blob".utf8)
                        client.send(binary: [Array("SET".utf8), key, blob], key: key) { replies.append($0) }
                        client.send(binary: [Array("GET".utf8), key], key: key) { reply in
                            replies.append(reply)
                            continuation.resume(returning: replies)
                        }
                    }
                }
                let expected: [RESPValue?] = [.simpleString("OK"), .bulkString(blob)]
                #expect(binary.map { try? $0.get() } == expected)
                let statistics = await client.currentStatistics()
                #expect(statistics.moved == 0 && statistics.asked == 0)
            }
        }
    }

    /// A slot moved with its keys (IMPORTING/MIGRATING, MIGRATE, SETSLOT NODE on every
    /// master): the client's next command meets `-MOVED`, follows it, and its map
    /// names the new master (at once, and after the refresh it scheduled).
    @Test func followsMovedAndUpdatesTheMap() async throws {
        try await withRedisCluster { cluster, loop in
            try await withClient(cluster, loop) { client in
                let key = "moving-key"
                let slot = RedisClusterSlot.of(key)
                #expect(try await client.command(["SET", key, "here"], key: key) == .simpleString("OK"))
                let source = try await cluster.port(serving: slot)
                let target = try #require(cluster.nodes.map(\.port).first { $0 != source })
                try await cluster.move(slot: slot, from: source, to: target)
                let refreshes = await client.currentStatistics().refreshes

                #expect(try await client.command(["GET", key], key: key) == .bulkString(Array("here".utf8)))
                #expect(await client.currentStatistics().moved == 1)
                #expect(await client.currentSlotMap().address(forSlot: slot)?.port == target)
                #expect(await eventually { await client.currentStatistics().refreshes > refreshes })
                #expect(await client.currentSlotMap().address(forSlot: slot)?.port == target)
                #expect(await client.currentSlotMap().assignedSlots == 16384)
                // Now routed straight there.
                #expect(try await client.command(["GET", key], key: key) == .bulkString(Array("here".utf8)))
                #expect(await client.currentStatistics().moved == 1)
            }
        }
    }

    /// During a migration (the slot MIGRATING on its master, IMPORTING on the target,
    /// the key already moved), the source answers `-ASK`: the client sends `ASKING` and
    /// the command to the target and succeeds, without changing its map. A new key of
    /// the slot is created on the target the same way.
    @Test func followsAskDuringAMigration() async throws {
        try await withRedisCluster { cluster, loop in
            try await withClient(cluster, loop) { client in
                let key = "{asked}.one"
                let slot = RedisClusterSlot.of(key)
                #expect(try await client.command(["SET", key, "1"], key: key) == .simpleString("OK"))
                let source = try await cluster.port(serving: slot)
                let target = try #require(cluster.nodes.map(\.port).first { $0 != source })
                let sourceID = try await cluster.id(of: source)
                let targetID = try await cluster.id(of: target)
                _ = try await cluster.cli(port: target, ["CLUSTER", "SETSLOT", "\(slot)", "IMPORTING", sourceID])
                _ = try await cluster.cli(port: source, ["CLUSTER", "SETSLOT", "\(slot)", "MIGRATING", targetID])
                let migrated = try await cluster.cli(port: source, ["MIGRATE", "127.0.0.1", "\(target)", key, "0", "5000"])
                #expect(migrated == "OK")

                #expect(try await client.command(["GET", key], key: key) == .bulkString([49]))
                #expect(try await client.command(["SET", "{asked}.two", "2"], key: "{asked}.two") == .simpleString("OK"))
                let statistics = await client.currentStatistics()
                #expect(statistics.asked == 2 && statistics.moved == 0)
                #expect(await client.currentSlotMap().address(forSlot: slot)?.port == source, "ASK leaves the map")
                let onTarget = try await cluster.cli(port: target, ["CLUSTER", "COUNTKEYSINSLOT", "\(slot)"])
                #expect(onTarget == "2")
            }
        }
    }

    /// A slot MIGRATING on its master towards a node that is not IMPORTING it: the
    /// master says `-ASK` (the key is not there), the target `-MOVED` back, and so on;
    /// the client gives up after `maxRedirects` with `.tooManyRedirects`, and other
    /// slots keep working.
    @Test func tooManyRedirectsIsATypedError() async throws {
        try await withRedisCluster { cluster, loop in
            try await withClient(cluster, loop, { $0.maxRedirects = 3 }) { client in
                let key = "ping-pong"
                let slot = RedisClusterSlot.of(key)
                let source = try await cluster.port(serving: slot)
                let target = try #require(cluster.nodes.map(\.port).first { $0 != source })
                let targetID = try await cluster.id(of: target)
                _ = try await cluster.cli(port: source, ["CLUSTER", "SETSLOT", "\(slot)", "MIGRATING", targetID])
                do throws(RedisError) {
                    _ = try await client.command(["GET", key], key: key)
                    Issue.record("a command bounced between two nodes succeeded")
                } catch .tooManyRedirects(let last) {
                    #expect(last.hasPrefix("ASK") || last.hasPrefix("MOVED"), "\(last)")
                } catch {
                    Issue.record("\(error)")
                }
                let statistics = await client.currentStatistics()
                #expect(statistics.asked + statistics.moved == 3)
                let other = keyServed(by: target, await client.currentSlotMap(), prefix: "other")
                #expect(try await client.command(["SET", other, "x"], key: other) == .simpleString("OK"))
            }
        }
    }

    /// `SSUBSCRIBE` on the master of the channel's slot; `SPUBLISH` from another
    /// connection arrives. The slot then moves (the node sends `sunsubscribe`): the
    /// client subscribes on the new master and messages arrive again; the Pub/Sub
    /// connection is then killed on the server: it subscribes again after reconnecting.
    /// A subscription sent to a node that lost the slot meets `-MOVED` and is made on
    /// the new master.
    @Test func shardedPubSubFollowsTheSlot() async throws {
        try await withRedisCluster { cluster, loop in
            let messages = Mutex<[String]>([])
            try await withClient(cluster, loop, onPush: { value in
                guard let parts = value.elements, parts.count == 3, parts[0].string == "smessage",
                      let text = parts[2].string else { return }
                messages.withLock { $0.append(text) }
            }) { client in
                client.ssubscribe(["news"])
                let slot = RedisClusterSlot.of("news")
                let owner = try await cluster.port(serving: slot)
                let publisher = try await RedisConnection.connect(to: .ipv4(host: "127.0.0.1", port: owner), on: loop)
                #expect(await eventually { (try? await publisher.command(["SPUBLISH", "news", "one"])) == .integer(1) })
                #expect(await eventually { messages.withLock { $0 } == ["one"] })
                await publisher.close()

                let target = try #require(cluster.nodes.map(\.port).first { $0 != owner })
                try await cluster.move(slot: slot, from: owner, to: target)
                // The client's own SPUBLISH follows the MOVED too.
                #expect(await eventually { (try? await client.spublish("news", "two")) == 1 })
                #expect(await eventually { messages.withLock { $0 } == ["one", "two"] })

                // Kill the Pub/Sub connection on the server side.
                let list = try await cluster.cli(port: target, ["CLIENT", "LIST"])
                let subscriber = try #require(list.split(separator: "\n").first { $0.contains("cmd=ssubscribe") })
                let id = try #require(subscriber.split(separator: " ").first { $0.hasPrefix("id=") }?.dropFirst(3))
                #expect(try await cluster.cli(port: target, ["CLIENT", "KILL", "ID", String(id)]) == "1")
                #expect(await eventually { (try? await client.spublish("news", "three")) == 1 })
                #expect(await eventually { messages.withLock { $0 } == ["one", "two", "three"] })
                #expect(await client.currentStatistics().resubscriptions >= 3)

                client.sunsubscribe(["news"])
                #expect(await eventually { (try? await client.spublish("news", "gone")) == 0 })

                // A slot moved behind the client's back: its SSUBSCRIBE meets -MOVED,
                // and it subscribes on the new master.
                try await client.refreshSlotMap()  // no refresh left pending to learn of the move
                let sports = RedisClusterSlot.of("sports")
                let sportsOwner = try await cluster.port(serving: sports)
                let sportsTarget = try #require(cluster.nodes.map(\.port).first { $0 != sportsOwner })
                try await cluster.move(slot: sports, from: sportsOwner, to: sportsTarget)
                let moved = await client.currentStatistics().moved
                client.ssubscribe(["sports"])
                #expect(await eventually { await client.currentStatistics().moved > moved })
                let direct = try await RedisConnection.connect(to: .ipv4(host: "127.0.0.1", port: sportsTarget), on: loop)
                #expect(await eventually { (try? await direct.command(["SPUBLISH", "sports", "goal"])) == .integer(1) })
                await direct.close()
            }
        }
    }

    /// A master killed (SIGKILL): commands for its slots fail at once with a typed
    /// connection error; commands for the other masters' slots go on.
    @Test func aKilledNodeFailsOnlyItsSlots() async throws {
        try await withRedisCluster { cluster, loop in
            try await withClient(cluster, loop) { client in
                try await client.refreshSlotMap()
                let map = await client.currentSlotMap()
                let keys = cluster.nodes.map { keyServed(by: $0.port, map, prefix: "k") }
                for key in keys {
                    #expect(try await client.command(["SET", key, "1"], key: key) == .simpleString("OK"))
                }
                let dead = cluster.nodes[2].port
                await cluster.kill(port: dead)
                for round in 0..<3 {
                    let started = ContinuousClock.now
                    let result = await outcome { () async throws(RedisError) in try await client.command(["GET", keys[2]], key: keys[2]) }
                    switch result {
                    case .failure(.connectionClosed), .failure(.connectFailed):
                        #expect(ContinuousClock.now - started < .seconds(2), "fails at once")
                    default:
                        Issue.record("round \(round): not a connection error: \(result)")
                    }
                    #expect(try await client.command(["GET", keys[0]], key: keys[0]) == .bulkString([49]))
                    #expect(try await client.command(["GET", keys[1]], key: keys[1]) == .bulkString([49]))
                }
                #expect(try await client.command(["PING"], key: nil) == .simpleString("PONG"))
            }
        }
    }
}
