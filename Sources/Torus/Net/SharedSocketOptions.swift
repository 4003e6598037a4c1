/// One `SocketOptions` value shared by every connection a listener accepts: a
/// connection keeps a reference (8 bytes) instead of its own ~120-byte copy, which
/// is most of what an idle connection would otherwise remember about its settings.
/// Immutable, so safe from any thread.
final class SharedSocketOptions: Sendable {
    let value: SocketOptions
    /// `value.sendTimeout` in nanoseconds, converted once: the send timeout's clock
    /// starts each time a write queue stops being empty (a `Duration` conversion there
    /// cost more than the rest of starting it).
    let sendTimeoutNanoseconds: UInt64?

    init(_ value: SocketOptions) {
        self.value = value
        sendTimeoutNanoseconds = value.sendTimeout?.nanoseconds
    }
}
