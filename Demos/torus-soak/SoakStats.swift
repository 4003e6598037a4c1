import Synchronization

/// What the simulated clients saw, counted under one lock (a few thousand updates a
/// second at most). "Failures" are outcomes that should not have happened and fail
/// the verdict; the rest is information.
struct Counts: Sendable {
    // Routers.
    var routerSessions = 0
    /// Attacks tried (wrong secret, replayed proof, stolen-id HELLO) and refused;
    /// attackers let in and real routers displaced (both must stay 0).
    var attacks = 0
    var attacksRefused = 0
    var intrusions = 0
    var displaced = 0
    var connectFailures = 0
    var eventsSent = 0
    var commandsAnswered = 0
    var vanished = 0
    var reaped = 0
    var reapFailures = 0
    var replacements = 0
    var replaceFailures = 0
    var byes = 0
    var resets = 0
    var stableDropped = 0
    // HTTP callers.
    var stableOK = 0
    var stableFailed = 0
    var churnStatus: [Int: Int] = [:]
    var expected404OK = 0
    var expected404Failed = 0
    var expected504OK = 0
    var expected504Failed = 0
    var devicesChecks = 0
    var devicesFailed = 0
    var httpErrors = 0
    var oneShotRequests = 0
    var keepAliveRequests = 0
    var latencyMaxMs = 0
    /// Commands answered 200 by a node other than the router's (cluster runs).
    var crossNodeCommandsOK = 0
    // Subscribers.
    var subscriberSessions = 0
    var subscriberEvents = 0
    var subscriberResets = 0
    var subscriberCloses = 0
    var subscriptionChanges = 0
    var subscriberFailures = 0
    var slowSubscribers = 0
    var frozenRemoved = 0
    var frozenNotRemoved = 0
    var filterViolations = 0
    /// Events read on a node other than their router's (cluster runs).
    var crossNodeEvents = 0

    var failures: Int {
        connectFailures + reapFailures + replaceFailures + stableDropped + stableFailed + expected404Failed
            + expected504Failed + devicesFailed + subscriberFailures + frozenNotRemoved + filterViolations + httpErrors
    }
}

final class SoakStats: Sendable {
    private let counts = Mutex(Counts())
    /// Failure descriptions (the first few are printed).
    private let notes = Mutex<[String]>([])
    private let stopping = Atomic<Bool>(false)

    func update(_ body: (inout Counts) -> Void) { counts.withLock { body(&$0) } }
    var current: Counts { counts.withLock { $0 } }

    func fail(_ note: String, _ body: (inout Counts) -> Void) {
        // Failures while the run winds down are the run's own doing, not the hub's.
        guard !isStopping else { return }
        counts.withLock { body(&$0) }
        notes.withLock { if $0.count < 50 { $0.append(note) } }
    }

    var failureNotes: [String] { notes.withLock { $0 } }

    var isStopping: Bool { stopping.load(ordering: .acquiring) }
    func stop() { stopping.store(true, ordering: .releasing) }
}
