import Torus

/// A subscriber that queues events for a task to take one at a time (the
/// server-sent-events stream uses it; a WebSocket face can too).
///
/// The queue is the core's `Inbox`, bounded: when `limit` events wait, the oldest is
/// dropped and counted, so a slow reader costs at most `limit` events of memory (the
/// bus cannot pause a router for one slow subscriber).
///
/// Threading: `deliver`, `finish` and `dropped` are loop thread only; `next` may be
/// awaited from any task (it hops to the loop), one waiter at a time.
public final class QueueSubscriber: HubSubscriber, @unchecked Sendable {
    public let loop: EventLoop
    /// Routers wanted (nil: all). Loop thread only (a new grant may narrow it).
    public var filter: Set<String>?
    public let limit: Int
    private let inbox: Inbox<HubEvent>

    /// Events dropped because the queue was full. Loop thread only.
    public var dropped: Int { inbox.dropped }

    /// What `next` returns.
    public enum Next: Sendable {
        case event(HubEvent)
        /// Nothing arrived within the wait (send a ping).
        case idle
        /// The bus closed, `finish` was called, or the waiting task was cancelled.
        case finished
    }

    public init(loop: EventLoop, filter: Set<String>?, limit: Int = 256) {
        self.loop = loop
        self.filter = filter
        self.limit = max(1, limit)
        inbox = Inbox(loop: loop, highWater: self.limit, overflow: .dropOldest)
    }

    public func wants(_ router: String) -> Bool { filter?.contains(router) ?? true }

    public func deliver(_ event: HubEvent) -> Bool {
        inbox.push(event, weight: 1)
    }

    public func busClosed() { finish() }

    /// Ends the subscription: queued events are dropped and a waiting `next` returns
    /// `.finished`. Loop thread only.
    public func finish() {
        inbox.discard()
    }

    /// The next event, `.idle` after `wait` without one, or `.finished`.
    public func next(wait: Duration) async -> Next {
        do {
            switch try await inbox.next(timeout: wait) {
            case .element(let event): return .event(event)
            case .idle: return .idle
            case .end: return .finished
            }
        } catch {
            // Cancelled, or a second waiter: either way this reader is done.
            return .finished
        }
    }
}
