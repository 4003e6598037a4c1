/// The commands of a connection that wait for their replies, oldest first (replies
/// come in the order the commands were sent).
///
/// A FIFO over a power-of-two array of slots, concrete to its element: Torus's
/// `RingBuffer` does the same, but from this module its generic methods run
/// unspecialised (the element's metadata looked up, its value witnesses called for
/// each move): about 140 instructions per command of a pipelined client's ~2,000,
/// against about 90 here. Warm, appending and popping allocate nothing. A plain value with one
/// owner (a connection, on its loop thread).
struct PendingCommands {
    struct Command {
        /// When the reply is overdue (`MonotonicClock` nanoseconds).
        let deadline: UInt64
        let complete: (Result<RESPValue, RedisError>) -> Void
    }

    private var slots: [Command?]
    /// Where the oldest command is in `slots`.
    private var head = 0
    private(set) var count = 0

    init(capacity: Int = 16) {
        var c = 1
        while c < capacity { c <<= 1 }
        slots = Array(repeating: nil, count: c)
    }

    var isEmpty: Bool { count == 0 }

    /// The oldest command's deadline; nil when none waits.
    var firstDeadline: UInt64? {
        count > 0 ? slots[head]?.deadline : nil
    }

    mutating func append(_ command: Command) {
        if count == slots.count { grow() }
        slots[(head &+ count) & (slots.count &- 1)] = command
        count += 1
    }

    /// Removes and returns the oldest command (moved out of its slot, not copied).
    mutating func popFirst() -> Command? {
        guard count > 0 else { return nil }
        let command = slots[head].take()
        head = (head &+ 1) & (slots.count &- 1)
        count -= 1
        return command
    }

    /// Twice the slots, the waiting commands moved to the front, in order.
    private mutating func grow() {
        var bigger = [Command?](repeating: nil, count: slots.count * 2)
        for i in 0..<count { bigger[i] = slots[(head + i) & (slots.count - 1)].take() }
        slots = bigger
        head = 0
    }
}
