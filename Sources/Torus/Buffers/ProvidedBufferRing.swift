import CLiburing
import Glibc

/// The provided buffer ring that multishot receives fill (`IORING_REGISTER_PBUF_RING`).
///
/// Ownership: the ring owns one contiguous allocation of `count × size` bytes and the
/// mmap'ed ring of buffer descriptors. A buffer is in one of three places:
/// - *posted*: in the kernel's ring, where any receive of the group may fill it;
/// - with the *application*: from the CQE that names it until the handler that saw the
///   bytes returns (or a write queue has sent it on);
/// - *spare*: back from the application, on a stack, not posted.
/// The ledger counts posted and spare alike as "pool".
///
/// Resident memory follows the bytes in flight, not the ring's size: only `target`
/// buffers are kept posted (the kernel consumes a ring in order, so posting all of
/// them would make every buffer resident sooner or later), refilled at each `commit`
/// from the top of the spare stack, so the buffers that go round are the few most
/// recently used. The target doubles when a turn consumes more than half of it or a
/// receive meets `-ENOBUFS`, and halves (once a second at most, see `sweep`) when the
/// busiest turn of the last second used less than a quarter of it. Spare buffers that
/// nobody took for a whole sweep interval are given back to the kernel
/// (`madvise(MADV_DONTNEED)`: their pages are freed, the address range stays ours and
/// reads as zeros when it is next used).
///
/// Posted buffers cannot be taken back from the kernel one by one, so after a burst
/// the ring still has the buffers posted while the target was high. Their *pages*
/// go back anyway (`givePostedBack`): the kernel consumes the ring in order from its
/// head, so `sweep` keeps the pages of the buffers the next interval is expected to
/// need (those nearest the head) and madvises the rest; the kernel's next write into
/// such a buffer faults in a fresh zeroed page. That is safe only while nothing can
/// be writing into a posted buffer: the ring is set up with
/// `IORING_SETUP_DEFER_TASKRUN`, so the kernel fills provided buffers only inside the
/// loop thread's own `io_uring_enter` (receives on sockets are polled, never punted
/// to io-wq), and every buffer it took there is named by a CQE the loop has reaped
/// once the CQ is empty and nothing overflowed. Without DEFER_TASKRUN (older
/// kernels) posted buffers keep their pages. When no receive is armed on the ring
/// any more (`armedReceives == 0`: the burst's connections are gone), `sweep` resets
/// it instead: unregistered (the kernel forgets its posted entries), every buffer
/// spare and given back, registered again with the fewest buffers posted.
///
/// Posting is batched: `commit()` publishes with one store before the loop's next
/// submit. An idle connection holds no buffer at all. Loop thread only.
///
/// liburing 2.3 has no `io_uring_setup_buf_ring`, so the ring is mapped and
/// registered by hand (`torus_setup_buf_ring` in the shim).
final class ProvidedBufferRing {
    let groupID: UInt16
    let count: Int
    let size: Int
    private let ring: Ring
    private var descriptors: UnsafeMutablePointer<io_uring_buf_ring>
    private let memory: UnsafeMutableRawPointer
    private let mask: Int32
    /// Buffers held by write queues (sent as they are, see `Connection.send(_: ReceivedBytes)`).
    @exclusivity(unchecked) var retained = 0
    private(set) var registered = true
    /// Receives armed on this ring's group and not yet finished (kept by `Connection`).
    @exclusivity(unchecked) var armedReceives = 0

    // The per-buffer state below is touched by every receive: `RingBuffer`s rather
    // than arrays, so a write lands in place with no copy-on-write check (a fixed-size
    // table is a ring buffer filled once, `head` 0).
    /// Spare buffers, most recently returned last (a stack: `append`, `popLast`).
    @exclusivity(unchecked) private var spare: RingBuffer<UInt16>
    /// Buffers in the kernel's ring not yet named by a CQE.
    @exclusivity(unchecked) private(set) var posted = 0
    /// How many buffers `commit` keeps posted.
    @exclusivity(unchecked) private(set) var target: Int
    /// Buffers CQEs named since the last commit, and the most in one turn since the last sweep.
    @exclusivity(unchecked) private var consumedThisTurn = 0
    @exclusivity(unchecked) private var busiestTurn = 0
    /// The smallest the spare stack has been since the last sweep: the buffers below
    /// it were not taken for a whole interval.
    @exclusivity(unchecked) private var spareLowMark: Int
    /// Per buffer: posted or written since its pages were last given back (so they may
    /// be resident).
    @exclusivity(unchecked) private var resident: RingBuffer<Bool>
    /// Per buffer: in the kernel's ring now.
    @exclusivity(unchecked) private var isPosted: RingBuffer<Bool>
    /// The buffer at each ring position (position & (count - 1)); the posted ones are
    /// the `posted` positions before `tailPosition`, oldest (the kernel's head) first.
    @exclusivity(unchecked) private var order: RingBuffer<UInt16>
    /// Positions written since the ring was registered (the ring's tail, wrapping).
    @exclusivity(unchecked) private var tailPosition = 0
    /// True when the kernel writes into posted buffers only inside the loop's own
    /// `io_uring_enter` (DEFER_TASKRUN): their pages may then be given back between
    /// two enters (`givePostedBack`).
    private let postedPagesMayGoBack: Bool
    /// Posted buffers whose pages were given back (for tests and the log).
    private(set) var postedBuffersGivenBack = 0
    /// Test hook: every `commit` gives back the pages of every posted buffer (the
    /// kernel then writes every byte it receives into a freshly faulted page).
    var givesBackPostedEveryCommit = false

    /// The fewest buffers kept posted.
    static let minimumTarget = 16

    init(ring: Ring, groupID: UInt16, count: Int, size: Int) throws(IOError) {
        // Not from input: the first ring's count is the configuration's; a ring added when
        // receives run dry doubles the total (still a power of two), capped at 32768 by the caller.
        precondition(count > 0 && count & (count - 1) == 0 && count <= 32768, "buffer count must be a power of two ≤ 32768")
        self.ring = ring
        self.groupID = groupID
        self.count = count
        self.size = size
        var err: Int32 = 0
        guard let br = torus_setup_buf_ring(ring.raw, UInt32(count), Int32(groupID), &err) else {
            throw IOError(result: err, "io_uring_register_buf_ring")
        }
        descriptors = br
        memory = .allocate(byteCount: count * size, alignment: 4096)
        mask = io_uring_buf_ring_mask(UInt32(count))
        spare = RingBuffer(capacity: count)
        resident = RingBuffer(capacity: count)
        isPosted = RingBuffer(capacity: count)
        order = RingBuffer(capacity: count)
        var bid = count
        while bid > 0 {
            bid -= 1
            spare.append(UInt16(bid))
            resident.append(false)
            isPosted.append(false)
            order.append(0)
        }
        spareLowMark = count
        postedPagesMayGoBack = ring.setupFlags & UInt32(IORING_SETUP_DEFER_TASKRUN) != 0
        target = Swift.min(count, 4 * Self.minimumTarget)
        commit()
    }

    /// The bytes of buffer `bid`, `length` long.
    @inline(__always)
    func bytes(_ bid: UInt16, length: Int) -> UnsafeMutableRawBufferPointer {
        UnsafeMutableRawBufferPointer(start: memory + Int(bid) * size, count: length)
    }

    /// A CQE named buffer `bid`: the kernel has taken it out of the ring.
    @inline(__always)
    func consumed(_ bid: UInt16) {
        isPosted[Int(bid)] = false
        resident[Int(bid)] = true   // written by the kernel, even if its pages had gone back
        posted -= 1
        consumedThisTurn += 1
    }

    /// Buffer `bid` is free again (posted at the next `commit` if the target wants it).
    @inline(__always)
    func recycle(_ bid: UInt16) {
        spare.append(bid)
    }

    /// A receive met `-ENOBUFS`. True when the target could grow (buffers were spare);
    /// false when every buffer is posted or out (the ring itself is too small).
    func ranDry() -> Bool {
        guard target < count else { return false }
        target = Swift.min(count, target * 2)
        return true
    }

    /// Tops the posted buffers up to the target from the top of the spare stack and
    /// publishes them with one store.
    @inline(__always)
    func commit() {
        if consumedThisTurn > 0 {
            if consumedThisTurn > busiestTurn { busiestTurn = consumedThisTurn }
            if consumedThisTurn * 2 > target && target < count { target = Swift.min(count, target * 2) }
            consumedThisTurn = 0
        }
        if posted < target && !spare.isEmpty {
            var added: Int32 = 0
            while posted < target, let bid = spare.popLast() {
                io_uring_buf_ring_add(descriptors, memory + Int(bid) * size, UInt32(size), bid, mask, added)
                order[(tailPosition &+ Int(added)) & (count - 1)] = bid
                resident[Int(bid)] = true
                isPosted[Int(bid)] = true
                posted += 1
                added += 1
            }
            tailPosition &+= Int(added)
            if spare.count < spareLowMark { spareLowMark = spare.count }
            io_uring_buf_ring_advance(descriptors, added)
        }
        if givesBackPostedEveryCommit { _ = givePostedBack(keeping: 0) }
    }

    /// Once a second or so: lowers the target toward what the last interval needed and
    /// gives back the pages of spare buffers nobody took during it. Returns the bytes
    /// given back, and whether a later sweep may give back more (spare buffers still
    /// resident).
    func sweep() -> (released: Int, more: Bool) {
        let wanted = Swift.max(Self.minimumTarget, busiestTurn * 4)
        if wanted < target { target = Swift.max(wanted, target / 2) }
        busiestTurn = 0
        var released = 0
        // Posted buffers past what the last interval needed whose pages could not go
        // back now (completions not reaped yet): a later sweep tries again.
        var postedLeft = false
        if armedReceives == 0 && consumedThisTurn == 0 && posted > Self.minimumTarget && registered {
            released += resetPosted()
        } else if posted > wanted {
            let given = givePostedBack(keeping: wanted)
            released += given.released
            postedLeft = !given.done
        }
        var i = 0
        while i < spareLowMark {
            released += giveBack(Int(spare[i]))
            i += 1
        }
        spareLowMark = spare.count
        // The target still shrinking, or a reset due once the last receive ends.
        var more = postedLeft || target > Self.minimumTarget || (armedReceives == 0 && posted > Self.minimumTarget)
        i = 0
        while !more && i < spare.count {   // not for-in: it allocates in debug builds
            more = resident[Int(spare[i])]
            i += 1
        }
        return (released, more)
    }

    /// Gives back the pages of the posted buffers past the first `keep` in ring order
    /// (the kernel takes the ring's buffers in that order, so the first ones are the
    /// next to be written). Returns the bytes given back, and false in `done` when
    /// nothing could be given back now.
    ///
    /// Safe only while nothing writes into a posted buffer behind the loop's back: the
    /// ring is set up with DEFER_TASKRUN (the kernel fills buffers only inside the
    /// loop thread's `io_uring_enter`, and this runs between two), the CQ is empty
    /// and nothing overflowed (every buffer the kernel took has been named by a CQE
    /// the loop reaped, so `isPosted` is exact). Otherwise it gives nothing back.
    func givePostedBack(keeping keep: Int) -> (released: Int, done: Bool) {
        guard postedPagesMayGoBack, registered, posted > keep else { return (0, true) }
        guard io_uring_cq_ready(ring.raw) == 0, !ring.hasOverflow else { return (0, false) }
        var released = 0
        var position = tailPosition &- posted &+ keep
        var left = posted - keep
        while left > 0 {
            let bid = Int(order[position & (count - 1)])
            let bytes = giveBack(bid)
            if bytes > 0 {
                released += bytes
                postedBuffersGivenBack += 1
            }
            position &+= 1
            left -= 1
        }
        return (released, true)
    }

    /// Gives back the pages of spare buffer `bid` if it may be resident; returns the bytes.
    private func giveBack(_ bid: Int) -> Int {
        guard resident[bid] else { return 0 }
        resident[bid] = false
        // Only whole pages inside the buffer (a buffer may be smaller than a page).
        let page = Int(sysconf(Int32(_SC_PAGESIZE)))
        let start = memory + bid * size
        let first = (Int(bitPattern: start) + page - 1) & ~(page - 1)
        let end = (Int(bitPattern: start) + size) & ~(page - 1)
        guard end > first, madvise(UnsafeMutableRawPointer(bitPattern: first), end - first, MADV_DONTNEED) == 0 else {
            return 0
        }
        return end - first
    }

    /// With no receive armed on the group: unregisters the ring (the kernel drops its
    /// posted entries, which no request can be using), makes every posted buffer spare
    /// and gives back every spare buffer (nothing can be using them), then registers
    /// the ring again with the fewest buffers posted. Returns the bytes given back.
    /// When registering again fails (the kernel refused memory) the ring is left
    /// unregistered and the loop registers a fresh one for new receives
    /// (`EventLoop.housekeep`).
    private func resetPosted() -> Int {
        _ = torus_free_buf_ring(ring.raw, descriptors, UInt32(count), Int32(groupID))
        var err: Int32 = 0
        guard let br = torus_setup_buf_ring(ring.raw, UInt32(count), Int32(groupID), &err) else {
            registered = false
            return 0
        }
        descriptors = br
        tailPosition = 0
        target = Self.minimumTarget
        // The buffers that were posted go under the spare stack (the least recently used).
        var reordered = RingBuffer<UInt16>(capacity: count)
        var bid = 0
        while bid < count {
            if isPosted[bid] {
                isPosted[bid] = false
                reordered.append(UInt16(bid))
            }
            bid += 1
        }
        while let bid = spare.popFirst() { reordered.append(bid) }
        spare = reordered
        posted = 0
        var released = 0
        var i = 0
        while i < spare.count {
            released += giveBack(Int(spare[i]))
            i += 1
        }
        commit()
        spareLowMark = spare.count
        return released
    }

    /// Bytes of the ring's buffer memory resident now, whoever holds the buffers
    /// (`mincore`: for tests and diagnostics). -1 when the kernel would not say.
    func residentBytes() -> Int {
        let page = Int(sysconf(Int32(_SC_PAGESIZE)))
        let pages = (count * size + page - 1) / page
        var vector = [UInt8](repeating: 0, count: pages)
        let rc = vector.withUnsafeMutableBufferPointer { mincore(memory, pages * page, $0.baseAddress) }
        guard rc == 0 else { return -1 }
        var resident = 0
        var i = 0
        while i < pages {
            if vector[i] & 1 != 0 { resident += 1 }
            i += 1
        }
        return resident * page
    }

    /// Unregisters the ring from the kernel (at loop shutdown, with no receive in flight).
    func unregister() {
        guard registered else { return }
        registered = false
        _ = torus_free_buf_ring(ring.raw, descriptors, UInt32(count), Int32(groupID))
    }

    deinit {
        unregister()
        memory.deallocate()
    }
}
