import CLiburing
/// The EventMachine-style face of a connection: the loop calls these as things happen.
///
/// All methods run on the connection's loop thread. A handler is owned by its
/// connection from `connected` until `closed` (the connection drops it right after
/// `closed`, breaking any reference cycle).
public protocol ConnectionHandler: AnyObject {
    /// The connection is open and receiving.
    func connected(_ connection: Connection)
    /// Bytes arrived. `bytes` is borrowed from the loop's provided buffer ring and goes
    /// back to the kernel when this returns: copy what you keep.
    func received(_ bytes: ReceivedBytes, from connection: Connection)
    /// The peer finished sending (FIN). The default closes after pending writes.
    func inputClosed(_ connection: Connection)
    /// The write queue drained below the low water mark after having been above the
    /// high water mark: produce more.
    func writable(_ connection: Connection)
    /// The connection is closed and its fd released; `error` says why (nil: an
    /// orderly close). Every buffer it held is back in its pool.
    func closed(_ connection: Connection, error: (any Error)?)
    /// A protocol layer's own deadlines (a WebSocket's ping and pong, a heartbeat)
    /// instead of a timer per connection, once the connection asked for it with
    /// ``Connection/watchLiveness(by:)``: called soon after that, then at the deadlines
    /// this returns (and whenever the connection's own deadlines are checked). Act on
    /// what is due and return the next deadline, or nil for none: the loop does not
    /// call again until a deadline of the connection's (idle, send timeout) comes due.
    /// Activity need not move a deadline: return the later one when it is checked.
    /// `now` and the result are the loop's clock (`MonotonicClock` nanoseconds);
    /// deadlines are met within ``EventLoop/deadlineResolution``.
    func checkLiveness(_ connection: Connection, now: UInt64) -> UInt64?
}

extension ConnectionHandler {
    public func connected(_ connection: Connection) {}
    public func inputClosed(_ connection: Connection) { connection.closeAfterWriting() }
    public func writable(_ connection: Connection) {}
    public func closed(_ connection: Connection, error: (any Error)?) {}
    public func checkLiveness(_ connection: Connection, now: UInt64) -> UInt64? { nil }
}

/// Received bytes, borrowed from the loop's provided buffer ring for the duration of
/// one `received` call. Do not let it (or `unsafeBytes`) escape the call.
///
/// The buffer is the application's during the call: a protocol layer may rewrite it
/// in place through ``unsafeMutableBytes`` (a WebSocket unmasks frames there) before
/// it returns to the ring.
public struct ReceivedBytes: RandomAccessCollection {
    /// The underlying bytes, valid only during the handler call.
    public let unsafeBytes: UnsafeRawBufferPointer
    /// The same bytes, writable: set for a receive buffer delivered by a `Connection`,
    /// nil for bytes wrapped by ``init(_:)`` (which may not be the caller's to modify).
    /// Valid only during the handler call.
    public let unsafeMutableBytes: UnsafeMutableRawBufferPointer?

    /// Wraps read-only bytes (``unsafeMutableBytes`` is nil).
    @inline(__always)
    public init(_ bytes: UnsafeRawBufferPointer) {
        unsafeBytes = bytes
        unsafeMutableBytes = nil
    }

    /// Wraps a receive buffer the handler may modify during the call.
    @inline(__always)
    init(owned bytes: UnsafeMutableRawBufferPointer) {
        unsafeBytes = UnsafeRawBufferPointer(bytes)
        unsafeMutableBytes = bytes
    }

    public var startIndex: Int { 0 }
    public var endIndex: Int { unsafeBytes.count }
    @inline(__always)
    public subscript(position: Int) -> UInt8 { unsafeBytes[position] }

    /// A copy that the application owns.
    public func copy() -> [UInt8] { Array(unsafeBytes) }

    public func withUnsafeBytes<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        try body(unsafeBytes)
    }
}
