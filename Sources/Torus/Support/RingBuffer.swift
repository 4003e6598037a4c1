/// A growable FIFO over a power-of-two block of memory, for loop-confined queues
/// (write queues, inboxes). Never shrinks: once warm, pushing and popping allocate
/// nothing, and `subscript` reads and modifies elements in place (no copy, no
/// retain of what an element references, no copy-on-write check).
///
/// A buffer can also start without a block (`init(unallocated:)`), adopt one from a
/// pool when it gets its first element, and surrender it again once empty: that is
/// how an idle write queue holds no entry storage (`RingStoragePool`).
///
/// Ownership: the buffer owns its block and the elements in it; it is `~Copyable`,
/// so exactly one owner (a connection's write queue, an async reader's inbox) frees
/// them, in `deinit`, or surrenders the (empty) block to its pool.
///
/// Public, with its queueing methods `@inlinable`, so that a buffer in another module
/// (a Redis connection's waiting commands, an HTTP client's body chunks) is
/// specialised to its element there: unspecialised, each append and pop looked up the
/// element's metadata and called its value witnesses (~170 instructions of a
/// pipelined Redis command's ~1,500, counted by callgrind). `@inlinable` on a
/// `package` declaration compiled, but its body was not offered to the other
/// modules of the package, so it is `public`.
public struct RingBuffer<Element>: ~Copyable {
    @usableFromInline var storage: UnsafeMutablePointer<Element>
    /// 0: no block (`storage` is a placeholder never read or freed).
    @usableFromInline var capacity: Int
    @usableFromInline var head = 0
    @usableFromInline var storedCount = 0
    @inlinable public var count: Int { storedCount }

    @inlinable
    public init(capacity: Int = 16) {
        var c = 1
        while c < capacity { c <<= 1 }
        self.capacity = c
        storage = .allocate(capacity: c)
    }

    /// No block yet: `adopt` one before the first `append` (or let `append` allocate).
    package init(unallocated: Void) {
        capacity = 0
        // Not from input: a non-zero constant (the alignment, ≥ 1): the bit pattern is never nil.
        storage = UnsafeMutablePointer(bitPattern: MemoryLayout<Element>.alignment).unsafelyUnwrapped
    }

    deinit {
        var i = 0
        while i < count {
            (storage + ((head + i) & (capacity - 1))).deinitialize(count: 1)
            i += 1
        }
        if capacity > 0 { storage.deallocate() }
    }

    @inlinable public var isEmpty: Bool { count == 0 }
    /// True while the buffer holds a block.
    package var hasStorage: Bool { capacity > 0 }

    /// Takes a block of `capacity` (a power of two) uninitialised elements. Only
    /// without a block of its own.
    package mutating func adopt(_ block: UnsafeMutablePointer<Element>, capacity: Int) {
        // Not from input: blocks come from RingStoragePool, whose capacity is fixed.
        precondition(self.capacity == 0 && capacity > 0 && capacity & (capacity - 1) == 0)
        storage = block
        self.capacity = capacity
        head = 0
    }

    /// Gives up the block of an empty buffer (nil when it has none or is not empty);
    /// the buffer is then unallocated.
    package mutating func surrender() -> (block: UnsafeMutablePointer<Element>, capacity: Int)? {
        guard count == 0, capacity > 0 else { return nil }
        let out = (block: storage, capacity: capacity)
        capacity = 0
        head = 0
        return out
    }

    @inlinable @inline(__always)
    func slot(_ i: Int) -> UnsafeMutablePointer<Element> {
        storage + ((head + i) & (capacity - 1))
    }

    @inlinable
    public mutating func append(_ element: consuming Element) {
        if count == capacity { grow() }
        slot(count).initialize(to: element)
        storedCount += 1
    }

    @inlinable
    public mutating func popFirst() -> Element? {
        guard count > 0 else { return nil }
        let e = slot(0).move()
        head = (head + 1) & (capacity - 1)
        storedCount -= 1
        return e
    }

    @inlinable
    public mutating func popLast() -> Element? {
        guard count > 0 else { return nil }
        storedCount -= 1
        return slot(count).move()
    }

    /// Element `i` from the front (0 is the first), read and modified in place.
    @inlinable
    public subscript(i: Int) -> Element {
        @inline(__always)
        _read {
            // Not from input: callers index below `count` they just checked (a bounds check
            // kept); no index here is computed from received bytes.
            precondition(i >= 0 && i < count)
            yield slot(i).pointee
        }
        @inline(__always)
        _modify {
            // Not from input: the same checked indices as `_read`.
            precondition(i >= 0 && i < count)
            yield &slot(i).pointee
        }
    }

    @inlinable
    public mutating func removeAll() {
        while popFirst() != nil {}
    }

    /// Twice the block (at least 8), the elements moved to its front, in order. Not
    /// inlined: it runs once per doubling.
    @usableFromInline
    mutating func grow() {
        let newCapacity = Swift.max(capacity * 2, 8)
        let bigger = UnsafeMutablePointer<Element>.allocate(capacity: newCapacity)
        var i = 0
        while i < count {
            (bigger + i).moveInitialize(from: slot(i), count: 1)
            i += 1
        }
        if capacity > 0 { storage.deallocate() }
        storage = bigger
        capacity = newCapacity
        head = 0
    }
}
