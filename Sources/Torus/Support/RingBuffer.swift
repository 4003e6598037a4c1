/// A growable FIFO over a power-of-two block of memory, for loop-confined queues
/// (write queues, inboxes). Never shrinks: once warm, pushing and popping allocate
/// nothing, and `subscript` reads and modifies elements in place (no copy, no
/// retain of what an element references, no copy-on-write check).
///
/// Ownership: the buffer owns its block and the elements in it; it is `~Copyable`,
/// so exactly one owner (a connection's write queue, an async reader's inbox) frees
/// them, in `deinit`. The unsafe pointer never leaves this type.
struct RingBuffer<Element>: ~Copyable {
    private var storage: UnsafeMutablePointer<Element>
    private var capacity: Int
    private var head = 0
    private(set) var count = 0

    init(capacity: Int = 16) {
        var c = 1
        while c < capacity { c <<= 1 }
        self.capacity = c
        storage = .allocate(capacity: c)
    }

    deinit {
        var i = 0
        while i < count {
            (storage + ((head + i) & (capacity - 1))).deinitialize(count: 1)
            i += 1
        }
        storage.deallocate()
    }

    var isEmpty: Bool { count == 0 }

    @inline(__always)
    private func slot(_ i: Int) -> UnsafeMutablePointer<Element> {
        storage + ((head + i) & (capacity - 1))
    }

    mutating func append(_ element: consuming Element) {
        if count == capacity { grow() }
        slot(count).initialize(to: element)
        count += 1
    }

    mutating func popFirst() -> Element? {
        guard count > 0 else { return nil }
        let e = slot(0).move()
        head = (head + 1) & (capacity - 1)
        count -= 1
        return e
    }

    mutating func popLast() -> Element? {
        guard count > 0 else { return nil }
        count -= 1
        return slot(count).move()
    }

    /// Element `i` from the front (0 is the first), read and modified in place.
    subscript(i: Int) -> Element {
        @inline(__always)
        _read {
            precondition(i >= 0 && i < count)
            yield slot(i).pointee
        }
        @inline(__always)
        _modify {
            precondition(i >= 0 && i < count)
            yield &slot(i).pointee
        }
    }

    mutating func removeAll() {
        while popFirst() != nil {}
    }

    private mutating func grow() {
        let bigger = UnsafeMutablePointer<Element>.allocate(capacity: capacity * 2)
        var i = 0
        while i < count {
            (bigger + i).moveInitialize(from: slot(i), count: 1)
            i += 1
        }
        storage.deallocate()
        storage = bigger
        capacity *= 2
        head = 0
    }
}
