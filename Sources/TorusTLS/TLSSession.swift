import COpenSSL

/// A client's saved TLS session (`SSL_SESSION*`), offered on a later connection to
/// the same server for resumption (a ticket in TLS 1.3, or a ticket / session id in
/// TLS 1.2). Immutable once taken from an engine and safe to share between loops.
public final class TLSSession: @unchecked Sendable {
    // @unchecked: the pointer is only read (SSL_set_session takes its own
    // reference); OpenSSL's session refcount is atomic.
    let pointer: OpaquePointer

    /// Takes ownership of one reference to `pointer`.
    init(owning pointer: OpaquePointer) {
        self.pointer = pointer
        TLSResources.sessions.add(1, ordering: .relaxed)
    }

    deinit {
        SSL_SESSION_free(pointer)
        TLSResources.sessions.subtract(1, ordering: .relaxed)
    }
}
