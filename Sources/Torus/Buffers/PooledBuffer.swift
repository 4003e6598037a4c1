import CLiburing
/// A chunk of a loop's outbound pool, owned by whoever holds this handle.
///
/// `~Copyable`: exactly one owner at a time. Submitting an operation (a file read or
/// write) *consumes* the handle, so touching the bytes while the kernel owns them does
/// not compile; the completion hands a new handle back. Give it back with
/// `EventLoop.release(_:)`. A handle dropped without being released is not freed by
/// a deinit (deinits of noncopyable types have had compiler bugs): the ledger shows it as held by
/// the application, with the call site that took it in debug builds.
///
/// The bytes live in the pool's slab, not in the handle, so moving the handle never
/// moves the memory the kernel may be using.
public struct PooledBuffer: ~Copyable {
    let index: Int32
    let base: UnsafeMutableRawPointer
    /// Bytes this chunk can hold.
    public let capacity: Int
    /// Bytes written so far (by the application or by a read).
    public var count: Int

    init(index: Int32, base: UnsafeMutableRawPointer, capacity: Int) {
        self.index = index
        self.base = base
        self.capacity = capacity
        self.count = 0
    }

    /// Appends bytes; returns how many fit.
    @discardableResult
    public mutating func append(_ bytes: UnsafeRawBufferPointer) -> Int {
        let n = Swift.min(bytes.count, capacity - count)
        if n > 0, let src = bytes.baseAddress {
            (base + count).copyMemory(from: src, byteCount: n)
            count += n
        }
        return n
    }

    @discardableResult
    public mutating func append(_ bytes: [UInt8]) -> Int {
        bytes.withUnsafeBytes { append($0) }
    }

    /// Reads the filled bytes.
    public func withUnsafeBytes<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        try body(UnsafeRawBufferPointer(start: base, count: count))
    }

    /// A copy of the filled bytes.
    public var bytes: [UInt8] { withUnsafeBytes { Array($0) } }
}
