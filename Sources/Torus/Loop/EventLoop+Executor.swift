import CLiburing
/// The loop as a Swift concurrency executor.
///
/// As a `SerialExecutor` it can isolate actors (`unownedExecutor`), and as a
/// `TaskExecutor` it runs a task's nonisolated async code: a task started with
/// `Task(executorPreference: loop)` runs on the loop thread from start to finish, so
/// `await connection.read()` resumes in the same iteration that received the bytes,
/// with no hop through the global pool. Jobs enqueued from the loop thread go to the
/// local queue; from other threads, to the inbox with a wake-up.
extension EventLoop: SerialExecutor, TaskExecutor {
    public func enqueue(_ job: consuming ExecutorJob) {
        let job = UnownedJob(job)
        if inLoop {
            enqueueLocal(task: job)
        } else {
            enqueueForeign(.task(job))
        }
    }

    public func asUnownedSerialExecutor() -> UnownedSerialExecutor {
        UnownedSerialExecutor(ordinary: self)
    }

    public func asUnownedTaskExecutor() -> UnownedTaskExecutor {
        UnownedTaskExecutor(ordinary: self)
    }

    public func isSameExclusiveExecutionContext(other: EventLoop) -> Bool {
        self === other
    }

    public func checkIsolated() {
        // Not from input: the loop-thread contract (the Swift runtime checking isolation).
        precondition(inLoop, "expected to run on Torus event loop \(index)")
    }
}

extension EventLoop {
    /// Runs `body` on this loop, as a task that prefers the loop as its executor, and
    /// returns its result to the caller (from any context).
    public func run<T: Sendable>(_ body: @escaping @Sendable () async throws -> T) async throws -> T {
        try await Task(executorPreference: self) { try await body() }.value
    }

    /// Runs `body` on the loop thread: now, when called there; else as a job.
    /// Async operations register their continuation through this, so they are
    /// correct from any isolation and cost no hop for tasks that prefer the loop.
    @inline(__always)
    public func runOnLoop(_ body: @escaping @Sendable () -> Void) {
        if inLoop { body() } else { execute(body) }
    }
}
