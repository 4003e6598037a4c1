import CLiburing

/// An operating-system error: an `errno` value and what was being attempted.
///
/// io_uring reports errors as negative results in a completion; Torus turns them into
/// `IOError` at the edge where an application sees them, and never throws for the
/// normal end of a stream (EOF is a value, not an error).
public struct IOError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The positive `errno` value (`ECONNRESET`, `ETIMEDOUT`, …).
    public let errno: Int32
    /// What failed, for messages: a syscall or operation name.
    public let operation: String
    /// Set when the kernel refused what a loop cannot start without (io_uring
    /// disabled or blocked, a kernel too old): why, and how to enable it.
    public let refusal: KernelRefusal?

    public init(errno: Int32, _ operation: String) {
        self.errno = errno
        self.operation = operation
        self.refusal = nil
    }

    /// An error that stops a loop from starting, explained by `refusal`.
    public init(_ refusal: KernelRefusal, errno: Int32, _ operation: String) {
        self.errno = errno
        self.operation = operation
        self.refusal = refusal
    }

    /// Builds an error from a negative io_uring result.
    public init(result: Int32, _ operation: String) {
        self.init(errno: -result, operation)
    }

    public var description: String {
        let message = strerror(errno).map { String(cString: $0) } ?? "errno \(errno)"
        guard let refusal else { return "\(operation): \(message) (\(errno))" }
        return "\(operation): \(message) (\(errno)): \(refusal)"
    }

    /// The connection was reset or the peer vanished (ECONNRESET, EPIPE, ETIMEDOUT).
    public var isPeerGone: Bool {
        errno == ECONNRESET || errno == EPIPE || errno == ETIMEDOUT || errno == ECONNABORTED
            || errno == EHOSTUNREACH || errno == ENETUNREACH
    }

    public static func == (a: IOError, b: IOError) -> Bool { a.errno == b.errno }
}

/// Timeouts that Torus itself enforces (connect, idle, send).
public struct TimeoutError: Error, Sendable, Equatable, CustomStringConvertible {
    public let what: String
    public init(_ what: String) { self.what = what }
    public var description: String { "\(what) timed out" }
}
