import CLiburing

/// One `io_uring` instance: submission and completion queues shared with the kernel.
///
/// Ownership: the `Ring` owns the heap-allocated `struct io_uring` and the kernel
/// mappings behind it; it is created, used and destroyed on its event loop's thread
/// only (where the kernel has it, the ring is set up with `IORING_SETUP_SINGLE_ISSUER`,
/// so the kernel rejects submissions from any other thread). It knows nothing about operations: the
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
    /// `SINGLE_ISSUER | DEFER_TASKRUN | SUBMIT_ALL` and a CQ `cqMultiplier` times the
    /// SQ, trying smaller sets of the optional flags when the kernel answers `EINVAL`
    /// (older kernels), or none of them with `plainSetup` (``KernelFallbacks``).
    /// Any other refusal (io_uring disabled, blocked by seccomp, absent, out of
    /// locked memory) throws an `IOError` whose ``KernelRefusal`` says why and how to
    /// enable it.
    init(entries: UInt32, cqMultiplier: UInt32, plainSetup: Bool = false) throws(IOError) {
        raw = .allocate(capacity: 1)
        raw.initialize(to: io_uring())
        let optional: [UInt32] = plainSetup ? [0] : [
            IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN,   // 6.1
            IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_COOP_TASKRUN,    // 6.0
            IORING_SETUP_COOP_TASKRUN,                                 // 5.19
            0,
        ]
        var lastError: Int32 = 0
        var accepted: UInt32? = nil
        for extra in optional {
            var params = io_uring_params()
            params.flags = extra | IORING_SETUP_CQSIZE | IORING_SETUP_SUBMIT_ALL | IORING_SETUP_R_DISABLED
            params.cq_entries = entries * cqMultiplier
            let rc = io_uring_queue_init_params(entries, raw, &params)
            if rc == 0 {
                accepted = params.flags
                break
            }
            lastError = rc
            // Only an unknown flag is worth trying again without it.
            if rc != -EINVAL { break }
        }
        guard let flags = accepted else {
            raw.deinitialize(count: 1)
            raw.deallocate()
            throw Self.setupError(-lastError)
        }
        setupFlags = flags
        sqEntries = raw.pointee.sq.ring_entries
        cqEntries = raw.pointee.cq.ring_entries
    }

    /// The error for a refused `io_uring_setup` (`errno` positive), explained when the
    /// errno says something about the kernel's will (see `KernelRefusal.diagnose`).
    static func setupError(_ errno: Int32) -> IOError {
        let refusal = KernelRefusal.diagnose(setupErrno: errno, sysctls: .read(),
                                             memlockLimit: KernelRefusal.memlockLimit(),
                                             running: KernelVersion.runningRelease())
        guard let refusal else { return IOError(errno: errno, "io_uring_queue_init_params") }
        return IOError(refusal, errno: errno, "io_uring_queue_init_params")
    }

    deinit {
        io_uring_queue_exit(raw)
        raw.deinitialize(count: 1)
        raw.deallocate()
    }

    /// A free SQE, or nil. When the SQ is full, what is queued is submitted first (no
    /// wait); nil means the kernel refused to take it (`-EBUSY`, `-EAGAIN`: the CQ is
    /// backed up until the loop reaps; the error is in `lastSubmitError`). The loop
    /// then keeps the SQE aside and places it after reaping: nothing here spins.
    @inline(__always)
    func nextSQE() -> UnsafeMutablePointer<io_uring_sqe>? {
        if let sqe = io_uring_get_sqe(raw) { return sqe }
        return submitEarly() ? io_uring_get_sqe(raw) : nil
    }

    /// True when `count` SQEs can be taken in a row (a linked pair must not be split
    /// by an early submit); submits what is queued first when there is less room.
    func reserve(_ count: UInt32) -> Bool {
        if io_uring_sq_space_left(raw) >= count { return true }
        return submitEarly() && io_uring_sq_space_left(raw) >= count
    }

    /// The error of the last refused submit (a negative errno), for the loop's log.
    private(set) var lastSubmitError: Int32 = 0
    /// Test hook: the next `injectedBusySubmits` early submits fail with `-EBUSY` as
    /// a kernel with a backed-up CQ answers (so the deferral path can be proved).
    var injectedBusySubmits = 0

    /// Submits what the full SQ holds. False when the kernel refused.
    @inline(never)
    private func submitEarly() -> Bool {
        earlySubmits += 1
        while true {
            let rc: Int32
            if injectedBusySubmits > 0 {
                injectedBusySubmits -= 1
                rc = -EBUSY
            } else {
                rc = io_uring_submit(raw)
            }
            if rc == -EINTR { continue }
            if rc < 0 {
                lastSubmitError = rc
                return false
            }
            return true
        }
    }

    /// SQEs prepared but not yet handed to the kernel.
    var pendingSubmissions: UInt32 { io_uring_sq_ready(raw) }

    /// Submits everything queued and waits for at least `waitFor` completions, at
    /// most `longestSleep`. Returns a negative errno on failure (`-EINTR`, `-EBUSY`,
    /// `-ETIME`, …).
    @inline(__always)
    func submitAndWait(_ waitFor: UInt32) -> Int32 {
        var bound = Self.longestSleep
        return submitAndWait(waitFor, &bound)
    }

    /// The same, waiting at most `bound` (a coalescing wait: `-ETIME` when fewer
    /// than `waitFor` completed in time, which is no failure).
    @inline(__always)
    func submitAndWait(_ waitFor: UInt32, bound: Duration) -> Int32 {
        let (seconds, attoseconds) = bound.components
        var timeout = __kernel_timespec(tv_sec: seconds, tv_nsec: attoseconds / 1_000_000_000)
        #if DEBUG
        coalescedWaits += 1
        #endif
        return submitAndWait(waitFor, &timeout)
    }

    @inline(__always)
    private func submitAndWait(_ waitFor: UInt32, _ bound: inout __kernel_timespec) -> Int32 {
        #if DEBUG
        if let refused = injectedEnter() { return refused }
        #endif
        var cqe: UnsafeMutablePointer<io_uring_cqe>?
        return io_uring_submit_and_wait_timeout(raw, &cqe, waitFor, &bound, nil)
    }

    /// The longest a loop sleeps in `submitAndWait`, whatever it waits for. A loop
    /// wakes for its timers through their own timeout CQEs; this bound is a guard:
    /// on this 6.18 kernel with `DEFER_TASKRUN`, after a burst of 10,000 connections
    /// each arming a multishot receive, a loop was seen asleep for 20 s with a 1.1 s
    /// timeout pending (its CQE only appeared when something else woke the loop),
    /// in about half the runs of the idle-memory benchmark's hub step. The cause
    /// (kernel or runtime) is not established; with the bound the timeout completes
    /// on the next wake, at most a second late, and an idle loop wakes once a second.
    static let longestSleep = __kernel_timespec(tv_sec: 1, tv_nsec: 0)

    #if DEBUG
    /// Waits that asked for more than one completion (coalescing), for the tests.
    package var coalescedWaits = 0
    /// Faults the tests switch on (see `FaultInjection`). Debug builds only.
    package var faults = FaultInjection()

    /// Counts an enter; when a refusal is armed, collects what completed without
    /// submitting or waiting and answers `-EBUSY`, as a kernel with a backed-up CQ.
    private func injectedEnter() -> Int32? {
        faults.enters += 1
        guard faults.refuseEnter() else { return nil }
        _ = io_uring_get_events(raw)
        return -EBUSY
    }
    #endif

    /// Enables a ring created disabled, making the calling thread its single issuer.
    /// Buffer rings are registered before this, from the thread that built the loop.
    func enable() {
        let rc = torus_enable_rings(raw)
        // Not from input, nor from a sandbox: the loop's init already made
        // io_uring_register calls on this ring (probe, buffer ring) that would have
        // thrown; ENABLE_RINGS fails only on a ring not created disabled.
        precondition(rc == 0, "io_uring_enable_rings failed: \(rc)")
    }

    /// True while the ring's descriptor is registered with the loop thread.
    private(set) var descriptorRegistered = false

    /// Registers the ring's descriptor with the calling thread
    /// (`IORING_REGISTER_RING_FDS`): liburing then passes the index with
    /// `IORING_ENTER_REGISTERED_RING` on every enter, and the kernel skips the
    /// descriptor-table lookup and the file reference count each time. The index
    /// belongs to the calling thread, so only the loop thread registers, enters and
    /// unregisters. Returns 0, or the kernel's negative errno.
    func registerDescriptor() -> Int32 {
        let rc = io_uring_register_ring_fd(raw)
        if rc == 1 { descriptorRegistered = true; return 0 }
        return rc < 0 ? rc : -EINVAL
    }

    /// Gives the registration back, on the loop thread, before the loop ends: a
    /// ring torn down on another thread must not unregister that thread's index.
    func unregisterDescriptor() {
        guard descriptorRegistered else { return }
        descriptorRegistered = false
        _ = io_uring_unregister_ring_fd(raw)
    }

    /// Submits everything queued and collects completions without waiting.
    @inline(__always)
    func submitAndGetEvents() -> Int32 {
        #if DEBUG
        if let refused = injectedEnter() { return refused }
        #endif
        return io_uring_submit_and_get_events(raw)
    }

    /// True when completions were dropped into the kernel's overflow list.
    var hasOverflow: Bool { io_uring_cq_has_overflow(raw) }

    /// Asks the kernel to flush overflowed completions into the CQ.
    func flushOverflow() { _ = io_uring_get_events(raw) }

    /// Copies up to `into.count` ready CQE pointers; returns how many.
    @inline(__always)
    func peekBatch(_ into: UnsafeMutablePointer<UnsafeMutablePointer<io_uring_cqe>?>, max: UInt32) -> UInt32 {
        #if DEBUG
        if faults.withholdReap() { return 0 }
        #endif
        return io_uring_peek_batch_cqe(raw, into, max)
    }

    /// A CQE's result as the loop dispatches it: the kernel's, or (debug builds, a
    /// fault armed) the injected one.
    @inline(__always)
    func result(of cqe: UnsafeMutablePointer<io_uring_cqe>) -> Int32 {
        #if DEBUG
        return faults.result(cqe.pointee.user_data, kernel: cqe.pointee.res)
        #else
        return cqe.pointee.res
        #endif
    }

    @inline(__always)
    func advance(_ n: UInt32) { io_uring_cq_advance(raw, n) }
}
