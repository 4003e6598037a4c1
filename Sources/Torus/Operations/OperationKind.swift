import CLiburing
/// Every kind of operation Torus submits to the ring. The ledger keeps one set of
/// counters per kind, so the raw values are dense indices.
public enum OperationKind: Int, CaseIterable, Sendable, CustomStringConvertible {
    case nop
    case wake
    case accept
    case recv
    case send
    case connect
    case linkTimeout
    case shutdown
    case close
    case cancel
    case timeout
    case timeoutRemove
    case openat
    case read
    case write
    case statx
    /// A socket installed into the ring's registered file table (`FILES_UPDATE`).
    case filesUpdate
    /// A slot of the registered file table cleared (`close_direct`).
    case closeDirect

    public var description: String {
        switch self {
        case .nop: "nop"
        case .wake: "wake"
        case .accept: "accept"
        case .recv: "recv"
        case .send: "send"
        case .connect: "connect"
        case .linkTimeout: "link_timeout"
        case .shutdown: "shutdown"
        case .close: "close"
        case .cancel: "cancel"
        case .timeout: "timeout"
        case .timeoutRemove: "timeout_remove"
        case .openat: "openat"
        case .read: "read"
        case .write: "write"
        case .statx: "statx"
        case .filesUpdate: "files_update"
        case .closeDirect: "close_direct"
        }
    }
}
