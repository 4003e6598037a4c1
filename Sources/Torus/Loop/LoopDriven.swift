/// What a loop drives besides completions: owners with queued writes to flush once
/// per iteration (and, as `DeadlineOwner`s, owners with deadlines to check). The loop
/// knows its owners only through these (and `LoopResource`); it never names a
/// connection.
protocol LoopDriven: AnyObject {
    /// Turns what was queued since the last iteration into submissions. Called once
    /// per iteration, before the submit, after `EventLoop.scheduleFlush`.
    func flushQueuedWrites()
}

/// Something a loop owns that must close when the loop stops (listeners,
/// connections, timers). Registered with `EventLoop.register` while open.
protocol LoopResource: AnyObject {
    func loopIsStopping()
}

/// A resource that keeps its own place in the loop's table (O(1) removal without a
/// dictionary entry): connections, of which a loop may hold tens of thousands.
protocol IndexedLoopResource: LoopResource {
    /// Written only by the loop; -1 while not registered.
    var resourceIndex: Int32 { get set }
}

/// What a registered resource is, for the ledger's counts.
enum LoopResourceKind {
    case connection, listener, other
}
