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
                #expect(try await page.evaluate("document.getElementById('router-count').textContent") as? String == "1")
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
}
