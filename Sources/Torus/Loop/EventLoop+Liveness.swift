import CLiburing
/// Application-level liveness: idle and send timeouts and a protocol's own deadlines
/// (ping, heartbeat), kept in one `DeadlineWheel` per loop. An owner is checked when
/// its earliest deadline comes due and tells the loop its next one; one one-shot
/// timer wakes the loop for the earliest deadline of all, so an idle connection has
/// no timer and no kernel timeout of its own, and a loop whose connections are all
/// quiet sleeps until the first of them is due.
extension EventLoop {
    /// The resolution of deadlines: each is met at most this much late (plus the
    /// loop's own lateness), never early.
    public static let deadlineResolution = Duration.milliseconds(250)

    /// Makes sure `owner.checkDeadlines` runs no later than `deadline` (the loop's
    /// clock): schedules it, or moves it earlier. Loop thread only.
    func scheduleDeadline(_ owner: any DeadlineOwner, at deadline: UInt64) {
        deadlines.schedule(owner, at: deadline)
    }

    /// The owner has no deadline any more (it closed): it is never checked again.
    /// Loop thread only. O(1).
    func cancelDeadline(_ owner: any DeadlineOwner) {
        deadlines.remove(owner)
    }

    /// Checks every owner whose deadline is due. Runs after the turn's completions
    /// have all been dispatched, never from the middle of a reap: a loop that was
    /// starved of CPU for longer than a deadline finds the bytes that did arrive
    /// meanwhile (their receive completions sit in the same reap) before it judges a
    /// peer idle.
    @inline(__always)
    func checkDueDeadlines() {
        guard let due = deadlines.nextDue, now >= due else { return }
        checkDeadlinesNow()
    }

    @inline(never)
    private func checkDeadlinesNow() {
        deadlines.takeDue(now: now, into: &dueOwners)
        var i = 0
        while i < dueOwners.count {
            let owner = dueOwners[i]
            i += 1
            // One checked before may have closed this one.
            guard owner.deadlinePosition == .due else { continue }
            owner.deadlinePosition = .none
            ledger.deadlineChecked()
            if let next = owner.checkDeadlines(now: now) { deadlines.schedule(owner, at: next) }
        }
        if dueOwners.count > 256 { dueOwners = [] } else { dueOwners.removeAll(keepingCapacity: true) }
    }

    /// Before the submit: one timer armed for the wheel's earliest deadline (moved
    /// when an earlier one was scheduled), none when the wheel is empty.
    @inline(__always)
    func armDeadlineTimer() {
        let due = deadlines.nextDue
        if due == deadlineTimerDue { return }
        rearmDeadlineTimer(for: due)
    }

    @inline(never)
    private func rearmDeadlineTimer(for due: UInt64?) {
        if let due, let armed = deadlineTimerDue, armed <= due { return }   // fires early: harmless
        if let timer = deadlineTimer {
            deadlineTimer = nil
            deadlineTimerDue = nil
            timer.cancelOnLoop()
        }
        guard let due, !isStopping else { return }
        deadlineTimerDue = due
        // The loop's clock may be behind: the timer then fires early, finds nothing
        // due, and is armed again for the rest.
        let delay = due > now ? due - now : 0
        deadlineTimer = schedule(after: .nanoseconds(Int64(clamping: delay))) { [unowned self] in
            deadlineTimer = nil
            deadlineTimerDue = nil
        }
    }
}
