import CLiburing

/// Where a connection's socket is in its loop's registered file table, and so how its
/// SQEs name it (see `DirectDescriptorTable`).
///
/// A connection takes a slot when it starts and submits the install; until the
/// install's CQE says the socket is there, its SQEs name the descriptor (nothing is
/// ever submitted against a slot the kernel might not have filled, so a refused
/// install costs nothing but the fallback). From then on every SQE that names the
/// socket names the slot with `IOSQE_FIXED_FILE`. The connection alone holds the
/// slot and lets it go in `EventLoop.closeSocket`, with its descriptor.
enum DirectDescriptor: Equatable {
    /// Not in the table: SQEs name the descriptor (no table, a full one, a refused
    /// install, or after close).
    case none
    /// The install (`FILES_UPDATE`) is in flight: SQEs still name the descriptor.
    case installing(slot: UInt32)
    /// In the table: SQEs name the slot.
    case installed(slot: UInt32)

    /// The slot held (installing or installed), which closing must clear.
    var slot: UInt32? {
        switch self {
        case .none: nil
        case .installing(let slot), .installed(let slot): slot
        }
    }

    var isInstalling: Bool {
        if case .installing = self { return true }
        return false
    }

    /// Points a prepared SQE (which names the descriptor) at the slot, when installed.
    @inline(__always)
    func aim(_ sqe: UnsafeMutablePointer<io_uring_sqe>) {
        guard case .installed(let slot) = self else { return }
        sqe.pointee.fd = Int32(bitPattern: slot)
        sqe.pointee.flags |= TORUS_IOSQE_FIXED_FILE
    }
}
