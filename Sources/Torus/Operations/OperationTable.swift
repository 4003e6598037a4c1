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
///
/// The slots live in memory the table allocates itself, not in an `Array`: each
/// operation writes its slot on submission and on its final completion, and an array
/// would first check, on every write, that its storage is not shared (a call into the
/// runtime, several per request on a busy server). The table is `~Copyable`, so its
/// one owner (the loop) frees that memory, in `deinit`; indices are checked against
/// `capacity` where they come from outside (a CQE's `user_data`), and asserted elsewhere.
struct OperationTable: ~Copyable {
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

    /// `capacity` slots, all initialised.
    private var slots: UnsafeMutablePointer<Slot>
    private(set) var capacity = 0
    private var freeHead: Int32 = -1
    #if DEBUG
    /// Debug builds: the fd each live slot's SQE names, and how many live slots name
    /// each fd, so closing an fd with an operation still in flight on it stops there.
    private var slotFD: [Int32] = []
    private var liveOnFD: [Int32] = []
    #endif

    init(capacity: Int) {
        slots = .allocate(capacity: 0)
        grow(to: Swift.max(capacity, 1))
    }

    deinit {
        slots.deinitialize(count: capacity)
        slots.deallocate()
    }

    /// Moves the slots into a larger block; the new ones go on the free list.
    private mutating func grow(to count: Int) {
        let start = capacity
        let grown = UnsafeMutablePointer<Slot>.allocate(capacity: count)
        grown.moveInitialize(from: slots, count: start)
        slots.deallocate()
        slots = grown
        for i in start..<count {
            (slots + i).initialize(to: Slot(target: nil, generation: 1, tag: 0, kind: .nop, state: .free,
                                            nextFree: i + 1 < count ? Int32(i + 1) : freeHead))
            #if DEBUG
            slotFD.append(-1)
            #endif
        }
        capacity = count
        freeHead = Int32(start)
    }

    /// The kind of the operation in live slot `index`.
    @inline(__always)
    func kind(at index: Int) -> OperationKind {
        assert(index >= 0 && index < capacity)
        return slots[index].kind
    }

    /// The tag of the operation in live slot `index`.
    @inline(__always)
    func tag(at index: Int) -> UInt32 {
        assert(index >= 0 && index < capacity)
        return slots[index].tag
    }

    /// Whether live slot `index` is parked (its owner gave it up).
    @inline(__always)
    func isParked(_ index: Int) -> Bool {
        assert(index >= 0 && index < capacity)
        return slots[index].state == .parked
    }

    /// Lends out the target of live slot `index` for a completion that is not the
    /// operation's last (a multishot's CQE with `F_MORE`): moved out, so the call costs
    /// no reference-count pair (a copy of it did: an atomic retain and release on every
    /// multishot completion). The caller gives it back with ``returnLent(_:to:)`` right
    /// after the call. Meanwhile the slot holds nil and stays live; nothing reads a live
    /// slot's target but its final completion, which only the loop handles, later.
    @inline(__always)
    mutating func lend(_ index: Int) -> (any CompletionTarget)? {
        assert(index >= 0 && index < capacity && slots[index].state != .free)
        return slots[index].target.take()
    }

    /// Puts back the target ``lend(_:)`` took from live slot `index`.
    @inline(__always)
    mutating func returnLent(_ target: consuming any CompletionTarget, to index: Int) {
        assert(index >= 0 && index < capacity && slots[index].state != .free && slots[index].target == nil)
        slots[index].target = target
    }

    @inline(__always)
    static func internalUserData(_ kind: OperationKind) -> UInt64 {
        internalBit | UInt64(kind.rawValue)
    }

    /// An internal operation's `user_data` that also carries a 32-bit value (bits
    /// 8–39) for its completion: the slot a `close_direct` clears.
    @inline(__always)
    static func internalUserData(_ kind: OperationKind, carrying value: UInt32) -> UInt64 {
        internalBit | UInt64(value) << 8 | UInt64(kind.rawValue)
    }

    /// The value `internalUserData(_:carrying:)` put in.
    @inline(__always)
    static func carriedValue(_ userData: UInt64) -> UInt32 {
        UInt32(truncatingIfNeeded: userData >> 8)
    }

    /// Takes a free slot for an operation owned by `target`; returns its `user_data`.
    @inline(__always)
    mutating func allocate(kind: OperationKind, target: any CompletionTarget, tag: UInt32) -> UInt64 {
        if freeHead < 0 { grow(to: Swift.max(64, capacity * 2)) }
        let index = Int(freeHead)
        // Invariant: only a free slot is handed out (a parked one waits for its CQE).
        assert(slots[index].state == .free, "slot \(index) allocated while \(slots[index].state)")
        freeHead = slots[index].nextFree
        slots[index].target = target
        slots[index].tag = tag
        slots[index].kind = kind
        slots[index].state = .inFlight
        return UInt64(slots[index].generation) << 32 | UInt64(index)
    }

    /// The slot index for a `user_data`, or nil when it is stale.
    @inline(__always)
    func index(of userData: UInt64) -> Int? {
        let index = Int(truncatingIfNeeded: userData & 0xFFFF_FFFF)
        let generation = UInt32(truncatingIfNeeded: userData >> 32)
        guard index < capacity, slots[index].state != .free,
              slots[index].generation == generation else { return nil }
        return index
    }

    /// Frees a slot on its final completion; returns the target to notify.
    @inline(__always)
    mutating func release(_ index: Int) -> (any CompletionTarget)? {
        // Invariant: a slot is released once, on its final completion.
        assert(index >= 0 && index < capacity)
        assert(slots[index].state != .free, "slot \(index) released twice")
        let target = slots[index].target.take()
        slots[index].state = .free
        #if DEBUG
        let before = slots[index].generation
        untrack(index)
        #endif
        slots[index].generation &+= 1
        if slots[index].generation & 0x8000_0000 != 0 { slots[index].generation = 1 }
        #if DEBUG
        // Invariant: a generation only rises (but for the wrap after 2^31 reuses), so
        // a CQE of an earlier use can never name the slot's next operation.
        assert(slots[index].generation > before || before == 0x7FFF_FFFF,
               "slot \(index) generation went from \(before) to \(slots[index].generation)")
        #endif
        slots[index].nextFree = freeHead
        freeHead = Int32(index)
        return target
    }

    @inline(__always)
    mutating func park(_ index: Int) -> Bool {
        assert(index >= 0 && index < capacity)
        guard slots[index].state == .inFlight else { return false }
        slots[index].state = .parked
        return true
    }

    #if DEBUG
    /// Records the fd the SQE of `userData` names (debug builds).
    mutating func track(_ userData: UInt64, fd: Int32) {
        guard let index = index(of: userData) else { return }
        untrack(index)
        slotFD[index] = fd
        guard fd >= 0 else { return }
        if Int(fd) >= liveOnFD.count { liveOnFD += [Int32](repeating: 0, count: Int(fd) + 1 - liveOnFD.count + 64) }
        liveOnFD[Int(fd)] += 1
    }

    private mutating func untrack(_ index: Int) {
        let fd = slotFD[index]
        guard fd >= 0 else { return }
        slotFD[index] = -1
        liveOnFD[Int(fd)] -= 1
    }

    /// Live operations (in flight or parked) whose SQE names `fd`.
    func operations(on fd: Int32) -> Int { fd >= 0 && Int(fd) < liveOnFD.count ? Int(liveOnFD[Int(fd)]) : 0 }

    /// The live operations on `fd`, described for an assertion's message.
    func describeOperations(on fd: Int32) -> String {
        slotFD.indices.filter { slotFD[$0] == fd }.map { i in
            let s = slots[i]
            return "\(s.kind) \(s.state) tag \(s.tag) of \(s.target.map { "\(type(of: $0))" } ?? "nothing")"
        }.joined(separator: ", ")
    }
    #endif
}
