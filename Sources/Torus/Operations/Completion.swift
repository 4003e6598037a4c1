import CLiburing

/// A completion queue entry, copied out of the ring before dispatch. Not public API:
/// owners inside this package interpret it; applications see results and errors.
///
/// Plain value: the CQE slot itself is handed back to the kernel (`cq_advance`) right
/// after the batch is dispatched, so nothing may keep a pointer to it.
package struct Completion: Sendable {
    /// The operation's result: a byte count, an fd, 0, or a negative errno.
    package let result: Int32
    /// Raw CQE flags.
    package let flags: UInt32

    @inline(__always)
    init(result: Int32, flags: UInt32) {
        self.result = result
        self.flags = flags
    }

    /// More completions will follow for the same multishot operation.
    @inline(__always) package var hasMore: Bool { flags & IORING_CQE_F_MORE != 0 }
    /// A provided buffer was consumed; `bufferID` names it.
    @inline(__always) package var hasBuffer: Bool { flags & IORING_CQE_F_BUFFER != 0 }
    /// The provided buffer's id (valid only when `hasBuffer`).
    @inline(__always) package var bufferID: UInt16 { UInt16(truncatingIfNeeded: flags >> IORING_CQE_BUFFER_SHIFT) }
    /// The zero-copy send notification (the buffer may be reused now).
    @inline(__always) package var isNotification: Bool { flags & IORING_CQE_F_NOTIF != 0 }
    /// The error, if the result is a negative errno.
    @inline(__always) package var errno: Int32? { result < 0 ? -result : nil }
}
