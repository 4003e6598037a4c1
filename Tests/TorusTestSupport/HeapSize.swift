import Glibc

/// The heap block size of `object` (glibc's `malloc_usable_size`, found at run time:
/// Swift's Glibc module does not export `<malloc.h>`), or nil when the allocator
/// does not provide it. For tests that bound what a long-lived object costs.
public func heapBlockSize(of object: AnyObject) -> Int? {
    typealias UsableSize = @convention(c) (UnsafeMutableRawPointer?) -> Int
    // RTLD_DEFAULT is the null handle on glibc.
    guard let symbol = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "malloc_usable_size") else { return nil }
    let usableSize = unsafeBitCast(symbol, to: UsableSize.self)
    return usableSize(Unmanaged.passUnretained(object).toOpaque())
}

/// How much more than the object's own size `heapBlockSize` may report: glibc hands
/// out a free chunk whole when splitting it would leave less than its minimum chunk
/// (32 bytes), so the same object measures up to that much larger from run to run.
/// Bounds on `heapBlockSize` add it.
public let heapBlockSlack = 32
