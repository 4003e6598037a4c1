import Glibc

/// The one queue between a producer on a loop thread (a receive path, a parser, an
/// event bus) and **one** consumer task that awaits its elements: the async face of a
/// connection, an HTTP request or response body, a WebSocket's messages, a stream of
/// hub events.
///
/// Each element carries a weight (its bytes). When the queued weight rises above
/// `highWater` the inbox asks its producer to pause (`onPressure(.pause)`: stop
/// reading the socket, so TCP flow control slows the peer); when the consumer has
/// taken it back down to `lowWater` it asks it to resume. An inbox whose producer
/// cannot pause (`Overflow.dropOldest`) instead drops the oldest elements beyond
/// `highWater` and counts them, so a slow consumer costs bounded memory.
///
/// The consumer gets the queued elements in order, then the end (`nil`) or the
/// producer's error. Cancelling the awaiting task ends that wait with
/// `CancellationError` and leaves the queue as it was.
///
/// Threading: the producer side, `count`, `weight` and `dropped` are loop thread only
/// (asserted in debug builds); `next` may be called from any task (it hops to the
/// loop, and resumes from it), one waiter at a time.
public final class Inbox<Element: Sendable>: @unchecked Sendable {
    /// What the inbox asks of its producer.
    public enum Pressure: Sendable {
        /// Stop producing (the queued weight rose above the high water mark).
        case pause
        /// Produce again (the consumer took the weight down to the low water mark).
        case resume
    }

    /// What the inbox does above its high water mark.
    public enum Overflow: Sendable {
        /// Keep everything and ask the producer to pause.
        case backpressure
        /// Drop the oldest elements beyond the mark (for producers that cannot pause).
        case dropOldest
    }

    /// What a wait with a timeout returns.
    public enum Next: Sendable {
        case element(Element)
        /// Nothing arrived within the wait.
        case idle
        /// The producer finished.
        case end
    }

    /// Whether the producer still produces.
    private enum Phase {
        case open
        case finished((any Error)?)
    }

    /// A consumer suspended in `next`, with the token its cancellation carries.
    private struct Waiter {
        let continuation: CheckedContinuation<Next, any Error>
        let token: WaitToken
        var timer: Timer?
    }

    public let loop: EventLoop
    public let highWater: Int
    public let lowWater: Int
    public let overflow: Overflow
    /// Runs on the loop thread when the producer should pause or resume. Set it before
    /// the first `push` (an owner that the closure refers to sets it after its own init).
    public var onPressure: ((Pressure) -> Void)?

    /// Allocated at the first push (many inboxes never see one: a WebSocket whose
    /// messages all go to callbacks, a request without a body).
    private var items = RingBuffer<(element: Element, weight: Int)>(unallocated: ())
    private var queuedWeight = 0
    private var phase = Phase.open
    private var waiter: Waiter?
    private var pausedProducer = false
    private var droppedCount = 0

    /// An inbox on `loop`. `lowWater` defaults to half of `highWater`. `onPressure`
    /// runs on the loop thread when the producer should pause or resume.
    public init(loop: EventLoop, highWater: Int, lowWater: Int? = nil, overflow: Overflow = .backpressure,
                onPressure: ((Pressure) -> Void)? = nil) {
        self.loop = loop
        self.highWater = max(1, highWater)
        self.lowWater = min(self.highWater, max(0, lowWater ?? self.highWater / 2))
        self.overflow = overflow
        self.onPressure = onPressure
    }

    // MARK: Producer (loop thread)

    /// Elements waiting for the consumer. Loop thread only.
    public var count: Int { loop.assertInLoop(); return items.count }
    /// Their total weight. Loop thread only.
    public var weight: Int { loop.assertInLoop(); return queuedWeight }
    /// Elements dropped by `Overflow.dropOldest`. Loop thread only.
    public var dropped: Int { loop.assertInLoop(); return droppedCount }
    /// True once `finish` was called. Loop thread only.
    public var isFinished: Bool {
        loop.assertInLoop()
        if case .finished = phase { return true }
        return false
    }
    /// True while a consumer waits. Loop thread only.
    public var hasWaiter: Bool { loop.assertInLoop(); return waiter != nil }

    /// Hands `element` to the waiting consumer, or queues it. Returns false (and drops
    /// it) once the inbox has finished, or when `dropOldest` dropped an element to
    /// make room (`dropped` counts those). Loop thread only.
    @discardableResult
    public func push(_ element: Element, weight: Int) -> Bool {
        loop.assertInLoop()
        guard case .open = phase else { return false }
        if items.isEmpty, let w = takeWaiter() {
            w.continuation.resume(returning: .element(element))
            return true
        }
        items.append((element, weight))
        queuedWeight += weight
        guard queuedWeight > highWater else { return true }
        switch overflow {
        case .backpressure:
            if !pausedProducer {
                pausedProducer = true
                onPressure?(.pause)
            }
            return true
        case .dropOldest:
            var kept = true
            while queuedWeight > highWater, items.count > 1, let oldest = items.popFirst() {
                queuedWeight -= oldest.weight
                droppedCount += 1
                kept = false
            }
            return kept
        }
    }

    /// Puts `element` back in front (bytes read past what a consumer wanted).
    /// Loop thread only.
    public func pushFront(_ element: Element, weight: Int) {
        loop.assertInLoop()
        var rest = RingBuffer<(element: Element, weight: Int)>(capacity: items.count + 1)
        rest.append((element, weight))
        while let e = items.popFirst() { rest.append(e) }
        items = rest
        queuedWeight += weight
    }

    /// No more elements: the consumer gets what is queued, then the end (or `error`).
    /// Idempotent: the first call decides. Loop thread only.
    public func finish(error: (any Error)? = nil) {
        loop.assertInLoop()
        guard case .open = phase else { return }
        phase = .finished(error)
        if items.isEmpty, let w = takeWaiter() { resumeAtEnd(w.continuation) }
    }

    /// Finishes and drops whatever is queued (the consumer gets the end or `error` at
    /// once). Loop thread only.
    public func discard(error: (any Error)? = nil) {
        loop.assertInLoop()
        items.removeAll()
        queuedWeight = 0
        finish(error: error)
    }

    // MARK: Consumer (any task)

    /// The next element, or nil once the producer has finished and everything queued
    /// was taken. Throws the producer's error after the queued elements, or
    /// `CancellationError` when the awaiting task is cancelled.
    public func next() async throws -> Element? {
        switch try await wait(timeout: nil) {
        case .element(let e): return e
        case .end, .idle: return nil
        }
    }

    /// Like `next()`, but returns `.idle` when nothing arrived within `timeout`.
    public func next(timeout: Duration) async throws -> Next {
        try await wait(timeout: timeout)
    }

    private func wait(timeout: Duration?) async throws -> Next {
        let token = WaitToken()
        return try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (c: CheckedContinuation<Next, any Error>) in
                loop.runOnLoop { [self] in take(c, token: token, timeout: timeout) }
            }
        } onCancel: {
            loop.runOnLoop { [self] in cancelWait(token) }
        }
    }

    private func take(_ c: CheckedContinuation<Next, any Error>, token: WaitToken, timeout: Duration?) {
        if token.cancelled {
            c.resume(throwing: CancellationError())
        } else if let first = items.popFirst() {
            queuedWeight -= first.weight
            if pausedProducer && queuedWeight <= lowWater {
                pausedProducer = false
                onPressure?(.resume)
            }
            c.resume(returning: .element(first.element))
        } else if case .finished = phase {
            resumeAtEnd(c)
        } else if waiter != nil {
            c.resume(throwing: IOError(errno: EBUSY, "Inbox.next: another consumer is waiting"))
        } else {
            var w = Waiter(continuation: c, token: token, timer: nil)
            if let timeout {
                w.timer = loop.schedule(after: timeout) { [self] in
                    guard let current = waiter, current.token === token else { return }
                    waiter = nil
                    current.continuation.resume(returning: .idle)
                }
            }
            waiter = w
        }
    }

    private func cancelWait(_ token: WaitToken) {
        token.cancelled = true
        guard let current = waiter, current.token === token else { return }
        _ = takeWaiter()
        current.continuation.resume(throwing: CancellationError())
    }

    private func takeWaiter() -> Waiter? {
        guard let w = waiter else { return nil }
        waiter = nil
        w.timer?.cancel()
        return w
    }

    private func resumeAtEnd(_ c: CheckedContinuation<Next, any Error>) {
        if case .finished(let error?) = phase { c.resume(throwing: error) } else { c.resume(returning: .end) }
    }

    deinit {
        // A consumer still waiting when the last reference goes would never resume.
        if let w = waiter {
            w.timer?.cancel()
            w.continuation.resume(throwing: IOError(errno: ECANCELED, "Inbox released while a consumer waited"))
        }
    }
}

/// Identifies one wait so a late cancellation cannot end a later one, and remembers a
/// cancellation that reached the loop before the wait did. Loop-confined.
final class WaitToken: @unchecked Sendable {
    var cancelled = false
}
