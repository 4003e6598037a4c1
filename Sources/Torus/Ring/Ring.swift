import CLiburing

/// One `io_uring` instance: submission and completion queues shared with the kernel.
///
/// Ownership: the `Ring` owns the heap-allocated `struct io_uring` and the kernel
/// mappings behind it; it is created, used and destroyed on its event loop's thread
/// only (the ring is set up with `IORING_SETUP_SINGLE_ISSUER`, so the kernel rejects
/// submissions from any other thread). It knows nothing about operations: the
/// `EventLoop` fills SQEs and interprets CQEs.
final class Ring {
    /// The liburing state. Stable address: the kernel's mappings hang off it.
    let raw: UnsafeMutablePointer<io_uring>
    /// Flags the kernel accepted (a fallback may drop `DEFER_TASKRUN`).
    let setupFlags: UInt32
    let sqEntries: UInt32
    let cqEntries: UInt32
    /// Set when the SQ was full and had to be submitted early (counted for tests).
    private(set) var earlySubmits = 0

    /// Creates a disabled ring (`R_DISABLED`, enabled later by the loop thread) with
    /// `SINGLE_ISSUER | DEFER_TASKRUN | SUBMIT_ALL` and a CQ
    /// `cqMultiplier` times the SQ, falling back to fewer flags on older kernels.
    init(entries: UInt32, cqMultiplier: UInt32) throws(IOError) {
        raw = .allocate(capacity: 1)
        raw.initialize(to: io_uring())
        let wanted: [UInt32] = [
            IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN,
            IORING_SETUP_COOP_TASKRUN,
            0,
        ]
        var lastError: Int32 = 0
        var accepted: UInt32? = nil
        for extra in wanted {
            var params = io_uring_params()
            params.flags = extra | IORING_SETUP_CQSIZE | IORING_SETUP_SUBMIT_ALL | IORING_SETUP_R_DISABLED
            params.cq_entries = entries * cqMultiplier
            let rc = io_uring_queue_init_params(entries, raw, &params)
            if rc == 0 {
                accepted = params.flags
                break
            }
            lastError = rc
        }
        guard let flags = accepted else {
            raw.deinitialize(count: 1)
            raw.deallocate()
            throw IOError(errno: -lastError, "io_uring_queue_init_params")
        }
        setupFlags = flags
        sqEntries = raw.pointee.sq.ring_entries
        cqEntries = raw.pointee.cq.ring_entries
    }

    deinit {
        io_uring_queue_exit(raw)
        raw.deinitialize(count: 1)
        raw.deallocate()
    }

    /// A free SQE. When the SQ is full, what is queued is submitted first (no wait),
    /// so a caller never sees "no SQE" unless the kernel refuses to take any.
    @inline(__always)
    func nextSQE() -> UnsafeMutablePointer<io_uring_sqe> {
        if let sqe = io_uring_get_sqe(raw) { return sqe }
        earlySubmits += 1
        while true {
            let rc = io_uring_submit(raw)
            if rc >= 0 || rc == -EINTR {
                if let sqe = io_uring_get_sqe(raw) { return sqe }
                continue
            }
            if rc == -EBUSY || rc == -EAGAIN {
                // The CQ is backed up; the kernel will not take more until we reap.
                // The caller's loop reaps on its next iteration; flush overflow now.
                _ = io_uring_get_events(raw)
                continue
            }
            preconditionFailure("io_uring_submit failed: \(rc)")
        }
    }

    /// SQEs prepared but not yet handed to the kernel.
    var pendingSubmissions: UInt32 { io_uring_sq_ready(raw) }

    /// Submits everything queued and waits for at least `waitFor` completions.
    /// Returns a negative errno on failure (`-EINTR`, `-EBUSY`, `-ETIME`, …).
    @inline(__always)
    func submitAndWait(_ waitFor: UInt32) -> Int32 {
        io_uring_submit_and_wait(raw, waitFor)
    }

    /// Enables a ring created disabled, making the calling thread its single issuer.
    /// Buffer rings are registered before this, from the thread that built the loop.
    func enable() {
        let rc = torus_enable_rings(raw)
        precondition(rc == 0, "io_uring_enable_rings failed: \(rc)")
    }

    /// Submits everything queued and collects completions without waiting.
    @inline(__always)
    func submitAndGetEvents() -> Int32 {
        io_uring_submit_and_get_events(raw)
    }

    /// True when completions were dropped into the kernel's overflow list.
    var hasOverflow: Bool { io_uring_cq_has_overflow(raw) }

    /// Asks the kernel to flush overflowed completions into the CQ.
    func flushOverflow() { _ = io_uring_get_events(raw) }

    /// Copies up to `into.count` ready CQE pointers; returns how many.
    @inline(__always)
    func peekBatch(_ into: UnsafeMutablePointer<UnsafeMutablePointer<io_uring_cqe>?>, max: UInt32) -> UInt32 {
        io_uring_peek_batch_cqe(raw, into, max)
    }

    @inline(__always)
    func advance(_ n: UInt32) { io_uring_cq_advance(raw, n) }
}
