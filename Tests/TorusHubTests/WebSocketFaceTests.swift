import Foundation
import Testing
import Torus
import TorusHub
import TorusTestSupport
import TorusWebSocket

/// A WebSocket client of the hub's `/app` or `/web` face (the project's own client).
/// It sends `token` (the tests' admin token unless told otherwise) as
/// `Authorization: Bearer`.
func hubSocket(_ hub: Hub, _ target: String, on loop: EventLoop, token: String? = TestCredentials.adminToken,
               _ configure: (inout WebSocketClientConfiguration) -> Void = { _ in }) async throws -> WebSocketConnection {
    var configuration = WebSocketClientConfiguration()
    if let token { configuration.headers.append(HandshakeHeader("Authorization", "Bearer \(token)")) }
    configure(&configuration)
    return try await WebSocketClient.connect(to: "ws://127.0.0.1:\(hub.httpAddress.port ?? 0)\(target)", on: loop,
                                             configuration: configuration)
}

/// One JSON text message from the hub.
func nextJSON(_ ws: WebSocketConnection) async throws -> [String: Any] {
    guard case .text(let text)? = try await ws.nextMessage() else { throw HubTestError("no text message") }
    guard let object = try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any] else {
        throw HubTestError("not a JSON object: \(text)")
    }
    return object
}

/// The `subscribed` list of the next message (which must be one).
func nextSubscribed(_ ws: WebSocketConnection) async throws -> [String] {
    let m = try await nextJSON(ws)
    guard let list = m["subscribed"] as? [String] else { throw HubTestError("expected subscribed, got \(m)") }
    return list
}

/// Events (router, data) read until one whose data is `marker` (included).
func eventsUntil(_ ws: WebSocketConnection, marker: String) async throws -> [(router: String, data: String)] {
    var out: [(String, String)] = []
    while true {
        let m = try await nextJSON(ws)
        guard let router = m["router"] as? String, let data = m["data"] as? String, m["seq"] is Int else {
            throw HubTestError("not an event: \(m)")
        }
        out.append((router, data))
        if data == marker { return out }
    }
}

struct HubTestError: Error, CustomStringConvertible {
    let description: String
    init(_ d: String) { description = d }
}

@Suite("torus-hub WebSocket faces", .timeLimit(.minutes(2)))
struct WebSocketFaceTests {
    @Test func appIsFilteredAndWebGetsEverything() async throws {
        try await withHub { hub, group in
            let r1 = try await HubRouterClient.connect(to: hub.routerAddress, on: group.loops[0], id: "r1", secret: TestCredentials.secret("r1"))
            let r2 = try await HubRouterClient.connect(to: hub.routerAddress, on: group.loops[1], id: "r2", secret: TestCredentials.secret("r2"))
            let r3 = try await HubRouterClient.connect(to: hub.routerAddress, on: group.loops[0], id: "r3", secret: TestCredentials.secret("r3"))
            let app = try await hubSocket(hub, "/app", on: group.loops[1])
            #expect(try await nextSubscribed(app) == [])
            try await app.send(text: #"{"subscribe":["r3","r1"]}"#)
            #expect(try await nextSubscribed(app) == ["r1", "r3"])
            let web = try await hubSocket(hub, "/web", on: group.loops[0])
            #expect(try await nextSubscribed(web) == ["*"])
            // An app that chose its routers in the URL.
            let preset = try await hubSocket(hub, "/app?routers=r2", on: group.loops[0])
            #expect(try await nextSubscribed(preset) == ["r2"])
            #expect(hub.webSocketClients == (app: 2, web: 1))

            let tricky = "{\"t\":\"quote \\\" backslash \\\\\"}\nline2\ttab \u{1}"
            try await r1.send(.event(Array(tricky.utf8)))
            try await r2.send(.event(Array("from r2".utf8)))
            try await r3.send(.event(Array("m1".utf8)))
            // The app gets r1 and r3 only; the web page everything.
            var appSeen = try await eventsUntil(app, marker: "m1")
            if !appSeen.contains(where: { $0.router == "r1" }) { appSeen += try await eventsUntil(app, marker: tricky) }
            #expect(Set(appSeen.map(\.router)) == ["r1", "r3"])
            #expect(appSeen.first { $0.router == "r1" }?.data == tricky)
            let webSeen = try await readEvents(web, count: 3)
            #expect(Set(webSeen.map(\.router)) == ["r1", "r2", "r3"])
            #expect(try await eventsUntil(preset, marker: "from r2").map(\.router) == ["r2"])

            // Unsubscribe r1: its next event must not arrive. The web page seeing it
            // proves it was published; a later r3 event on the same hub loop comes
            // after it in the app's job queue.
            try await app.send(text: #"{"unsubscribe":["r1"]}"#)
            #expect(try await nextSubscribed(app) == ["r3"])
            try await r1.send(.event(Array("after-unsubscribe".utf8)))
            _ = try await eventsUntil(web, marker: "after-unsubscribe")
            try await r3.send(.event(Array("m2".utf8)))
            #expect(try await eventsUntil(app, marker: "m2").map(\.router) == ["r3"])

            // Bad requests are answered, the connection stays.
            try await app.send(text: "not json")
            #expect(try await nextJSON(app)["error"] is String)
            try await app.send(text: #"{"subscribe":["bad id!"]}"#)
            #expect(try await nextJSON(app)["error"] as? String == "invalid router id")
            try await app.send(text: #"{"subscribe":["*"]}"#)
            #expect(try await nextSubscribed(app) == ["*", "r3"])
            try await r2.send(.event(Array("m3".utf8)))
            #expect(try await eventsUntil(app, marker: "m3").map(\.router) == ["r2"])

            await app.close()
            await web.close()
            await preset.close()
            #expect(await eventually { hub.webSocketClients == (0, 0) && hub.events.subscriberCount == 0 })
            await r1.close()
            await r2.close()
            await r3.close()
        }
    }

    @Test func shutdownClosesClientsWith1001() async throws {
        try await withGroup(loops: 2) { group in
            var configuration = HubConfiguration()
            configuration.credentials = TestCredentials.store
            configuration.routerPort = 0
            configuration.httpPort = 0
            let hub = try Hub.start(on: group, configuration: configuration)
            let app = try await hubSocket(hub, "/app?routers=*", on: group.loops[0])
            let web = try await hubSocket(hub, "/web", on: group.loops[1])
            #expect(try await nextSubscribed(app) == ["*"])
            #expect(try await nextSubscribed(web) == ["*"])
            await hub.shutdown(grace: .seconds(2))
            for ws in [app, web] {
                #expect(try await ws.nextMessage() == nil)
                let info = await ws.closed()
                #expect(info.code == .goingAway && info.wasClean, "\(info)")
            }
            #expect(hub.webSocketClients == (0, 0))
        }
    }

    @Test func silentClientsAreRemovedByPingTimeout() async throws {
        try await withHub({
            $0.webSocket.pingInterval = .milliseconds(200)
            $0.webSocket.pingTimeout = .milliseconds(300)
            $0.webSocket.closeTimeout = .milliseconds(300)
        }) { hub, group in
            let router = try await HubRouterClient.connect(to: hub.routerAddress, on: group.loops[0], id: "r1", secret: TestCredentials.secret("r1"))
            // Reads but never answers pings.
            let deaf = try await hubSocket(hub, "/app?routers=r1", on: group.loops[0]) {
                $0.connection.autoPong = false
                $0.connection.pingInterval = nil
            }
            // Stops reading altogether (an app frozen in the background).
            let frozen = try await hubSocket(hub, "/web", on: group.loops[1]) { $0.connection.pingInterval = nil }
            // Alive: answers pings (and sends none of its own).
            let alive = try await hubSocket(hub, "/web", on: group.loops[0]) { $0.connection.pingInterval = nil }
            #expect(try await nextSubscribed(deaf) == ["r1"])
            #expect(try await nextSubscribed(frozen) == ["*"])
            #expect(try await nextSubscribed(alive) == ["*"])
            await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
                frozen.loop.execute {
                    frozen.pauseReading()
                    c.resume()
                }
            }
            let clock = ContinuousClock()
            let t0 = clock.now
            // The deaf one gets close 1011 "ping timeout" and answers it.
            let deafEnd = await deaf.closed()
            #expect(deafEnd.code == .internalError && deafEnd.reason == "ping timeout", "\(deafEnd)")
            #expect(await eventually(timeout: .seconds(5)) { hub.webSocketClients == (0, 1) })
            let took = clock.now - t0
            print("silent clients removed after \(took)")
            #expect(took < .seconds(4))
            // The live one is still subscribed and gets events.
            try await router.send(.event(Array("still here".utf8)))
            #expect(try await eventsUntil(alive, marker: "still here").count == 1)
            // The frozen one sees its end when it looks again.
            await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
                frozen.loop.execute {
                    frozen.resumeReading()
                    c.resume()
                }
            }
            do {
                while try await frozen.nextMessage() != nil {}
            } catch {}
            let frozenEnd = await frozen.closed()
            #expect(frozenEnd.code != .normalClosure, "\(frozenEnd)")
            await alive.close()
            await router.close()
            #expect(await eventually { hub.webSocketClients == (0, 0) && hub.events.subscriberCount == 0 })
        }
    }

    @Test func slowSubscribersAreDisconnectedWhenThePolicySaysSo() async throws {
        try await withHub({
            $0.webSocket.slowSubscribers = .disconnect
            $0.subscriberWriteHighWater = 16 << 10
            $0.subscriberWriteLowWater = 4 << 10
            $0.webSocket.pingInterval = nil
        }) { hub, group in
            let router = try await HubRouterClient.connect(to: hub.routerAddress, on: group.loops[0], id: "r1", secret: TestCredentials.secret("r1"))
            let slowApp = try await hubSocket(hub, "/app?routers=r1", on: group.loops[1])
            let slowWeb = try await hubSocket(hub, "/web", on: group.loops[1])
            #expect(try await nextSubscribed(slowApp) == ["r1"])
            #expect(try await nextSubscribed(slowWeb) == ["*"])
            for ws in [slowApp, slowWeb] {
                await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
                    ws.loop.execute {
                        ws.pauseReading()
                        c.resume()
                    }
                }
            }
            // Far more than the socket buffers and the high water mark hold.
            let payload = [UInt8](repeating: UInt8(ascii: "x"), count: 16_000)
            var sent = 0
            while hub.webSocketClients != (0, 0) && sent < 5_000 {
                for _ in 0..<25 { try await router.send(.event(payload)) }
                sent += 25
                try await Task.sleep(for: .milliseconds(5))
            }
            #expect(await eventually { hub.webSocketClients == (0, 0) }, "sent \(sent) events")
            let metrics = try await http(hub, group, "GET", "/metrics").text
            #expect(metrics.contains(#"torus_hub_websocket_slow_closed_total{face="app"} 1"#))
            #expect(metrics.contains(#"torus_hub_websocket_slow_closed_total{face="web"} 1"#))
            for ws in [slowApp, slowWeb] {
                await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
                    ws.loop.execute {
                        ws.resumeReading()
                        c.resume()
                    }
                }
                do {
                    while try await ws.nextMessage() != nil {}
                } catch {}
                let end = await ws.closed()
                #expect(end.code == .policyViolation || end.code == .abnormalClosure, "\(end)")
            }
            await router.close()
        }
    }

    /// Python's `websockets` as the app and the web page.
    static let pythonClient = #"""
import asyncio, json, sys
from websockets.asyncio.client import connect

async def main(port, token):
    base = f"ws://127.0.0.1:{port}"
    # The app sends the header; the web page, like a browser, the query parameter.
    async with connect(base + "/app", additional_headers={"Authorization": "Bearer " + token}) as app, \
               connect(base + "/web?access_token=" + token) as web:
        assert json.loads(await app.recv()) == {"subscribed": []}
        assert json.loads(await web.recv()) == {"subscribed": ["*"]}
        await app.send(json.dumps({"subscribe": ["r2"]}))
        assert json.loads(await app.recv()) == {"subscribed": ["r2"]}
        print("READY", flush=True)
        got = json.loads(await asyncio.wait_for(app.recv(), 20))
        assert got["router"] == "r2" and json.loads(got["data"]) == {"n": 2}, got
        routers = set()
        while len(routers) < 2:
            e = json.loads(await asyncio.wait_for(web.recv(), 20))
            routers.add(e["router"])
            assert json.loads(e["data"])["n"] in (1, 2), e
        # Liveness: the hub pings while we are quiet; websockets answers.
        await asyncio.sleep(1.5)
        pong = await app.ping()
        await asyncio.wait_for(pong, 5)
        print("OK", sorted(routers), flush=True)

asyncio.run(main(int(sys.argv[1]), sys.argv[2]))
"""#

    @Test func pythonWebSocketsClients() async throws {
        try await withHub({ $0.webSocket.pingInterval = .milliseconds(300) }) { hub, group in
            let r1 = try await HubRouterClient.connect(to: hub.routerAddress, on: group.loops[0], id: "r1", secret: TestCredentials.secret("r1"))
            let r2 = try await HubRouterClient.connect(to: hub.routerAddress, on: group.loops[1], id: "r2", secret: TestCredentials.secret("r2"))
            let python = try ChildProcess("/usr/bin/env", ["python3", "-u", "-c", Self.pythonClient,
                                                           String(hub.httpAddress.port ?? 0), TestCredentials.readAll.token])
            guard await python.waitForLine(containing: "READY") != nil else {
                Issue.record("python client not ready: \(python.text)")
                _ = await python.stop()
                return
            }
            try await r1.send(.event(Array(#"{"n":1}"#.utf8)))
            try await r2.send(.event(Array(#"{"n":2}"#.utf8)))
            let status = await python.wait(timeout: .seconds(60))
            #expect(status == 0, "python client: \(python.text)")
            #expect(python.text.contains("OK ['r1', 'r2']"), "\(python.text)")
            #expect(await eventually { hub.webSocketClients == (0, 0) })
            await r1.close()
            await r2.close()
        }
    }
}

/// `count` more events of a WebSocket face.
func readEvents(_ ws: WebSocketConnection, count: Int) async throws -> [(router: String, data: String)] {
    var out: [(router: String, data: String)] = []
    while out.count < count {
        let m = try await nextJSON(ws)
        if let router = m["router"] as? String, let data = m["data"] as? String { out.append((router, data)) }
    }
    return out
}

@Suite("torus-hub event envelope")
struct EventEnvelopeTests {
    @Test func envelopeIsValidJSONForAnyPayload() throws {
        let payloads: [[UInt8]] = [
            [], Array(#"{"a":"b\"c"}"#.utf8), [0x00, 0x01, 0x1F, 0x7F, 0x0A, 0x0D, 0x09],
            [0xFF, 0xFE, 0x41], Array("héllo ✓".utf8),
        ]
        for payload in payloads {
            let bytes = HubEventJSON.envelope(router: "r-1:x", sequence: 7, payload: payload)
            #expect(String(validating: bytes, as: UTF8.self) != nil)
            let object = try JSONSerialization.jsonObject(with: Data(bytes)) as? [String: Any]
            #expect(object?["router"] as? String == "r-1:x")
            #expect(object?["seq"] as? Int == 7)
            #expect(object?["data"] as? String == String(decoding: payload, as: UTF8.self))
        }
    }
}
