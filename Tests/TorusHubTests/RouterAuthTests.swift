import Foundation
import Synchronization
import Testing
import Torus
@testable import TorusHub
import TorusTestSupport

/// The clock of a hub's per-source token buckets (router proofs, API tokens), moved
/// by hand so a loaded machine cannot refill a bucket between a test's steps.
final class ManualAuthClock: Sendable {
    private let nanoseconds = Atomic<UInt64>(1_000_000_000)
    func advance(by milliseconds: UInt64) { nanoseconds.add(milliseconds * 1_000_000, ordering: .relaxed) }
    var now: UInt64 { nanoseconds.load(ordering: .relaxed) }
}

/// Runs `body` against a hub whose buckets hold `burst` failures and earn back
/// `refillPerSecond`, on a `ManualAuthClock`.
func withRateLimitedHub(burst: Int, refillPerSecond: Double,
                        _ body: (Hub, EventLoopGroup, ManualAuthClock) async throws -> Void) async throws {
    let clock = ManualAuthClock()
    try await withHub({
        $0.auth.failureBurst = burst
        $0.auth.failureRefillPerSecond = refillPerSecond
        $0.auth.clock = { clock.now }
    }) { hub, group in try await body(hub, group, clock) }
}

/// A router link driven frame by frame (to send what a real router would not).
final class RawRouter: @unchecked Sendable {
    let connection: AsyncConnection
    private var decoder = HubFrameDecoder()
    private var ready: [HubFrame] = []

    init(_ address: SocketAddress, on loop: EventLoop) async throws {
        connection = try await AsyncConnection.connect(to: address, on: loop)
    }

    func send(_ frame: HubFrame) async throws { try await connection.write(frame.encoded) }

    /// The next frame, or nil once the hub closed the link.
    func next() async throws -> HubFrame? {
        while ready.isEmpty {
            guard let chunk = try await connection.read() else { return nil }
            try chunk.withUnsafeBytes { bytes in
                try decoder.feed(bytes) { frame in
                    ready.append(frame)
                    return true
                }
            }
        }
        return ready.removeFirst()
    }

    /// HELLO (version 2); returns WELCOME's nonce (empty if the answer was not WELCOME).
    func hello(_ id: String) async throws -> [UInt8] {
        try await send(.hello(id: id))
        guard case .welcome(_, let nonce)? = try await next() else { return [] }
        return nonce
    }

    /// Reads to the end; true when the last frame was REFUSED containing `reason`.
    func expectRefused(_ reason: String) async throws -> Bool {
        var last: HubFrame?
        while let frame = try await next() { last = frame }
        await connection.close(flush: false)
        guard case .refused(let text)? = last else { return false }
        return text.contains(reason)
    }
}

func proof(_ id: String, _ nonce: [UInt8], secretOf owner: String? = nil) -> [UInt8] {
    HubCredentials.proof(secret: TestCredentials.secret(owner ?? id), nonce: nonce, id: id)
}

@Suite("Router authentication", .timeLimit(.minutes(2)))
struct RouterAuthTests {
    @Test func constantTimeEqualsForEveryLength() {
        for n in 0...64 {
            let a = testBytes(n, seed: UInt64(n + 1))
            #expect(ConstantTime.equals(a, a))
            #expect(ConstantTime.equals(a, Array(a)[...]))
            #expect(!ConstantTime.equals(a, a + [0]))
            #expect(!ConstantTime.equals(a + [0], a))
            for i in 0..<n {
                var b = a
                b[i] ^= 0x01
                #expect(!ConstantTime.equals(a, b), "length \(n), byte \(i)")
                b[i] = a[i] ^ 0x80
                #expect(!ConstantTime.equals(b, a), "length \(n), byte \(i)")
            }
        }
    }

    @Test func impersonationIsRefusedAndTheRealLinkKept() async throws {
        try await withHub { hub, group in
            let real = try await HubRouterClient.connect(to: hub.routerAddress, on: group.loops[0], id: "victim",
                                                         secret: TestCredentials.secret("victim"))
            let answering = answerCommands(real)
            #expect(await eventually { hub.directory.link(for: "victim") != nil })
            let link = hub.directory.link(for: "victim")
            // A wrong secret.
            await #expect(throws: HubRouterClient.Refused.self) {
                _ = try await HubRouterClient.connect(to: hub.routerAddress, on: group.loops[1], id: "victim",
                                                      secret: HubCredentials.newSecret())
            }
            // The old protocol's HELLO, which used to replace the link.
            let stolen = try await RawRouter(hub.routerAddress, on: group.loops[1])
            try await stolen.send(.hello(id: "victim", version: 1))
            #expect(try await stolen.expectRefused("version 1"))
            // HELLO, then something other than AUTH.
            let skipper = try await RawRouter(hub.routerAddress, on: group.loops[0])
            #expect(try await skipper.hello("victim").count == HubFrame.nonceSize)
            try await skipper.send(.event(Array("fake".utf8)))
            #expect(try await skipper.expectRefused("AUTH expected"))
            // The real router still holds its link and answers.
            #expect(hub.directory.link(for: "victim") === link)
            let r = try await http(hub, group, "POST", "/devices/victim/commands", body: "unlock")
            #expect(r.text == "done:unlock")
            #expect(hub.counters.authCounts.first { $0.0 == .badProof }?.1 == 1)
            #expect(hub.counters.authCounts.first { $0.0 == .insecureRefused }?.1 == 1)
            await real.close()
            _ = await answering.value
        }
    }

    @Test func replayedProofIsRefused() async throws {
        try await withHub { hub, group in
            let first = try await RawRouter(hub.routerAddress, on: group.loops[0])
            let nonce = try await first.hello("r2")
            let recorded = proof("r2", nonce)
            try await first.send(.auth(proof: recorded))
            #expect(try await first.next() == .authOK)
            // The same proof again on the same link: the nonce is spent.
            try await first.send(.auth(proof: recorded))
            guard case .bye(let reason)? = try await first.next() else {
                Issue.record("no BYE")
                return
            }
            #expect(reason.contains("unexpected"))
            await first.connection.close(flush: false)
            // And on a new link, over a new nonce.
            let second = try await RawRouter(hub.routerAddress, on: group.loops[1])
            let fresh = try await second.hello("r2")
            #expect(fresh.count == HubFrame.nonceSize && fresh != nonce)
            try await second.send(.auth(proof: recorded))
            #expect(try await second.expectRefused("authentication failed"))
            #expect(await eventually { hub.directory.link(for: "r2") == nil })
        }
    }

    @Test func proofForAnotherIDIsRefused() async throws {
        try await withHub { hub, group in
            // r1's secret, r1's id in the MAC, but HELLO as r2.
            let a = try await RawRouter(hub.routerAddress, on: group.loops[0])
            let n1 = try await a.hello("r2")
            try await a.send(.auth(proof: proof("r1", n1)))
            #expect(try await a.expectRefused("authentication failed"))
            // r1's secret over r2's id.
            let b = try await RawRouter(hub.routerAddress, on: group.loops[1])
            let n2 = try await b.hello("r2")
            try await b.send(.auth(proof: proof("r2", n2, secretOf: "r1")))
            #expect(try await b.expectRefused("authentication failed"))
            // An id the store does not know.
            let c = try await RawRouter(hub.routerAddress, on: group.loops[0])
            let n3 = try await c.hello("nobody")
            try await c.send(.auth(proof: HubCredentials.proof(secret: HubCredentials.newSecret(), nonce: n3, id: "nobody")))
            #expect(try await c.expectRefused("authentication failed"))
            #expect(hub.directory.count == 0)
            let metrics = try await http(hub, group, "GET", "/metrics").text
            #expect(metrics.contains(#"torus_hub_router_auth_total{outcome="bad_proof"} 2"#), "\(metrics)")
            #expect(metrics.contains(#"torus_hub_router_auth_total{outcome="unknown_router"} 1"#), "\(metrics)")
        }
    }

    /// The bucket on its own clock: a burst, then refused, then one token back per
    /// 1/rate seconds; an admitted link holds a place until settled.
    @Test func tokenBucketAndUnauthenticatedCap() {
        var configuration = RouterAuthConfiguration()
        configuration.failureBurst = 3
        configuration.failureRefillPerSecond = 2
        configuration.maxUnauthenticatedPerSource = 2
        let limits = AuthLimits(configuration)
        let t0: UInt64 = 1_000_000_000
        for _ in 0..<3 { limits.failed("10.0.0.1", now: t0) }
        #expect(limits.admit("10.0.0.1", now: t0) == .rateLimited)
        #expect(limits.admit("10.0.0.2", now: t0) == .accepted, "another source is not affected")
        #expect(limits.admit("10.0.0.1", now: t0 + 400_000_000) == .rateLimited, "0.8 of a token")
        #expect(limits.admit("10.0.0.1", now: t0 + 500_000_000) == .accepted, "one token after 0.5 s")
        limits.failed("10.0.0.1", now: t0 + 500_000_000)
        #expect(limits.admit("10.0.0.1", now: t0 + 600_000_000) == .rateLimited)
        #expect(limits.admit("10.0.0.1", now: t0 + 60_000_000_000) == .accepted, "refilled")
        #expect(limits.admit("10.0.0.1", now: t0 + 60_000_000_000) == .tooManyUnauthenticated,
                "two links of it still wait")
        limits.settled("10.0.0.1")
        #expect(limits.admit("10.0.0.1", now: t0 + 60_000_000_000) == .accepted)
    }

    /// Over sockets, with the bucket on a manual clock (so a loaded machine cannot
    /// refill it between the steps): two failed proofs empty it, the next link is
    /// refused at once even with the right secret, and half a second later (one token
    /// at 2 per second) the real router gets in.
    @Test func failedProofsAreRateLimitedAndRecover() async throws {
        try await withRateLimitedHub(burst: 2, refillPerSecond: 2) { hub, group, clock in
            for _ in 0..<2 {
                let bad = try await RawRouter(hub.routerAddress, on: group.loops[0])
                let nonce = try await bad.hello("r1")
                try await bad.send(.auth(proof: proof("r1", nonce, secretOf: "r2")))
                #expect(try await bad.expectRefused("authentication failed"))
            }
            await #expect(throws: HubRouterClient.Refused(reason: "too many failed authentications from this address")) {
                _ = try await HubRouterClient.connect(to: hub.routerAddress, on: group.loops[1], id: "r1",
                                                      secret: TestCredentials.secret("r1"))
            }
            #expect(hub.counters.authCounts.first { $0.0 == .rateLimited }?.1 == 1)
            clock.advance(by: 400)
            let early = try await RawRouter(hub.routerAddress, on: group.loops[1])
            #expect(try await early.expectRefused("too many failed authentications"), "0.8 of a token")
            clock.advance(by: 100)
            let router = try await HubRouterClient.connect(to: hub.routerAddress, on: group.loops[1], id: "r1",
                                                           secret: TestCredentials.secret("r1"))
            #expect(await eventually { hub.directory.link(for: "r1") != nil })
            await router.close()
        }
    }

    @Test func surplusUnauthenticatedLinksAreRefused() async throws {
        try await withHub({ $0.auth.maxUnauthenticatedPerSource = 2 }) { hub, group in
            let quiet1 = try await RawRouter(hub.routerAddress, on: group.loops[0])
            let quiet2 = try await RawRouter(hub.routerAddress, on: group.loops[1])
            // Both admitted (the count of links opened rises in the same step).
            #expect(await eventually { hub.counters.links >= 2 })
            let surplus = try await RawRouter(hub.routerAddress, on: group.loops[0])
            #expect(try await surplus.expectRefused("too many unauthenticated"))
            #expect(hub.counters.authCounts.first { $0.0 == .tooManyUnauthenticated }?.1 == 1)
            // A place frees when a waiting link closes.
            await quiet1.connection.close(flush: false)
            var router: HubRouterClient?
            for _ in 0..<20 where router == nil {
                router = try? await HubRouterClient.connect(to: hub.routerAddress, on: group.loops[0], id: "r3",
                                                            secret: TestCredentials.secret("r3"))
                if router == nil { try await Task.sleep(for: .milliseconds(100)) }
            }
            #expect(router != nil)
            await router?.close()
            await quiet2.connection.close(flush: false)
        }
    }

    @Test func silentUnauthenticatedLinksTimeOut() async throws {
        try await withHub({ $0.auth.authTimeout = .seconds(2) }) { hub, group in
            // The routers run on a loop thread, not the test process's cooperative
            // threads (which a starting test run holds for seconds): the challenged
            // one says HELLO well within the 2 s.
            try await withTaskExecutorPreference(group.loops[1]) {
                try await silentAndChallenged(hub, group)
            }
        }
    }

    private func silentAndChallenged(_ hub: Hub, _ group: EventLoopGroup) async throws {
        let silent = try await RawRouter(hub.routerAddress, on: group.loops[0])
        let challenged = try await RawRouter(hub.routerAddress, on: group.loops[1])
        try await challenged.send(.hello(id: "r1"))
        let welcome = try await challenged.next()
        guard case .welcome(_, let nonce)? = welcome else {
            Issue.record("no WELCOME: \(String(describing: welcome))")
            return
        }
        #expect(nonce.count == HubFrame.nonceSize)
        #expect(try await silent.expectRefused("authentication timeout"))
        #expect(try await challenged.expectRefused("authentication timeout"))
        #expect(hub.counters.authCounts.first { $0.0 == .timeout }?.1 == 2)
        #expect(hub.directory.count == 0)
    }

    @Test func insecureHelloOnlyWithTheFlag() async throws {
        try await withHub({ $0.auth.insecureRouters = true }) { hub, group in
            let old = try await HubRouterClient.connect(to: hub.routerAddress, on: group.loops[0], id: "legacy", secret: nil)
            #expect(await eventually { hub.directory.link(for: "legacy") != nil })
            await old.close()
        }
        try await withHub { hub, group in
            // Without the flag the hub sends its challenge at accept; a version 1
            // HELLO then gets REFUSED and the router never goes online.
            let old = try await HubRouterClient.connect(to: hub.routerAddress, on: group.loops[0], id: "legacy", secret: nil)
            guard case .refused(let reason)? = try await old.nextFrame() else {
                Issue.record("no REFUSED")
                return
            }
            #expect(reason.contains("version 1"))
            #expect(try await old.nextFrame() == nil)
            #expect(hub.directory.link(for: "legacy") == nil)
            #expect(hub.counters.authCounts.first { $0.0 == .insecureRefused }?.1 == 1)
            await old.close()
        }
    }

    /// The WELCOME goes out at accept, so a router may wait for it and send HELLO and
    /// AUTH in one write (the hub reads both from one receive); it is then online.
    @Test func helloAndAuthInOneWriteAfterTheWelcome() async throws {
        try await withHub { hub, group in
            let raw = try await AsyncConnection.connect(to: hub.routerAddress, on: group.loops[1])
            var decoder = HubFrameDecoder()
            var frames: [HubFrame] = []
            while frames.isEmpty, let chunk = try await raw.read() {
                try chunk.withUnsafeBytes { try decoder.feed($0) { frames.append($0); return true } }
            }
            guard case .welcome(_, let nonce)? = frames.first, nonce.count == HubFrame.nonceSize else {
                Issue.record("no WELCOME at accept: \(frames)")
                return
            }
            let proof = HubCredentials.proof(secret: TestCredentials.secret("r3"), nonce: nonce, id: "r3")
            try await raw.write(HubFrame.hello(id: "r3").encoded + HubFrame.auth(proof: proof).encoded)
            frames.removeAll()
            while frames.isEmpty, let chunk = try await raw.read() {
                try chunk.withUnsafeBytes { try decoder.feed($0) { frames.append($0); return true } }
            }
            #expect(frames.first == .authOK)
            #expect(await eventually { hub.directory.link(for: "r3") != nil })
            try await raw.write(HubFrame.bye(reason: "done").encoded)
            await raw.close()
            #expect(await eventually { hub.directory.count == 0 })
        }
    }

    /// AUTH with the no-AUTHOK flag: a right proof puts the router online with no
    /// AUTHOK (the first frame it reads is the command sent to it); a wrong one is
    /// refused like any other; an unknown flag is a protocol error. Through
    /// HubRouterClient's `confirm: false` and through raw frames.
    @Test func unconfirmedAuthGoesOnlineSilentlyAndIsRefusedWhenWrong() async throws {
        try await withHub { hub, group in
            let quiet = try await HubRouterClient.connect(to: hub.routerAddress, on: group.loops[0], id: "r1",
                                                          secret: TestCredentials.secret("r1"), confirm: false)
            #expect(await eventually { hub.directory.link(for: "r1") != nil })
            let reply = Task { try await http(hub, group, "POST", "/devices/r1/commands", body: "ping") }
            let first = try await quiet.nextFrame()
            guard case .command(let requestID, let body)? = first else {
                Issue.record("expected the command as the first frame, got \(String(describing: first))")
                return
            }
            #expect(body == Array("ping".utf8))
            try await quiet.send(.reply(requestID: requestID, body: Array("pong".utf8)))
            #expect(try await reply.value.text == "pong")
            await quiet.close()

            let wrong = try await HubRouterClient.connect(to: hub.routerAddress, on: group.loops[1], id: "r2",
                                                          secret: HubCredentials.newSecret(), confirm: false)
            #expect(try await wrong.nextFrame() == .refused(reason: "authentication failed"))
            #expect(try await wrong.nextFrame() == nil)
            await wrong.close(flush: false)

            // Flags other than "no AUTHOK" are refused as a malformed AUTH.
            let raw = try await RawRouter(hub.routerAddress, on: group.loops[0])
            guard case .welcome(_, let nonce)? = try await raw.next() else {
                Issue.record("no WELCOME at accept")
                return
            }
            var payload = proof("r3", nonce)
            payload.append(0x02)
            var frame = HubFrame.hello(id: "r3").encoded
            HubFrame.append(.auth, payload, into: &frame)
            try await raw.connection.write(frame)
            #expect(try await raw.expectRefused("protocol error"))
            #expect(hub.directory.link(for: "r3") == nil)
            #expect(await eventually { hub.directory.count == 0 })
        }
    }

    @Test func reloadClosesOnlyRevokedRouters() async throws {
        try await withHub { hub, group in
            let r1 = try await HubRouterClient.connect(to: hub.routerAddress, on: group.loops[0], id: "r1",
                                                       secret: TestCredentials.secret("r1"))
            let r2 = try await HubRouterClient.connect(to: hub.routerAddress, on: group.loops[1], id: "r2",
                                                       secret: TestCredentials.secret("r2"))
            let seen1 = answerCommands(r1)
            let seen2 = answerCommands(r2)
            #expect(await eventually { hub.directory.count == 2 })
            var changed = TestCredentials.store
            changed.routers["r1"] = HubCredentials.newSecret()
            hub.reloadCredentials(changed)
            #expect(await seen1.value.contains(.bye(reason: "credentials revoked")))
            #expect(await eventually { hub.directory.link(for: "r1") == nil })
            #expect(try await http(hub, group, "POST", "/devices/r2/commands", body: "still").text == "done:still")
            // The old secret no longer works; the new one does.
            await #expect(throws: HubRouterClient.Refused.self) {
                _ = try await HubRouterClient.connect(to: hub.routerAddress, on: group.loops[0], id: "r1",
                                                      secret: TestCredentials.secret("r1"))
            }
            let again = try await HubRouterClient.connect(to: hub.routerAddress, on: group.loops[0], id: "r1",
                                                          secret: changed.routers["r1"])
            await again.close()
            await r1.close()
            await r2.close()
            _ = await seen2.value
        }
    }

    @Test func credentialFileRoundTripsWithMode0600() throws {
        var store = TestCredentials.store
        let token = HubCredentials.newToken()
        store.tokens[token.hash] = .init(routers: ["r1", "r2"], rights: ["read", "command"])
        store.tokens[HubCredentials.tokenHash("admin")] = .init(routers: nil, rights: ["admin"])
        let path = try TestCredentials.writeFile(store)
        defer { try? FileManager.default.removeItem(atPath: path) }
        let attributes = try FileManager.default.attributesOfItem(atPath: path)
        #expect((attributes[.posixPermissions] as? NSNumber)?.intValue == 0o600)
        let loaded = try HubCredentials.load(path: path)
        #expect(loaded == store)
        #expect(loaded.grant(forToken: token.token)?.routers == ["r1", "r2"])
        #expect(loaded.grant(forToken: "admin")?.routers == nil)
        #expect(loaded.grant(forToken: "wrong") == nil)
        #expect(throws: (any Error).self) { try HubCredentials(json: Array(#"{"routers":{"r1":"short"}}"#.utf8)) }
    }
}
