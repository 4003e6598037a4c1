import CLiburing
/// Fixed-size chunks for outbound bytes (write queues, file reads), owned by one loop.
///
/// Ownership: the pool owns slabs of `chunkSize × slabChunks` bytes that are never
/// moved or freed while the loop runs (the kernel may hold a pointer into any chunk).
/// A chunk is in the pool, with the application (queued in a write queue, or held as a
/// `PooledBuffer`), or with the kernel (inside an in-flight send or read); each move is
/// recorded in the loop's ledger. Taking from an empty pool grows it by one slab (the
/// only allocation, counted in the ledger's capacity) up to `maxChunks`.
final class BufferPool {
    let chunkSize: Int
    let slabChunks: Int
    let maxChunks: Int
    private var slabs: [UnsafeMutableRawPointer] = []
    private var free: [Int32] = []
    private let ledger: Ledger

    init(chunkSize: Int, initialChunks: Int, maxChunks: Int, ledger: Ledger) {
        self.chunkSize = chunkSize
        self.slabChunks = 64
        self.maxChunks = Swift.max(maxChunks, 64)
        self.ledger = ledger
        free.reserveCapacity(self.maxChunks)
        while free.count < initialChunks { addSlab() }
    }

    deinit {
        for slab in slabs { slab.deallocate() }
    }

    private func addSlab() {
        let slab = UnsafeMutableRawPointer.allocate(byteCount: chunkSize * slabChunks, alignment: 4096)
        let base = Int32(slabs.count * slabChunks)
        slabs.append(slab)
        for i in (0..<Int32(slabChunks)).reversed() { free.append(base + i) }
        ledger.buffersAdded(.outbound, count: slabChunks, bytes: chunkSize * slabChunks)
    }

    var totalChunks: Int { slabs.count * slabChunks }
    var freeChunks: Int { free.count }

    /// The start of chunk `index`.
    @inline(__always)
    func base(_ index: Int32) -> UnsafeMutableRawPointer {
        slabs[Int(index) / slabChunks] + (Int(index) % slabChunks) * chunkSize
    }

    /// Takes a chunk for the application; nil when the pool is at `maxChunks`.
    @inline(__always)
    func take(holder: BufferHolder) -> Int32? {
        if free.isEmpty {
            guard totalChunks < maxChunks else { return nil }
            addSlab()
        }
        guard let index = free.popLast() else { return nil }
        ledger.move(.outbound, from: .pool, to: .application, key: Int(index), holder: holder)
        return index
    }

    /// Returns a chunk the application held.
    @inline(__always)
    func give(_ index: Int32) {
        ledger.move(.outbound, from: .application, to: .pool, key: Int(index), holder: .none)
        free.append(index)
    }

    /// Records that the kernel now reads or writes the chunk (or gave it back).
    @inline(__always)
    func lend(_ index: Int32, holder: BufferHolder) {
        ledger.move(.outbound, from: .application, to: .kernel, key: Int(index), holder: holder)
    }

    @inline(__always)
    func reclaim(_ index: Int32, holder: BufferHolder) {
        ledger.move(.outbound, from: .kernel, to: .application, key: Int(index), holder: holder)
    }
}
