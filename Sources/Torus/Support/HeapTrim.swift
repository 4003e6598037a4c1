import CLiburing
import Synchronization

/// Asks the allocator to give its free pages back to the kernel (glibc's
/// `malloc_trim`), for the whole process, off every loop thread.
///
/// `malloc_trim` walks every arena and takes each one's lock while it does: measured
/// here, 20–270 ms on a large, fragmented heap. Run on a loop thread, that stalls the
/// loop; run by every loop after its own burst, the trims queue up behind the arena
/// locks. So a loop only *requests* a trim (``HeapTrim/process``): the first request
/// in an interval hands one trim to the blocking pool, and requests while it runs, or
/// within `interval` of the last one, are folded into it (one trim covers every arena).
///
/// Thread-safe (atomics only); a request costs one load when a trim is not due.
public final class HeapTrim: Sendable {
    /// The process's trimmer: `malloc_trim(0)`, only when `malloc` is glibc's (under a
    /// sanitizer or a preloaded allocator glibc's arenas are not in use and must not
    /// be walked).
    public static let process = HeapTrim(enabled: torus_malloc_is_glibc() != 0) { _ = torus_malloc_trim() }

    /// The shortest time between two trims (nanoseconds).
    public let interval: UInt64
    private let enabled: Bool
    private let trim: @Sendable () -> Void
    /// When the last trim was handed out (monotonic nanoseconds; 0: never).
    private let lastStarted = Atomic<UInt64>(0)
    private let running = Atomic<Bool>(false)
    private let completed = Atomic<Int>(0)

    /// A trimmer running `trim` (on the blocking pool) at most once per `interval`.
    public init(interval: Duration = .seconds(1), enabled: Bool = true, trim: @escaping @Sendable () -> Void) {
        self.interval = interval.nanoseconds
        self.enabled = enabled
        self.trim = trim
    }

    /// Trims that have finished.
    public var trims: Int { completed.load(ordering: .relaxed) }

    /// Requests a trim at `now`; returns true when this request started one.
    @discardableResult
    public func request(now: UInt64 = MonotonicClock.now()) -> Bool {
        guard enabled else { return false }
        let last = lastStarted.load(ordering: .relaxed)
        guard last == 0 || now &- last >= interval else { return false }
        guard running.compareExchange(expected: false, desired: true, ordering: .acquiring).exchanged else {
            return false
        }
        lastStarted.store(now, ordering: .relaxed)
        BlockingPool.shared.submit { [self] in
            trim()
            completed.add(1, ordering: .relaxed)
            running.store(false, ordering: .releasing)
        }
        return true
    }
}
