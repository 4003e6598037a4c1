/// Where an owner sits in its loop's `DeadlineWheel`: kept by the owner itself (an
/// intrusive index), so removing it is O(1) with no lookup table. 8 bytes.
struct DeadlinePosition: Equatable {
    /// The wheel slot, or `none`.
    var slot: UInt32
    /// The owner's index in that slot's array.
    var index: UInt32

    /// Not in the wheel.
    static let none = DeadlinePosition(slot: .max, index: 0)
    /// Handed out by `takeDue` and not yet checked: removing it (the owner closed
    /// meanwhile) makes it `none`, and the loop checks only owners still `due`.
    static let due = DeadlinePosition(slot: .max - 1, index: 0)
    var isScheduled: Bool { slot < .max - 1 }
}

/// Something with deadlines (a connection's idle and send timeouts, its protocol's
/// ping or heartbeat): its loop's `DeadlineWheel` holds it until its next deadline,
/// then the loop calls `checkDeadlines`.
protocol DeadlineOwner: AnyObject {
    /// Where the owner is in the wheel. Written only by the wheel.
    var deadlinePosition: DeadlinePosition { get set }
    /// Acts on what is past its deadline (closes, sends a ping) and returns the next
    /// deadline (`MonotonicClock` nanoseconds), nil for none. Called by the loop after
    /// the turn's completions, once the earliest deadline the owner gave is due.
    func checkDeadlines(now: UInt64) -> UInt64?
}

/// The loop's deadlines: a hashed timing wheel of `slotCount` slots of `resolution`
/// nanoseconds each (512 × 250 ms: 128 s per revolution), one entry per owner at its
/// next deadline.
///
/// An owner is scheduled at its earliest deadline and is not touched again until
/// that deadline's slot comes due (activity on a connection only records a
/// timestamp); then `takeDue` hands it back, the loop asks it for its deadlines, and
/// it is scheduled again at the next one (or not at all). So an idle connection with
/// a 60 s timeout costs one check a minute, and a loop whose earliest deadline is a
/// minute away sleeps for a minute (`nextDue`). A deadline further away than one
/// revolution waits in its slot for its round; passing over it costs a comparison,
/// never a check. Entries are kept in per-slot arrays; each owner knows its position
/// (`DeadlinePosition`), so `remove` is a swap-remove.
///
/// Deadlines are rounded up to the next slot boundary: an owner is never handed back
/// before its deadline, and at most `resolution` after it (plus the loop's lateness).
/// Loop thread only (a value type inside the loop).
struct DeadlineWheel {
    struct Entry {
        let owner: any DeadlineOwner
        /// The slot-boundary tick the owner is due at (`deadline / resolution`, rounded up).
        let tick: UInt64
    }

    let resolution: UInt64
    let slotCount: Int
    private var slots: [[Entry]]
    /// One bit per non-empty slot, to skip empty ones.
    private var occupied: [UInt64]
    /// Every tick before this one has been handed out.
    private(set) var cursor: UInt64
    /// No entry is due before this tick (a lower bound: stale after a removal, exact
    /// after `takeDue`); `.max` when empty.
    private var earliest: UInt64 = .max
    /// Owners scheduled.
    private(set) var count = 0

    init(resolution: UInt64 = 250_000_000, slotCount: Int = 512, now: UInt64) {
        // Not from input: the loop passes constants (its resolution, the default slot count).
        precondition(slotCount > 0 && slotCount & (slotCount - 1) == 0 && slotCount <= 1 << 20,
                     "slotCount must be a power of two")
        precondition(resolution > 0)
        self.resolution = resolution
        self.slotCount = slotCount
        slots = Array(repeating: [], count: slotCount)
        occupied = Array(repeating: 0, count: (slotCount + 63) / 64)
        cursor = now / resolution + 1
    }

    var isEmpty: Bool { count == 0 }

    /// The earliest time anything may be due (a slot boundary), nil when empty. May
    /// be early (an owner removed since, or one waiting for a later round): the loop
    /// then wakes, finds nothing due, and asks again.
    var nextDue: UInt64? {
        guard count > 0 else { return nil }
        let tick = Swift.max(earliest, cursor)
        let (product, overflow) = tick.multipliedReportingOverflow(by: resolution)
        return overflow ? .max : product
    }

    /// Makes sure `owner` is handed back no later than `deadline`: inserts it, or
    /// moves it earlier when it is scheduled later. A deadline already past is due
    /// at the next tick. An owner already `due` stays so (it is about to be checked).
    mutating func schedule(_ owner: any DeadlineOwner, at deadline: UInt64) {
        guard owner.deadlinePosition != .due else { return }
        let (rounded, overflow) = deadline.addingReportingOverflow(resolution - 1)
        let tick = Swift.max(overflow ? .max / resolution : rounded / resolution, cursor)
        let position = owner.deadlinePosition
        if position.isScheduled {
            guard slots[Int(position.slot)][Int(position.index)].tick > tick else { return }
            remove(owner)
        }
        let slot = Int(tick & UInt64(slotCount - 1))
        owner.deadlinePosition = DeadlinePosition(slot: UInt32(slot), index: UInt32(slots[slot].count))
        slots[slot].append(Entry(owner: owner, tick: tick))
        occupied[slot >> 6] |= 1 << UInt64(slot & 63)
        count += 1
        if tick < earliest { earliest = tick }
    }

    /// Takes `owner` out of the wheel (nothing when it is not in; a `due` owner
    /// becomes `none`, so it is not checked). O(1).
    mutating func remove(_ owner: any DeadlineOwner) {
        let position = owner.deadlinePosition
        guard position.isScheduled else {
            owner.deadlinePosition = .none
            return
        }
        let slot = Int(position.slot)
        let index = Int(position.index)
        owner.deadlinePosition = .none
        let last = slots[slot].count - 1
        if index != last {
            slots[slot][index] = slots[slot][last]
            slots[slot][index].owner.deadlinePosition.index = UInt32(index)
        }
        slots[slot].removeLast()
        if slots[slot].isEmpty {
            occupied[slot >> 6] &= ~(1 << UInt64(slot & 63))
            // Give the slot's storage back once a burst is over (an idle wheel holds none).
            slots[slot] = []
        }
        count -= 1
    }

    /// Removes every owner due at `now` (deadline at or before `now`, rounded to the
    /// resolution), marks it `DeadlinePosition.due` and appends it to `due`, earliest
    /// slot first. The caller checks each still marked `due` (one checked earlier may
    /// have closed another) and schedules it again if it has a next deadline.
    mutating func takeDue(now: UInt64, into due: inout [any DeadlineOwner]) {
        let nowTick = now / resolution
        guard nowTick >= cursor else { return }
        defer { cursor = nowTick + 1 }
        guard count > 0, earliest <= nowTick else {
            if count == 0 { earliest = .max }
            return
        }
        // Ticks cursor...nowTick, each slot at most once.
        let span = Swift.min(nowTick - cursor + 1, UInt64(slotCount))
        var newEarliest = UInt64.max
        var visited: UInt64 = 0
        var slot = Int(cursor & UInt64(slotCount - 1))
        while visited < span {
            // Jump over empty slots a word at a time.
            let word = occupied[slot >> 6] >> UInt64(slot & 63)
            if word == 0 {
                let skip = UInt64(64 - (slot & 63))
                visited += skip
                slot = (slot + Int(skip)) & (slotCount - 1)
                continue
            }
            let gap = UInt64(word.trailingZeroBitCount)
            if gap > 0 {
                visited += gap
                slot = (slot + Int(gap)) & (slotCount - 1)
                continue
            }
            var i = 0
            while i < slots[slot].count {
                let entry = slots[slot][i]
                if entry.tick <= nowTick {
                    remove(entry.owner)   // swaps the last entry into i
                    entry.owner.deadlinePosition = .due
                    due.append(entry.owner)
                } else {
                    if entry.tick < newEarliest { newEarliest = entry.tick }
                    i += 1
                }
            }
            visited += 1
            slot = (slot + 1) & (slotCount - 1)
        }
        // The slots not visited keep entries of later ticks; find the earliest of them
        // only as far as the first non-empty slot after `nowTick` (a lower bound is
        // enough: an early wake-up finds nothing and asks again).
        if count > 0 {
            earliest = Swift.min(newEarliest, firstOccupiedTick(after: nowTick))
        } else {
            earliest = .max
        }
    }

    /// The first tick after `tick` whose slot holds an entry (of that round or a
    /// later one), `.max` when none.
    private func firstOccupiedTick(after tick: UInt64) -> UInt64 {
        var t = tick + 1
        var scanned = 0
        while scanned < slotCount {
            let slot = Int(t & UInt64(slotCount - 1))
            let word = occupied[slot >> 6] >> UInt64(slot & 63)
            if word != 0 {
                let gap = word.trailingZeroBitCount
                if scanned + gap < slotCount { return t + UInt64(gap) }
                return .max
            }
            let skip = 64 - (slot & 63)
            scanned += skip
            t += UInt64(skip)
        }
        return .max
    }
}
