import CLiburing
/// The single source of truth for who owns what inside one event loop.
///
/// Every SQE, every final CQE, every cancel and park, and every buffer that moves
/// between pool, application and kernel is counted here, on the loop thread, as it
/// happens. Nothing else in Torus keeps a parallel count. `snapshot()` copies the
/// counters; the loop's shutdown asserts the result is quiescent.
///
/// Thread confinement: mutated only on the owning loop's thread. Read it from
/// elsewhere through `EventLoop.ledgerSnapshot()`.
final class Ledger {
    /// The scalar counters, counted on every connection and fault: loop-confined, so
    /// without dynamic exclusivity checks (see `Connection`). Private: its `operations`
    /// and `buffers` stay zero here (the live counts are the inline counters below,
    /// which `snapshot()` copies in), so it is read only through `snapshot()`.
    @exclusivity(unchecked) private var state = LedgerSnapshot()
    /// Live counters per operation kind (indexed by `OperationKind.rawValue`) and per
    /// buffer pool (`BufferPoolKind.rawValue`). Fixed-size and inline, so a count is an
    /// add in place: in an `Array` every count would first ask the runtime whether the
    /// array's storage is shared (several calls per request on a busy server).
    @exclusivity(unchecked) private var operations = InlineArray<18, OperationCounters>(repeating: OperationCounters())
    @exclusivity(unchecked) private var buffers = InlineArray<3, BufferCounters>(repeating: BufferCounters())

    init() {
        // The inline counters have one place per case (a new case must widen them).
        precondition(OperationKind.allCases.count == operations.count
                     && BufferPoolKind.allCases.count == buffers.count,
                     "Ledger: the inline counters do not match OperationKind / BufferPoolKind")
    }

    /// The live counters of one operation kind.
    @inline(__always) func counters(_ kind: OperationKind) -> OperationCounters { operations[kind.rawValue] }

    /// Operations submitted and not finally completed, over every kind.
    var inFlight: Int {
        var n = 0
        for i in operations.indices { n &+= operations[i].inFlight }
        return n
    }
    #if DEBUG
    /// Debug builds: for every buffer away from its pool, the site that took it.
    private var holderSites: [Int: BufferHolder] = [:]
    /// Debug builds: where each buffer away from its pool is (absent: in the pool), so
    /// a move from the wrong owner (a buffer returned twice, a send reclaimed that
    /// was never lent) stops at that move.
    private var owners: [Int: Owner] = [:]
    /// Debug builds: buffers each pool created and has not destroyed.
    private var created = [Int](repeating: 0, count: BufferPoolKind.allCases.count)
    #endif

    @inline(__always) func submitted(_ kind: OperationKind) { operations[kind.rawValue].submitted += 1 }
    @inline(__always) func completed(_ kind: OperationKind) { operations[kind.rawValue].completed += 1 }
    @inline(__always) func cancelled(_ kind: OperationKind) { operations[kind.rawValue].cancelled += 1 }
    @inline(__always) func parked(_ kind: OperationKind) { operations[kind.rawValue].parked += 1 }
    @inline(__always) func unparked(_ kind: OperationKind) { operations[kind.rawValue].parked -= 1 }

    @inline(__always) func connectionOpened() { state.connections += 1 }
    @inline(__always) func connectionClosed() { state.connections -= 1 }
    @inline(__always) func listenerOpened() { state.listeners += 1 }
    @inline(__always) func listenerClosed() { state.listeners -= 1 }
    @inline(__always) func cqOverflowed() { state.cqOverflows += 1 }
    @inline(__always) func busySubmit() { state.busySubmits += 1 }
    @inline(__always) func noBuffers() { state.noBufferReceives += 1 }
    @inline(__always) func acceptFailed() { state.acceptErrors += 1 }
    @inline(__always) func submissionDeferred() { state.deferredSubmissions += 1 }
    @inline(__always) func submitFailed() { state.submitErrors += 1 }
    @inline(__always) func staleCompletion() { state.staleCompletions += 1 }
    @inline(__always) func receiveGrowthFailed() { state.receiveGrowthFailures += 1 }
    func queueLimitExceeded() { state.queueLimitCloses += 1 }
    @inline(__always) func deadlineChecked() { state.deadlineChecks += 1 }
    func receiveWaited() { state.receiveWaits += 1 }
    /// A slot of the registered file table was taken for a socket / is empty again.
    @inline(__always) func directDescriptorTaken() { state.directDescriptors += 1 }
    @inline(__always) func directDescriptorFreed() { state.directDescriptors -= 1 }
    func plainDescriptorFallback() { state.plainDescriptorFallbacks += 1 }

    /// A pool created `count` buffers totalling `bytes`.
    func buffersAdded(_ pool: BufferPoolKind, count: Int, bytes: Int) {
        buffers[pool.rawValue].pool += count
        buffers[pool.rawValue].capacity += bytes
        #if DEBUG
        created[pool.rawValue] += count
        #endif
    }

    /// A pool destroyed `count` free buffers.
    func buffersRemoved(_ pool: BufferPoolKind, count: Int, bytes: Int) {
        buffers[pool.rawValue].pool -= count
        buffers[pool.rawValue].capacity -= bytes
        #if DEBUG
        created[pool.rawValue] -= count
        #endif
        assert(buffers[pool.rawValue].pool >= 0 && buffers[pool.rawValue].capacity >= 0,
               "\(pool) pool removed \(count) buffers it did not hold: \(buffers[pool.rawValue])")
    }

    /// Owners a buffer can move between.
    enum Owner { case pool, application, kernel }

    /// Moves one buffer of `pool` from one owner to another. `key` identifies the
    /// buffer (for debug holder sites), `holder` says who takes it.
    @inline(__always)
    func move(_ pool: BufferPoolKind, from: Owner, to: Owner, key: Int, holder: BufferHolder) {
        adjust(pool, from, -1)
        adjust(pool, to, +1)
        #if DEBUG
        let k = key << 2 | pool.rawValue
        checkMove(pool, key: key, from: from, to: to, at: owners[k] ?? .pool)
        if to == .pool {
            holderSites[k] = nil
            owners[k] = nil
        } else {
            holderSites[k] = holder
            owners[k] = to
        }
        #endif
    }

    #if DEBUG
    /// The invariants of one buffer move, checked as it happens (debug builds): the
    /// buffer was where the move says it was, and no owner's count went negative, so
    /// pool + application + kernel still equals what the pool holds.
    private func checkMove(_ pool: BufferPoolKind, key: Int, from: Owner, to: Owner, at current: Owner) {
        let b = buffers[pool.rawValue]
        // Not from input: ledger invariants over moves the runtime itself makes (an ownership
        // bug in Torus, or API misuse such as returning a buffer twice).
        precondition(current == from,
                     "\(pool) buffer #\(key) moved from \(from) to \(to) but it was with \(current)")
        precondition(b.pool >= 0 && b.application >= 0 && b.kernel >= 0,
                     "\(pool) buffer counts went negative moving #\(key) from \(from) to \(to): \(b)")
        precondition(b.total == created[pool.rawValue],
                     "\(pool) pool + application + kernel = \(b.total), but \(created[pool.rawValue]) buffers exist")
    }
    #endif

    @inline(__always)
    private func adjust(_ pool: BufferPoolKind, _ owner: Owner, _ delta: Int) {
        switch owner {
        case .pool: buffers[pool.rawValue].pool += delta
        case .application: buffers[pool.rawValue].application += delta
        case .kernel: buffers[pool.rawValue].kernel += delta
        }
    }

    func snapshot() -> LedgerSnapshot {
        var s = state
        for i in operations.indices { s.operations[i] = operations[i] }
        for i in buffers.indices { s.buffers[i] = buffers[i] }
        #if DEBUG
        s.holders = holderSites.map { key, site in
            "\(BufferPoolKind(rawValue: key & 3) ?? .received) buffer #\(key >> 2) held by \(site)"
        }.sorted()
        #endif
        return s
    }
}

/// Who holds a buffer away from its pool, recorded in debug builds without
/// allocating: a static description and a number (an fd, or a source line).
struct BufferHolder: CustomStringConvertible {
    let what: StaticString
    let id: Int

    init(_ what: StaticString, _ id: Int) {
        self.what = what
        self.id = id
    }

    static let none = BufferHolder("pool", 0)

    var description: String { "\(what) \(id)" }
}
