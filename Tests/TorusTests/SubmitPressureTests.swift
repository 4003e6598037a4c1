import Testing
@testable import Torus
import TorusTestSupport

/// A ring too small for the work, and a kernel that refuses submissions (`-EBUSY`, as
/// it answers while the CQ is backed up): the loop keeps the SQEs it cannot place,
/// reaps, places them, and every operation still completes.
@Suite("Submission pressure")
struct SubmitPressureTests {
    static var tiny: EventLoop.Configuration {
        var c = EventLoop.Configuration()
        c.ringEntries = 4
        c.cqMultiplier = 2
        return c
    }

    @Test("a 4-entry SQ, an 8-entry CQ and refused submits: 512 timers all fire, the ledger ends quiescent")
    func refusedSubmitsAreDeferred() async throws {
        let ledger = try await withLoop(Self.tiny) { loop in
            let fired = Locked(0)
            await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
                loop.execute {
                    // Each early submit in the next 40 is refused, as by a backed-up CQ.
                    loop.ring.injectedBusySubmits = 40
                    for _ in 0..<512 {
                        loop.schedule(after: .milliseconds(1)) {
                            if fired.withLock({ $0 += 1; return $0 }) == 512 { c.resume() }
                        }
                    }
                }
            }
            #expect(fired.current == 512)
        }
        #expect(ledger.deferredSubmissions > 0, "no SQE was ever deferred: the test did not test the path")
        #expect(ledger.busySubmits > 0)
        #expect(ledger[.timeout].submitted >= 512)
    }

    @Test("refused submits under echo load on a tiny ring: every byte comes back, quiescent")
    func refusedSubmitsUnderEcho() async throws {
        let ledger = try await withServer(Self.tiny) { serverLoop, server, clientLoop in
            serverLoop.execute { serverLoop.ring.injectedBusySubmits = 200 }
            let ok = try await echoClients(32, payloadSize: 32 * 1024, to: server.address,
                                           on: [clientLoop], seed: 7)
            #expect(ok == 32)
        }
        #expect(ledger.deferredSubmissions > 0)
    }

    @Test("a linked connect + timeout pair is never split by a refused submit")
    func linkedPairKeptTogether() async throws {
        let serverLoop = try EventLoop()
        let server = try Server.start(on: [serverLoop], address: try .tcp("127.0.0.1", 0)) { _ in Echo() }
        try await withLoop(Self.tiny) { loop in
            for i in 0..<16 {
                // Fill the SQ so the next connect needs an early submit, refused once.
                loop.execute {
                    loop.ring.injectedBusySubmits = i % 3
                    for _ in 0..<Int(i % 4) { loop.schedule(after: .milliseconds(1)) {} }
                }
                let c = try await AsyncConnection.connect(to: server.address, on: loop, timeout: .seconds(5))
                try await c.write("hi")
                #expect(try await c.read(exactly: 2) == Array("hi".utf8))
                await c.close()
            }
        }
        server.close()
        expectQuiescent(await serverLoop.shutdownGracefully())
    }
}
