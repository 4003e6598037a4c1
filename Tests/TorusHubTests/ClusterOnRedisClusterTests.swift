import Foundation
import Testing
import Torus
import TorusHub
import TorusRedis
import TorusTestSupport

/// The hub cluster on a real three-master Redis Cluster: the same directory, commands
/// and events as on one server, with keys spread over the masters, the channels as
/// sharded Pub/Sub, and a resharding step under way.
@Suite("torus-hub cluster on a Redis Cluster", .enabled(if: RedisClusterServer.suitesRun, RedisClusterServer.skipped),
       .timeLimit(.minutes(2)))
struct ClusterOnRedisClusterTests {
    @Test func routersCommandsEventsAndAReshard() async throws {
        try await withClusterOnRedisCluster(lease: .seconds(3)) { redis, hubs, group in
            let r1 = try await connectRouter("r1", to: hubs[0], on: group.loops[0])
            let r2 = try await connectRouter("r2", to: hubs[1], on: group.loops[1])
            let silent = try await connectRouter("silent", to: hubs[0], on: group.loops[1])
            var answering = [answerCommands(r2)]
            let everywhere = ["r1": "n1", "r2": "n2", "silent": "n1"]
            for hub in hubs {
                #expect(await eventually { (try? await devicesByNode(hub, group)) == everywhere })
            }

            // The channels are shard channels, each on the master serving its slot: the
            // 16 event channels spread the event traffic over the masters.
            var shardChannels = Set<String>()
            var mastersWithEvents = 0
            for node in redis.nodes {
                let listed = try await redis.cli(port: node.port, ["PUBSUB", "SHARDCHANNELS"])
                let channels = listed.split(separator: "\n").map(String.init)
                shardChannels.formUnion(channels)
                if channels.contains(where: { $0.hasPrefix("torus:hub:events") }) { mastersWithEvents += 1 }
            }
            let eventChannels = ["torus:hub:events"] + (1..<16).map { "torus:hub:events:\($0)" }
            #expect(shardChannels.isSuperset(of: eventChannels + ["torus:hub:node:n1", "torus:hub:node:n2",
                                                                  "torus:hub:node:n3"]), "\(shardChannels)")
            #expect(mastersWithEvents == redis.nodes.count, "event channels on \(mastersWithEvents) masters")

            // Events of routers on two nodes reach a subscriber on the third, in order.
            let subscriber = try await MiniHTTPClient.connect(to: hubs[2].httpAddress, on: group.loops[0])
            try await subscriber.send("GET", "/events")
            #expect(try await subscriber.readHead().0 == 200)
            #expect(await eventually { hubs[2].events.subscriberCount == 1 })
            for i in 0..<30 {
                try await r1.send(.event(Array("a\(i)".utf8)))
                try await r2.send(.event(Array("b\(i)".utf8)))
            }
            let events = try await readEvents(subscriber, count: 60)
            #expect(events.filter { $0.router == "r1" }.map(\.data) == (0..<30).map { "a\($0)" })
            #expect(events.filter { $0.router == "r2" }.map(\.data) == (0..<30).map { "b\($0)" })
            await subscriber.close(flush: false)

            answering.append(answerCommands(r1))
            for (hub, router) in [(hubs[2], "r1"), (hubs[2], "r2"), (hubs[0], "r2"), (hubs[1], "r1")] {
                let r = try await http(hub, group, "POST", "/devices/\(router)/commands", body: "ping \(router)")
                #expect(r.status == 200 && r.text == "done:ping \(router)", "\(r.status) \(r.text)")
            }
            let late = try await http(hubs[2], group, "POST", "/devices/silent/commands?timeout=200", body: "x")
            #expect(late.status == 504, "\(late.text)")
            #expect(try await http(hubs[2], group, "POST", "/devices/ghost/commands", body: "x").status == 404)

            // Reshard: move r2's lease to another master while the hubs run. Lookups
            // follow the MOVED, renewals keep the lease (r2 stays listed past several
            // lease periods), commands still reach r2.
            let slot = RedisClusterSlot.of("torus:hub:router:r2")
            let source = try await redis.port(serving: slot)
            guard let target = redis.nodes.map(\.port).first(where: { $0 != source }) else {
                Issue.record("no other master")
                return
            }
            try await redis.move(slot: slot, from: source, to: target)
            #expect(try await redis.port(serving: slot) == target)
            let moved = try await http(hubs[2], group, "POST", "/devices/r2/commands", body: "after move")
            #expect(moved.status == 200 && moved.text == "done:after move", "\(moved.status) \(moved.text)")
            try await Task.sleep(for: .seconds(4))  // more than a lease period
            #expect(try await devicesByNode(hubs[2], group) == everywhere)
            #expect(try await redis.cli(port: target, ["GET", "torus:hub:router:r2"]) == "n2")

            // A router that reconnects to another node: the stale link is told through
            // the shard channel of its node.
            let again = try await connectRouter("r1", to: hubs[1], on: group.loops[1])
            answering.append(answerCommands(again))
            #expect(await eventually { (try? await devicesByNode(hubs[2], group))?["r1"] == "n2" })
            #expect(await eventually { (try? await devicesByNode(hubs[0], group))?["r1"] == "n2" })
            let r = try await http(hubs[0], group, "POST", "/devices/r1/commands", body: "moved")
            #expect(r.text == "done:moved", "\(r.status) \(r.text)")

            for router in [r1, r2, silent, again] { await router.close() }
            for task in answering { _ = await task.value }
            for hub in hubs {
                #expect(await eventually { (try? await devicesByNode(hub, group)) == [:] })
            }
        }
    }
}
