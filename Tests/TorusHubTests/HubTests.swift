import Foundation
import Testing
import Torus
import TorusHub
import TorusTestSupport

/// Runs `body` against a hub started on a fresh two-loop group, shuts the hub down,
/// then the group, and asserts the ledger quiescent (clients use the same group).
func withHub(_ configure: (inout HubConfiguration) -> Void = { _ in },
             sourceLocation: SourceLocation = #_sourceLocation,
             _ body: (Hub, EventLoopGroup) async throws -> Void) async throws {
    try await withGroup(loops: 2, sourceLocation: sourceLocation) { group in
        var configuration = testHubConfiguration()
        configure(&configuration)
        let hub = try Hub.start(on: group, configuration: configuration)
        do {
            try await body(hub, group)
        } catch {
            await hub.shutdown(grace: .seconds(1))
            throw error
        }
        await hub.shutdown(grace: .seconds(2))
    }
}

/// A hub's settings for tests: the test credentials, ports chosen by the kernel, a
/// short ping interval.
func testHubConfiguration() -> HubConfiguration {
    var configuration = HubConfiguration()
    configuration.credentials = TestCredentials.store
    configuration.routerPort = 0
    configuration.httpPort = 0
    configuration.pingInterval = .milliseconds(500)
    // The test routers run on the test process's cooperative threads, which a test
    // run starting its other tests (each making rings and threads) was measured to
    // hold for 6 s: the default 5 s would refuse them for being late. The tests of
    // the timeout itself set their own.
    configuration.auth.authTimeout = .seconds(30)
    return configuration
}

/// One HTTP request on a fresh connection.
func http(_ hub: Hub, _ group: EventLoopGroup, _ method: String, _ target: String,
          body: String? = nil, token: String? = TestCredentials.adminToken) async throws -> MiniHTTPClient.Response {
    let client = try await MiniHTTPClient.connect(to: hub.httpAddress, on: group.next(), token: token)
    defer { Task { await client.close() } }
    let response = try await client.request(method, target, body: body.map { Array($0.utf8) })
    await client.close()
    return response
}

/// A router that answers every COMMAND with "done:" + body, until the link ends.
/// Returns the task (its value: frames other than COMMAND it saw).
@discardableResult
func answerCommands(_ router: HubRouterClient) -> Task<[HubFrame], Never> {
    Task {
        var other: [HubFrame] = []
        while let frame = try? await router.nextFrame() {
            if case .command(let id, let body) = frame {
                try? await router.send(.reply(requestID: id, body: Array("done:".utf8) + body))
            } else {
                other.append(frame)
            }
        }
        return other
    }
}

func deviceIDs(_ hub: Hub, _ group: EventLoopGroup) async throws -> [String] {
    let r = try await http(hub, group, "GET", "/devices")
    let list = try JSONSerialization.jsonObject(with: Data(r.body)) as? [[String: Any]] ?? []
    return list.compactMap { $0["id"] as? String }
}

@Suite("torus-hub faces", .timeLimit(.minutes(2)))
struct HubTests {
    @Test func commandRoundTripRouterToHTTP() async throws {
        try await withHub { hub, group in
            let router = try await HubRouterClient.connect(to: hub.routerAddress, on: group.loops[1], id: "r1", secret: TestCredentials.secret("r1"))
            #expect(router.heartbeatTimeout == .seconds(30))
            let answering = answerCommands(router)
            #expect(try await deviceIDs(hub, group) == ["r1"])
            // Keep-alive: several commands on one connection, from both loops.
            for loop in group.loops {
                let client = try await MiniHTTPClient.connect(to: hub.httpAddress, on: loop)
                for i in 0..<5 {
                    let r = try await client.request("POST", "/devices/r1/commands", body: Array("cmd \(i)".utf8),
                                                     headers: [("Content-Type", "application/json")])
                    #expect(r.status == 200)
                    #expect(r.text == "done:cmd \(i)")
                    #expect(r.header("content-type") == "application/json")
                }
                await client.close()
            }
            let one = try await http(hub, group, "GET", "/devices/r1")
            #expect(one.status == 200)
            #expect(one.text.contains(#""commands":10"#))
            await router.close()
            _ = await answering.value
        }
    }

    @Test func offlineIs404() async throws {
        try await withHub { hub, group in
            #expect(try await http(hub, group, "POST", "/devices/ghost/commands", body: "x").status == 404)
            #expect(try await http(hub, group, "GET", "/devices/ghost").status == 404)
            // A router that said BYE is offline at once.
            let router = try await HubRouterClient.connect(to: hub.routerAddress, on: group.loops[0], id: "r2", secret: TestCredentials.secret("r2"))
            try await router.send(.bye(reason: "going away"))
            #expect(try await router.nextFrame() == nil)
            await router.close()
            #expect(await eventually { (try? await deviceIDs(hub, group)) == [] })
            #expect(try await http(hub, group, "POST", "/devices/r2/commands", body: "x").status == 404)
        }
    }

    @Test func silentRouterTimesOutWith504AndLateReplyIsDropped() async throws {
        try await withHub { hub, group in
            let router = try await HubRouterClient.connect(to: hub.routerAddress, on: group.loops[0], id: "mute", secret: TestCredentials.secret("mute"))
            let started = ContinuousClock.now
            let r = try await http(hub, group, "POST", "/devices/mute/commands?timeout=300", body: "ping")
            #expect(r.status == 504)
            #expect(ContinuousClock.now - started >= .milliseconds(290))
            // The command did reach the router; its late reply must be harmless.
            guard case .command(let id, let body)? = try await router.nextFrame() else {
                Issue.record("no command")
                return
            }
            #expect(body == Array("ping".utf8))
            try await router.send(.reply(requestID: id, body: [1]))
            // The link is still fine.
            let answering = answerCommands(router)
            #expect(try await http(hub, group, "POST", "/devices/mute/commands", body: "again").text == "done:again")
            await router.close()
            _ = await answering.value
        }
    }

    @Test func linkClosingWhileCommandWaitsIs502() async throws {
        try await withHub { hub, group in
            let router = try await HubRouterClient.connect(to: hub.routerAddress, on: group.loops[0], id: "flaky", secret: TestCredentials.secret("flaky"))
            async let response = http(hub, group, "POST", "/devices/flaky/commands?timeout=5000", body: "x")
            guard case .command? = try await router.nextFrame() else {
                Issue.record("no command")
                return
            }
            await router.close(flush: false)
            #expect(try await response.status == 502)
        }
    }

    @Test func heartbeatTimeoutRemovesRouter() async throws {
        // Generous against load: the full suite runs in parallel on 2 cores, and the
        // live router's heartbeats come from a task that a loaded machine may delay.
        try await withHub({ $0.heartbeatTimeout = .seconds(5) }) { hub, group in
            let alive = try await HubRouterClient.connect(to: hub.routerAddress, on: group.loops[0], id: "alive", secret: TestCredentials.secret("alive"))
            #expect(alive.heartbeatTimeout == .seconds(5))
            let beating = Task {
                while !Task.isCancelled {
                    try? await alive.send(.heartbeat)
                    try? await Task.sleep(for: .milliseconds(150))
                }
            }
            // This one says HELLO and then nothing, and never closes (a vanished peer).
            // Timed from before its HELLO: under a loaded parallel run the listing
            // below may take a good part of the timeout.
            let started = ContinuousClock.now
            let silent = try await HubRouterClient.connect(to: hub.routerAddress, on: group.loops[1], id: "silent", secret: TestCredentials.secret("silent"))
            let listed = Set(try await deviceIDs(hub, group))
            if ContinuousClock.now - started < .seconds(4) { #expect(listed == ["alive", "silent"]) }
            // The hub closes the silent link: the router sees the end of the stream,
            // not before the timeout (less the liveness sweep's 250 ms resolution).
            #expect(try await silent.nextFrame() == nil)
            #expect(ContinuousClock.now - started >= .milliseconds(4700))
            #expect(try await deviceIDs(hub, group) == ["alive"])
            let metrics = try await http(hub, group, "GET", "/metrics").text
            #expect(metrics.contains(#"torus_hub_router_disconnects_total{reason="heartbeat_timeout"} 1"#))
            await silent.close()
            beating.cancel()
            await beating.value
            await alive.close()
        }
    }

    @Test func reconnectReplacesTheOldLink() async throws {
        try await withHub { hub, group in
            let first = try await HubRouterClient.connect(to: hub.routerAddress, on: group.loops[0], id: "r1", secret: TestCredentials.secret("r1"))
            let second = try await HubRouterClient.connect(to: hub.routerAddress, on: group.loops[1], id: "r1", secret: TestCredentials.secret("r1"))
            // The old link gets BYE and is closed by the hub.
            guard case .bye(let reason)? = try await first.nextFrame() else {
                Issue.record("old link did not get BYE")
                return
            }
            #expect(reason.contains("replaced"))
            #expect(try await first.nextFrame() == nil)
            await first.close()
            let answering = answerCommands(second)
            #expect(try await deviceIDs(hub, group) == ["r1"])
            let device = try await http(hub, group, "GET", "/devices/r1").text
            #expect(device.contains(#""loop":1"#) || device.contains(#""loop":0"#))
            #expect(try await http(hub, group, "POST", "/devices/r1/commands", body: "hi").text == "done:hi")
            // The replaced link closing later must not have removed its successor.
            #expect(hub.directory.count == 1)
            await second.close()
            _ = await answering.value
            #expect(await eventually { hub.directory.count == 0 })
        }
    }

    @Test func malformedFramesCloseTheLink() async throws {
        try await withHub({ $0.maxFrame = 256 }) { hub, group in
            // Too large.
            let big = try await HubRouterClient.connect(to: hub.routerAddress, on: group.loops[0], id: "big", secret: TestCredentials.secret("big"),
                                                        maxFrame: 256)
            try await big.send(.event([UInt8](repeating: 7, count: 300)))
            guard case .bye(let reason)? = try await big.nextFrame() else {
                Issue.record("no BYE")
                return
            }
            #expect(reason.contains("exceeds"))
            #expect(try await big.nextFrame() == nil)
            await big.close()
            // Something other than HELLO first: the WELCOME sent at accept, then REFUSED.
            let raw = try await AsyncConnection.connect(to: hub.routerAddress, on: group.loops[1])
            try await raw.write(HubFrame.heartbeat.encoded)
            var bytes: [UInt8] = []
            while let chunk = try await raw.read() { bytes += chunk }
            var decoder = HubFrameDecoder()
            var frames: [HubFrame] = []
            try bytes.withUnsafeBytes { try decoder.feed($0) { frames.append($0); return true } }
            #expect(frames.map(\.kind) == [.welcome, .refused], "\(frames)")
            await raw.close()
            #expect(await eventually { hub.directory.count == 0 })
            #expect(hub.counters.malformed == 2)
        }
    }

    @Test func eventsReachSubscribers() async throws {
        try await withHub { hub, group in
            let r1 = try await HubRouterClient.connect(to: hub.routerAddress, on: group.loops[0], id: "r1", secret: TestCredentials.secret("r1"))
            let r2 = try await HubRouterClient.connect(to: hub.routerAddress, on: group.loops[1], id: "r2", secret: TestCredentials.secret("r2"))
            // One subscriber for r2 only (on either loop), one for everything.
            let only = try await MiniHTTPClient.connect(to: hub.httpAddress, on: group.loops[0])
            try await only.send("GET", "/events?routers=r2")
            let all = try await MiniHTTPClient.connect(to: hub.httpAddress, on: group.loops[1])
            try await all.send("GET", "/events")
            for client in [only, all] {
                let (status, fields) = try await client.readHead()
                #expect(status == 200)
                #expect(fields.contains { $0.0.lowercased() == "content-type" && $0.1 == "text/event-stream" })
            }
            #expect(await eventually { hub.events.subscriberCount == 2 })
            try await r1.send(.event(Array(#"{"from":"r1"}"#.utf8)))
            try await r2.send(.event(Array("line1\nline2".utf8)))
            let allEvents = try await readEvents(all, count: 2)
            #expect(Set(allEvents.map(\.router)) == ["r1", "r2"])
            #expect(allEvents.contains { $0.data == #"{"from":"r1"}"# })
            let onlyEvents = try await readEvents(only, count: 1)
            #expect(onlyEvents.map(\.router) == ["r2"])
            #expect(onlyEvents.first?.data == "line1\nline2")
            // Idle streams get pings (liveness).
            #expect(try await readUntilPing(all))
            await only.close(flush: false)
            await all.close(flush: false)
            // The hub notices at its next ping and forgets them.
            #expect(await eventually(timeout: .seconds(5)) { hub.events.subscriberCount == 0 })
            await r1.close()
            await r2.close()
        }
    }

    @Test func metricsLedgerAndHealth() async throws {
        try await withHub { hub, group in
            #expect(try await http(hub, group, "GET", "/healthz").text == "ok\n")
            let metrics = try await http(hub, group, "GET", "/metrics")
            #expect(metrics.status == 200)
            for name in ["torus_connections", "torus_operations_in_flight", "torus_buffers{pool=\"received\",owner=\"pool\"}",
                         "torus_hub_resident_bytes", "torus_hub_routers 0"] {
                #expect(metrics.text.contains(name), "\(name) missing")
            }
            let ledger = try await http(hub, group, "GET", "/debug/ledger")
            let json = try JSONSerialization.jsonObject(with: Data(ledger.body)) as? [String: Any]
            // Both ends of this request's connection live in the test's group.
            #expect((json?["connections"] as? Int ?? 0) >= 2)
            #expect(json?["listeners"] as? Int == 4)
            #expect((json?["rss_bytes"] as? Int ?? 0) > 0)
            let full = try JSONDecoder().decode(LedgerSnapshot.self,
                                                from: JSONSerialization.data(withJSONObject: json?["ledger"] ?? [:]))
            #expect(full.listeners == 4)
        }
    }
}

struct SSEEvent {
    var router = ""
    var data = ""
}

/// Reads `count` server-sent events (skipping comments and chunk framing).
func readEvents(_ client: MiniHTTPClient, count: Int) async throws -> [SSEEvent] {
    var events: [SSEEvent] = []
    var current = SSEEvent()
    var dataLines: [String] = []
    while events.count < count {
        let line = try await client.readLine()
        if line.hasPrefix("event: ") {
            current.router = String(line.dropFirst(7))
        } else if line.hasPrefix("data: ") {
            dataLines.append(String(line.dropFirst(6)))
        } else if line.isEmpty, !dataLines.isEmpty {
            current.data = dataLines.joined(separator: "\n")
            events.append(current)
            current = SSEEvent()
            dataLines = []
        }
    }
    return events
}

func readUntilPing(_ client: MiniHTTPClient) async throws -> Bool {
    for _ in 0..<50 where try await client.readLine() == ": ping" { return true }
    return false
}

@Suite("torus-hub executable", .timeLimit(.minutes(2)))
struct HubExecutableTests {
    @Test func listensHTTPFirstAndStopsQuiescent() async throws {
        let credentials = try TestCredentials.writeFile()
        defer { try? FileManager.default.removeItem(atPath: credentials) }
        let hub = try ChildProcess(BuiltProducts.path("torus-hub"),
                                   ["--router-port", "0", "--http-port", "0", "--threads", "2",
                                    "--heartbeat-timeout", "10", "--credentials", credentials])
        guard let httpPort = await hub.listeningPort() else {
            Issue.record("no listening line: \(hub.text)")
            return
        }
        _ = await hub.waitForLine(containing: "listening on", timeout: .seconds(5))
        let lines = hub.text.split(separator: "\n").filter { $0.hasPrefix("listening on") }
        #expect(lines.count == 2)
        let routerPort = UInt16(lines.last?.split(separator: ":").last ?? "") ?? 0
        try await withLoop { loop in
            let client = try await MiniHTTPClient.connect(to: .tcp("127.0.0.1", httpPort), on: loop)
            #expect(try await client.request("GET", "/healthz").text == "ok\n")
            let router = try await HubRouterClient.connect(to: .tcp("127.0.0.1", routerPort), on: loop, id: "x1",
                                                           secret: TestCredentials.secret("x1"))
            let answering = answerCommands(router)
            let r = try await client.request("POST", "/devices/x1/commands", body: Array("go".utf8))
            #expect(r.text == "done:go")
            await client.close()
            await router.close()
            _ = await answering.value
        }
        #expect(await hub.stop() == 0)
        #expect(hub.text.contains("ledger: quiescent"), "\(hub.text)")
    }

    /// Operational events go to stderr through swift-log at `--log-level`, with
    /// metadata; stdout keeps only the lines scripts read.
    @Test(arguments: ["info", "error"])
    func logsRouterEventsOnStderrOnly(level: String) async throws {
        let logFile = NSTemporaryDirectory() + "torus-hub-log-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: logFile) }
        let credentials = try TestCredentials.writeFile()
        defer { try? FileManager.default.removeItem(atPath: credentials) }
        // The shell only redirects stderr, then becomes the hub (same PID).
        let hub = try ChildProcess("/bin/sh", [
            "-c", #"exec "$0" "$@" 2>"$TORUS_HUB_LOG""#, BuiltProducts.path("torus-hub"),
            "--router-port", "0", "--http-port", "0", "--threads", "2", "--log-level", level,
            "--credentials", credentials,
        ], environment: ["TORUS_HUB_LOG": logFile])
        guard await hub.listeningPort() != nil else {
            Issue.record("no listening line: \(hub.text)")
            return
        }
        _ = await hub.waitForLine(containing: "listening on", timeout: .seconds(5))
        let lines = hub.text.split(separator: "\n").filter { $0.hasPrefix("listening on") }
        let routerPort = try #require(UInt16(lines.last?.split(separator: ":").last ?? ""))
        try await withLoop { loop in
            let router = try await HubRouterClient.connect(to: .tcp("127.0.0.1", routerPort), on: loop, id: "logged",
                                                           secret: TestCredentials.secret("logged"))
            // A peer that breaks the protocol (frame type 99 does not exist): REFUSED, then the end.
            let bad = try await AsyncConnection.connect(to: .tcp("127.0.0.1", routerPort), on: loop)
            try await bad.write([0, 0, 0, 1, 99])
            while try await bad.read() != nil {}
            await bad.close()
            await router.close()
        }
        #expect(await hub.stop() == 0)
        let stdout = hub.text
        #expect(stdout.contains("ledger: quiescent"), "\(stdout)")
        #expect(!stdout.contains("torus.hub"), "log lines on stdout:\n\(stdout)")
        let log = try String(contentsOfFile: logFile, encoding: .utf8)
        if level == "info" {
            #expect(log.contains("router link opened") && log.contains("router=logged"), "\(log)")
            #expect(log.contains("router protocol error") && log.contains("unknown frame type 99"), "\(log)")
            #expect(log.contains("reason=protocol_error"), "\(log)")
            #expect(log.contains("reason=closed_by_router"), "\(log)")
            #expect(log.contains("hub shutting down"), "\(log)")
        } else {
            #expect(!log.contains("torus.hub"), "nothing at info or notice with --log-level error:\n\(log)")
        }
    }
}
