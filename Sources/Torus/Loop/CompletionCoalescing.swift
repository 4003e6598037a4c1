/// Opt-in: a busy loop waits for several completions per `io_uring_enter` instead of
/// returning as soon as one is ready.
///
/// By default a loop with nothing to do waits for **one** completion, so under load
/// most turns reap a few completions and enter the kernel again. With coalescing, a
/// loop whose last turn reaped at least two completions asks the kernel for twice as
/// many (at most ``maxCompletions``) and waits at most ``maxWait`` for them; a loop
/// that reaped fewer (idle, or one lone connection) waits for one, as without it.
///
/// It pays on servers with many connections each sending now and then (many
/// completions arrive within the window): fewer enters, and each reaps and submits
/// more. It costs latency: a completion may wait up to ``maxWait`` for others, and
/// a few closed-loop connections (each waiting for its answer before sending again)
/// cannot fill the window, so every turn waits the whole of it. The README's speed
/// section has the measurements. Off by default.
public struct CompletionCoalescing: Sendable, Equatable {
    /// The most completions one wait asks for.
    public var maxCompletions: Int
    /// The longest one wait holds completions back: the latency it may add.
    public var maxWait: Duration

    public init(maxCompletions: Int = 64, maxWait: Duration = .microseconds(50)) {
        self.maxCompletions = Swift.max(1, maxCompletions)
        self.maxWait = Swift.max(.zero, maxWait)
    }

    /// How many completions a waiting loop asks for after a turn that reaped
    /// `reapedLastTurn`: one for a quiet loop, twice the last turn's (bounded) for a
    /// busy one.
    func completionsToWaitFor(reapedLastTurn: Int) -> Int {
        reapedLastTurn < 2 ? 1 : Swift.min(maxCompletions, 2 * reapedLastTurn)
    }
}
