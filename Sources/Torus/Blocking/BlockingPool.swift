import CLiburing
import Synchronization

/// A small pool of threads for blocking work (EventMachine's `defer`): DNS, CPU-heavy
/// hashing, legacy blocking APIs. Results are delivered back on the caller's loop.
///
/// Ownership: the pool owns its threads for the life of the process; each work item
/// is owned by the queue until a worker takes it.
public final class BlockingPool: Sendable {
    /// The process-wide pool (2 threads: this machine class has 2 cores).
    public static let shared = BlockingPool(threads: 2)

    private let queue = Mutex<[@Sendable () -> Void]>([])
    private let available = Semaphore()
    private let workers = Atomic<Int>(0)
    /// Worker threads the system granted (fewer than asked at a thread or pid limit).
    public var threadCount: Int { workers.load(ordering: .relaxed) }

    /// Starts `threads` workers (at least one). When the system refuses every thread,
    /// work runs on the submitting thread instead (slow, but nothing is lost).
    public init(threads: Int) {
        for i in 0..<Swift.max(1, threads) {
            let worker = try? LoopThread.start(name: "torus-blk-\(i)") { [self] in
                while true {
                    available.wait()
                    let work = queue.withLock { $0.isEmpty ? nil : $0.removeFirst() }
                    work?()
                }
            }
            if worker != nil { workers.add(1, ordering: .relaxed) }
        }
    }

    /// Runs `work` on a pool thread.
    public func submit(_ work: @escaping @Sendable () -> Void) {
        guard threadCount > 0 else { return work() }
        queue.withLock { $0.append(work) }
        available.signal()
    }
}

extension EventLoop {
    /// Runs blocking `work` on the blocking pool and calls `then` with its result on
    /// this loop's thread.
    public func runBlocking<T: Sendable>(_ work: @escaping @Sendable () -> T,
                                         then: @escaping @Sendable (T) -> Void) {
        BlockingPool.shared.submit { [self] in
            let value = work()
            execute { then(value) }
        }
    }

    /// Runs blocking `work` on the blocking pool; the caller's task resumes on this loop
    /// when it prefers the loop as executor.
    public func offload<T: Sendable>(_ work: @escaping @Sendable () throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { (c: CheckedContinuation<T, any Error>) in
            BlockingPool.shared.submit { [self] in
                let result = Result { try work() }
                execute { c.resume(with: result) }
            }
        }
    }
}
