import Foundation
import Synchronization
import Testing
import Torus
@testable import TorusHub
import TorusTestSupport
import TorusWebSocket

/// A WebSocket opening handshake sent by hand, so a refusal's status and header
/// fields can be read (the WebSocket client only reports that it failed).
func upgradeRequest(_ hub: Hub, _ group: EventLoopGroup, _ target: String,
                    token: String?) async throws -> MiniHTTPClient.Response {
    let client = try await MiniHTTPClient.connect(to: hub.httpAddress, on: group.next(), token: token)
    let response = try await client.request("GET", target, headers: [
        ("Upgrade", "websocket"), ("Connection", "Upgrade"), ("Sec-WebSocket-Version", "13"),
        ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
    ])
    await client.close()
    return response
}

/// The API's bearer tokens: who gets in (401 without a known token), what a token's
/// grant lets through (403 otherwise, the same whether or not the router exists), on
/// every face: the HTTP routes, server-sent events, `/app` and `/web`. Real sockets,
/// the project's clients, curl and Python's `http.client`.
@Suite("torus-hub API tokens")
struct APIAccessTests {
    @Test func missingOrUnknownTokenIs401WithAChallenge() async throws {
        try await withHub { hub, group in
            #expect(try await http(hub, group, "GET", "/healthz", token: nil).status == 200, "/healthz stays open")
            for target in ["/devices", "/devices/r1", "/metrics", "/debug/ledger", "/events"] {
                let missing = try await http(hub, group, "GET", target, token: nil)
                #expect(missing.status == 401, "\(target)")
                #expect(missing.header("www-authenticate") == #"Bearer realm="torus-hub""#, "\(target)")
                let unknown = try await http(hub, group, "GET", target, token: "thk_not-a-token")
                #expect(unknown.status == 401, "\(target)")
                #expect(unknown.header("www-authenticate")?.contains(#"error="invalid_token""#) == true, "\(target)")
            }
            let command = try await http(hub, group, "POST", "/devices/r1/commands", body: "open", token: nil)
            #expect(command.status == 401)
            for face in ["/app", "/web"] {
                let refused = try await upgradeRequest(hub, group, face, token: nil)
                #expect(refused.status == 401, "\(face)")
                #expect(refused.header("www-authenticate") == #"Bearer realm="torus-hub""#, "\(face)")
                #expect(try await upgradeRequest(hub, group, face, token: "wrong").status == 401, "\(face)")
            }
            let counts = Dictionary(uniqueKeysWithValues: hub.counters.apiAuthCounts.map { ($0.0.description, $0.1) })
            #expect(counts["missing"] == 8 && counts["invalid"] == 7, "\(counts)")
        }
    }

    /// A token for r1 sees r1 and nothing of r2, on every face; it cannot command
    /// without `command`, nor read metrics without `admin`. Refusals do not tell an
    /// online router from one that does not exist.
    @Test func scopesAreEnforcedOnEveryFace() async throws {
        try await withHub { hub, group in
            let r1 = try await HubRouterClient.connect(to: hub.routerAddress, on: group.loops[0], id: "r1", secret: TestCredentials.secret("r1"))
            let r2 = try await HubRouterClient.connect(to: hub.routerAddress, on: group.loops[1], id: "r2", secret: TestCredentials.secret("r2"))
            answerCommands(r1)
            answerCommands(r2)
            #expect(await eventually { hub.directory.count == 2 })
            let reader = TestCredentials.readR1.token
            let devices = try await http(hub, group, "GET", "/devices", token: reader)
            #expect(devices.status == 200 && devices.text.contains(#""id":"r1""#) && !devices.text.contains("r2"),
                    "\(devices.text)")
            #expect(try await http(hub, group, "GET", "/devices/r1", token: reader).status == 200)
            let online = try await http(hub, group, "GET", "/devices/r2", token: reader)
            let absent = try await http(hub, group, "GET", "/devices/nowhere", token: reader)
            #expect(online.status == 403 && absent.status == 403)
            #expect(online.text == absent.text, "no hint whether a router exists")
            #expect(online.header("www-authenticate")?.contains(#"error="insufficient_scope""#) == true)
            #expect(try await http(hub, group, "GET", "/events?routers=r2", token: reader).status == 403)
            #expect(try await http(hub, group, "GET", "/events?routers=r1,r2", token: reader).status == 403)
            #expect(try await http(hub, group, "GET", "/metrics", token: reader).status == 403)
            #expect(try await http(hub, group, "GET", "/debug/ledger", token: reader).status == 403)
            #expect(try await http(hub, group, "POST", "/devices/r1/commands", body: "x", token: reader).status == 403)
            #expect(try await upgradeRequest(hub, group, "/app?routers=r2", token: reader).status == 403)
            #expect(try await upgradeRequest(hub, group, "/web", token: reader).status == 403, "/web needs every router")
            // Commands: only on the token's router.
            let commander = TestCredentials.commandR1.token
            let done = try await http(hub, group, "POST", "/devices/r1/commands", body: "open", token: commander)
            #expect(done.status == 200 && done.text == "done:open")
            let other = try await http(hub, group, "POST", "/devices/r2/commands", body: "open", token: commander)
            let missing = try await http(hub, group, "POST", "/devices/ghost/commands", body: "open", token: commander)
            #expect(other.status == 403 && missing.status == 403 && other.text == missing.text)
            #expect(try await http(hub, group, "POST", "/devices/r2/commands", body: "open", token: TestCredentials.readAll.token).status == 403)

            // Streams: the reader's event stream (no ?routers=: every router it may
            // read) and /app (`*`, then an attempt to add r2) get r1's events only.
            let sse = try await MiniHTTPClient.connect(to: hub.httpAddress, on: group.loops[0], token: nil)
            try await sse.send("GET", "/events?access_token=\(reader)")
            #expect(try await sse.readHead().0 == 200)
            let app = try await hubSocket(hub, "/app?routers=*", on: group.loops[1], token: reader)
            #expect(try await nextJSON(app)["subscribed"] as? [String] == ["*"])
            try await app.send(text: #"{"subscribe":["r2"]}"#)
            let refused = try await nextJSON(app)
            #expect((refused["error"] as? String)?.contains("may not read") == true, "\(refused)")
            #expect(await eventually { hub.events.subscriberCount == 2 })
            try await r2.send(.event(Array("from r2".utf8)))
            try await r1.send(.event(Array("from r1".utf8)))
            #expect(try await readEvents(sse, count: 1).map(\.router) == ["r1"])
            #expect(try await readEvents(app, count: 1).map(\.router) == ["r1"])
            await sse.close(flush: false)
            await app.close()
            await r1.close()
            await r2.close()
        }
    }

    /// A reload that revokes a token ends its event stream and closes its WebSocket
    /// clients with 1008 within a second; a narrowed grant narrows the stream; a
    /// token that stays keeps its streams open.
    @Test func reloadRevokesAndNarrowsOpenStreams() async throws {
        let both = HubCredentials.newToken()
        var store = TestCredentials.store
        store.tokens[both.hash] = .init(routers: ["r1", "r2"], rights: ["read"])
        try await withHub({ $0.credentials = store }) { hub, group in
            let r1 = try await HubRouterClient.connect(to: hub.routerAddress, on: group.loops[0], id: "r1", secret: TestCredentials.secret("r1"))
            let r2 = try await HubRouterClient.connect(to: hub.routerAddress, on: group.loops[1], id: "r2", secret: TestCredentials.secret("r2"))
            let sse = try await MiniHTTPClient.connect(to: hub.httpAddress, on: group.loops[0], token: TestCredentials.readR1.token)
            try await sse.send("GET", "/events")
            #expect(try await sse.readHead().0 == 200)
            let app = try await hubSocket(hub, "/app?routers=*", on: group.loops[1], token: TestCredentials.readR1.token)
            let web = try await hubSocket(hub, "/web?access_token=\(TestCredentials.readAll.token)", on: group.loops[0], token: nil)
            let narrowed = try await hubSocket(hub, "/app?routers=r1,r2", on: group.loops[0], token: both.token)
            let kept = try await hubSocket(hub, "/web", on: group.loops[1])
            for ws in [app, web, narrowed, kept] { _ = try await nextJSON(ws) }
            #expect(await eventually { hub.webSocketClients == (2, 2) && hub.events.subscriberCount == 3 })

            var reloaded = store
            reloaded.tokens[TestCredentials.readR1.hash] = nil
            reloaded.tokens[TestCredentials.readAll.hash] = nil
            reloaded.tokens[both.hash] = .init(routers: ["r2"], rights: ["read"])
            let start = MonotonicClock.now()
            hub.reloadCredentials(reloaded)
            for ws in [app, web] {
                do { while try await ws.nextMessage() != nil {} } catch {}
                #expect(await ws.closed().code == .policyViolation)
            }
            // The event stream ends: its last chunk (the connection stays for reuse).
            while try await sse.readLine() != "0" {}
            // The reload reaches every stream at once (a job per loop; milliseconds on
            // an idle machine); the bound leaves a loaded test run room.
            let elapsed = Double(MonotonicClock.now() - start) / 1e9
            #expect(elapsed < 3.0, "revoked streams took \(elapsed) s to end")
            #expect(await eventually { hub.webSocketClients == (1, 1) && hub.events.subscriberCount == 1 })

            // The narrowed client now gets r2 only; the admin's /web gets both.
            try await r1.send(.event(Array("from r1".utf8)))
            try await r2.send(.event(Array("from r2".utf8)))
            #expect(try await readEvents(narrowed, count: 1).map(\.router) == ["r2"])
            #expect(Set(try await readEvents(kept, count: 2).map(\.router)) == ["r1", "r2"])
            // The revoked token no longer opens anything.
            #expect(try await http(hub, group, "GET", "/devices", token: TestCredentials.readR1.token).status == 401)
            await sse.close(flush: false)
            await narrowed.close()
            await kept.close()
            await r1.close()
            await r2.close()
        }
    }

    /// Unknown tokens from one source empty its bucket: then even a valid token gets
    /// 429 (with Retry-After) until the bucket refills; counted in /metrics. The
    /// bucket runs on a manual clock, so a loaded machine cannot refill it early.
    @Test func failedTokensAreRateLimitedAndRecover() async throws {
        try await withRateLimitedHub(burst: 3, refillPerSecond: 4) { hub, group, clock in
            for _ in 0..<3 {
                #expect(try await http(hub, group, "GET", "/devices", token: "guess").status == 401)
            }
            let limited = try await http(hub, group, "GET", "/devices")
            #expect(limited.status == 429)
            #expect(limited.header("retry-after") == "1")
            #expect(try await upgradeRequest(hub, group, "/web", token: TestCredentials.adminToken).status == 429)
            clock.advance(by: 200)
            #expect(try await http(hub, group, "GET", "/devices").status == 429, "0.8 of a token")
            clock.advance(by: 50)
            #expect(try await http(hub, group, "GET", "/devices").status == 200, "one token back after 0.25 s")
            let metrics = try await http(hub, group, "GET", "/metrics").text
            #expect(metrics.contains(#"torus_hub_api_auth_total{outcome="rate_limited"} 3"#), "\(metrics)")
            #expect(metrics.contains(#"torus_hub_api_auth_total{outcome="invalid"} 3"#))
        }
    }

    /// The HTTP face's cap per source address counts connections that have not
    /// upgraded: three WebSocket clients do not fill a cap of two, two held API
    /// connections do, and the next one gets 503 (counted in /metrics).
    @Test func httpConnectionsPerSourceAreCappedButWebSocketsLeaveTheCount() async throws {
        try await withHub({ $0.http.maxConnectionsPerSource = 2 }) { hub, group in
            var sockets: [WebSocketConnection] = []
            for i in 0..<3 { sockets.append(try await hubSocket(hub, "/web", on: group.loops[i % 2])) }
            for ws in sockets { _ = try await nextJSON(ws) }
            let first = try await MiniHTTPClient.connect(to: hub.httpAddress, on: group.loops[0])
            let second = try await MiniHTTPClient.connect(to: hub.httpAddress, on: group.loops[1])
            #expect(try await first.request("GET", "/devices").status == 200)
            #expect(try await second.request("GET", "/healthz").status == 200)
            let third = try await MiniHTTPClient.connect(to: hub.httpAddress, on: group.loops[0])
            let refused = try await third.request("GET", "/devices")
            #expect(refused.status == 503 && refused.text == "too many connections from this address\n")
            await third.close()
            let metrics = try await first.request("GET", "/metrics").text
            #expect(metrics.contains("torus_hub_http_connections_refused_total 1"), "\(metrics)")
            await first.close()
            await second.close()
            for ws in sockets { await ws.close() }
        }
    }

    /// An HTTP connection must show its token at once: one that sends nothing within
    /// the authentication timeout is closed, and one refused with 401 is closed after
    /// the answer (a 403, with a valid token, keeps its connection).
    @Test func unauthenticatedHTTPConnectionsDoNotLinger() async throws {
        try await withHub({ $0.auth.authTimeout = .milliseconds(600) }) { hub, group in
            let clock = ContinuousClock()
            let start = clock.now
            let silent = try await AsyncConnection.connect(to: hub.httpAddress, on: group.loops[0])
            #expect(try await silent.read() == nil, "closed without an answer")
            #expect(clock.now - start >= .milliseconds(500) && clock.now - start < .seconds(5))
            await silent.close(flush: false)

            let refused = try await AsyncConnection.connect(to: hub.httpAddress, on: group.loops[1])
            try await refused.write(Array("GET /devices HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer wrong\r\n\r\n".utf8))
            var answer: [UInt8] = []
            while let chunk = try await refused.read() { answer += chunk }
            let text = String(decoding: answer, as: UTF8.self)
            #expect(text.hasPrefix("HTTP/1.1 401") && text.contains("Connection: close"), "\(text)")
            await refused.close(flush: false)

            let forbidden = try await MiniHTTPClient.connect(to: hub.httpAddress, on: group.loops[0],
                                                             token: TestCredentials.readR1.token)
            #expect(try await forbidden.request("GET", "/metrics").status == 403)
            try await group.loops[0].sleep(for: .milliseconds(800))  // past the first-request deadline
            #expect(try await forbidden.request("GET", "/devices").status == 200, "kept after 403")
            await forbidden.close()
        }
    }

    /// The `Authorization` value, read byte by byte: the scheme in any case, spaces
    /// around the token ignored, anything else no token at all.
    @Test func bearerTokenParsing() {
        #expect(HubAccess.bearerToken("Bearer abc") == "abc")
        #expect(HubAccess.bearerToken("bearer   abc  ") == "abc")
        #expect(HubAccess.bearerToken("BEARER thk_x-y_z") == "thk_x-y_z")
        for bad in ["", "Bearer", "Bearer ", "Bearer    ", "Bearerabc", "Basic abc", "Bear abc", "éearer abc"] {
            #expect(HubAccess.bearerToken(bad) == nil, "\(bad)")
        }
        // The hash of a token read from a header is the hash the store keeps.
        let token = HubCredentials.newToken()
        let header = "Bearer " + token.token
        #expect(HubAccess.bearerToken(header).map { HubCredentials.tokenHash(utf8: $0.utf8) } == token.hash)
        #expect(HubCredentials.tokenHash("abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
    }

    /// curl and Python's http.client, as an operator's scripts would call the API.
    @Test func curlAndPythonClients() async throws {
        try await withHub { hub, group in
            let r1 = try await HubRouterClient.connect(to: hub.routerAddress, on: group.loops[0], id: "r1", secret: TestCredentials.secret("r1"))
            answerCommands(r1)
            #expect(await eventually { hub.directory.count == 1 })
            let base = "http://127.0.0.1:\(hub.httpAddress.port ?? 0)"
            let refused = try ChildProcess("/usr/bin/env", ["curl", "-sS", "-i", "--max-time", "10", base + "/devices"])
            #expect(await refused.wait(timeout: .seconds(15)) == 0)
            #expect(refused.text.hasPrefix("HTTP/1.1 401"), "\(refused.text)")
            #expect(refused.text.lowercased().contains(#"www-authenticate: bearer realm="torus-hub""#), "\(refused.text)")
            let command = try ChildProcess("/usr/bin/env", [
                "curl", "-sS", "--max-time", "10", "-H", "Authorization: Bearer \(TestCredentials.commandR1.token)",
                "--data-binary", "unlock", base + "/devices/r1/commands",
            ])
            #expect(await command.wait(timeout: .seconds(15)) == 0)
            #expect(command.text == "done:unlock", "\(command.text)")
            let script = """
            import http.client, sys
            c = http.client.HTTPConnection("127.0.0.1", int(sys.argv[1]), timeout=10)
            for token, target in [(sys.argv[2], "/devices/r1"), (sys.argv[2], "/metrics"), (sys.argv[3], "/metrics")]:
                c.request("GET", target, headers={"Authorization": "Bearer " + token})
                r = c.getresponse(); r.read()
                print(target, r.status)
            """
            let python = try ChildProcess("/usr/bin/env", ["python3", "-c", script, String(hub.httpAddress.port ?? 0),
                                                           TestCredentials.readR1.token, TestCredentials.adminToken])
            #expect(await python.wait(timeout: .seconds(15)) == 0, "\(python.text)")
            #expect(python.text == "/devices/r1 200\n/metrics 403\n/metrics 200\n", "\(python.text)")
            await r1.close()
        }
    }
}
