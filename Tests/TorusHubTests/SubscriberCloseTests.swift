import Foundation
import Testing
import Torus
import TorusHub
import TorusTestSupport

@Suite("subscriber liveness", .timeLimit(.minutes(1)))
struct SubscriberCloseTests {
    @Test func closedStreamIsForgottenWithinAPingInterval() async throws {
        try await withHub({ $0.pingInterval = .seconds(2) }) { hub, group in
            let router = try await HubRouterClient.connect(to: hub.routerAddress, on: group.loops[0], id: "r1", secret: TestCredentials.secret("r1"))
            let sub = try await MiniHTTPClient.connect(to: hub.httpAddress, on: group.loops[1])
            try await sub.send("GET", "/events")
            _ = try await sub.readHead()
            for i in 0..<50 { try await router.send(.event(Array("e\(i)".utf8))) }
            _ = try await readEvents(sub, count: 10)
            await sub.close(flush: false)
            for i in 0..<5 {
                try await router.send(.event(Array("late\(i)".utf8)))
                try await Task.sleep(for: .milliseconds(40))
            }
            let clock = ContinuousClock()
            let t0 = clock.now
            let gone = await eventually(timeout: .seconds(8)) { hub.events.subscriberCount == 0 }
            print("subscriber forgotten after \(clock.now - t0)")
            #expect(gone)
            await router.close()
        }
    }
}
