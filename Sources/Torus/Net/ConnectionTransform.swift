/// A byte transform between a connection's socket and its handler (TLS), installed
/// by a protocol layer with `Connection.install(_:)` before the connection starts.
///
/// The connection calls it instead of the handler for what concerns bytes on the
/// wire, on the loop thread, and the transform calls back into the connection:
/// `sendRaw` for its output (ciphertext into pooled outbound chunks),
/// `withTransformBuffer` and `deliver` to hand its input's result to the handler
/// borrowed, `transformEstablished` when the handler may be told `connected`,
/// `deliverInputClosed`, `closeAfterWriting(error:)`, `scheduleTransformDeadline`.
/// Without a transform none of this runs: one branch on each path.
package protocol ConnectionTransform: AnyObject {
    /// The connection started (registered, about to receive): a client sends its
    /// first flight; a deadline may be scheduled. The handler's `connected` waits
    /// for `transformEstablished`.
    func start(_ connection: Connection)
    /// Bytes arrived (borrowed for the call; the ring buffer goes back after it).
    func inbound(_ bytes: ReceivedBytes, on connection: Connection)
    /// The application sends `bytes` (any `send` variant). False when the connection
    /// is closing or failed.
    func outbound(_ bytes: UnsafeRawBufferPointer, on connection: Connection) -> Bool
    /// The peer sent FIN.
    func inputClosed(_ connection: Connection)
    /// A graceful close or half-close is starting: last bytes (close_notify) go out
    /// with `sendRaw` now.
    func closing(_ connection: Connection)
    /// The connection's deadlines are checked: act on what is due (closing the
    /// connection if need be) and return the next deadline, or nil.
    func checkDeadline(_ connection: Connection, now: UInt64) -> UInt64?
}
