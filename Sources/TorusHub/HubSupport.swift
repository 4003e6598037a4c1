import CHubMalloc
import Glibc
import Synchronization
import Torus

/// The wall clock, for timestamps shown to people (`connected_at`); durations and
/// deadlines use the core's `MonotonicClock`. Any thread.
enum HubClock {
    /// Seconds since the Unix epoch.
    static func wallSeconds() -> Double {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
    }
}

/// Resident set size of this process in bytes (VmRSS).
public func residentBytes() -> Int { ProcessMemory.residentBytes() }

/// The allocator's view of the heap (glibc `mallinfo2`): bytes the program holds
/// and bytes the allocator reserved. Comparing their growth with RSS's tells a leak
/// (in use grows) from fragmentation (only reserved and RSS grow).
public func heapBytes() -> (inUse: Int, reserved: Int) {
    let s = torus_hub_heap()
    return (Int(s.in_use), Int(s.reserved))
}

/// Hub-wide counters (any thread; relaxed atomics, a lock for the rare ones).
public final class HubCounters: Sendable {
    let linksOpened = Atomic<Int>(0)
    let protocolErrors = Atomic<Int>(0)
    let eventSequence = Atomic<UInt64>(0)
    let eventsDelivered = Atomic<Int>(0)
    let eventsDropped = Atomic<Int>(0)
    private let disconnects = Mutex<[Int]>(Array(repeating: 0, count: DisconnectReason.allCases.count))
    private let authOutcomes = Mutex<[Int]>(Array(repeating: 0, count: RouterAuthOutcome.allCases.count))
    private let outcomes = Mutex<[String: Int]>([:])
    private let apiAuthOutcomes = Mutex<[Int]>(Array(repeating: 0, count: HubAPIAuthOutcome.allCases.count))

    init() {}

    func nextEventSequence() -> UInt64 { eventSequence.add(1, ordering: .relaxed).newValue }

    func disconnected(_ reason: DisconnectReason) { disconnects.withLock { $0[reason.rawValue] += 1 } }

    func authenticated(_ outcome: RouterAuthOutcome) { authOutcomes.withLock { $0[outcome.rawValue] += 1 } }

    /// Router authentications so far, by outcome (accepted, and each reason to refuse).
    public var authCounts: [(RouterAuthOutcome, Int)] {
        let a = authOutcomes.withLock { $0 }
        return RouterAuthOutcome.allCases.map { ($0, a[$0.rawValue]) }
    }

    func apiAuthenticated(_ outcome: HubAPIAuthOutcome) { apiAuthOutcomes.withLock { $0[outcome.rawValue] += 1 } }

    /// API requests and stream upgrades so far, by how their token check ended.
    public var apiAuthCounts: [(HubAPIAuthOutcome, Int)] {
        let a = apiAuthOutcomes.withLock { $0 }
        return HubAPIAuthOutcome.allCases.map { ($0, a[$0.rawValue]) }
    }

    func commandFinished(_ outcome: CommandOutcome) {
        outcomes.withLock { $0[outcome.metricName, default: 0] += 1 }
    }

    /// Disconnects so far, by reason.
    public var disconnectCounts: [(DisconnectReason, Int)] {
        let d = disconnects.withLock { $0 }
        return DisconnectReason.allCases.map { ($0, d[$0.rawValue]) }
    }

    /// Commands finished so far, by outcome name.
    public var commandCounts: [String: Int] { outcomes.withLock { $0 } }
    public var events: UInt64 { eventSequence.load(ordering: .relaxed) }
    public var delivered: Int { eventsDelivered.load(ordering: .relaxed) }
    public var dropped: Int { eventsDropped.load(ordering: .relaxed) }
    public var links: Int { linksOpened.load(ordering: .relaxed) }
    public var malformed: Int { protocolErrors.load(ordering: .relaxed) }
}

extension CommandOutcome {
    var metricName: String {
        switch self {
        case .reply: "ok"
        case .offline: "offline"
        case .timedOut: "timeout"
        case .disconnected: "disconnected"
        case .overloaded: "overloaded"
        case .unreachable: "unreachable"
        }
    }
}
