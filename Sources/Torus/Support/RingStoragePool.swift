/// Spare blocks for `RingBuffer`s that surrender their storage when empty (a loop's
/// write queues): a queue takes a block when it gets its first entry and gives it
/// back when it drains, so an idle connection holds no entry storage, and once warm a
/// message costs a pop and a push here, never a `malloc`.
///
/// A block given back keeps the capacity its queue grew it to; at most `maxSpare`
/// blocks are kept (the rest are freed), so the pool is bounded by the loop's busiest
/// moment, not by its connection count.
///
/// Ownership: the pool owns its spare blocks (uninitialised memory) and frees them in
/// `deinit`; a block handed out belongs to the taker until given back. `~Copyable`.
/// Loop thread only.
struct RingStoragePool<Element>: ~Copyable {
    typealias Block = (block: UnsafeMutablePointer<Element>, capacity: Int)

    let blockCapacity: Int
    let maxSpare: Int
    private var spare: [Block] = []

    init(blockCapacity: Int = 8, maxSpare: Int = 256) {
        self.blockCapacity = blockCapacity
        self.maxSpare = maxSpare
        spare.reserveCapacity(maxSpare)
    }

    deinit {
        var i = 0
        while i < spare.count {
            spare[i].block.deallocate()
            i += 1
        }
    }

    var spareCount: Int { spare.count }

    @inline(__always)
    mutating func take() -> Block {
        if let b = spare.popLast() { return b }
        return (UnsafeMutablePointer<Element>.allocate(capacity: blockCapacity), blockCapacity)
    }

    @inline(__always)
    mutating func give(_ b: Block) {
        if spare.count < maxSpare {
            spare.append(b)
        } else {
            b.block.deallocate()
        }
    }
}
