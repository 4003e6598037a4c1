import Foundation
import Testing
import Torus
import TorusTestSupport

/// Inputs found by the trap audit that used to trap: each is now handled.
@Suite("No trap from input: ledger snapshots and durations")
struct NoTrapFromInputTests {
    @Test("a ledger snapshot decoded from elsewhere: short arrays are padded, huge counters wrap")
    func decodedSnapshot() throws {
        // Another version or process: one operation kind, no buffer pools, counters at Int.max.
        let json = #"""
        {"operations":[{"submitted":9223372036854775807,"completed":-9223372036854775808,"cancelled":0,"parked":0}],
         "buffers":[],"connections":9223372036854775807,"listeners":0,"cqOverflows":0,"busySubmits":0,
         "noBufferReceives":0,"acceptErrors":0,"deferredSubmissions":0,"submitErrors":0,
         "staleCompletions":0,"receiveGrowthFailures":0,"queueLimitCloses":0,"holders":[]}
        """#
        let decoded = try JSONDecoder().decode(LedgerSnapshot.self, from: Data(json.utf8))
        #expect(decoded.operations.count == OperationKind.allCases.count)
        #expect(decoded.buffers.count == BufferPoolKind.allCases.count)
        #expect(decoded[.outbound] == BufferCounters())
        let sum = decoded + decoded
        #expect(sum.connections == Int.max &+ Int.max)
        #expect(!sum.description.isEmpty && !decoded.isQuiescent)
        // A longer array (a newer version) is cut to this version's kinds.
        var longer = LedgerSnapshot()
        longer.operations += [OperationCounters()]
        let back = try JSONDecoder().decode(LedgerSnapshot.self, from: JSONEncoder().encode(longer))
        #expect(back == LedgerSnapshot())
    }

    @Test("durations beyond Int64 nanoseconds saturate instead of wrapping to a short timeout")
    func durationNanoseconds() {
        #expect(Duration.seconds(1).nanoseconds == 1_000_000_000)
        #expect(Duration.seconds(-5).nanoseconds == 0)
        #expect(Duration.seconds(Int64.max).nanoseconds == UInt64(Int64.max))
        #expect(Duration.seconds(20_000_000_000).nanoseconds == UInt64(Int64.max))
    }

    @Test("the blocking pool has its threads (it runs work inline only when it has none)")
    func blockingPoolThreads() async throws {
        #expect(BlockingPool.shared.threadCount == 2)
        try await withLoop { loop in
            let value = try await loop.offload { 6 * 7 }
            #expect(value == 42)
        }
    }
}
