import CLiburing
/// A growable FIFO over a power-of-two array, for loop-confined queues (write queues,
/// job lists, inboxes). Never shrinks: once warm, pushing and popping allocate nothing.
struct RingBuffer<Element> {
    private var storage: [Element?]
    private var head = 0
    private(set) var count = 0

    init(capacity: Int = 16) {
        var c = 1
        while c < capacity { c <<= 1 }
        storage = Array(repeating: nil, count: c)
    }

    var isEmpty: Bool { count == 0 }

    @inline(__always)
    private var mask: Int { storage.count - 1 }

    mutating func append(_ element: Element) {
        if count == storage.count { grow() }
        storage[(head + count) & mask] = element
        count += 1
    }

    mutating func popFirst() -> Element? {
        guard count > 0 else { return nil }
        let e = storage[head]
        storage[head] = nil
        head = (head + 1) & mask
        count -= 1
        return e
    }

    mutating func popLast() -> Element? {
        guard count > 0 else { return nil }
        let i = (head + count - 1) & mask
        let e = storage[i]
        storage[i] = nil
        count -= 1
        return e
    }

    var first: Element? { count > 0 ? storage[head] : nil }

    /// Element `i` from the front (0 is the first).
    subscript(i: Int) -> Element {
        get {
            precondition(i < count)
            // swiftlint:disable:next force_unwrapping
            return storage[(head + i) & mask]!
        }
        set {
            precondition(i < count)
            storage[(head + i) & mask] = newValue
        }
    }

    mutating func removeAll() {
        while popFirst() != nil {}
    }

    private mutating func grow() {
        var bigger = [Element?](repeating: nil, count: storage.count * 2)
        for i in 0..<count { bigger[i] = storage[(head + i) & mask] }
        storage = bigger
        head = 0
    }
}
