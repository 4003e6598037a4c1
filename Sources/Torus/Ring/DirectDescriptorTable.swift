import CLiburing
import Glibc

/// The ring's registered file table (sparse), whose slots hold connections' sockets as
/// *direct descriptors*, and which of its slots are taken.
///
/// A socket installed in a slot (an in-ring `IORING_OP_FILES_UPDATE`) is named by the
/// slot with `IOSQE_FIXED_FILE`: the kernel then reads the ring's table instead of
/// taking and dropping a reference on the file (`fget`/`fput`) for every SQE. The
/// regular descriptor stays open beside it for what io_uring cannot do (`getpeername`,
/// `setsockopt`), so a socket is released only when both are gone: the slot is
/// cleared (`close_direct`) and the descriptor closed.
///
/// Slots are handed out in user space (a stack of freed slots, then slots never
/// used), so an install names its slot in the SQE. A slot comes back only once the
/// kernel has said it is empty: on the CQE of the `close_direct` that cleared it, or
/// on the failed CQE of the install that never filled it. So a slot is never filled
/// again while the kernel could still remove it for its previous owner.
///
/// Ownership: one per loop, registered on the thread building the loop (before the
/// ring is enabled) and used on the loop thread only. It owns `descriptors`, one
/// `Int32` per slot: the value an install's `FILES_UPDATE` reads when the kernel
/// issues it, kept from `take` until the slot is cleared (after the install's CQE).
/// The pages are touched only as slots are first used.
final class DirectDescriptorTable {
    /// Slots registered with the kernel.
    let capacity: UInt32
    /// The descriptor each taken slot was given (-1 once its clear is submitted,
    /// `freeMark` once given back).
    private let descriptors: UnsafeMutablePointer<Int32>
    /// Slots given back, reused first (most recent first: warm in the kernel's table).
    private var freed: [UInt32] = []
    /// Slots below this have been handed out at least once.
    private var fresh: UInt32 = 0
    private static let freeMark: Int32 = -2
    #if DEBUG
    /// Debug builds: the slot each installed descriptor is in, so closing a
    /// descriptor whose slot was never cleared stops there (`EventLoop.closeDescriptor`).
    private var slotOf: [Int32: UInt32] = [:]
    #endif

    /// The default size: the process's descriptor limit (the kernel refuses a larger
    /// table), at most 65,536 (8 bytes of kernel memory per slot, per loop).
    static func defaultCapacity() -> UInt32 {
        var limit = rlimit()
        guard getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0 else { return 1024 }
        return UInt32(clamping: Swift.min(UInt64(limit.rlim_cur), 65536))
    }

    /// Registers a sparse table of `capacity` slots with `ring`. Throws the kernel's
    /// refusal (`EMFILE` above the descriptor limit, `ENOMEM`, `EINVAL` on a kernel
    /// without sparse tables).
    init(ring: Ring, capacity: UInt32) throws(IOError) {
        // Not from input: a configuration value the loop checked is positive.
        precondition(capacity > 0, "a direct descriptor table needs at least one slot")
        let rc = io_uring_register_files_sparse(ring.raw, capacity)
        guard rc == 0 else { throw IOError(result: rc < 0 ? rc : -EINVAL, "io_uring_register_files_sparse") }
        self.capacity = capacity
        descriptors = .allocate(capacity: Int(capacity))
    }

    deinit { descriptors.deallocate() }

    /// Gives the table back to the kernel (loop thread, after every slot is clear).
    func unregister(from ring: Ring) {
        _ = io_uring_unregister_files(ring.raw)
    }

    /// A free slot for `fd`, or nil when every slot is taken.
    func take(for fd: Int32) -> UInt32? {
        let slot: UInt32
        if let reused = freed.popLast() {
            slot = reused
        } else if fresh < capacity {
            slot = fresh
            fresh += 1
        } else {
            return nil
        }
        descriptors[Int(slot)] = fd
        #if DEBUG
        slotOf[fd] = slot
        #endif
        return slot
    }

    /// Where the install of `slot` reads the descriptor from (valid until `free`).
    func installArgument(_ slot: UInt32) -> UnsafeMutablePointer<Int32> { descriptors + Int(slot) }

    /// The descriptor in `slot` (debug builds name it in the operation table), or -1.
    func descriptor(in slot: UInt32) -> Int32 { slot < fresh ? Swift.max(descriptors[Int(slot)], -1) : -1 }

    /// The slot's clear was submitted: its descriptor may be closed from now on.
    func clearing(_ slot: UInt32) {
        #if DEBUG
        slotOf[descriptors[Int(slot)]] = nil
        #endif
        descriptors[Int(slot)] = -1
    }

    /// The kernel has said `slot` is empty (cleared, or its install failed): it can be
    /// taken again.
    func free(_ slot: UInt32) {
        // Invariant: only a taken slot comes back, once.
        assert(slot < fresh && descriptors[Int(slot)] != Self.freeMark,
               "direct descriptor slot \(slot) freed twice")
        #if DEBUG
        if descriptors[Int(slot)] >= 0 { slotOf[descriptors[Int(slot)]] = nil }
        #endif
        descriptors[Int(slot)] = Self.freeMark
        freed.append(slot)
    }

    #if DEBUG
    /// The slot `fd` is still installed in (its clear not submitted), if any.
    func slot(holding fd: Int32) -> UInt32? { slotOf[fd] }
    #endif
}
