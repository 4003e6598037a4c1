import CLiburing

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
final class BufferPool {
    let chunkSize: Int
    let slabChunks: Int
    let maxChunks: Int
    let initialSlabs: Int
    private var slabs: [UnsafeMutableRawPointer?] = []
    private var freeInSlab: [Int] = []
    @exclusivity(unchecked) private var free: [Int32] = []
    private var liveSlabs = 0
    private var lastTrim: UInt64 = 0
    private let ledger: Ledger

    init(chunkSize: Int, initialChunks: Int, maxChunks: Int, ledger: Ledger) {
        self.chunkSize = chunkSize
        self.slabChunks = 64
        self.maxChunks = Swift.max(maxChunks, 64)
        self.ledger = ledger
        initialSlabs = (initialChunks + 63) / 64
        free.reserveCapacity(self.maxChunks)
        for _ in 0..<initialSlabs { addSlab() }
    }

    deinit {
        for slab in slabs { slab?.deallocate() }
    }

    private func addSlab() {
        let slab = UnsafeMutableRawPointer.allocate(byteCount: chunkSize * slabChunks, alignment: 4096)
        let s: Int
        if let hole = slabs.firstIndex(where: { $0 == nil }) {
            s = hole
            slabs[s] = slab
        } else {
            s = slabs.count
            slabs.append(slab)
            freeInSlab.append(0)
        }
        freeInSlab[s] = slabChunks
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
        // A chunk that is out belongs to a live slab (trim frees only fully free slabs).
        slabs[Int(index) / slabChunks].unsafelyUnwrapped + (Int(index) % slabChunks) * chunkSize
    }

    /// Takes a chunk for the application; nil when the pool is at `maxChunks`.
    @inline(__always)
    func take(holder: BufferHolder) -> Int32? {
        if free.isEmpty {
            guard totalChunks < maxChunks else { return nil }
            addSlab()
        }
        guard let index = free.popLast() else { return nil }
        freeInSlab[Int(index) / slabChunks] -= 1
        ledger.move(.outbound, from: .pool, to: .application, key: Int(index), holder: holder)
        return index
    }

    /// Returns a chunk the application held.
    @inline(__always)
    func give(_ index: Int32) {
        ledger.move(.outbound, from: .application, to: .pool, key: Int(index), holder: .none)
        freeInSlab[Int(index) / slabChunks] += 1
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

    /// Frees fully free slabs beyond the initial ones, at most once a second.
    func trim(now: UInt64) {
        guard now &- lastTrim > 1_000_000_000 else { return }
        lastTrim = now
        var released = 0
        for s in initialSlabs..<slabs.count where slabs[s] != nil && freeInSlab[s] == slabChunks {
            slabs[s]?.deallocate()
            slabs[s] = nil
            freeInSlab[s] = 0
            liveSlabs -= 1
            released += 1
        }
        guard released > 0 else { return }
        free.removeAll { slabs[Int($0) / slabChunks] == nil }
        ledger.buffersRemoved(.outbound, count: released * slabChunks, bytes: released * slabChunks * chunkSize)
    }
}
