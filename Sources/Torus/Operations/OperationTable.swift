import CLiburing
/// A slab of operation slots, indexed by the low half of `user_data`.
///
/// `user_data` = generation << 32 | index. A slot's generation increases each time it
/// is freed, so a stale or duplicated CQE can never be dispatched to the operation
/// that reused the slot. Internal operations that carry no target (cancel, close)
/// use `user_data` values with the top bit set and the kind in the low bits.
///
/// A slot is freed only by the loop, only on the operation's final completion
/// (a multishot CQE without `F_MORE`). Growing the slab moves only the Swift side:
/// nothing the kernel touches lives here.
struct OperationTable {
    enum State: UInt8 {
        case free
        case inFlight
        /// The owner gave up (connection closed, task cancelled); the slot keeps the
        /// target alive until the kernel's final CQE arrives.
        case parked
    }

    struct Slot {
        var target: (any CompletionTarget)?
        var generation: UInt32
        var tag: UInt32
        var kind: OperationKind
        var state: State
        var nextFree: Int32
    }

    static let internalBit: UInt64 = 1 << 63

    private(set) var slots: [Slot] = []
    private var freeHead: Int32 = -1
    private(set) var live = 0

    init(capacity: Int) {
        slots.reserveCapacity(capacity)
        grow(to: capacity)
    }

    private mutating func grow(to count: Int) {
        let start = slots.count
        for i in start..<count {
            slots.append(Slot(target: nil, generation: 1, tag: 0, kind: .nop, state: .free,
                              nextFree: i + 1 < count ? Int32(i + 1) : freeHead))
        }
        freeHead = Int32(start)
    }

    @inline(__always)
    static func internalUserData(_ kind: OperationKind) -> UInt64 {
        internalBit | UInt64(kind.rawValue)
    }

    /// Takes a free slot for an operation owned by `target`; returns its `user_data`.
    @inline(__always)
    mutating func allocate(kind: OperationKind, target: any CompletionTarget, tag: UInt32) -> UInt64 {
        if freeHead < 0 { grow(to: Swift.max(64, slots.count * 2)) }
        let index = Int(freeHead)
        freeHead = slots[index].nextFree
        slots[index].target = target
        slots[index].tag = tag
        slots[index].kind = kind
        slots[index].state = .inFlight
        live += 1
        return UInt64(slots[index].generation) << 32 | UInt64(index)
    }

    /// The slot index for a `user_data`, or nil when it is stale.
    @inline(__always)
    func index(of userData: UInt64) -> Int? {
        let index = Int(truncatingIfNeeded: userData & 0xFFFF_FFFF)
        let generation = UInt32(truncatingIfNeeded: userData >> 32)
        guard index < slots.count, slots[index].state != .free,
              slots[index].generation == generation else { return nil }
        return index
    }

    /// Frees a slot on its final completion; returns the target to notify.
    @inline(__always)
    mutating func release(_ index: Int) -> (any CompletionTarget)? {
        let target = slots[index].target
        slots[index].target = nil
        slots[index].state = .free
        slots[index].generation &+= 1
        if slots[index].generation & 0x8000_0000 != 0 { slots[index].generation = 1 }
        slots[index].nextFree = freeHead
        freeHead = Int32(index)
        live -= 1
        return target
    }

    @inline(__always)
    mutating func park(_ index: Int) -> Bool {
        guard slots[index].state == .inFlight else { return false }
        slots[index].state = .parked
        return true
    }

    /// Every user_data still owned by the kernel (for shutdown).
    func liveUserData() -> [UInt64] {
        var result: [UInt64] = []
        for (i, slot) in slots.enumerated() where slot.state != .free {
            result.append(UInt64(slot.generation) << 32 | UInt64(i))
        }
        return result
    }
}
