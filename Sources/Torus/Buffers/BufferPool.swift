import CLiburing
import Glibc

/// Fixed-size chunks for outbound bytes (write queues, file reads), owned by one loop.
///
/// Ownership: the pool owns slabs of `chunkSize × slabChunks` bytes that are never
/// moved while any of their chunks is out (the kernel may hold a pointer into any
/// chunk). A chunk is in the pool, with the application (queued in a write queue, or
/// held as a `PooledBuffer`), or with the kernel (inside an in-flight send or read);
/// each move is recorded in the loop's ledger. Taking from an empty pool grows it by
/// one slab (counted in the ledger's capacity) up to `maxChunks`.
///
/// A burst (many slow readers) can grow the pool far past its usual size. `trim`
/// gives back slabs whose chunks are all free once the pool holds more than twice
/// what is in use, so a burst does not set the process's memory for its lifetime.
/// Free chunks are a stack (the most recently given back is taken first), so a small
/// working set stays hot; `sweep` gives back the pages of free chunks that nobody
/// took for a whole interval (`madvise(MADV_DONTNEED)`), in the slabs `trim` keeps.
final class BufferPool {
    /// One slab: its memory (nil once `trim` freed it; the index is reused), its free
    /// chunks, and one bit per chunk taken since its pages were last given back.
    struct Slab {
        var memory: UnsafeMutableRawPointer?
        var freeCount: Int
        var touched: UInt64
    }

    let chunkSize: Int
    let slabChunks: Int
    let maxChunks: Int
    let initialSlabs: Int
    // Touched by every take and give (loop thread only, never through overlapping
    // accesses): no dynamic exclusivity checks, and `RingBuffer`s rather than arrays,
    // so a take or give writes in place with no copy-on-write check.
    @exclusivity(unchecked) private var slabs = RingBuffer<Slab>(capacity: 4)
    /// The free chunks, a stack (`append` and `popLast`).
    @exclusivity(unchecked) private var free: RingBuffer<Int32>
    private var liveSlabs = 0
    private var lastTrim: UInt64 = 0
    /// The smallest the free stack has been since the last sweep: chunks below it
    /// were not taken for a whole interval.
    @exclusivity(unchecked) private var freeLowMark = 0
    private let ledger: Ledger

    init(chunkSize: Int, initialChunks: Int, maxChunks: Int, ledger: Ledger) {
        self.chunkSize = chunkSize
        self.slabChunks = 64
        self.maxChunks = Swift.max(maxChunks, 64)
        self.ledger = ledger
        initialSlabs = (initialChunks + 63) / 64
        free = RingBuffer(capacity: self.maxChunks)
        for _ in 0..<initialSlabs { addSlab() }
    }

    deinit {
        var s = 0
        while s < slabs.count {
            slabs[s].memory?.deallocate()
            s += 1
        }
    }

    private func addSlab() {
        let memory = UnsafeMutableRawPointer.allocate(byteCount: chunkSize * slabChunks, alignment: 4096)
        let slab = Slab(memory: memory, freeCount: slabChunks, touched: 0)
        var s = 0
        while s < slabs.count && slabs[s].memory != nil { s += 1 }
        if s < slabs.count { slabs[s] = slab } else { slabs.append(slab) }
        liveSlabs += 1
        let base = Int32(s * slabChunks)
        for i in (0..<Int32(slabChunks)).reversed() { free.append(base + i) }
        ledger.buffersAdded(.outbound, count: slabChunks, bytes: chunkSize * slabChunks)
    }

    var totalChunks: Int { liveSlabs * slabChunks }
    var freeChunks: Int { free.count }

    /// The start of chunk `index`.
    @inline(__always)
    func base(_ index: Int32) -> UnsafeMutableRawPointer {
        // Not from input: a chunk that is out belongs to a live slab (trim frees only fully free slabs).
        slabs[Int(index) / slabChunks].memory.unsafelyUnwrapped + (Int(index) % slabChunks) * chunkSize
    }

    /// Takes a chunk for the application; nil when the pool is at `maxChunks`.
    @inline(__always)
    func take(holder: BufferHolder) -> Int32? {
        if free.isEmpty {
            guard totalChunks < maxChunks else { return nil }
            addSlab()
        }
        guard let index = free.popLast() else { return nil }
        if free.count < freeLowMark { freeLowMark = free.count }
        slabs[Int(index) / slabChunks].freeCount -= 1
        slabs[Int(index) / slabChunks].touched |= 1 << UInt64(Int(index) % slabChunks)
        ledger.move(.outbound, from: .pool, to: .application, key: Int(index), holder: holder)
        return index
    }

    /// Returns a chunk the application held.
    @inline(__always)
    func give(_ index: Int32) {
        ledger.move(.outbound, from: .application, to: .pool, key: Int(index), holder: .none)
        slabs[Int(index) / slabChunks].freeCount += 1
        // Invariant: a slab never has more free chunks than it holds (a double give
        // stops here in debug builds, as the ledger's owner check does).
        assert(slabs[Int(index) / slabChunks].freeCount <= slabChunks && free.count < totalChunks,
               "outbound chunk #\(index) given back to a pool that already has it")
        free.append(index)
    }

    /// Records that the kernel now reads or writes the chunk.
    @inline(__always)
    func lend(_ index: Int32, holder: BufferHolder) {
        ledger.move(.outbound, from: .application, to: .kernel, key: Int(index), holder: holder)
    }

    /// Records that the kernel is done with the chunk.
    @inline(__always)
    func reclaim(_ index: Int32, holder: BufferHolder) {
        ledger.move(.outbound, from: .kernel, to: .application, key: Int(index), holder: holder)
    }

    /// True when there may be slabs to give back (cheap; the loop asks every turn).
    @inline(__always)
    var wantsTrim: Bool {
        liveSlabs > initialSlabs && free.count > 2 * (totalChunks - free.count) + initialSlabs * slabChunks
    }

    /// Gives back the pages of free chunks nobody took since the last sweep (called
    /// about once a second). Returns the bytes given back, and whether a later sweep
    /// may give back more (free chunks still touched).
    func sweep() -> (released: Int, more: Bool) {
        var released = 0
        let page = Int(sysconf(Int32(_SC_PAGESIZE)))
        if chunkSize % page == 0 {
            var i = 0
            while i < Swift.min(freeLowMark, free.count) {
                let index = Int(free[i])
                let s = index / slabChunks
                let bit: UInt64 = 1 << UInt64(index % slabChunks)
                if slabs[s].touched & bit != 0 {
                    slabs[s].touched &= ~bit
                    if madvise(base(Int32(index)), chunkSize, MADV_DONTNEED) == 0 { released += chunkSize }
                }
                i += 1
            }
        }
        freeLowMark = free.count
        var more = false
        var i = 0
        while !more && i < free.count {   // not for-in: it allocates in debug builds
            let index = Int(free[i])
            more = slabs[index / slabChunks].touched & (1 << UInt64(index % slabChunks)) != 0
            i += 1
        }
        return (released, more || wantsTrim)
    }

    /// Frees fully free slabs beyond the initial ones, at most once a second. Returns
    /// the bytes freed.
    @discardableResult
    func trim(now: UInt64) -> Int {
        guard now &- lastTrim > 1_000_000_000 else { return 0 }
        lastTrim = now
        var released = 0
        for s in initialSlabs..<slabs.count where slabs[s].memory != nil && slabs[s].freeCount == slabChunks {
            slabs[s].memory?.deallocate()
            slabs[s] = Slab(memory: nil, freeCount: 0, touched: 0)
            liveSlabs -= 1
            released += 1
        }
        guard released > 0 else { return 0 }
        // Drops the freed slabs' chunks from the free stack, keeping the others' order.
        var kept = 0
        for i in 0..<free.count where slabs[Int(free[i]) / slabChunks].memory != nil {
            free[kept] = free[i]
            kept += 1
        }
        while free.count > kept { _ = free.popLast() }
        freeLowMark = Swift.min(freeLowMark, free.count)
        ledger.buffersRemoved(.outbound, count: released * slabChunks, bytes: released * slabChunks * chunkSize)
        return released * slabChunks * chunkSize
    }
}
