import Synchronization

/// Live OpenSSL objects owned by TorusTLS, counted as they are made and freed: every
/// `SSL_CTX*` a ``TLSContext`` holds, every `SSL*` of a ``TLSEngine``, every
/// `SSL_SESSION*` of a ``TLSSession``. Tests expect all three at zero once their
/// contexts and engines are gone; a non-zero count after that is a leak.
public enum TLSResources {
    static let contexts = Atomic<Int>(0)
    static let engines = Atomic<Int>(0)
    static let sessions = Atomic<Int>(0)

    /// `SSL_CTX*` held now.
    public static var liveContexts: Int { contexts.load(ordering: .relaxed) }
    /// `SSL*` held now (one per engine).
    public static var liveEngines: Int { engines.load(ordering: .relaxed) }
    /// `SSL_SESSION*` held now (saved sessions for resumption).
    public static var liveSessions: Int { sessions.load(ordering: .relaxed) }
}
