import Glibc

/// The loop's scratch for `sendmsg`: a fixed block of message slots (one `msghdr` and
/// 64 `iovec`s each), lent to write queues while they gather a send and reclaimed all
/// at once when the kernel has consumed every SQE that points at them.
///
/// Why a loop owns it: the kernel copies a `sendmsg`'s header and iovecs when it
/// consumes the SQE (`IORING_FEAT_SUBMIT_STABLE`), so the memory is needed only from
/// `gather` to the next submit that leaves the SQ empty. An idle connection holds none
/// of it (before, each write queue kept ~1 KiB of its own).
///
/// Reclaiming: the loop calls `reclaimAll()` after an `io_uring_enter` when no SQE is
/// left in the SQ and none waits in its deferred list (a submit refused with `-EBUSY`
/// keeps every slot taken until its SQE really went to the kernel).
///
/// Exhaustion: `take()` answers nil when every slot is out in this window; the queue
/// then sends its front entry alone with a plain `send` (no slot needed), so progress
/// never depends on the arena.
///
/// Ownership: the arena owns its block; `~Copyable`, freed in `deinit`; the pointers
/// it hands out are valid until `reclaimAll()`. Loop thread only.
struct SendMessageArena: ~Copyable {
    static let iovecsPerSlot = 64

    let capacity: Int
    private let messages: UnsafeMutablePointer<msghdr>
    private let iovecs: UnsafeMutablePointer<iovec>
    /// Slots `0..<taken` are out (bump allocation).
    private(set) var taken = 0
    /// `take()` calls answered nil (the loop had more multi-entry sends in one window
    /// than slots). For tests and tuning.
    private(set) var refusals = 0

    init(slots: Int) {
        capacity = Swift.max(1, slots)
        messages = .allocate(capacity: capacity)
        messages.initialize(repeating: msghdr(), count: capacity)
        iovecs = .allocate(capacity: capacity * Self.iovecsPerSlot)
        var i = 0
        while i < capacity {
            messages[i].msg_iov = iovecs + i * Self.iovecsPerSlot
            i += 1
        }
    }

    deinit {
        messages.deinitialize(count: capacity)
        messages.deallocate()
        iovecs.deallocate()
    }

    /// A message slot whose `msg_iov` holds `iovecsPerSlot` entries, or nil when all
    /// are out until the next reclaim.
    @inline(__always)
    mutating func take() -> UnsafeMutablePointer<msghdr>? {
        guard taken < capacity else {
            refusals &+= 1
            return nil
        }
        let m = messages + taken
        taken += 1
        return m
    }

    /// Every slot is free again (the kernel consumed every SQE pointing at one).
    @inline(__always)
    mutating func reclaimAll() { taken = 0 }
}
