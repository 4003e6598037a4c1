import CLiburing
/// Immutable bytes that many write queues may send at once without copying them per
/// connection (a broadcast frame encoded once).
///
/// Ownership: reference counted. Each write queue entry that points into it holds a
/// strong reference until the kernel has finished sending those bytes, so the memory
/// outlives every in-flight send that reads it. Immutable after init, hence Sendable.
public final class SharedBytes: @unchecked Sendable {
    private let storage: UnsafeMutableRawBufferPointer

    public init(_ bytes: UnsafeRawBufferPointer) {
        storage = .allocate(byteCount: Swift.max(bytes.count, 1), alignment: 16)
        if let src = bytes.baseAddress, bytes.count > 0 {
            storage.baseAddress?.copyMemory(from: src, byteCount: bytes.count)
        }
        count = bytes.count
    }

    public convenience init(_ bytes: [UInt8]) {
        self.init(capacity: bytes.count) { dst in
            bytes.withUnsafeBytes { src in
                dst.copyMemory(from: src)
                return src.count
            }
        }
    }

    /// Builds the bytes in place: `body` writes up to `capacity` bytes and returns the count.
    public init(capacity: Int, _ body: (UnsafeMutableRawBufferPointer) -> Int) {
        storage = .allocate(byteCount: Swift.max(capacity, 1), alignment: 16)
        count = Swift.min(capacity, body(UnsafeMutableRawBufferPointer(rebasing: storage[0..<capacity])))
    }

    public let count: Int

    var baseAddress: UnsafeRawPointer {
        // Not from input: allocate(byteCount:) with a positive count (init asks for at least 1)
        // always has a base address.
        UnsafeRawPointer(storage.baseAddress.unsafelyUnwrapped)
    }

    public func withUnsafeBytes<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        try body(UnsafeRawBufferPointer(start: storage.baseAddress, count: count))
    }

    deinit { storage.deallocate() }
}
