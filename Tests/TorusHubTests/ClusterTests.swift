import Foundation
import Glibc
import Testing
import Torus
import TorusHub
import TorusRedis
import TorusTestSupport

/// Runs `body` with a fresh `redis-server` and `nodes` hubs on one two-loop group,
/// each a node of one cluster (`n1`, `n2`, …) with a short lease; waits until every
/// node's Redis connection is up. Shuts the hubs down, then Redis, and asserts the
/// ledger quiescent.
func withCluster(nodes: Int = 3, lease: Duration = .seconds(3), sourceLocation: SourceLocation = #_sourceLocation,
                 configure: (inout HubClusterConfiguration) -> Void = { _ in },
                 _ body: (RedisServer, [Hub], EventLoopGroup) async throws -> Void) async throws {
    let redis = try await RedisServer()
    do {
        try await withHubNodes(.server(redis.address), nodes: nodes, lease: lease, sourceLocation: sourceLocation,
                               configure: configure) {
            try await body(redis, $0, $1)
        }
    } catch {
        await redis.stop()
        throw error
    }
    await redis.stop()
}

/// The same on a fresh three-master Redis Cluster (`redis-cli --cluster create`).
func withClusterOnRedisCluster(nodes: Int = 3, lease: Duration = .seconds(3),
                               sourceLocation: SourceLocation = #_sourceLocation,
                               _ body: (RedisClusterServer, [Hub], EventLoopGroup) async throws -> Void) async throws {
    let redis = try await RedisClusterServer()
    do {
        try await withHubNodes(.cluster(seeds: redis.addresses), nodes: nodes, lease: lease,
                               sourceLocation: sourceLocation, configure: { _ in }) {
            try await body(redis, $0, $1)
        }
    } catch {
        await redis.stop()
        throw error
    }
    await redis.stop()
}

/// `nodes` hubs on one two-loop group sharing `deployment`, started and connected;
/// shut down after `body`, with the ledger asserted quiescent.
private func withHubNodes(_ deployment: HubClusterConfiguration.Deployment, nodes: Int, lease: Duration,
                          sourceLocation: SourceLocation, configure: (inout HubClusterConfiguration) -> Void,
                          _ body: ([Hub], EventLoopGroup) async throws -> Void) async throws {
    try await withGroup(loops: 2, sourceLocation: sourceLocation) { group in
        var hubs: [Hub] = []
        do {
            for n in 1...nodes {
                var configuration = testHubConfiguration()
                var cluster = HubClusterConfiguration(deployment: deployment, nodeID: "n\(n)")
                cluster.leaseTime = lease
                cluster.backoff.initial = .milliseconds(50)
                cluster.backoff.maximum = .milliseconds(300)
                configure(&cluster)
                configuration.cluster = cluster
                hubs.append(try Hub.start(on: group, configuration: configuration))
            }
            #expect(await eventually { hubs.allSatisfy(\.clusterConnected) })
            try await body(hubs, group)
        } catch {
            for hub in hubs { await hub.shutdown(grace: .seconds(1)) }
            throw error
        }
        for hub in hubs { await hub.shutdown(grace: .seconds(2)) }
    }
}

/// `GET /devices` on `hub`: router id → node.
func devicesByNode(_ hub: Hub, _ group: EventLoopGroup) async throws -> [String: String] {
    let r = try await http(hub, group, "GET", "/devices")
    let list = try JSONSerialization.jsonObject(with: Data(r.body)) as? [[String: Any]] ?? []
    var out: [String: String] = [:]
    for item in list {
        if let id = item["id"] as? String { out[id] = item["node"] as? String ?? "?" }
    }
    return out
}

func connectRouter(_ id: String, to hub: Hub, on loop: EventLoop) async throws -> HubRouterClient {
    try await HubRouterClient.connect(to: hub.routerAddress, on: loop, id: id, secret: TestCredentials.secret(id))
}

@Suite("torus-hub cluster on Redis", .enabled(if: RedisServer.suitesRun, RedisServer.skipped),
       .timeLimit(.minutes(2)))
struct ClusterTests {
    /// Routers on two nodes: every node lists both with their node, a command sent to
    /// any node reaches the router on its node (with the same statuses as a local
    /// one), and events reach subscribers on every node, in order per router.
    @Test func routersCommandsAndEventsCrossNodes() async throws {
        try await withCluster { _, hubs, group in
            let r1 = try await connectRouter("r1", to: hubs[0], on: group.loops[0])
            let r2 = try await connectRouter("r2", to: hubs[1], on: group.loops[1])
            let silent = try await connectRouter("silent", to: hubs[0], on: group.loops[1])
            let answering = [answerCommands(r1), answerCommands(r2)]
            let everywhere = ["r1": "n1", "r2": "n2", "silent": "n1"]
            for hub in hubs {
                #expect(await eventually { (try? await devicesByNode(hub, group)) == everywhere })
            }
            let one = try await http(hubs[2], group, "GET", "/devices/r2")
            #expect(one.status == 200 && one.text.contains(#""node":"n2""#), "\(one.text)")
            #expect(try await http(hubs[2], group, "GET", "/devices/ghost").status == 404)

            // Commands: from the third node to each router, and between the two.
            for (hub, router) in [(hubs[2], "r1"), (hubs[2], "r2"), (hubs[0], "r2"), (hubs[1], "r1")] {
                let r = try await http(hub, group, "POST", "/devices/\(router)/commands", body: "ping \(router)")
                #expect(r.status == 200 && r.text == "done:ping \(router)", "\(r.status) \(r.text)")
            }
            #expect(try await http(hubs[1], group, "POST", "/devices/ghost/commands", body: "x").status == 404)
            let late = try await http(hubs[1], group, "POST", "/devices/silent/commands?timeout=200", body: "x")
            #expect(late.status == 504, "\(late.text)")

            // Events: subscribers on the third node (event stream) see both routers'
            // events, each router's in the order it sent them.
            let subscriber = try await MiniHTTPClient.connect(to: hubs[2].httpAddress, on: group.loops[0])
            try await subscriber.send("GET", "/events")
            #expect(try await subscriber.readHead().0 == 200)
            #expect(await eventually { hubs[2].events.subscriberCount == 1 })
            for i in 0..<50 {
                try await r1.send(.event(Array("a\(i)".utf8)))
                try await r2.send(.event(Array("b\(i)".utf8)))
            }
            let events = try await readEvents(subscriber, count: 100)
            #expect(events.filter { $0.router == "r1" }.map(\.data) == (0..<50).map { "a\($0)" })
            #expect(events.filter { $0.router == "r2" }.map(\.data) == (0..<50).map { "b\($0)" })
            await subscriber.close(flush: false)

            let metrics = try await http(hubs[0], group, "GET", "/metrics").text
            #expect(metrics.contains("torus_hub_cluster_connected 1"))
            #expect(metrics.contains("torus_hub_cluster_events_published_total 50"), "\(metrics)")
            let served = try await http(hubs[1], group, "GET", "/metrics").text
            #expect(served.contains(#"torus_hub_cluster_commands_total{direction="served"} 2"#), "\(served)")
            for router in [r1, r2, silent] { await router.close() }
            for task in answering { _ = await task.value }
            for hub in hubs {
                #expect(await eventually { (try? await devicesByNode(hub, group)) == [:] })
            }
        }
    }

    /// A router that reconnects to another node while its old link still looks alive
    /// (a power cut without FIN): the old node is told through Redis and closes the
    /// stale link at once, long before the lease or the heartbeat would expire.
    @Test func reconnectingToAnotherNodeDropsTheStaleLink() async throws {
        try await withCluster(lease: .seconds(30)) { _, hubs, group in
            let first = try await connectRouter("r1", to: hubs[0], on: group.loops[0])
            #expect(await eventually { (try? await devicesByNode(hubs[2], group)) == ["r1": "n1"] })
            let started = ContinuousClock.now
            let second = try await connectRouter("r1", to: hubs[1], on: group.loops[1])
            let answering = answerCommands(second)
            guard case .bye(let reason)? = try await first.nextFrame() else {
                Issue.record("the stale link got no BYE")
                return
            }
            #expect(reason.contains("n2"), "\(reason)")
            #expect(ContinuousClock.now - started < .seconds(3))
            #expect(try await first.nextFrame() == nil)
            await first.close()
            for hub in hubs {
                #expect(await eventually { (try? await devicesByNode(hub, group)) == ["r1": "n2"] })
            }
            #expect(hubs[0].directory.count == 0)
            let r = try await http(hubs[0], group, "POST", "/devices/r1/commands", body: "moved")
            #expect(r.text == "done:moved")
            await second.close()
            _ = await answering.value
        }
    }

    /// The dashboard's routers feed on one node tells routers coming and going on
    /// another (with their node), through the events channel.
    @Test func routersFeedSeesOtherNodesRouters() async throws {
        try await withCluster(nodes: 2) { _, hubs, group in
            let web = try await hubSocket(hubs[1], "/web?feeds=routers", on: group.loops[0])
            #expect(try await nextSubscribed(web) == ["*"])
            let r1 = try await connectRouter("r1", to: hubs[0], on: group.loops[1])
            let attached = try #require(try await nextJSON(web)["attached"] as? [String: Any])
            #expect(attached["id"] as? String == "r1" && attached["node"] as? String == "n1", "\(attached)")
            await r1.close()
            #expect(try await nextJSON(web)["detached"] as? [String: String] == ["id": "r1", "node": "n1"])
            await web.close()
        }
    }

    /// A burst far beyond what may wait for Redis: the router's link is held
    /// (backpressure) instead of its events dropped, and every event reaches the
    /// other node. (Counted at the nodes: a subscriber that cannot keep up with a
    /// burst is the bus's to drop for, which is another policy.)
    @Test func aBurstBeyondTheRelayLimitIsHeldNotDropped() async throws {
        try await withCluster(nodes: 2, configure: { $0.maxEventsInFlight = 2 }) { _, hubs, group in
            let r1 = try await connectRouter("r1", to: hubs[0], on: group.loops[0])
            let count = 3000
            for i in 0..<count { try await r1.send(.event(Array("e\(i)".utf8))) }
            func metric(_ hub: Hub, _ name: String) async -> Int? {
                guard let text = try? await http(hub, group, "GET", "/metrics").text else { return nil }
                return text.split(separator: "\n").first { $0.hasPrefix(name + " ") }
                    .flatMap { Int($0.split(separator: " ")[1]) }
            }
            #expect(await eventually { await metric(hubs[1], "torus_hub_cluster_events_received_total") == count })
            #expect(await metric(hubs[0], "torus_hub_cluster_events_published_total") == count)
            #expect(await metric(hubs[0], "torus_hub_cluster_events_dropped_total") == 0)
            #expect(await metric(hubs[0], "torus_hub_cluster_events_in_flight") == 0)
            #expect((await metric(hubs[0], "torus_hub_cluster_relay_holds_total") ?? 0) > 0, "the link was never held")
            await r1.close()
        }
    }

    /// Redis goes away: local routers, commands and subscribers keep working,
    /// cross-node commands answer 503 at once, `/devices` says it lists only local
    /// routers. Redis comes back (empty, on the same port): each node re-claims its
    /// leases and resubscribes, and the directory converges within a lease period.
    @Test func redisOutageDegradesAndRecovers() async throws {
        try await withCluster(lease: .seconds(2)) { redis, hubs, group in
            let r1 = try await connectRouter("r1", to: hubs[0], on: group.loops[0])
            let r2 = try await connectRouter("r2", to: hubs[1], on: group.loops[1])
            let answering = [answerCommands(r1), answerCommands(r2)]
            #expect(await eventually { (try? await devicesByNode(hubs[2], group)) == ["r1": "n1", "r2": "n2"] })
            let port = redis.port
            await redis.stop(signal: SIGKILL)
            #expect(await eventually { hubs.allSatisfy { !$0.clusterConnected } })

            let local = try await http(hubs[0], group, "POST", "/devices/r1/commands", body: "still")
            #expect(local.status == 200 && local.text == "done:still")
            let started = ContinuousClock.now
            let remote = try await http(hubs[0], group, "POST", "/devices/r2/commands", body: "x")
            #expect(remote.status == 503, "\(remote.text)")
            #expect(ContinuousClock.now - started < .seconds(1), "answered at once")
            let listing = try await http(hubs[0], group, "GET", "/devices")
            #expect(listing.header("torus-directory") == "local-only")
            #expect(try await devicesByNode(hubs[0], group) == ["r1": "n1"])
            let subscriber = try await MiniHTTPClient.connect(to: hubs[0].httpAddress, on: group.loops[1])
            try await subscriber.send("GET", "/events?routers=r1")
            #expect(try await subscriber.readHead().0 == 200)
            #expect(await eventually { hubs[0].events.subscriberCount == 1 })
            try await r1.send(.event(Array("during".utf8)))
            #expect(try await readEvents(subscriber, count: 1).map(\.data) == ["during"])
            await subscriber.close(flush: false)

            let restarted = try await RedisServer(port: port)
            #expect(await eventually { hubs.allSatisfy(\.clusterConnected) })
            for hub in hubs {
                #expect(await eventually(timeout: .seconds(5)) {
                    (try? await devicesByNode(hub, group)) == ["r1": "n1", "r2": "n2"]
                })
            }
            // (Each node's subscription is sent as its connection comes up: a command in
            // the moment before Redis has read it answers 503, as it should.)
            #expect(await eventually {
                (try? await http(hubs[2], group, "POST", "/devices/r2/commands", body: "back"))?.text == "done:back"
            })
            await r1.close()
            await r2.close()
            for task in answering { _ = await task.value }
            await restarted.stop()
        }
    }
}

/// One `torus-hub` process that is a node of a cluster.
struct HubNodeProcess {
    let process: ChildProcess
    let httpPort: UInt16
    let routerPort: UInt16

    static func start(node: String, redisPort: UInt16, credentials: String, lease: String = "1") async throws -> HubNodeProcess {
        let process = try ChildProcess(BuiltProducts.path("torus-hub"), [
            "--router-port", "0", "--http-port", "0", "--threads", "2", "--credentials", credentials,
            "--redis", "redis://127.0.0.1:\(redisPort)", "--node-id", node, "--lease-seconds", lease,
        ])
        _ = await process.waitForLine(containing: "listening on", timeout: .seconds(30))
        guard await process.waitForLine(containing: "listening on", timeout: .seconds(5)) != nil else {
            _ = await process.stop(signal: SIGKILL)
            throw RedisTestError("node \(node) did not start: \(process.text)")
        }
        let ports = process.text.split(separator: "\n").filter { $0.hasPrefix("listening on") }
            .compactMap { $0.split(separator: ":").last.flatMap { UInt16($0) } }
        guard ports.count == 2 else { throw RedisTestError("node \(node): \(process.text)") }
        return HubNodeProcess(process: process, httpPort: ports[0], routerPort: ports[1])
    }
}

@Suite("torus-hub cluster nodes as processes", .enabled(if: RedisServer.suitesRun, RedisServer.skipped),
       .timeLimit(.minutes(2)))
struct ClusterProcessTests {
    /// A node killed with SIGKILL: its lease expires, its router vanishes from the
    /// other node's `/devices` and reappears there when it reconnects to that node, and
    /// Redis keeps nothing about the dead node. The survivor stops cleanly, quiescent.
    @Test func killedNodesRoutersMoveToTheSurvivor() async throws {
        let redis = try await RedisServer()
        let credentials = try TestCredentials.writeFile()
        defer { try? FileManager.default.removeItem(atPath: credentials) }
        let a = try await HubNodeProcess.start(node: "a", redisPort: redis.port, credentials: credentials)
        let b = try await HubNodeProcess.start(node: "b", redisPort: redis.port, credentials: credentials)
        do {
            try await withLoop { loop in
                func devices(_ node: HubNodeProcess) async -> [String: String]? {
                    guard let client = try? await MiniHTTPClient.connect(to: .tcp("127.0.0.1", node.httpPort), on: loop),
                          let r = try? await client.request("GET", "/devices") else { return nil }
                    await client.close()
                    let list = (try? JSONSerialization.jsonObject(with: Data(r.body))) as? [[String: Any]] ?? []
                    return Dictionary(list.compactMap { item in
                        (item["id"] as? String).map { ($0, item["node"] as? String ?? "?") }
                    }, uniquingKeysWith: { first, _ in first })
                }
                let first = try await HubRouterClient.connect(to: .tcp("127.0.0.1", a.routerPort), on: loop, id: "r1",
                                                              secret: TestCredentials.secret("r1"))
                #expect(await eventually { await devices(b) == ["r1": "a"] })
                let killedAt = ContinuousClock.now
                kill(a.process.pid, SIGKILL)
                _ = await a.process.wait(timeout: .seconds(10))
                #expect(await eventually { await devices(b) == [:] })
                #expect(ContinuousClock.now - killedAt < .seconds(4), "gone within the lease (1 s) and a listing")
                await first.close(flush: false)

                let second = try await HubRouterClient.connect(to: .tcp("127.0.0.1", b.routerPort), on: loop, id: "r1",
                                                               secret: TestCredentials.secret("r1"))
                let answering = answerCommands(second)
                #expect(await eventually { await devices(b) == ["r1": "b"] })
                let client = try await MiniHTTPClient.connect(to: .tcp("127.0.0.1", b.httpPort), on: loop)
                #expect(try await client.request("POST", "/devices/r1/commands", body: Array("hi".utf8)).text == "done:hi")
                await client.close()

                // Nothing in Redis names the dead node.
                let store = try await RedisConnection.connect(to: redis.address, on: loop)
                let keys = (try await store.command(["KEYS", "torus:hub:*"]).elements ?? []).compactMap(\.string).sorted()
                #expect(keys == ["torus:hub:node:b:routers", "torus:hub:nodes", "torus:hub:router:r1"], "\(keys)")
                #expect(try await store.command(["SMEMBERS", "torus:hub:nodes"]) == .set([.bulkString(Array("b".utf8))]))
                #expect(try await store.command(["GET", "torus:hub:router:r1"]) == .bulkString(Array("b".utf8)))
                await store.close()
                await second.close()
                _ = await answering.value
            }
        } catch {
            _ = await a.process.stop(signal: SIGKILL)
            _ = await b.process.stop(signal: SIGKILL)
            await redis.stop()
            throw error
        }
        #expect(await b.process.stop() == 0)
        #expect(b.process.text.contains("ledger: quiescent"), "\(b.process.text)")
        await redis.stop()
    }
}
