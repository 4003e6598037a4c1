import Torus

/// A subscriber that queues events for a task to take one at a time (the
/// server-sent-events stream uses it; a WebSocket face can too).
///
/// The queue is bounded: when `limit` events wait, the oldest is dropped and
/// counted, so a slow reader costs at most `limit` events of memory.
///
/// Threading: state lives on `loop`; `next` may be awaited from any task (it hops
/// to the loop), one waiter at a time.
public final class QueueSubscriber: HubSubscriber, @unchecked Sendable {
    public let loop: EventLoop
    /// Routers wanted (nil: all).
    public let filter: Set<String>?
    public let limit: Int
    /// Events dropped because the queue was full.
    public private(set) var dropped = 0

    private var queue: [HubEvent] = []
    private var head = 0
    private var waiter: CheckedContinuation<Next, Never>?
    private var timer: Timer?
    private var finished = false

    /// What `next` returns.
    public enum Next: Sendable {
        case event(HubEvent)
        /// Nothing arrived within the wait (send a ping).
        case idle
        /// The bus closed or `finish` was called.
        case finished
    }

    public init(loop: EventLoop, filter: Set<String>?, limit: Int = 256) {
        self.loop = loop
        self.filter = filter
        self.limit = max(1, limit)
    }

    public func wants(_ router: String) -> Bool { filter?.contains(router) ?? true }

    public func deliver(_ event: HubEvent) -> Bool {
        guard !finished else { return false }
        if let w = waiter {
            waiter = nil
            timer?.cancel()
            timer = nil
            w.resume(returning: .event(event))
            return true
        }
        var kept = true
        if queue.count - head >= limit {
            head += 1
            dropped += 1
            kept = false
        }
        queue.append(event)
        if head > 64 && head * 2 > queue.count {
            queue.removeFirst(head)
            head = 0
        }
        return kept
    }

    public func busClosed() { finish() }

    /// Ends the subscription: a waiting `next` returns `.finished`. Loop thread only.
    public func finish() {
        guard !finished else { return }
        finished = true
        queue.removeAll()
        head = 0
        if let w = waiter {
            waiter = nil
            timer?.cancel()
            timer = nil
            w.resume(returning: .finished)
        }
    }

    /// The next event, `.idle` after `wait` without one, or `.finished`.
    public func next(wait: Duration) async -> Next {
        await withCheckedContinuation { (c: CheckedContinuation<Next, Never>) in
            loop.runOnLoop { [self] in
                if head < queue.count {
                    let e = queue[head]
                    head += 1
                    if head == queue.count {
                        queue.removeAll(keepingCapacity: queue.count <= 64)
                        head = 0
                    }
                    return c.resume(returning: .event(e))
                }
                if finished { return c.resume(returning: .finished) }
                precondition(waiter == nil, "QueueSubscriber.next: one waiter at a time")
                waiter = c
                timer = loop.schedule(after: wait) { [self] in
                    timer = nil
                    if let w = waiter {
                        waiter = nil
                        w.resume(returning: .idle)
                    }
                }
            }
        }
    }
}
