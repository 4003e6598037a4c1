/// The commands of a connection that wait for their replies, oldest first (replies
/// come in the order the commands were sent).
///
/// A FIFO over a power-of-two block of memory, concrete to its element: Torus's
/// `RingBuffer` does the same, but from this module its generic methods run
/// unspecialised (the element's metadata looked up, its value witnesses called for
/// each move): about 140 instructions per command of a pipelined client's ~2,000.
/// An array of optional slots (a uniqueness check per append and per pop, an
/// optional destroyed per slot written) saved 50 of them; moving commands in and out
/// of raw slots saves another 100. Warm, appending and popping allocate nothing.
///
/// Ownership: the queue owns its block and the commands in it; it is `~Copyable`,
/// so its one owner (a connection, on its loop thread) frees them, in `deinit`.
struct PendingCommands: ~Copyable {
    struct Command {
        /// When the reply is overdue (`MonotonicClock` nanoseconds).
        let deadline: UInt64
        let complete: (Result<RESPValue, RedisError>) -> Void
    }

    private var slots: UnsafeMutablePointer<Command>
    /// A power of two.
    private var capacity: Int
    /// Where the oldest command is.
    private var head = 0
    private(set) var count = 0

    init(capacity: Int = 16) {
        var c = 1
        while c < capacity { c <<= 1 }
        self.capacity = c
        slots = .allocate(capacity: c)
    }

    deinit {
        for i in 0..<count { slot(i).deinitialize(count: 1) }
        slots.deallocate()
    }

    var isEmpty: Bool { count == 0 }

    /// The oldest command's deadline; nil when none waits.
    var firstDeadline: UInt64? {
        count > 0 ? slot(0).pointee.deadline : nil
    }

    /// The `i`th waiting command's slot (0: the oldest); `i` below `capacity`.
    private func slot(_ i: Int) -> UnsafeMutablePointer<Command> {
        slots + ((head &+ i) & (capacity &- 1))
    }

    mutating func append(_ command: consuming Command) {
        if count == capacity { grow() }
        slot(count).initialize(to: command)
        count += 1
    }

    /// Removes and returns the oldest command (moved out of its slot, not copied).
    mutating func popFirst() -> Command? {
        guard count > 0 else { return nil }
        let command = slot(0).move()
        head = (head &+ 1) & (capacity &- 1)
        count -= 1
        return command
    }

    /// Twice the slots, the waiting commands moved to the front, in order.
    private mutating func grow() {
        let bigger = UnsafeMutablePointer<Command>.allocate(capacity: capacity * 2)
        for i in 0..<count { (bigger + i).moveInitialize(from: slot(i), count: 1) }
        slots.deallocate()
        slots = bigger
        capacity *= 2
        head = 0
    }
}
