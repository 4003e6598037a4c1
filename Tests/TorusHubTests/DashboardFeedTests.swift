import Foundation
import Testing
import Torus
import TorusHub
import TorusTestSupport
import TorusWebSocket

/// The stats message and the `/web?feeds=` protocol the dashboard reads.
@Suite("torus-hub /web feeds", .timeLimit(.minutes(2)))
struct DashboardFeedTests {
    @Test func statsSampleEncoding() throws {
        var ledger = LedgerSnapshot()
        ledger.connections = 7
        ledger.buffers[BufferPoolKind.received.rawValue].application = 2
        ledger.buffers[BufferPoolKind.received.rawValue].kernel = 64
        ledger.buffers[BufferPoolKind.outbound.rawValue].application = 3
        let sample = HubStatsSample(time: 1_712_345_678.05, residentBytes: 10 << 20, heapInUseBytes: 4096,
                                    heapReservedBytes: 8192, ledger: ledger, routers: 5, webClients: 1, events: 42)
        #expect(sample.json == #"{"t":1712345678.050,"rss":10485760,"heap":4096,"heap_reserved":8192,"#
                + #""connections":7,"in_flight":0,"parked":0,"buffers_out":{"received":{"application":2,"kernel":64},"#
                + #""outbound":{"application":3,"kernel":0},"tls_plaintext":{"application":0,"kernel":0}},"#
                + #""routers":5,"web_clients":1,"events":42}"#)
        let message = try #require(JSONSerialization.jsonObject(with: Data(sample.message.utf8)) as? [String: Any])
        let stats = try #require(message["stats"] as? [String: Any])
        #expect(stats["t"] as? Double == 1_712_345_678.05)
        #expect((stats["buffers_out"] as? [String: [String: Int]])?["received"]?["kernel"] == 64)
        let history = try #require(JSONSerialization.jsonObject(
            with: Data(HubStatsSample.historyMessage([sample, sample]).utf8)) as? [String: Any])
        #expect((history["stats_history"] as? [Any])?.count == 2)
        #expect(HubStatsSample.historyMessage([]) == #"{"stats_history":[]}"#)
    }

    /// `GET /token` tells a page what its token may do, so it need not try views the
    /// token may not open.
    @Test func tokenTellsWhatItMay() async throws {
        try await withHub { hub, group in
            let admin = try await http(hub, group, "GET", "/token")
            #expect(admin.status == 200)
            #expect(admin.text == #"{"routers":"*","rights":["admin"],"reads_every_router":true,"admin":true}"# + "\n")
            let scoped = try await http(hub, group, "GET", "/token", token: TestCredentials.commandR1.token)
            #expect(scoped.text == #"{"routers":["r1"],"rights":["command","read"],"reads_every_router":false,"admin":false}"# + "\n")
            let readAll = try await http(hub, group, "GET", "/token", token: TestCredentials.readAll.token)
            #expect(readAll.text.contains(#""reads_every_router":true,"admin":false"#), "\(readAll.text)")
            #expect(try await http(hub, group, "GET", "/token", token: "thk_unknown").status == 401)
            #expect(try await http(hub, group, "GET", "/token", token: nil).status == 401)
        }
    }

    @Test func routersFeedTellsAttachAndDetach() async throws {
        try await withHub { hub, group in
            let web = try await hubSocket(hub, "/web?feeds=routers", on: group.loops[0])
            #expect(try await nextSubscribed(web) == ["*"])
            let r1 = try await HubRouterClient.connect(to: hub.routerAddress, on: group.loops[1], id: "r1",
                                                       secret: TestCredentials.secret("r1"))
            let attached = try #require(try await nextJSON(web)["attached"] as? [String: Any])
            #expect(attached["id"] as? String == "r1")
            #expect(attached["events"] as? Int == 0)
            try await r1.send(.event(Array("hello".utf8)))
            #expect(try await nextJSON(web)["data"] as? String == "hello")
            await r1.close()
            #expect(try await nextJSON(web)["detached"] as? [String: String] == ["id": "r1"])
            await web.close()
        }
    }

    @Test func statsFeedSendsHistoryThenSamples() async throws {
        try await withHub({ $0.dashboard.statsInterval = .milliseconds(50) }) { hub, group in
            let web = try await hubSocket(hub, "/web?feeds=stats", on: group.loops[1])
            #expect(try await nextSubscribed(web) == ["*"])
            #expect(try await nextJSON(web)["stats_history"] is [[String: Any]])
            var samples: [[String: Any]] = []
            for _ in 0..<3 { samples.append(try #require(try await nextJSON(web)["stats"] as? [String: Any])) }
            let times = samples.compactMap { $0["t"] as? Double }
            #expect(times.count == 3 && times == times.sorted())
            #expect(samples.allSatisfy { ($0["connections"] as? Int ?? 0) >= 1 && ($0["web_clients"] as? Int) == 1 })
            #expect(samples.allSatisfy { ($0["rss"] as? Int ?? 0) > 0 })
            // A sample is kept before it is sent: a later client's history holds these.
            let later = try await hubSocket(hub, "/web?feeds=stats", on: group.loops[0])
            #expect(try await nextSubscribed(later) == ["*"])
            let history = try #require(try await nextJSON(later)["stats_history"] as? [[String: Any]])
            let kept = Set(history.compactMap { $0["t"] as? Double })
            #expect(times.allSatisfy { kept.contains($0) }, "history \(kept.sorted()) lacks \(times)")
            await later.close()
            await web.close()
        }
    }

    @Test func plainWebClientsGetNoFeedMessages() async throws {
        try await withHub({ $0.dashboard.statsInterval = .milliseconds(20) }) { hub, group in
            let web = try await hubSocket(hub, "/web", on: group.loops[0])
            #expect(try await nextSubscribed(web) == ["*"])
            let r1 = try await HubRouterClient.connect(to: hub.routerAddress, on: group.loops[1], id: "r1",
                                                       secret: TestCredentials.secret("r1"))
            try await Task.sleep(for: .milliseconds(100))
            try await r1.send(.event(Array("only-event".utf8)))
            // The next message is the event: no attached, no stats before it.
            #expect(try await eventsUntil(web, marker: "only-event").map(\.data) == ["only-event"])
            await r1.close()
            await web.close()
        }
    }

    @Test func feedsAreChecked() async throws {
        try await withHub { hub, group in
            // Stats are the operator's view: admin only, like /metrics.
            await #expect(throws: (any Error).self) {
                try await hubSocket(hub, "/web?feeds=stats", on: group.loops[0], token: TestCredentials.readAll.token)
            }
            await #expect(throws: (any Error).self) {
                try await hubSocket(hub, "/web?feeds=nonsense", on: group.loops[0])
            }
            // A token that reads every router gets the routers feed.
            let web = try await hubSocket(hub, "/web?feeds=routers", on: group.loops[0], token: TestCredentials.readAll.token)
            #expect(try await nextSubscribed(web) == ["*"])
            await web.close()
            let page = try await http(hub, group, "GET", "/", token: nil)
            #expect(page.status == 200)
            #expect(String(decoding: page.body, as: UTF8.self).contains("/dashboard/dashboard.js"))
            #expect(try await http(hub, group, "GET", "/dashboard/dashboard.js", token: nil).status == 200)
            #expect(try await http(hub, group, "GET", "/dashboard/../Hub.swift", token: nil).status == 404)
        }
    }
}
