/// One `SocketOptions` value shared by every connection a listener accepts: a
/// connection keeps a reference (8 bytes) instead of its own ~120-byte copy, which
/// is most of what an idle connection would otherwise remember about its settings.
/// Immutable, so safe from any thread.
final class SharedSocketOptions: Sendable {
    let value: SocketOptions

    init(_ value: SocketOptions) {
        self.value = value
    }
}
