import Testing
@testable import Torus
import TorusTestSupport

/// The opt-in completion coalescing: its policy, and real traffic through loops that
/// coalesce (byte-exact, quiescent), including the cases it is worst at.
@Suite("Completion coalescing (opt-in)")
struct CompletionCoalescingTests {
    static func configuration(_ coalescing: CompletionCoalescing) -> EventLoop.Configuration {
        loopConfiguration { $0.completionCoalescing = coalescing }
    }

    @Test("a quiet loop waits for one completion; a busy one for twice its last turn, bounded")
    func policy() {
        let c = CompletionCoalescing(maxCompletions: 64, maxWait: .microseconds(50))
        #expect(c.completionsToWaitFor(reapedLastTurn: 0) == 1)
        #expect(c.completionsToWaitFor(reapedLastTurn: 1) == 1)
        #expect(c.completionsToWaitFor(reapedLastTurn: 2) == 4)
        #expect(c.completionsToWaitFor(reapedLastTurn: 20) == 40)
        #expect(c.completionsToWaitFor(reapedLastTurn: 33) == 64)
        #expect(c.completionsToWaitFor(reapedLastTurn: 10_000) == 64)
        // Nonsense settings are clamped, not trapped on.
        let odd = CompletionCoalescing(maxCompletions: -3, maxWait: .microseconds(-1))
        #expect(odd.maxCompletions == 1 && odd.maxWait == .zero)
        #expect(odd.completionsToWaitFor(reapedLastTurn: 50) == 1)
        #expect(EventLoop.Configuration().completionCoalescing == nil)
    }

    @Test("many connections through coalescing loops: byte-exact, the waits coalesced, quiescent")
    func manyConnections() async throws {
        let coalescing = CompletionCoalescing(maxCompletions: 32, maxWait: .microseconds(200))
        try await withGroup(loops: 2, Self.configuration(coalescing)) { group in
            let server = try Server.start(on: [group.loops[0]], address: try .tcp("127.0.0.1", 0)) { _ in Echo() }
            let ok = try await echoClients(64, payloadSize: 256 << 10, to: server.address, on: [group.loops[1]])
            #expect(ok == 64)
            #if DEBUG
            // The server's loop reaped several completions a turn and then asked for more.
            let waits = try await group.loops[0].run { group.loops[0].ring.coalescedWaits }
            #expect(waits > 0)
            #endif
            server.close()
        }
    }

    @Test("one closed-loop connection (the worst case: it cannot fill a window) still round-trips")
    func closedLoop() async throws {
        let coalescing = CompletionCoalescing(maxCompletions: 64, maxWait: .microseconds(500))
        try await withGroup(loops: 2, Self.configuration(coalescing)) { group in
            let server = try Server.start(on: [group.loops[0]], address: try .tcp("127.0.0.1", 0)) { _ in Echo() }
            let matched = try await group.loops[1].run {
                let client = try await AsyncConnection.connect(to: server.address, on: group.loops[1])
                var matched = 0
                for i in 0..<500 {
                    let message = testBytes(64, seed: UInt64(i))
                    try await client.write(message)
                    if try await client.read(exactly: 64) == message { matched += 1 }
                }
                await client.close()
                return matched
            }
            #expect(matched == 500)
            server.close()
        }
    }
}
