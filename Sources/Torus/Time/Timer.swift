import CLiburing

/// A one-shot or repeating timer on the ring (`IORING_OP_TIMEOUT`).
///
/// Ownership: the timer owns the `__kernel_timespec` the kernel reads; the loop's
/// operation slot keeps the timer alive until the timeout's CQE, including after a
/// cancel (the cancelled timeout still completes, with `-ECANCELED`, and never fires
/// the callback). A repeating timer re-arms itself after each firing until
/// cancelled. Loop thread only, except `cancel()`, which hops to the loop.
public final class Timer: @unchecked Sendable, CompletionTarget, LoopResource {
    public let loop: EventLoop
    private let interval: UInt64
    private let repeats: Bool
    private var callback: ((Timer) -> Void)?
    private let spec = UnsafeMutablePointer<__kernel_timespec>.allocate(capacity: 1)
    private var userData: UInt64 = 0
    private var armed = false
    /// True once cancelled (or fired, for a one-shot timer).
    public private(set) var isDone = false

    init(loop: EventLoop, delay: Duration, repeats: Bool, _ callback: @escaping (Timer) -> Void) {
        self.loop = loop
        self.interval = delay.nanoseconds
        self.repeats = repeats
        self.callback = callback
        spec.initialize(to: __kernel_timespec())
    }

    deinit { spec.deallocate() }

    func arm() {
        spec.pointee.tv_sec = Int64(interval / 1_000_000_000)
        spec.pointee.tv_nsec = Int64(interval % 1_000_000_000)
        armed = true
        loop.register(self, as: .other)
        userData = loop.submit(.timeout, target: self) { sqe in
            io_uring_prep_timeout(sqe, spec, 0, 0)
        }
    }

    /// Stops the timer: the callback will not run again. Safe from any thread.
    public func cancel() {
        loop.runOnLoop { [self] in cancelOnLoop() }
    }

    func cancelOnLoop() {
        guard !isDone else { return }
        isDone = true
        callback = nil
        if armed {
            loop.cancelTimeout(userData)
        } else {
            loop.unregister(self, as: .other)
        }
    }

    func loopIsStopping() { cancelOnLoop() }

    func complete(_ completion: Completion, tag: UInt32, final: Bool, loop: EventLoop) -> Rearm {
        armed = false
        if isDone {
            loop.unregister(self, as: .other)
            return .done
        }
        // -ETIME is the timer expiring; anything else (-ECANCELED) means it did not.
        guard completion.result == -ETIME || completion.result == 0 else {
            isDone = true
            callback = nil
            loop.unregister(self, as: .other)
            return .done
        }
        if repeats {
            callback?(self)
            // Still wanted unless the callback cancelled it (then it is unregistered).
            return isDone ? .done : .rearm
        }
        isDone = true
        loop.unregister(self, as: .other)
        let body = callback
        callback = nil
        body?(self)
        return .done
    }

    func rearm(tag: UInt32, loop: EventLoop) { arm() }
}

extension EventLoop {
    /// Runs `body` once after `delay`. Loop thread only. Returns a handle to cancel.
    @discardableResult
    public func schedule(after delay: Duration, _ body: @escaping () -> Void) -> Timer {
        assertInLoop()
        let timer = Timer(loop: self, delay: delay, repeats: false) { _ in body() }
        timer.arm()
        return timer
    }

    /// Runs `body` every `interval` until the timer is cancelled. Loop thread only.
    @discardableResult
    public func scheduleRepeating(every interval: Duration, _ body: @escaping (Timer) -> Void) -> Timer {
        assertInLoop()
        let timer = Timer(loop: self, delay: interval, repeats: true, body)
        timer.arm()
        return timer
    }

    /// Suspends the calling task for `duration`, on the ring. Throws
    /// `CancellationError` promptly when the task is cancelled (the timeout is
    /// removed from the ring and its slot parked until the kernel confirms).
    public func sleep(for duration: Duration) async throws {
        let state = SleepState()
        try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (c: CheckedContinuation<Void, any Error>) in
                runOnLoop { [self] in
                    guard state.begin(c) else { return }
                    state.timer = schedule(after: duration) { state.finish(nil) }
                }
            }
        } onCancel: {
            runOnLoop { [self] in
                _ = self
                state.timer?.cancelOnLoop()
                state.finish(CancellationError())
            }
        }
    }
}

/// Loop-confined state of one `sleep`: the continuation is resumed exactly once.
private final class SleepState: @unchecked Sendable {
    var continuation: CheckedContinuation<Void, any Error>?
    var timer: Timer?
    var cancelledEarly = false
    var done = false

    func begin(_ c: CheckedContinuation<Void, any Error>) -> Bool {
        if cancelledEarly {
            c.resume(throwing: CancellationError())
            done = true
            return false
        }
        continuation = c
        return true
    }

    func finish(_ error: (any Error)?) {
        guard !done else { return }
        guard let c = continuation else {
            cancelledEarly = true
            return
        }
        done = true
        continuation = nil
        timer = nil
        if let error { c.resume(throwing: error) } else { c.resume() }
    }
}
