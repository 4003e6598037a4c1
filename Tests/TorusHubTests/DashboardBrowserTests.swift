import Foundation
import Testing
import Torus
import TorusHub
import TorusTestSupport

/// Runs `body` with headless Chromium's page at the hub's `/`, then closes the
/// browser and stops it by PID (its profile folder removed), whatever happened.
func withDashboardPage(_ hub: Hub, on loop: EventLoop, path: String = "/",
                       _ body: (DevToolsSession) async throws -> Void) async throws {
    let chromium = try await HeadlessChromium.launch()
    do {
        let page = try await DevToolsSession.connect(chromium.devToolsURL, on: loop)
        do {
            try await page.open("http://127.0.0.1:\(hub.httpAddress.port ?? 0)\(path)")
            try await body(page)
        } catch {
            await page.close()
            throw error
        }
        await page.close()
    } catch {
        await chromium.stop()
        throw error
    }
    await chromium.stop()
}

/// JavaScript: whether the routers table has a row for `id`.
func routerRow(_ id: String) -> String { "document.querySelector('#routers tr[data-router=\"\(id)\"]') !== null" }

/// JavaScript: whether the event stream shows an event whose text holds `marker`.
func streamShows(_ marker: String) -> String {
    "[...document.querySelectorAll('#stream li')].some(li => li.textContent.includes('\(marker)'))"
}

/// The hub's page in a real browser: headless Chromium driven over DevTools.
@Suite("torus-hub dashboard in Chromium", .serialized, .timeLimit(.minutes(3)),
       .enabled(if: HeadlessChromium.isInstalled, "chromium is not installed (scripts/setup-deps.sh installs it)"))
struct DashboardBrowserTests {
    @Test func showsRoutersEventsCommandsAndStats() async throws {
        try await withHub({ $0.dashboard.statsInterval = .milliseconds(200) }) { hub, group in
            let r1 = try await HubRouterClient.connect(to: hub.routerAddress, on: group.loops[0], id: "r1",
                                                       secret: TestCredentials.secret("r1"))
            answerCommands(r1)
            try await withDashboardPage(hub, on: group.loops[1]) { page in
                // No token yet: the page asks for one, keeps it for the session.
                #expect(try await page.waitUntil("document.getElementById('token-dialog').open"))
                try await page.evaluate("""
                    document.getElementById('token-input').value = '\(TestCredentials.adminToken)';
                    document.getElementById('token-form').requestSubmit(); true
                    """)
                #expect(try await page.waitUntil("document.getElementById('status').dataset.state === 'connected'"))
                #expect(try await page.evaluate("sessionStorage.getItem('torus-hub-token')") as? String
                        == TestCredentials.adminToken)
                // A router online before the page came, then one that attaches.
                #expect(try await page.waitUntil(routerRow("r1")))
                let r2 = try await HubRouterClient.connect(to: hub.routerAddress, on: group.loops[1], id: "r2",
                                                           secret: TestCredentials.secret("r2"))
                #expect(try await page.waitUntil(routerRow("r2"), timeout: .seconds(5)))

                // An event shows within a second of the router sending it.
                let clock = ContinuousClock()
                let sent = clock.now
                try await r2.send(.event(Array(#"{"marker":"first-event"}"#.utf8)))
                #expect(try await page.waitUntil(streamShows("first-event"), timeout: .seconds(1)),
                        "event not shown within a second")
                print("dashboard: event shown \(clock.now - sent) after it was sent")
                #expect(try await page.evaluate(
                    "document.querySelector('#routers tr[data-router=\"r2\"] td.num').textContent") as? String == "1")

                // The filter by router: only r1's events.
                try await page.evaluate("""
                    const f = document.getElementById('stream-filter'); f.value = 'r1';
                    f.dispatchEvent(new Event('input')); true
                    """)
                try await r2.send(.event(Array("from-r2-filtered".utf8)))
                try await r1.send(.event(Array("from-r1-shown".utf8)))
                #expect(try await page.waitUntil(streamShows("from-r1-shown")))
                #expect(try await page.evaluate(streamShows("from-r2-filtered")) as? Bool == false)
                #expect(try await page.evaluate(streamShows("first-event")) as? Bool == false)

                // A command and its REPLY.
                try await page.evaluate("""
                    document.getElementById('command-router').value = 'r1';
                    document.getElementById('command-body').value = 'lights-on';
                    document.getElementById('command-form').requestSubmit(); true
                    """)
                #expect(try await page.waitUntil("document.getElementById('command-result').dataset.state === 'reply'"))
                let reply = try await page.evaluate("document.getElementById('command-result').textContent") as? String
                #expect(reply?.contains("done:lights-on") == true, "\(reply ?? "nil")")

                // The stats feed draws the charts.
                #expect(try await page.waitUntil("Number(document.getElementById('charts-panel').dataset.samples) >= 3"))

                // A router that leaves goes from the table.
                try await r2.send(.bye(reason: "test over"))
                await r2.close()
                #expect(try await page.waitUntil("!(\(routerRow("r2")))", timeout: .seconds(5)))
                #expect(try await page.waitUntil("document.getElementById('router-count').textContent === '1'"))
                #expect(page.problems.isEmpty, "the page reported errors: \(page.problems)")

                // A command to a router that is offline shows the error status (the
                // browser logs the 404 as a network error: expected here).
                try await page.evaluate("""
                    document.getElementById('command-router').value = 'r2';
                    document.getElementById('command-form').requestSubmit(); true
                    """)
                #expect(try await page.waitUntil("document.getElementById('command-result').dataset.state === 'error'"))
                let error = try await page.evaluate("document.getElementById('command-result').textContent") as? String
                #expect(error?.hasPrefix("404") == true, "\(error ?? "nil")")
            }
            await r1.close()
        }
    }

    @Test func reconnectsAfterTheHubRestarts() async throws {
        try await withGroup(loops: 2) { group in
            let first = try Hub.start(on: group, configuration: browserTestHub(httpPort: 0))
            let port = first.httpAddress.port ?? 0
            var restarted: Hub?
            do {
                try await withDashboardPage(first, on: group.loops[1], path: "/#token=\(TestCredentials.adminToken)") { page in
                    #expect(try await page.waitUntil("document.getElementById('status').dataset.state === 'connected'"))
                    // The token left the address bar for the session's storage.
                    #expect(try await page.evaluate("location.hash") as? String == "")
                    #expect(page.problems.isEmpty, "the page reported errors: \(page.problems)")
                    await first.shutdown(grace: .seconds(1))
                    #expect(try await page.waitUntil("document.getElementById('status').dataset.state === 'disconnected'"))
                    // Down for a while: the page keeps trying (with backoff).
                    try await Task.sleep(for: .seconds(1))
                    let hub = try Hub.start(on: group, configuration: browserTestHub(httpPort: port))
                    restarted = hub
                    let r1 = try await HubRouterClient.connect(to: hub.routerAddress, on: group.loops[0], id: "r1",
                                                               secret: TestCredentials.secret("r1"))
                    #expect(try await page.waitUntil("document.getElementById('status').dataset.state === 'connected'",
                                                     timeout: .seconds(10)))
                    #expect(try await page.waitUntil(routerRow("r1"), timeout: .seconds(5)))
                    try await r1.send(.event(Array("after-restart".utf8)))
                    #expect(try await page.waitUntil(streamShows("after-restart"), timeout: .seconds(2)))
                    await r1.close()
                    // While the hub was away the browser logged failed connections
                    // (network errors); nothing else.
                    let unexpected = page.problems.filter { !$0.hasPrefix("log/network:") && !$0.contains("WebSocket connection to") }
                    #expect(unexpected.isEmpty, "the page reported errors: \(unexpected)")
                }
            } catch {
                await first.shutdown(grace: .zero)
                await restarted?.shutdown(grace: .zero)
                throw error
            }
            await first.shutdown(grace: .zero)
            await restarted?.shutdown(grace: .seconds(1))
        }
    }

    /// Hundreds of routers and thousands of events a second: the page keeps
    /// answering, the stream stays capped. With TORUS_DASHBOARD_SCREENSHOT=PATH it
    /// saves a screenshot there, taken under that load (docs/dashboard.png is one).
    /// A token that reads every router but is not an admin gets the page without
    /// the charts, and the page asks nothing it may not (no console errors).
    @Test func aReadOnlyTokenGetsThePageWithoutCharts() async throws {
        try await withHub { hub, group in
            try await withDashboardPage(hub, on: group.loops[1], path: "/#token=\(TestCredentials.readAll.token)") { page in
                #expect(try await page.waitUntil("document.getElementById('status').dataset.state === 'connected'"))
                let note = try await page.evaluate("document.getElementById('charts-note').textContent") as? String
                #expect(note?.contains("admin") == true, "\(note ?? "nil")")
                #expect(page.problems.isEmpty, "the page reported errors: \(page.problems)")
            }
        }
    }

    @Test func keepsUpWithHundredsOfRouters() async throws {
        let routers = LoadRouters.ids.count
        try await withHub({
            $0.dashboard.statsInterval = .milliseconds(250)
            $0.credentials.routers.merge(LoadRouters.secrets) { $1 }
        }) { hub, group in
            try await withDashboardPage(hub, on: group.loops[1], path: "/#token=\(TestCredentials.adminToken)") { page in
                #expect(try await page.waitUntil("document.getElementById('status').dataset.state === 'connected'"))
                try await Task.sleep(for: .seconds(4))  // a little history for the charts
                var clients: [HubRouterClient] = []
                for (n, id) in LoadRouters.ids.enumerated() {
                    clients.append(try await HubRouterClient.connect(to: hub.routerAddress, on: group.loops[n % 2], id: id,
                                                                     secret: LoadRouters.secrets[id] ?? []))
                }
                #expect(try await page.waitUntil("document.querySelectorAll('#routers tr[data-router]').length === \(routers)"))
                let clock = ContinuousClock()
                let done = Locked(false)
                let fleet = clients
                let sending = Task {
                    // 200 routers, an event every 100 ms each: about 2,000 events a second for 4 s.
                    await withTaskGroup(of: Void.self) { tasks in
                        for client in fleet {
                            tasks.addTask {
                                for k in 0..<40 {
                                    let reading = #"{"sensor":"temperature","value":\#(18 + k % 7).\#(k % 10),"seq":\#(k)}"#
                                    try? await client.send(.event(Array(reading.utf8)))
                                    try? await Task.sleep(for: .milliseconds(100))
                                }
                            }
                        }
                    }
                    done.withLock { $0 = true }
                }
                var slowest: Duration = .zero
                let started = clock.now
                var screenshot = ProcessInfo.processInfo.environment["TORUS_DASHBOARD_SCREENSHOT"]
                while !done.current, clock.now - started < .seconds(60) {
                    let asked = clock.now
                    _ = try await page.evaluate("document.getElementById('stream').childElementCount")
                    slowest = max(slowest, clock.now - asked)
                    if let path = screenshot, clock.now - started > .seconds(3) {
                        try await page.screenshot().write(to: URL(fileURLWithPath: path))
                        print("dashboard screenshot written to \(path)")
                        screenshot = nil
                    }
                    try await Task.sleep(for: .milliseconds(100))
                }
                await sending.value
                print("dashboard under load: \(hub.counters.events) events; slowest page answer \(slowest)")
                #expect(slowest < .seconds(1), "the page froze for \(slowest)")
                let rows = try await page.evaluate("document.getElementById('stream').childElementCount") as? Int ?? -1
                #expect(rows > 0 && rows <= 400)
                for (n, client) in clients.enumerated() where n % 4 == 0 { await client.close() }
                #expect(try await page.waitUntil("document.querySelectorAll('#routers tr[data-router]').length === \(routers - routers / 4)"))
                #expect(page.problems.isEmpty, "the page reported errors: \(page.problems)")
                for (n, client) in clients.enumerated() where n % 4 != 0 { await client.close() }
            }
        }
    }
}

/// A hub for the browser tests on `httpPort`: the tests' credentials (and the load
/// test's routers), stats every 200 ms.
func browserTestHub(httpPort: UInt16) -> HubConfiguration {
    var configuration = HubConfiguration()
    configuration.credentials = TestCredentials.store
    configuration.routerPort = 0
    configuration.httpPort = httpPort
    configuration.auth.authTimeout = .seconds(30)
    configuration.dashboard.statsInterval = .milliseconds(200)
    return configuration
}

/// The load test's routers and their secrets (random per test process).
enum LoadRouters {
    static let ids = (0..<200).map { n in "home-" + String(repeating: "0", count: n < 10 ? 2 : n < 100 ? 1 : 0) + String(n) }
    static let secrets = Dictionary(uniqueKeysWithValues: ids.map { ($0, HubCredentials.newSecret()) })
}
